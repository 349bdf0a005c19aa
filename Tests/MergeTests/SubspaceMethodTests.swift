import Delta
import Foundation
import Testing

@testable import Merge

/// The data-free subspace methods (tsv, iso_c, iso_cts, wudi, cart, pcb, knots) and `--balance
/// norm` against an independent NumPy computation of each paper's formula, in float64 from the
/// same float32 inputs: scripts/reference_methods.py wrote Fixtures/subspace_methods.json (not run
/// in CI).
///
/// Tolerance: the largest |mrepo − reference| of the merged *task vector* (output − base; the
/// output itself for cart, which has no base) over the largest |reference task vector| ≤ 2e-5.
/// mrepo's SVD returns float32 singular vectors, so about 1e-6 is expected; a wrong formula (a
/// missing orthogonalisation, the sum for the mean, a wrong rank) is off by 1e-2 or more.
@Suite struct SubspaceMethodTests {
    static func fixture() throws -> JSONValue {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures").appendingPathComponent("subspace_methods.json")
        return try JSONValue.parse([UInt8](try Data(contentsOf: url)))
    }

    static let methods = ["tsv", "iso_c", "iso_cts", "wudi", "cart", "pcb", "knots"]

    /// Runs one fixture case through MergePlan (so parameters are validated as for a real merge).
    static func run(_ c: JSONValue) throws -> (actual: [Float], expected: [Double], base: [Float]?) {
        let method = try #require(c["method"]?.stringValue)
        let shape = (c["shape"]?.arrayValue ?? []).compactMap(\.intValue)
        let experts = (c["experts"]?.arrayValue ?? []).compactMap { GoldenTests.floats($0) }
        let base = GoldenTests.floats(c["base"])
        let expected = try #require(c["output"]?.arrayValue).map { $0.doubleValue ?? .nan }
        var recipe = MergeRecipe(method: method, parameters: GoldenTests.parameters(c["parameters"]?["global"]),
                                 expertParameters: (c["parameters"]?["experts"]?.arrayValue ?? []).map { GoldenTests.parameters($0) },
                                 experts: experts.indices.map { "expert\($0)" })
        if let b = c["balance"]?.stringValue { recipe.balance = TaskVectorBalance(rawValue: b) }
        let plan = try MergePlan(recipe)
        let ctx = TensorContext(name: "model.layers.0.fixture.weight", shape: shape, layerCount: 1)
        return (try plan.merge(ctx, base: base, experts: experts).values, expected, base)
    }

    /// The error of the merged task vector, relative to the reference's largest element.
    static func taskVectorError(_ actual: [Float], _ expected: [Double], base: [Float]?) -> Double {
        guard let base else { return relativeError(actual, expected) }
        let a = zip(actual, base).map { Double($0) - Double($1) }
        let e = zip(expected, base).map { $0 - Double($1) }
        let scale = max(e.map(abs).max() ?? 0, 1e-12)
        return zip(a, e).map { abs($0 - $1) / scale }.max() ?? 0
    }

    @Test func matchesTheNumPyReference() throws {
        let cases = try #require(Self.fixture()["cases"]?.arrayValue)
        #expect(cases.count >= 30)
        for c in cases {
            let name = c["name"]?.stringValue ?? "?"
            let (actual, expected, base) = try Self.run(c)
            #expect(actual.count == expected.count, "\(name)")
            let error = Self.taskVectorError(actual, expected, base: base)
            #expect(error <= 2e-5, "\(name): max |mrepo − numpy| / max |numpy τ| = \(error)")
        }
    }

    /// Every method is in the fixture, on matrices and on a 1-D tensor, with non-default parameters.
    @Test func fixtureCoversEveryMethod() throws {
        let cases = try #require(Self.fixture()["cases"]?.arrayValue)
        for m in Self.methods {
            let mine = cases.filter { $0["method"]?.stringValue == m }
            #expect(mine.contains { ($0["shape"]?.arrayValue?.count ?? 0) == 2 }, "\(m) on a matrix")
            #expect(mine.contains { ($0["shape"]?.arrayValue?.count ?? 0) == 1 }, "\(m) on a vector")
            #expect(mine.contains { !($0["parameters"]?["global"]?.objectValue ?? []).isEmpty }, "\(m) with parameters")
        }
        #expect(cases.contains { $0["balance"]?.stringValue == "norm" })
    }

    /// The methods are registered, documented and declare what `--help-method` shows.
    @Test(arguments: methods)
    func registered(id: String) throws {
        let m = try MethodRegistry.method(named: id)
        #expect(m.paper.hasPrefix("https://arxiv.org/abs/"))
        #expect(!m.summary.isEmpty && m.mergesTensorByTensor)
        #expect(m.parameters.contains { $0.name == "lambda" })
        #expect(MethodCatalog.markdown().contains("### `\(id)`"))
    }

    /// TSV on two rank-2 task vectors with orthogonal row and column spaces (no interference):
    /// the default share (p/T = 2 triplets each) keeps each whole, so the merge is their plain sum.
    @Test func tsvOfOrthogonalTasksIsTheirSum() throws {
        // 4×4: τ₁ lives in rows/cols {0,1}, τ₂ in {2,3}.
        var t1 = [Float](repeating: 0, count: 16), t2 = t1
        t1[0] = 2; t1[1] = 0.5; t1[5] = 1
        t2[10] = -1.5; t2[15] = 0.25; t2[11] = 0.75
        let base = [Float](repeating: 0.1, count: 16)
        let experts = [zip(base, t1).map(+), zip(base, t2).map(+)]
        let out = try merge("tsv", base: base, experts,
                            context: TensorContext(name: "w", shape: [4, 4], layerCount: 1)).values
        for j in 0..<16 { #expect(abs(out[j] - (base[j] + t1[j] + t2[j])) < 1e-5) }
    }

    /// Iso-C flattens the spectrum: the merged task vector's singular values are all equal.
    @Test func isoCHasAFlatSpectrum() throws {
        let base = [Float](repeating: 0, count: 12)
        let a: [Float] = [1, 2, 0, 0, 1, 3, 0.5, 0, 2, 1, 1, 0]
        let b: [Float] = [0, 1, 1, 2, 0, 0, 1, 0.5, 0, 1, 3, 1]
        let out = try merge("iso_c", base: base, [a, b], context: TensorContext(name: "w", shape: [3, 4], layerCount: 1)).values
        let s = try LinearAlgebra.svd(out, rows: 3, columns: 4).s
        #expect(s.max()! - s.min()! < 1e-4 * s.max()!)
    }

    /// `--balance norm` rescales every task vector to the mean norm: two experts, one 10× the
    /// other, merged by task arithmetic give (n̄/‖τ₁‖)τ₁ + (n̄/‖τ₂‖)τ₂.
    @Test func balanceNormRescalesToTheMeanNorm() throws {
        let base: [Float] = [1, 1, 1]
        let experts: [[Float]] = [[2, 1, 1], [1, -9, 1]]          // τ₁ = e₀ (norm 1), τ₂ = −10·e₁ (norm 10)
        var recipe = MergeRecipe(method: "task_arithmetic", experts: ["a", "b"])
        recipe.balance = .norm
        let out = try MergePlan(recipe).merge(TensorContext(name: "w", shape: [3], layerCount: 1), base: base, experts: experts).values
        #expect(abs(out[0] - 6.5) < 1e-5 && abs(out[1] - (1 - 5.5)) < 1e-5 && out[2] == 1)
        let (_, factors) = TaskVectorBalance.balanced(experts, base: base)
        #expect(abs(factors[0] - 5.5) < 1e-12 && abs(factors[1] - 0.55) < 1e-12)
        // An expert that did not move this tensor is left alone and does not lower the mean.
        let still = TaskVectorBalance.balanced([[1, 1, 1], [2, 1, 1]], base: base)
        #expect(still.factors == [1, 1] && still.experts == [[1, 1, 1], [2, 1, 1]])
    }

    /// `balance` is part of the recipe: recorded in JSON only when on, read back, refused for
    /// methods without a merge base.
    @Test func balanceIsRecordedAndValidated() throws {
        var recipe = MergeRecipe(method: "tsv", expertParameters: [[:], [:]], experts: ["a", "b"])
        #expect(recipe.json["balance"] == nil)
        recipe.balance = .norm
        #expect(recipe.json["balance"]?.stringValue == "norm")
        #expect(try JSONValueCoding.decode(MergeRecipe.self, from: recipe.json) == recipe)
        var yaml = MergekitRecipe(method: "tsv", baseModel: "b", models: [.init(name: "x"), .init(name: "y")])
        yaml.balance = .norm
        let text = yaml.yaml()
        #expect(text.contains("balance: norm"))
        #expect(try MergekitRecipe.parse(text, file: "r.yml").balance == .norm)
        let linear = MergeRecipe(method: "linear", experts: ["a", "b"])
        var bad = linear
        bad.balance = .norm
        let refusal = mergeError { _ = try MergePlan(bad) }
        #expect(refusal?.description.contains("--balance norm") == true)
        var rmm = MergeRecipe(method: "rmm", parameters: ["basis": .number(1)], experts: ["a", "b"])
        rmm.balance = .norm
        let wholeModel = mergeError { _ = try MergePlan(rmm) }
        #expect(wholeModel?.description.contains("merges whole models") == true)
    }

    /// Out-of-range parameters are refused with one line naming the parameter.
    @Test(arguments: [("tsv", "fraction", 1.5), ("iso_cts", "common_fraction", -0.1), ("cart", "rank_ratio", 0.0),
                      ("pcb", "ratio", 2.0), ("knots", "density", 0.0), ("knots", "rank", 1.5)])
    func refusesBadParameters(method: String, parameter: String, value: Double) {
        let recipe = MergeRecipe(method: method, parameters: [parameter: .number(value)], experts: ["a", "b"])
        let error = mergeError { _ = try MergePlan(recipe) }
        #expect(error?.description.contains("'\(parameter)'") == true)
        #expect(error?.description.contains("\n") == false)
    }
}
