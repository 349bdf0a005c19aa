/// Model Stock: moves from the base toward the experts' average by a ratio set by how aligned
/// their task vectors are: t = N·cos / (1 + (N−1)·cos), θ = t·mean(θᵢ) + (1 − t)·θ₀.
public struct ModelStock: TensorMergeMethod {
    public static let id = "model_stock"
    public static let displayName = "Model Stock"
    public static let paper = "https://arxiv.org/abs/2403.19522"
    public static let summary = "Interpolates between the base and the experts' average with t = N·cos/(1+(N−1)·cos), where cos is the mean pairwise cosine of the task vectors (per tensor, or per row with filter_wise). No hyperparameters."
    public static let requiresBase = true
    public static let expertCount: ClosedRange<Int> = 2...64
    public static let parameters = [
        ParameterSpec("filter_wise", .flag, default: .flag(false), help: "Compute t per row (output filter) instead of per tensor."),
    ]

    public init() {}

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput {
        guard let base = input.base else { throw MergeError.invalidInputs(method: Self.id, problem: "needs the merge base") }
        let ctx = input.context
        let rows = (input.parameters.flag("filter_wise", ctx) ?? false) && ctx.shape.count >= 2 ? ctx.shape[0] : 1
        let n = base.count
        let width = n / max(rows, 1)
        let deltas = input.experts.map { Kernels.subtract($0, base) }
        let count = deltas.count
        let k = Double(count)
        var out = [Float](repeating: 0, count: n)
        var tSum = 0.0
        // Per row, the Gram table of the task vectors' slices: G[i][j] = τᵢ·τⱼ, ‖τᵢ‖ = √G[i][i].
        var gram = [Double](repeating: 0, count: count * count)
        for r in 0..<max(rows, 1) {
            let range = (r * width)..<(r == rows - 1 ? n : (r + 1) * width)
            for i in 0..<count {
                for j in i..<count {
                    gram[i * count + j] = deltas[i].withUnsafeBufferPointer { a in
                        deltas[j].withUnsafeBufferPointer { b in
                            guard let x = a.baseAddress, let y = b.baseAddress else { return 0 }
                            return Kernels.dot(x + range.lowerBound, y + range.lowerBound, count: range.count)
                        }
                    }
                }
            }
            var cosSum = 0.0, pairs = 0.0
            for i in 0..<count {
                for j in (i + 1)..<count {
                    let denominator = max(gram[i * count + i].squareRoot() * gram[j * count + j].squareRoot(), 1e-6)
                    cosSum += min(max(gram[i * count + j] / denominator, -1), 1)
                    pairs += 1
                }
            }
            let cos = cosSum / pairs
            // At 1 + (N−1)·cos = 0 (e.g. two opposite task vectors) t has no finite value; keep the
            // base there (t = 0), as mergekit ≥ 0.1.5 does, instead of returning NaN or huge values.
            let divisor = 1 + (k - 1) * cos
            let t = abs(divisor) < 1e-6 ? 0 : k * cos / divisor
            tSum += t
            // Element by element in float32, in mergekit's order (sum(ws) / count, then
            // t·average + (1 − t)·w₀, each product rounded): its numbers to the bit whenever t agrees.
            let tf = Float(t), rest = 1 - Float(t), kf = Float(count)
            for j in range {
                var sum: Float = 0
                for e in input.experts { sum += e[j] }
                let average = sum / kf
                out[j] = tf * average + rest * base[j]
            }
        }
        return TensorMergeOutput(values: out, notes: ["t": tSum / Double(max(rows, 1))])
    }
}
