/// Model Stock: moves from the base toward the experts' average by a ratio set by how aligned
/// their task vectors are: t = N·cos / (1 + (N−1)·cos), θ = t·mean(θᵢ) + (1 − t)·θ₀.
public struct ModelStock: BlockMergeMethod {
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

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput { try mergeArrays(input) }

    func readsInputs(_ context: TensorContext, parameters: ParameterSet, expertCount: Int) -> Bool { true }

    func prepare(_ input: BlockMergeInput) throws -> any BlockMerger {
        guard input.hasBase, let base = input.base else { throw MergeError.invalidInputs(method: Self.id, problem: "needs the merge base") }
        guard let experts = input.experts else { preconditionFailure("Model Stock reads whole inputs") }
        let ctx = input.context
        let rows = max((input.parameters.flag("filter_wise", ctx) ?? false) && ctx.shape.count >= 2 ? ctx.shape[0] : 1, 1)
        let n = input.count
        let width = n / rows
        let count = experts.count
        let k = Double(count)
        var ts = [Float](repeating: 0, count: rows)
        var tSum = 0.0
        // Per row, the Gram table of the task vectors' slices: G[i][j] = τᵢ·τⱼ, ‖τᵢ‖ = √G[i][i],
        // with τᵢ = θᵢ − θ₀ formed element by element in Float32 (never stored).
        var gram = [Double](repeating: 0, count: count * count)
        for r in 0..<rows {
            let range = (r * width)..<(r == rows - 1 ? n : (r + 1) * width)
            for i in 0..<count {
                for j in i..<count {
                    gram[i * count + j] = Kernels.dotOfDifferences(experts[i] + range.lowerBound, experts[j] + range.lowerBound,
                                                                   base + range.lowerBound, count: range.count)
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
            ts[r] = Float(t)
        }
        return Merger(ts: ts, width: width, t: tSum / Double(rows))
    }

    /// Element by element in float32, in mergekit's order (sum(ws) / count, then t·average +
    /// (1 − t)·w₀, each product rounded): its numbers to the bit whenever t agrees.
    final class Merger: BlockMerger, Sendable {
        let ts: [Float]
        let width: Int
        let t: Double

        init(ts: [Float], width: Int, t: Double) {
            (self.ts, self.width, self.t) = (ts, width, t)
        }

        func mergeBlock(_ r: Range<Int>, base: UnsafePointer<Float>?, experts: [UnsafePointer<Float>], into out: UnsafeMutablePointer<Float>) {
            let base = base!
            let kf = Float(experts.count)
            let rows = ts.count
            // Local index l is element r.lowerBound + l; rows may change inside the block.
            var l = 0
            while l < r.count {
                let j = r.lowerBound + l
                let row = width > 0 ? min(j / width, rows - 1) : rows - 1
                let end = row == rows - 1 ? r.count : min(r.count, (row + 1) * width - r.lowerBound)
                let tf = ts[row], rest = 1 - ts[row]
                for (e, x) in experts.enumerated() {
                    if e == 0 {
                        // 0 + x, not x: the sum starts at +0, as mergekit's does (−0 becomes +0).
                        for i in l..<end { out[i] = (0 as Float) + x[i] }
                    } else {
                        for i in l..<end { out[i] += x[i] }
                    }
                }
                for i in l..<end {
                    let average = out[i] / kf
                    out[i] = tf * average + rest * base[i]
                }
                l = end
            }
        }

        func finish() -> (keptFraction: [Double]?, notes: [String: Double]) { (nil, ["t": t]) }
    }
}
