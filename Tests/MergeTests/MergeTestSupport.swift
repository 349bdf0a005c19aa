import Delta
import Testing

@testable import Merge

// Shared helpers for the merge tests: the reference vectors (Fixtures/README.md), a one-call merge, tolerances.

/// The reference inputs of `Fixtures/README.md` (2×3 tensors, flattened row-major).
enum Section7 {
    static let base: [Float] = [0.1, -0.2, 0.3, 0.0, 0.5, -0.5]
    static let model1: [Float] = [0.6, -0.3, 0.5, -0.3, 0.55, -0.1]
    static let model2: [Float] = [-0.1, 0.1, 0.55, 0.1, -0.1, -0.35]
    static let model3: [Float] = [0.5, 0.0, 0.25, -0.35, 0.62, 0.2]
    static let experts = [model1, model2, model3]
    static let weights = [1.0, 0.5, 0.75]
    static let context = TensorContext(name: "model.layers.0.mlp.down_proj.weight", shape: [2, 3], layerCount: 1)
}

/// Per-expert parameter maps giving each expert one weight.
func weighted(_ weights: [Double], _ extra: [String: ParameterValue] = [:]) -> [[String: ParameterValue]] {
    weights.map { w in extra.merging(["weight": .number(w)]) { a, _ in a } }
}

/// Validates a recipe for `method` and merges one tensor.
func merge(_ method: String, _ parameters: [String: ParameterValue] = [:], experts perExpert: [[String: ParameterValue]] = [],
           base: [Float]?, _ experts: [[Float]], seed: UInt64 = 0, expertMetrics: [[String: Double]] = [],
           context: TensorContext? = nil) throws -> (values: [Float], metrics: ConflictMetrics) {
    let names = experts.indices.map { "expert\($0)" }
    let plan = try MergePlan(MergeRecipe(method: method, parameters: parameters, expertParameters: perExpert,
                                         experts: names, seed: seed), expertMetrics: expertMetrics)
    let count = experts.first?.count ?? base?.count ?? 0
    return try plan.merge(context ?? TensorContext(name: "model.layers.0.mlp.weight", shape: [count], layerCount: 1),
                          base: base, experts: experts)
}

/// The largest |actual − expected| divided by the largest |expected| of the tensor (1 when the
/// expected tensor is all zeros). This is the tolerance measure every golden comparison uses:
/// relative to the tensor's max |value|, so elements near zero are not held to an impossible
/// element-wise relative bound.
func relativeError(_ actual: [Float], _ expected: [Double]) -> Double {
    guard actual.count == expected.count else { return .infinity }
    let largest = expected.map { abs($0) }.max() ?? 0
    let scale = largest > 0 ? largest : 1
    var worst = 0.0
    for (a, e) in zip(actual, expected) {
        let d = abs(Double(a) - e)
        if d.isNaN { return .infinity }
        worst = max(worst, d / scale)
    }
    return worst
}

/// Expects `actual` to match `expected` to `tolerance` relative to the tensor's max |expected|.
func expectClose(_ actual: [Float], _ expected: [Double], tolerance: Double = 1e-6, _ what: String = "",
                 sourceLocation: SourceLocation = #_sourceLocation) {
    let error = relativeError(actual, expected)
    #expect(error <= tolerance, "\(what) relative error \(error); got \(actual), expected \(expected)", sourceLocation: sourceLocation)
}

func expectClose(_ actual: [Float], _ expected: [Float], tolerance: Double = 1e-6, _ what: String = "",
                 sourceLocation: SourceLocation = #_sourceLocation) {
    expectClose(actual, expected.map(Double.init), tolerance: tolerance, what, sourceLocation: sourceLocation)
}

/// `a` and `b` hold the same bit patterns.
func sameBits(_ a: [Float], _ b: [Float]) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

/// Seeded normal values, for property tests.
func randomValues(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
    var rng = SeededRandom(seed: seed)
    var out: [Float] = []
    out.reserveCapacity(n)
    while out.count < n {
        let (a, b) = rng.normalPair()
        out.append(Float(a) * scale)
        if out.count < n { out.append(Float(b) * scale) }
    }
    return out
}

/// The one-line error validating `recipe` into a plan gives, or nil when it is valid (`MergePlan`
/// throws only ``MergeError``, typed).
func planError(_ recipe: MergeRecipe, _ expertMetrics: [[String: Double]] = []) -> String? {
    do {
        _ = try MergePlan(recipe, expertMetrics: expertMetrics)
        return nil
    } catch {
        return String(describing: error)
    }
}

/// The error a throwing call raises, as a ``MergeError``.
func mergeError(_ body: () throws -> Void) -> MergeError? {
    do {
        try body()
        return nil
    } catch let error as MergeError {
        return error
    } catch {
        return nil
    }
}
