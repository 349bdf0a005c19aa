/// WUDI-Merging ("Whoever Started the Interference Should End It"), per weight matrix: the merged
/// task vector τ minimises Σᵢ ‖(τ − τᵢ) τᵢᵀ‖²_F / ‖τᵢ‖²_F, each task vector's rows standing in
/// for its inputs.
///
/// The paper runs a few hundred optimiser steps from the task-arithmetic sum. The loss is a convex
/// quadratic, so mrepo solves it in closed form: with G = Σ wᵢ τᵢᵀτᵢ (wᵢ = 1/‖τᵢ‖²) the optimum
/// satisfies τ·G = Σ wᵢ τᵢ τᵢᵀ τᵢ, which fixes τ on the row space of G; on the rest gradient
/// descent never moves, so τ keeps the starting point's component there. Both come from one SVD of
/// the stacked √wᵢ·τᵢ (G = V S² Vᵀ): τ = τ_TA + (Σ wᵢ τᵢ τᵢᵀ τᵢ V S⁻² − τ_TA V) Vᵀ, the limit of
/// gradient descent from τ_TA = Σᵢ τᵢ. Other tensors take τ_TA (task arithmetic).
public struct WUDI: TensorMergeMethod {
    public static let id = "wudi"
    public static func workingMemory(elements n: Int, experts k: Int) -> (bytes: Int, formula: String) {
        Subspace.workingMemory(elements: n, experts: k)
    }
    public static let displayName = "WUDI-Merging"
    public static let paper = "https://arxiv.org/abs/2503.08099"
    public static let summary = "Per weight matrix: finds the merged task vector that changes each expert's outputs least on inputs drawn from the expert's own task vector (a least-squares problem, solved in closed form as the limit of the paper's optimisation from task arithmetic). Biases and norms take the task-arithmetic sum. Data-free; one SVD per matrix."
    public static let requiresBase = true
    public static let expertCount: ClosedRange<Int> = 1...64
    public static let parameters = [
        Subspace.lambdaSpec("Scale of the merged task vector (1 in the paper)."),
    ]
    /// Singular values of the stacked task vectors below this fraction of the largest count as zero.
    static let rankTolerance = 1e-6

    public init() {}

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput {
        let (base, tau) = try Subspace.taskVectors(input, method: Self.id)
        let ctx = input.context
        let lambda = input.parameters.number("lambda", ctx) ?? 1
        let ta = Subspace.sum(tau)
        guard let (m, n) = Subspace.matrixShape(ctx, count: base.count) else {
            return TensorMergeOutput(values: Subspace.finish(base: base, delta: ta, lambda: lambda))
        }
        // Experts with a zero task vector take no part in the loss (their weight 1/‖τᵢ‖² is undefined).
        let active = tau.map { DenseMatrix(rows: m, cols: n, data: $0) }.filter { $0.squaredNorm > 0 }
        guard !active.isEmpty else { return TensorMergeOutput(values: Subspace.finish(base: base, delta: ta, lambda: lambda)) }
        let weights = active.map { 1 / $0.squaredNorm }
        var stacked = DenseMatrix(rows: m * active.count, cols: n)
        for (i, t) in active.enumerated() {
            let f = weights[i].squareRoot()
            for j in 0..<(m * n) { stacked.data[i * m * n + j] = f * t.data[j] }
        }
        let (_, s, vt) = try stacked.svd()
        let rank = s.prefix { $0 > (s.first ?? 0) * Self.rankTolerance }.count
        let v = vt.rowRange(0..<rank).transposed                         // n×r
        var rhs = DenseMatrix(rows: m, cols: rank)                       // Σ wᵢ τᵢ τᵢᵀ τᵢ V
        for (i, t) in active.enumerated() {
            let tv = t * v                                               // m×r
            let inner = t.transposed * tv                                // n×r
            let term = t * inner                                         // m×r
            for j in 0..<rhs.data.count { rhs.data[j] += weights[i] * term.data[j] }
        }
        let taMatrix = DenseMatrix(rows: m, cols: n, data: ta)
        let correction = rhs.scalingColumns(s.prefix(rank).map { 1 / ($0 * $0) }) - taMatrix * v
        let merged = taMatrix + correction * vt.rowRange(0..<rank)
        return TensorMergeOutput(values: Subspace.finish(base: base, delta: merged.data, lambda: lambda),
                                 notes: ["wudi_rank": Double(rank)])
    }
}
