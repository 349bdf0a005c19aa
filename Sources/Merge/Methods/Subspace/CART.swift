/// CART (centered arithmetic with low-rank task vectors), per weight matrix: centre on the
/// experts' average θ̄ = mean θᵢ, keep the top k singular triplets of each centred task vector
/// θᵢ − θ̄ (k = ⌊ratio·p⌋, at least 1), and add their sum: θ = θ̄ + λ Σᵢ LowRank_k(θᵢ − θ̄).
/// Other tensors take θ̄ (their centred vectors sum to zero). No merge base: it cancels.
public struct CART: TensorMergeMethod {
    public static let id = "cart"
    public static func workingMemory(elements n: Int, experts k: Int) -> (bytes: Int, formula: String) {
        Subspace.workingMemory(elements: n, experts: k)
    }
    public static let displayName = "CART (centered arithmetic with low rank)"
    public static let paper = "https://arxiv.org/abs/2412.12153"
    public static let summary = "Averages the experts, then adds back the low-rank part of each expert's difference from the average (per weight matrix, a truncated SVD keeping the top `rank_ratio` of the rank). The base model is not needed; biases and norms take the average. Data-free; one SVD per expert and matrix."
    public static let requiresBase = false
    public static let expertCount: ClosedRange<Int> = 2...64
    public static let parameters = [
        Subspace.lambdaSpec("Scale λ of the summed low-rank centred task vectors (the paper tunes it; 1 adds them back in full)."),
        ParameterSpec("rank_ratio", .number(range: 0...1, lowerOpen: true), default: .number(0.1),
                      help: "Share of each matrix's rank kept per centred task vector, in (0, 1] (the paper finds a few percent to ~16% best); at least one triplet."),
    ]

    public init() {}

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput {
        let ctx = input.context
        let lambda = input.parameters.number("lambda", ctx) ?? 1
        let experts = input.experts.map { $0.map(Double.init) }
        let mean = Subspace.sum(experts, mean: true)
        let zero = [Float](repeating: 0, count: mean.count)
        guard let (m, n) = Subspace.matrixShape(ctx, count: mean.count) else {
            return TensorMergeOutput(values: Subspace.finish(base: zero, delta: mean, lambda: 1))
        }
        let p = min(m, n)
        let k = min(p, max(1, Int((Double(p) * (input.parameters.number("rank_ratio", ctx) ?? 0.1)).rounded(.down))))
        var sum = DenseMatrix(rows: m, cols: n)
        for e in experts {
            let centred = DenseMatrix(rows: m, cols: n, data: zip(e, mean).map { $0 - $1 })
            let (u, s, vt) = try centred.svd()
            sum = sum + u.columns(0..<k).scalingColumns(Array(s.prefix(k))) * vt.rowRange(0..<k)
        }
        var out = [Float](repeating: 0, count: mean.count)
        for j in 0..<out.count { out[j] = Float(mean[j] + lambda * sum.data[j]) }
        return TensorMergeOutput(values: out, notes: ["cart_rank": Double(k)])
    }
}
