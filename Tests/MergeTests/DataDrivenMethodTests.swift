import Delta
import Foundation
import Testing

@testable import Merge

/// fisher and regmean against an independent NumPy computation (scripts/reference_methods.py wrote
/// Fixtures/data_methods.json; not run in CI), plus the statistics contract: a missing file is a
/// one-line error naming the expert and the file, mismatched statistics name the tensor.
@Suite struct DataDrivenMethodTests {
    static func fixture() throws -> JSONValue {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures").appendingPathComponent("data_methods.json")
        return try JSONValue.parse([UInt8](try Data(contentsOf: url)))
    }

    static func statistics(_ c: JSONValue, names: [String]) -> InMemoryStatistics {
        let files = (c["statistics"]?.arrayValue ?? []).map { s -> [String: InMemoryStatistics.File] in
            var tensors: [String: (shape: [Int], values: [Float])] = [:]
            for m in s["tensors"]?.objectValue ?? [] {
                let shape = (s["shapes"]?[m.key]?.arrayValue ?? []).compactMap(\.intValue)
                tensors[m.key] = (shape, GoldenTests.floats(m.value) ?? [])
            }
            var metadata: [String: String] = [:]
            for m in s["metadata"]?.objectValue ?? [] { metadata[m.key] = m.value.stringValue }
            return [s["kind"]?.stringValue ?? "": InMemoryStatistics.File(tensors: tensors, metadata: metadata)]
        }
        return InMemoryStatistics(expertNames: names, files: files)
    }

    @Test func matchesTheNumPyReference() throws {
        let cases = try #require(Self.fixture()["cases"]?.arrayValue)
        #expect(cases.count >= 10)
        for c in cases {
            let name = c["name"]?.stringValue ?? "?"
            let shape = (c["shape"]?.arrayValue ?? []).compactMap(\.intValue)
            let experts = (c["experts"]?.arrayValue ?? []).compactMap { GoldenTests.floats($0) }
            let expected = try #require(c["output"]?.arrayValue).map { $0.doubleValue ?? .nan }
            let names = experts.indices.map { "expert\($0)" }
            let recipe = MergeRecipe(method: try #require(c["method"]?.stringValue), parameters: GoldenTests.parameters(c["parameters"]?["global"]),
                                     expertParameters: (c["parameters"]?["experts"]?.arrayValue ?? []).map { GoldenTests.parameters($0) },
                                     experts: names)
            let plan = try MergePlan(recipe, statistics: Self.statistics(c, names: names))
            let ctx = TensorContext(name: shape.count == 2 ? "t.weight" : "t.bias", shape: shape, layerCount: 1)
            let actual = try plan.merge(ctx, base: nil, experts: experts).values
            #expect(actual.count == expected.count, "\(name)")
            let scale = max(expected.map(abs).max() ?? 0, 1e-12)
            let error = zip(actual, expected).map { abs(Double($0) - $1) / scale }.max() ?? 0
            #expect(error <= 1e-5, "\(name): max |mrepo − numpy| / max |numpy| = \(error)")
        }
    }

    /// An expert without the statistics file: the plan refuses, naming the expert and the file.
    @Test func missingStatisticsFileNamesTheExpertAndTheFile() throws {
        for (method, file) in [("fisher", "mrepo_stats/fisher.safetensors"), ("regmean", "mrepo_stats/regmean.safetensors")] {
            let stats = InMemoryStatistics(expertNames: ["code", "prose"], files: [[method: .init(tensors: [:])], [:]])
            let recipe = MergeRecipe(method: method, parameters: [:], experts: ["code", "prose"])
            let error = thrownError { _ = try MergePlan(recipe, statistics: stats) } as? MergeError
            let text = error?.description ?? ""
            #expect(text.contains("prose") && text.contains(file) && !text.contains("\n"), "\(text)")
        }
        // RegMean++ reads its own file.
        let stats = InMemoryStatistics(expertNames: ["a", "b"], files: [["regmean": .init(tensors: [:])], ["regmean": .init(tensors: [:])]])
        let recipe = MergeRecipe(method: "regmean", parameters: ["plusplus": .flag(true)], experts: ["a", "b"])
        let error = thrownError { _ = try MergePlan(recipe, statistics: stats) } as? MergeError
        #expect(error?.description.contains("regmean_plusplus.safetensors") == true)
    }

    /// Statistics whose size does not fit the tensor: a one-line error naming the tensor and the expert.
    @Test func mismatchedStatisticsNameTheTensor() throws {
        let f = InMemoryStatistics.File(tensors: ["t.weight": ([3], [1, 2, 3])])
        let stats = InMemoryStatistics(expertNames: ["a", "b"], files: [["fisher": f], ["fisher": f]])
        let plan = try MergePlan(MergeRecipe(method: "fisher", parameters: [:], experts: ["a", "b"]), statistics: stats)
        let ctx = TensorContext(name: "t.weight", shape: [2, 2], layerCount: 1)
        let error = thrownError { _ = try plan.merge(ctx, base: nil, experts: [[1, 2, 3, 4], [4, 3, 2, 1]]) } as? MergeError
        #expect(error?.description.contains("t.weight") == true && error?.description.contains("a's") == true)
    }

    /// A Fisher that is zero everywhere but one expert's element picks that expert there; elsewhere
    /// (ε only) the experts are averaged.
    @Test func fisherFollowsTheInformativeExpert() throws {
        let a = InMemoryStatistics.File(tensors: ["w": ([2], [1000, 0])])
        let b = InMemoryStatistics.File(tensors: ["w": ([2], [0, 0])])
        let stats = InMemoryStatistics(expertNames: ["a", "b"], files: [["fisher": a], ["fisher": b]])
        let plan = try MergePlan(MergeRecipe(method: "fisher", parameters: ["normalize": .flag(false)], experts: ["a", "b"]), statistics: stats)
        let out = try plan.merge(TensorContext(name: "w", shape: [2], layerCount: 1), base: nil, experts: [[1, 1], [3, 3]]).values
        #expect(abs(out[0] - 1) < 1e-6)
        #expect(abs(out[1] - 2) < 1e-6)
    }

    /// With identical Grams RegMean is the plain average; with one expert's inputs confined to one
    /// feature, the merge fits that expert on it exactly.
    @Test func regmeanSolvesTheLeastSquaresProblem() throws {
        let identity: [Float] = [1, 0, 0, 1]
        let same = InMemoryStatistics.File(tensors: ["w.gram": ([2, 2], identity)])
        let stats = InMemoryStatistics(expertNames: ["a", "b"], files: [["regmean": same], ["regmean": same]])
        let plan = try MergePlan(MergeRecipe(method: "regmean", parameters: ["alpha": .number(1)], experts: ["a", "b"]), statistics: stats)
        let ctx = TensorContext(name: "w", shape: [1, 2], layerCount: 1)
        let avg = try plan.merge(ctx, base: nil, experts: [[1, 2], [3, 6]]).values
        #expect(abs(avg[0] - 2) < 1e-6 && abs(avg[1] - 4) < 1e-6)
        // Expert a sees only feature 0, expert b only feature 1: each column comes from one expert.
        let ga = InMemoryStatistics.File(tensors: ["w.gram": ([2, 2], [4, 0, 0, 0])])
        let gb = InMemoryStatistics.File(tensors: ["w.gram": ([2, 2], [0, 0, 0, 9])])
        let split = InMemoryStatistics(expertNames: ["a", "b"], files: [["regmean": ga], ["regmean": gb]])
        let plan2 = try MergePlan(MergeRecipe(method: "regmean", parameters: [:], experts: ["a", "b"]), statistics: split)
        let out = try plan2.merge(ctx, base: nil, experts: [[1, 2], [3, 6]]).values
        #expect(abs(out[0] - 1) < 1e-6 && abs(out[1] - 6) < 1e-6)
    }

    /// A summed Gram that is singular (a feature no expert's data reached) is solved with the ridge.
    @Test func regmeanSingularGramUsesTheRidge() throws {
        let g = InMemoryStatistics.File(tensors: ["w.gram": ([2, 2], [1, 0, 0, 0])])
        let stats = InMemoryStatistics(expertNames: ["a", "b"], files: [["regmean": g], ["regmean": g]])
        let plan = try MergePlan(MergeRecipe(method: "regmean", parameters: [:], experts: ["a", "b"]), statistics: stats)
        let (values, metrics) = try plan.merge(TensorContext(name: "w", shape: [1, 2], layerCount: 1), base: nil, experts: [[1, 2], [3, 6]])
        #expect(abs(values[0] - 2) < 1e-5)
        #expect(values[1].isFinite)
        #expect(metrics.notes["regmean_ridge"] != nil)
    }
    /// Per-expert weights scale each expert's Gram (and its share of the averaged tensors): all 1 is
    /// RegMean bit for bit, a common factor changes nothing, weight 0 leaves the other expert's fit.
    @Test func regmeanWeightsTheExpertsLeastSquaresShares() throws {
        let ga = InMemoryStatistics.File(tensors: ["w.gram": ([2, 2], [4, 1, 1, 2])])
        let gb = InMemoryStatistics.File(tensors: ["w.gram": ([2, 2], [1, 0.5, 0.5, 3])])
        let stats = InMemoryStatistics(expertNames: ["a", "b"], files: [["regmean": ga], ["regmean": gb]])
        let experts: [[Float]] = [[1, 2, -1, 0.5], [3, 6, 2, -4]]
        func merged(_ weights: [Double]?, name: String = "w") throws -> [Float] {
            var recipe = MergeRecipe(method: "regmean", parameters: [:], experts: ["a", "b"])
            if let weights { recipe.expertParameters = weights.map { ["weight": .number($0)] } }
            let plan = try MergePlan(recipe, statistics: stats)
            return try plan.merge(TensorContext(name: name, shape: [2, 2], layerCount: 1), base: nil, experts: experts).values
        }
        let plain = try merged(nil)
        #expect(try merged([1, 1]) == plain)
        let doubled = try merged([2, 2])
        for (x, y) in zip(doubled, plain) { #expect(abs(x - y) < 1e-6) }
        // Weight 0 for b: the fit is a's alone, which reproduces a exactly (its Gram is invertible).
        let onlyA = try merged([1, 0])
        for (x, y) in zip(onlyA, experts[0]) { #expect(abs(x - y) < 1e-5, "\(onlyA)") }
        // Between: b's weight moves the result from a towards the unweighted fit and beyond.
        let leaning = try merged([1, 3])
        #expect(abs(leaning[0] - experts[1][0]) < abs(plain[0] - experts[1][0]))
        // Tensors without a Gram take the weighted average; all-zero weights are refused.
        #expect(try merged([1, 3], name: "other") == [2.5, 5, 1.25, -2.875])
        #expect(try merged([1, 1], name: "other") == [2, 4, 0.5, -1.75])
        let zero = MergeRecipe(method: "regmean", parameters: [:], expertParameters: [["weight": .number(0)], ["weight": .number(0)]], experts: ["a", "b"])
        let refused = thrownError { _ = try MergePlan(zero, statistics: stats) } as? MergeError
        #expect(refused?.description.contains("must be positive") == true, "\(String(describing: refused))")
    }
}
