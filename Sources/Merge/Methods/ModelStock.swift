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
        let gram = Gram(context: input.context, parameters: input.parameters, count: input.count, expertCount: experts.count)
        gram.feed(0..<input.count, base: base, experts: experts)
        return gram.merger()
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
