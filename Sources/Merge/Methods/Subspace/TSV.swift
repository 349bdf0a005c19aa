/// TSV-Merge (Task Singular Vectors), per weight matrix: keep each task's top `k` singular
/// triplets (k = ⌊p/T⌋ by default, p = min(rows, cols), T experts), concatenate them,
/// U = [U₁ … U_T], Σ = diag(Σ₁ … Σ_T), V = [V₁ … V_T], replace U and V by their orthogonal polar
/// factors (the paper's whitening: P·Qᵀ from each one's own SVD P·S·Qᵀ), and add
/// λ·U⊥ Σ V⊥ᵀ to the base. Other tensors (biases, norms) take the mean task vector, as the
/// paper's code does.
public struct TSV: TensorMergeMethod {
    public static let id = "tsv"
    public static func workingMemory(elements n: Int, experts k: Int) -> (bytes: Int, formula: String) {
        Subspace.workingMemory(elements: n, experts: k)
    }
    public static let displayName = "TSV-Merge (Task Singular Vectors)"
    public static let paper = "https://arxiv.org/abs/2412.00081"
    public static let summary = "Per weight matrix: keeps each expert's top singular vectors (a 1/T share of the rank by default), orthogonalises the union of the experts' singular vectors so tasks stop interfering, and adds λ·U⊥ΣV⊥ᵀ to the base. Biases and norms take the mean task vector. Data-free; one SVD per expert and matrix."
    public static let requiresBase = true
    public static let expertCount: ClosedRange<Int> = 1...64
    public static let parameters = [
        Subspace.lambdaSpec("Scale α of the merged task vector (the paper's α; 1.0 in its experiments)."),
        ParameterSpec("fraction", .number(range: 0...1), default: .number(0),
                      help: "Share of each expert's singular triplets kept, in (0, 1]; 0 keeps the paper's 1/T (T experts). At least one triplet is kept."),
    ]

    public init() {}

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput {
        let (base, tau) = try Subspace.taskVectors(input, method: Self.id)
        let ctx = input.context
        let lambda = input.parameters.number("lambda", ctx) ?? 1
        guard let (m, n) = Subspace.matrixShape(ctx, count: base.count) else {
            return TensorMergeOutput(values: Subspace.finish(base: base, delta: Subspace.sum(tau, mean: true), lambda: lambda))
        }
        let t = tau.count
        let p = min(m, n)
        let given = input.parameters.number("fraction", ctx) ?? 0
        let share = given > 0 ? given : 1 / Double(t)
        let k = min(p, max(1, Int((Double(p) * share).rounded(.down))))
        // Columns of the task blocks side by side: T·k columns (the paper pads to p with zeros,
        // which leaves the polar factor's task columns and the product unchanged).
        var u = DenseMatrix(rows: m, cols: t * k)
        var s = [Double](repeating: 0, count: t * k)
        var v = DenseMatrix(rows: t * k, cols: n)
        for (i, ti) in tau.enumerated() {
            let (ui, si, vti) = try DenseMatrix(rows: m, cols: n, data: ti).svd()
            for r in 0..<m { for c in 0..<k { u[r, i * k + c] = ui[r, c] } }
            for c in 0..<k { s[i * k + c] = si[c] }
            for c in 0..<k { for col in 0..<n { v[i * k + c, col] = vti[c, col] } }
        }
        let delta = try u.polar().scalingColumns(s) * v.polar()
        return TensorMergeOutput(values: Subspace.finish(base: base, delta: delta.data, lambda: lambda), notes: ["tsv_rank_per_task": Double(k)])
    }
}
