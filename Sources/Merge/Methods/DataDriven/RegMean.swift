/// RegMean (Jin et al., ICLR 2023), and RegMean++ (Nguyen et al., 2025) with `plusplus`: every
/// linear layer's merged weight is the least-squares fit of the experts' outputs on their own
/// inputs, W* = (Σᵢ G̃ᵢ)⁻¹ Σᵢ G̃ᵢ Wᵢᵀ (transposed), with Gᵢ = XᵢᵀXᵢ the input Gram of the layer
/// in expert i's own forward pass, read from `mrepo_stats/regmean.safetensors` (`X.weight.gram`,
/// [in, in]). Off-diagonal entries are shrunk, G̃ = α·G + (1 − α)·diag(G). Tensors without a Gram
/// (biases, norms, embeddings) take the plain average, as in the paper.
///
/// A per-expert `weight` wᵢ (1 by default, the paper) weighs each expert's share of the least-squares
/// fit, W* = (Σᵢ wᵢG̃ᵢ)⁻¹ Σᵢ wᵢG̃ᵢ Wᵢᵀ, and of the averages: what `merge --search` tunes.
///
/// RegMean++ differs only in where the Grams come from: each expert's data is run through the
/// *merged* model's earlier layers (`mrepo_stats/regmean_plusplus.safetensors`, computed by
/// scripts/compute_merge_stats.py --through MERGED after a first merge); the solve is the same.
///
/// The solve is LAPACK's Cholesky (dposv) in Float64; when the summed Gram is singular
/// (a dead input feature), `ridge`·mean(diag) is added to its diagonal and the solve repeated.
public struct RegMean: TensorMergeMethod {
    public static let id = "regmean"
    public static let displayName = "RegMean / RegMean++"
    public static let paper = "https://arxiv.org/abs/2212.09849"
    public static let summary = "Per linear layer, the closed-form least-squares merge W = (Σ G̃ᵢ)⁻¹ Σ G̃ᵢ Wᵢ over the experts' input Gram matrices Gᵢ = XᵢᵀXᵢ, read from mrepo_stats/regmean.safetensors (or regmean_plusplus.safetensors for RegMean++, arXiv 2508.03121) committed with each expert; other tensors are averaged. No merge base."
    public static let requiresBase = false
    public static let expertCount: ClosedRange<Int> = 1...64
    public static let parameters = [
        ParameterSpec("alpha", .number(range: 0...1), default: .number(0.9),
                      help: "Scale of the Grams' off-diagonal entries, G̃ = α·G + (1−α)·diag(G) (the code's reduce_non_diagonal_ratio): 1 is plain RegMean, 0 a per-input-feature weighted average."),
        ParameterSpec("normalize", .flag, default: .flag(false),
                      help: "Divide each Gram by its sample count (FusionBench), so experts weigh equally whatever their data size; false sums them (the paper)."),
        ParameterSpec("plusplus", .flag, default: .flag(false),
                      help: "RegMean++: read the Grams measured through the merged model's earlier layers (mrepo_stats/regmean_plusplus.safetensors) instead of regmean.safetensors."),
        ParameterSpec("ridge", .number(range: 0...1), default: .number(1e-6),
                      help: "When the summed Gram is singular, this times its mean diagonal is added to the diagonal before solving again."),
    ]

    public static let expertParameters = [
        ParameterSpec("weight", .number(range: 0...(.infinity)), default: .number(1),
                      help: "wᵢ, the weight of the expert's data in the least-squares fit (its Gram is scaled by wᵢ) and in the averaged tensors; 1 for every expert is the paper's RegMean."),
    ]

    public init() {}

    public static func validate(_ parameters: ParameterSet, experts: [String]) throws(MergeError) {
        let expertCount = experts.count
        let ctx = TensorContext(name: "", shape: [], layerCount: 0)
        let total = (0..<expertCount).reduce(0.0) { $0 + (parameters.number("weight", expert: $1, ctx) ?? 1) }
        if expertCount > 0, total <= 0 { throw .invalidParameter(method: id, parameter: "weight", problem: "must be positive for at least one expert") }
    }

    /// The statistics file the parameters select.
    static func kind(_ parameters: ParameterSet) -> String {
        parameters.flag("plusplus", TensorContext(name: "", shape: [], layerCount: 0)) == true ? StatisticsLayout.regmeanPlusPlus : StatisticsLayout.regmean
    }

    public static func expertStatistics(_ parameters: ParameterSet) -> [String] { [kind(parameters)] }

    /// The sample count a Gram was summed over: `num_samples.<tensor>` in the file's metadata, else `num_samples`.
    static func sampleCount(_ metadata: [String: String], tensor: String) -> Double? {
        (metadata["num_samples.\(tensor)"] ?? metadata["num_samples"]).flatMap(Double.init).flatMap { $0 > 0 ? $0 : nil }
    }

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput {
        let ctx = input.context
        let n = input.elementCount
        let kind = Self.kind(input.parameters)
        let weights = input.experts.indices.map { input.parameters.number("weight", expert: $0, ctx) ?? 1 }
        guard ctx.shape.count == 2, ctx.shape[0] * ctx.shape[1] == n, ctx.shape[1] > 0,
              let grams = try input.expertStatistics(kind: kind, name: ctx.name + StatisticsLayout.gramSuffix,
                                               count: ctx.shape[1] * ctx.shape[1], method: Self.id)
        else { return TensorMergeOutput(values: Self.average(input.experts, weights: weights, count: n), notes: ["regmean_averaged": 1]) }
        let rows = ctx.shape[0], cols = ctx.shape[1]
        let alpha = input.parameters.number("alpha", ctx) ?? 0.9
        let normalize = input.parameters.flag("normalize", ctx) ?? false
        // A = Σ G̃ᵢ (in × in, symmetric); B = Σ Wᵢ G̃ᵢ (out × in row-major, which is Σ G̃ᵢ Wᵢᵀ column-major).
        var a = [Double](repeating: 0, count: cols * cols)
        var b = [Double](repeating: 0, count: rows * cols)
        for (i, gram) in grams.enumerated() {
            // An expert without weight adds nothing to the fit (and its Gram is not read further).
            if weights[i] == 0 { continue }
            var scale = weights[i]
            if normalize {
                let metadata = try input.statistics?.metadata(expert: i, kind: kind) ?? [:]
                guard let count = Self.sampleCount(metadata, tensor: ctx.name) else {
                    let who = input.statistics.map { i < $0.expertNames.count ? $0.expertNames[i] : "expert \(i + 1)" } ?? "expert \(i + 1)"
                    throw MergeError.invalidInputs(method: Self.id, problem: "normalize=true needs the sample count: \(who)'s \(StatisticsLayout.path(kind)) has no num_samples in its metadata")
                }
                scale = weights[i] / count
            }
            var g = [Double](repeating: 0, count: cols * cols)
            for r in 0..<cols {
                for c in 0..<cols {
                    let x = Double(gram[r * cols + c]) * scale
                    g[r * cols + c] = r == c ? x : alpha * x
                }
            }
            for j in 0..<g.count { a[j] += g[j] }
            Self.accumulateProduct(input.experts[i], rows: rows, cols: cols, gram: g, into: &b)
        }
        let ridge = input.parameters.number("ridge", ctx) ?? 1e-6
        var notes: [String: Double] = [:]
        var solution = b
        var factor = a
        if try !LinearSolve.choleskySolve(&factor, n: cols, rhs: &solution, rhsCount: rows) {
            let meanDiagonal = (0..<cols).reduce(0.0) { $0 + a[$1 * cols + $1] } / Double(cols)
            guard meanDiagonal > 0, ridge > 0 else {
                return TensorMergeOutput(values: Self.average(input.experts, weights: weights, count: n), notes: ["regmean_averaged": 1])
            }
            factor = a
            for d in 0..<cols { factor[d * cols + d] += ridge * meanDiagonal }
            solution = b
            guard try LinearSolve.choleskySolve(&factor, n: cols, rhs: &solution, rhsCount: rows) else {
                throw MergeError.tensor(name: ctx.name, problem: "regmean: the summed Gram stays singular with ridge \(ridge); raise --set ridge=")
            }
            notes["regmean_ridge"] = ridge * meanDiagonal
        }
        // The column-major in × out solution Xᵀ-layout is W* row-major (out × in).
        return TensorMergeOutput(values: solution.map(Float.init), notes: notes)
    }

    /// out += W·G (W row-major rows × cols, G symmetric cols × cols), in Double, in a fixed order.
    static func accumulateProduct(_ w: [Float], rows: Int, cols: Int, gram g: [Double], into out: inout [Double]) {
        w.withUnsafeBufferPointer { pw in
            g.withUnsafeBufferPointer { pg in
                out.withUnsafeMutableBufferPointer { po in
                    for r in 0..<rows {
                        let row = po.baseAddress! + r * cols
                        for k in 0..<cols {
                            let x = Double(pw[r * cols + k])
                            if x == 0 { continue }
                            let gk = pg.baseAddress! + k * cols
                            for c in 0..<cols { row[c] += x * gk[c] }
                        }
                    }
                }
            }
        }
    }

    /// The weighted average Σ wᵢθᵢ / Σ wᵢ, in Double (with every weight 1, the plain average bit for bit).
    static func average(_ experts: [[Float]], weights: [Double], count n: Int) -> [Float] {
        var out = [Float](repeating: 0, count: n)
        let total = weights.reduce(0, +)
        for j in 0..<n {
            var s = 0.0
            for (i, e) in experts.enumerated() { s += weights[i] * Double(e[j]) }
            out[j] = Float(s / total)
        }
        return out
    }
}
