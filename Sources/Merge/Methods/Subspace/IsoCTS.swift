/// Iso-CTS (isotropic merging in common and task-specific subspaces), per weight matrix:
///
/// 1. the common subspace: the top c singular directions of Δ_TA = Σᵢ τᵢ (c ≈ fraction·p);
/// 2. per expert, the top d directions of its residual τᵢ − U_c U_cᵀ τᵢ (d·T + c = p);
/// 3. the union [U₁ … U_T U_c] and [V₁ … V_T V_c], each replaced by its orthogonal polar factor;
/// 4. every singular value set to the mean of the kept ones: Δ = λ·σ̄·U⊥ V⊥ᵀ.
///
/// Other tensors take the mean task vector, as the paper's code does.
public struct IsoCTS: TensorMergeMethod {
    public static let id = "iso_cts"
    public static func workingMemory(elements n: Int, experts k: Int) -> (bytes: Int, formula: String) {
        Subspace.workingMemory(elements: n, experts: k)
    }
    public static let displayName = "Iso-CTS (isotropic merging, common and task-specific subspaces)"
    public static let paper = "https://arxiv.org/abs/2502.04959"
    public static let summary = "Per weight matrix: keeps the top directions of the summed task vectors (the common subspace), gives each expert its own top directions orthogonal to it (the task-specific subspaces), orthogonalises the union and flattens its spectrum to the mean singular value. Best of the isotropic methods with many experts. Biases and norms take the mean task vector. Data-free."
    public static let requiresBase = true
    public static let expertCount: ClosedRange<Int> = 1...64
    public static let parameters = [
        Subspace.lambdaSpec("Scale α of the merged task vector (the paper tunes α on validation data, about 1–1.5)."),
        ParameterSpec("common_fraction", .number(range: 0...1), default: .number(0.8),
                      help: "Share of the rank given to the common subspace; the rest is split evenly between the experts (the paper's 0.8)."),
    ]

    public init() {}

    /// The sizes of the common subspace and of each expert's subspace, as the paper's code
    /// computes them (Python's round, half to even), kept within p.
    static func split(rank p: Int, experts t: Int, fraction: Double) -> (common: Int, perTask: Int) {
        let c0 = Int((Double(p) * fraction).rounded(.down))
        var d = Int((Double(p - c0) / Double(t)).rounded(.toNearestOrEven))
        if d * t > p { d = p / t }
        return (p - d * t, d)
    }

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput {
        let (base, tau) = try Subspace.taskVectors(input, method: Self.id)
        let ctx = input.context
        let lambda = input.parameters.number("lambda", ctx) ?? 1
        guard let (m, n) = Subspace.matrixShape(ctx, count: base.count) else {
            return TensorMergeOutput(values: Subspace.finish(base: base, delta: Subspace.sum(tau, mean: true), lambda: lambda))
        }
        let t = tau.count, p = min(m, n)
        let (c, d) = Self.split(rank: p, experts: t, fraction: input.parameters.number("common_fraction", ctx) ?? 0.8)
        let (uc, sc, vtc) = try DenseMatrix(rows: m, cols: n, data: Subspace.sum(tau)).svd()
        let ucTop = uc.columns(0..<c)
        var u = DenseMatrix(rows: m, cols: p), v = DenseMatrix(rows: p, cols: n)
        var s = [Double](repeating: 0, count: p)
        if d > 0 {
            let ucT = ucTop.transposed
            for (i, ti) in tau.enumerated() {
                let w = DenseMatrix(rows: m, cols: n, data: ti)
                let residual = w - ucTop * (ucT * w)
                let (ui, si, vti) = try residual.svd()
                for r in 0..<m { for j in 0..<d { u[r, i * d + j] = ui[r, j] } }
                for j in 0..<d { s[i * d + j] = si[j] }
                for j in 0..<d { for col in 0..<n { v[i * d + j, col] = vti[j, col] } }
            }
        }
        for r in 0..<m { for j in 0..<c { u[r, t * d + j] = uc[r, j] } }
        for j in 0..<c { s[t * d + j] = sc[j] }
        for j in 0..<c { for col in 0..<n { v[t * d + j, col] = vtc[j, col] } }
        let mean = s.reduce(0, +) / Double(max(p, 1))
        let delta = try u.polar().scalingColumns([Double](repeating: mean, count: p)) * v.polar()
        return TensorMergeOutput(values: Subspace.finish(base: base, delta: delta.data, lambda: lambda),
                                 notes: ["iso_common_rank": Double(c)])
    }
}
