import Foundation

/// PCB-Merging (Parameter Competition Balancing), per tensor over the T×d matrix of its task
/// vectors, as the paper's code computes it on the flattened model:
///
/// 1. |τ| clipped per task to its 0.01 % and 99.99 % order statistics (outliers), signs kept;
/// 2. intra-balancing exp(T·minmax(|τᵢ|)²) times inter-balancing tanh(τᵢ ⊙ Σⱼ τⱼ);
/// 3. per task, scores below the top `ratio` fraction are raised to that quantile, then min-max
///    normalised: β ∈ [0, 1], the dropped entries exactly 0;
/// 4. τ = Σᵢ βᵢ ⊙ τᵢ / max(Σᵢ βᵢ, 1e-12); θ = θ₀ + λ·τ.
///
/// A row whose values are all equal has no min-max range; mrepo maps it to 1 (keep) where torch
/// would divide by zero. Per tensor rather than over the whole model, so memory stays bounded.
public struct PCB: TensorMergeMethod {
    public static let id = "pcb"
    /// Element-wise in float64: the task vectors, their balance and mask, and the result.
    public static func workingMemory(elements n: Int, experts k: Int) -> (bytes: Int, formula: String) {
        ((k + 4) * n * 8, "(experts + 4) × the largest tensor in float64")
    }
    public static let displayName = "PCB-Merging (parameter competition balancing)"
    public static let paper = "https://arxiv.org/abs/2410.02396"
    public static let summary = "Scores every task-vector element by its importance within its expert (intra-balancing) and its agreement with the others (inter-balancing), drops all but the top `ratio` of each expert's scores, and averages the surviving, outlier-clipped deltas weighted by their scores. Data-free; element-wise, no SVD."
    public static let requiresBase = true
    public static let expertCount: ClosedRange<Int> = 1...64
    public static let parameters = [
        Subspace.lambdaSpec("Scale λ of the merged task vector (the paper searches 0.8–2.2 for T5, 1.0 for IA3)."),
        ParameterSpec("ratio", .number(range: 0...1, lowerOpen: true), default: .number(0.1),
                      help: "Fraction of each expert's elements kept by score, in (0, 1] (the paper's scripts use 0.05, 0.1 or 0.2)."),
    ]
    /// The outlier clip of the paper's code, both ends.
    static let clip = 0.0001

    public init() {}

    /// (x − min)/(max − min) per row; 1 for a row with no range.
    static func minmax(_ row: [Double]) -> [Double] {
        guard let lo = row.min(), let hi = row.max(), hi > lo else { return [Double](repeating: 1, count: row.count) }
        return row.map { ($0 - lo) / (hi - lo) }
    }

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput {
        let (base, tau) = try Subspace.taskVectors(input, method: Self.id)
        let ctx = input.context
        let lambda = input.parameters.number("lambda", ctx) ?? 1
        let ratio = input.parameters.number("ratio", ctx) ?? 0.1
        let t = tau.count, d = base.count
        guard d > 0 else { return TensorMergeOutput(values: base) }
        let total = Subspace.sum(tau)
        var numerator = [Double](repeating: 0, count: d), denominator = [Double](repeating: 0, count: d)
        var kept = [Double]()
        for ti in tau {
            let magnitudes = ti.map(abs)
            let sorted = magnitudes.sorted()
            let lo = sorted[min(d - 1, Int(Double(d) * Self.clip))]
            let hi = sorted[max(0, min(d - 1, Int(Double(d) * (1 - Self.clip)) - 1))]
            let clipped = magnitudes.map { min(max($0, lo), hi) }
            let intra = Self.minmax(clipped).map { exp(Double(t) * $0 * $0) }
            var score = [Double](repeating: 0, count: d)
            for j in 0..<d { score[j] = intra[j] * tanh(ti[j] * total[j]) }
            let floor = score.sorted()[min(d - 1, Int(Double(d) * (1 - ratio)))]
            let beta = Self.minmax(score.map { max($0, floor) })
            var count = 0
            for j in 0..<d {
                let signed = ti[j] < 0 ? -clipped[j] : (ti[j] > 0 ? clipped[j] : 0)
                numerator[j] += beta[j] * signed
                denominator[j] += beta[j]
                if beta[j] > 0 { count += 1 }
            }
            kept.append(Double(count) / Double(d))
        }
        let delta = (0..<d).map { numerator[$0] / max(denominator[$0], 1e-12) }
        return TensorMergeOutput(values: Subspace.finish(base: base, delta: delta, lambda: lambda), keptFraction: kept)
    }
}
