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
        let out = try merge("mwa", base: s.base, s.experts, expertMetrics: metrics.map { ["eval_loss": $0] })
        let w = MWA.weights(metrics: metrics, mode: "loss", penalty: 1)
        let soup = try merge("linear", experts: weighted(w), base: nil, s.experts)
        expectClose(out.values, soup.values)
        for (i, x) in w.enumerated() { #expect(out.metrics.notes["weight_\(i)"] == x) }
    }

    @Test func identicalExpertsGiveTheExpert() throws {
        let e = randomValues(100, seed: 1)
        let out = try merge("mwa", ["mode": .text("score"), "penalty": .number(3), "metric": .text("accuracy")],
                            base: nil, [e, e], expertMetrics: [0.2, 0.9].map { ["accuracy": $0] })
        expectClose(out.values, e)
    }

    /// MWA declares the commit metric it needs; the plan checks every expert has a usable value.
    @Test func validation() {
        #expect(MWA.expertMetrics(ParameterSet(global: [:], perExpert: [])) == ["eval_loss"])
        #expect(MWA.expertMetrics(ParameterSet(global: ["metric": .text("acc")], perExpert: [])) == ["acc"])
        let missing = planError(MergeRecipe(method: "mwa", experts: ["a", "b"]), [["eval_loss": 1]])
        #expect(missing?.hasPrefix("mwa: b records no usable metric 'eval_loss'") == true, "\(missing ?? "")")
        let zero = planError(MergeRecipe(method: "mwa", experts: ["a", "b"]), [["eval_loss": 0], ["eval_loss": 1]])
        #expect(zero?.hasPrefix("mwa: a records no usable metric 'eval_loss'") == true)
        #expect(planError(MergeRecipe(method: "mwa", parameters: ["mode": .text("best")], experts: ["a", "b"]), [["eval_loss": 1], ["eval_loss": 2]])
            == "mwa: parameter 'mode' must be one of loss, score, got 'best'")
        #expect(planError(MergeRecipe(method: "mwa", experts: ["a"]), [["eval_loss": 1]]) == "mwa: takes 2 to 64 experts, got 1")
        #expect(planError(MergeRecipe(method: "mwa", experts: ["a", "b"]), [["eval_loss": 1], ["eval_loss": 2]]) == nil)
        // There is no per-expert parameter to fake the metric with.
        #expect(planError(MergeRecipe(method: "mwa", expertParameters: [["metric_value": .number(1)], [:]], experts: ["a", "b"]),
                          [["eval_loss": 1], ["eval_loss": 2]])?.contains("has no parameter 'metric_value'") == true)
    }
}
