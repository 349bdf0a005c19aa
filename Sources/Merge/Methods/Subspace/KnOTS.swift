/// KnOTS (Knowledge Orientation Through SVD), per weight matrix: the SVD of the experts' updates
/// side by side, [ΔW₁ | … | ΔW_T] = U Σ [V₁ᵀ … V_Tᵀ], puts every expert in one shared basis
/// (U Σ); their coordinates Vᵢᵀ (r×cols each, r the rank of the concatenation) are merged
/// element-wise with TIES or task arithmetic, and ΔW = U Σ V_mergedᵀ; θ = θ₀ + λ·ΔW.
///
/// Made for LoRA adapters: ΔWᵢ = BᵢAᵢ has rank rᵢ, so the shared basis has rank at most Σ rᵢ.
/// mrepo merges full models tensor by tensor, so adapters are folded into their base first
/// (`mrepo export --fold`): the folded task vectors are exactly BᵢAᵢ and the SVD here is the
/// paper's. It runs on full fine-tunes too (a larger SVD). Other tensors take the same element-wise
/// merge of their task vectors (TIES or task arithmetic).
public struct KnOTS: TensorMergeMethod {
    public static let id = "knots"
    public static func workingMemory(elements n: Int, experts k: Int) -> (bytes: Int, formula: String) {
        Subspace.workingMemory(elements: n, experts: k)
    }
    public static let displayName = "KnOTS (SVD alignment for LoRA merging)"
    public static let paper = "https://arxiv.org/abs/2410.19735"
    public static let summary = "For LoRA adapters (folded into their base with `mrepo export --fold`): per weight matrix, one SVD of the experts' updates side by side gives a shared basis; each expert's coordinates in it are merged with TIES (default) or task arithmetic, which then agree far better than the raw LoRA factors do. Data-free."
    public static let requiresBase = true
    public static let expertCount: ClosedRange<Int> = 1...64
    public static let parameters = [
        Subspace.lambdaSpec(),
        ParameterSpec("merge", .choice(["ties", "task_arithmetic"]), default: .text("ties"),
                      help: "How the experts' coordinates in the shared basis are merged: ties (trim to density, elect signs, disjoint mean) or task_arithmetic (weighted sum)."),
        ParameterSpec("density", .number(range: 0...1, lowerOpen: true), default: .number(1),
                      help: "ties: fraction of each expert's coordinates kept by magnitude, in (0, 1] (the paper tunes it; 1 keeps all and only elects signs)."),
        ParameterSpec("rank", .integer(range: 0...65536), default: .number(0),
                      help: "Rank of the shared basis; 0 keeps every nonzero singular value (Σ rᵢ for LoRA adapters)."),
    ]
    public static let expertParameters = [
        ParameterSpec("weight", .number(range: -.infinity...(.infinity)), default: .number(1),
                      help: "Weight of the expert's coordinates (and task vector)."),
    ]
    static let rankTolerance = 1e-6

    public init() {}

    /// TIES (or a weighted sum) of equally long vectors: the top `density` of each by magnitude
    /// (⌊density·count⌋ elements, ties at the threshold kept), the sign of the weighted sum
    /// elected, the agreeing weighted values divided by the agreeing weights.
    static func combine(_ vectors: [[Double]], weights: [Double], ties: Bool, density: Double) -> [Double] {
        let count = vectors.first?.count ?? 0
        guard ties else {
            var sum = [Double](repeating: 0, count: count)
            for (i, v) in vectors.enumerated() { for j in 0..<count { sum[j] += weights[i] * v[j] } }
            return sum
        }
        let keep = Int(density * Double(count))
        let trimmed = vectors.enumerated().map { i, v -> [Double] in
            guard keep < count else { return v.map { weights[i] * $0 } }
            guard keep > 0 else { return [Double](repeating: 0, count: count) }
            let threshold = v.map(abs).sorted(by: >)[keep - 1]
            return v.map { abs($0) >= threshold ? weights[i] * $0 : 0 }
        }
        var out = [Double](repeating: 0, count: count)
        for j in 0..<count {
            var s = 0.0
            for v in trimmed { s += v[j] }
            var acc = 0.0, div = 0.0
            for (i, v) in trimmed.enumerated() where s >= 0 ? v[j] > 0 : v[j] < 0 {
                acc += v[j]
                div += weights[i]
            }
            out[j] = acc / (div == 0 ? 1 : div)
        }
        return out
    }

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput {
        let (base, tau) = try Subspace.taskVectors(input, method: Self.id)
        let ctx = input.context
        let p = input.parameters
        let lambda = p.number("lambda", ctx) ?? 1
        let ties = (p.text("merge") ?? "ties") == "ties"
        let density = p.number("density", ctx) ?? 1
        let weights = (0..<tau.count).map { p.number("weight", expert: $0, ctx) ?? 1 }
        guard let (m, n) = Subspace.matrixShape(ctx, count: base.count) else {
            let merged = Self.combine(tau, weights: weights, ties: ties, density: density)
            return TensorMergeOutput(values: Subspace.finish(base: base, delta: merged, lambda: lambda))
        }
        let t = tau.count
        var side = DenseMatrix(rows: m, cols: t * n)
        for (i, ti) in tau.enumerated() {
            for r in 0..<m { for c in 0..<n { side[r, i * n + c] = ti[r * n + c] } }
        }
        let (u, s, vt) = try side.svd()
        var rank = s.prefix { $0 > (s.first ?? 0) * Self.rankTolerance }.count
        if let cap = p.number("rank", ctx), cap > 0 { rank = min(rank, Int(cap)) }
        guard rank > 0 else { return TensorMergeOutput(values: base) }
        // Expert i's coordinates: columns i·n ..< (i+1)·n of the top `rank` rows of Vᵀ.
        let coordinates = (0..<t).map { i -> [Double] in
            var c = [Double](repeating: 0, count: rank * n)
            for r in 0..<rank { for col in 0..<n { c[r * n + col] = vt[r, i * n + col] } }
            return c
        }
        let merged = DenseMatrix(rows: rank, cols: n, data: Self.combine(coordinates, weights: weights, ties: ties, density: density))
        let delta = u.columns(0..<rank).scalingColumns(Array(s.prefix(rank))) * merged
        return TensorMergeOutput(values: Subspace.finish(base: base, delta: delta.data, lambda: lambda), notes: ["knots_rank": Double(rank)])
    }
}
