import Testing

@testable import Merge

/// `mwa`: a soup whose weights come from each expert's recorded metric.
@Suite struct MWATests {
    @Test func weightsFromLosses() {
        let w = MWA.weights(metrics: [1, 2, 4], mode: "loss", penalty: 1)
        // ∝ 1, 1/2, 1/4 → 4/7, 2/7, 1/7.
        #expect(zip(w, [4.0 / 7, 2.0 / 7, 1.0 / 7]).allSatisfy { abs($0 - $1) < 1e-15 })
        #expect(abs(w.reduce(0, +) - 1) < 1e-15)
    }

    @Test func weightsFromScores() {
        let w = MWA.weights(metrics: [1, 3], mode: "score", penalty: 2)
        // ∝ 1, 9.
        #expect(zip(w, [0.1, 0.9]).allSatisfy { abs($0 - $1) < 1e-15 })
    }

    @Test func zeroPenaltyIsTheUniformAverage() {
        let third: Double = 1.0 / 3
        #expect(MWA.weights(metrics: [0.3, 7, 100], mode: "loss", penalty: 0) == [third, third, third])
    }

    @Test func aLargerPenaltySeparatesMore() {
        let mild = MWA.weights(metrics: [1, 2], mode: "loss", penalty: 1)
        let strong = MWA.weights(metrics: [1, 2], mode: "loss", penalty: 4)
        #expect(strong[0] > mild[0] && abs(strong[0] - 16.0 / 17) < 1e-15)
    }

    /// The merge is the linear soup with those weights, and the report notes the weights.
    @Test func mergeIsTheWeightedSoup() throws {
        let s = Section7.self
        let metrics = [0.5, 1.0, 2.0]
        let out = try merge("mwa", experts: metrics.map { ["metric_value": .number($0)] }, base: s.base, s.experts)
        let w = MWA.weights(metrics: metrics, mode: "loss", penalty: 1)
        let soup = try merge("linear", experts: weighted(w), base: nil, s.experts)
        expectClose(out.values, soup.values)
        for (i, x) in w.enumerated() { #expect(out.metrics.notes["weight_\(i)"] == x) }
    }

    @Test func identicalExpertsGiveTheExpert() throws {
        let e = randomValues(100, seed: 1)
        let out = try merge("mwa", ["mode": .text("score"), "penalty": .number(3)],
                            experts: [0.2, 0.9].map { ["metric_value": .number($0)] }, base: nil, [e, e])
        expectClose(out.values, e)
    }

    @Test func validation() {
        func planError(_ recipe: MergeRecipe) -> String? {
            do {
                _ = try MergePlan(recipe)
                return nil
            } catch {
                return String(describing: error)
            }
        }
        #expect(planError(MergeRecipe(method: "mwa", expertParameters: [["metric_value": .number(1)]], experts: ["a", "b"]))
            == "mwa: parameter 'metric_value (for b)' is required")
        #expect(planError(MergeRecipe(method: "mwa", expertParameters: [["metric_value": .number(0)], ["metric_value": .number(1)]],
                                      experts: ["a", "b"]))
            == "mwa: parameter 'metric_value' must be in (0, inf], got 0")
        #expect(planError(MergeRecipe(method: "mwa", parameters: ["mode": .text("best"), "metric_value": .number(1)], experts: ["a", "b"]))
            == "mwa: parameter 'mode' must be one of loss, score, got 'best'")
        #expect(planError(MergeRecipe(method: "mwa", parameters: ["metric_value": .number(1)], experts: ["a"]))
            == "mwa: takes 2 to 64 experts, got 1")
        // A global metric_value covers every expert.
        #expect(planError(MergeRecipe(method: "mwa", parameters: ["metric_value": .number(1)], experts: ["a", "b"])) == nil)
    }
}
