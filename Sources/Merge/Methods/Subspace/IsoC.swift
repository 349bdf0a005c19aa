/// Iso-C (isotropic merging in the common subspace), per weight matrix: the task-arithmetic sum
/// Δ = Σᵢ τᵢ = U S Vᵀ with its spectrum flattened to the mean singular value, λ·σ̄·U Vᵀ. Other
/// tensors take the mean task vector, as the paper's code does.
public struct IsoC: TensorMergeMethod {
    public static let id = "iso_c"
    public static func workingMemory(elements n: Int, experts k: Int) -> (bytes: Int, formula: String) {
        Subspace.workingMemory(elements: n, experts: k)
    }
    public static let displayName = "Iso-C (isotropic merging, common subspace)"
    public static let paper = "https://arxiv.org/abs/2502.04959"
    public static let summary = "Per weight matrix: takes the sum of the task vectors and flattens its singular spectrum (every singular value becomes their mean), so directions shared by few experts are not drowned by the dominant ones. Biases and norms take the mean task vector. Data-free; one SVD per matrix."
    public static let requiresBase = true
    public static let expertCount: ClosedRange<Int> = 1...64
    public static let parameters = [
        Subspace.lambdaSpec("Scale α of the merged task vector (the paper tunes α on validation data, about 1–1.5)."),
    ]

    public init() {}

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput {
        let (base, tau) = try Subspace.taskVectors(input, method: Self.id)
        let ctx = input.context
        let lambda = input.parameters.number("lambda", ctx) ?? 1
        guard let (m, n) = Subspace.matrixShape(ctx, count: base.count) else {
            return TensorMergeOutput(values: Subspace.finish(base: base, delta: Subspace.sum(tau, mean: true), lambda: lambda))
        }
        let (u, s, vt) = try DenseMatrix(rows: m, cols: n, data: Subspace.sum(tau)).svd()
        let mean = s.reduce(0, +) / Double(max(s.count, 1))
        let delta = u.scalingColumns([Double](repeating: mean, count: s.count)) * vt
        return TensorMergeOutput(values: Subspace.finish(base: base, delta: delta.data, lambda: lambda))
    }
}
