import Delta
import Foundation

/// Weighted average of the experts themselves (a model soup): θ = Σ wᵢθᵢ / Σ wᵢ. No base is used.
public struct Linear: TensorMergeMethod {
    public static let id = "linear"
    public static let displayName = "Linear (model soup)"
    public static let paper = "https://arxiv.org/abs/2203.05482"
    public static let summary = "Weighted average of the experts' weights, θ = Σ wᵢθᵢ / Σ wᵢ (or the plain weighted sum with normalize=false). The merge base is not used."
    public static let requiresBase = false
    public static let expertCount: ClosedRange<Int> = 1...64
    public static let parameters = [
        ParameterSpec("normalize", .flag, default: .flag(true), help: "Divide by the sum of the weights (an average); false gives the weighted sum."),
    ]
    public static let expertParameters = [
        ParameterSpec("weight", .number(range: -.infinity...(.infinity)), default: .number(1), help: "Weight of the expert in the average."),
    ]

    public init() {}

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput {
        let ctx = input.context
        let weights = (0..<input.experts.count).map { Float(input.parameters.number("weight", expert: $0, ctx) ?? 1) }
        let normalize = input.parameters.flag("normalize", ctx) ?? true
        let total = weights.reduce(0, +)
        if normalize, total == 0 {
            throw MergeError.invalidInputs(method: Self.id, problem: "the weights sum to 0; an average is undefined (use normalize=false)")
        }
        let n = input.elementCount
        var out = [Float](repeating: 0, count: n)
        for (i, e) in input.experts.enumerated() {
            let w = weights[i]
            out.withUnsafeMutableBufferPointer { po in
                e.withUnsafeBufferPointer { pe in
                    let o = UnsafeSendable(po), x = UnsafeSendable(pe)
                    // Fused multiply-add, as torch's CPU addcmul_ compiles (mergekit accumulates with it):
                    // the same rounding, so mergekit's numbers to the bit.
                    Kernels.blocks(n) { r in for j in r { o.value[j].addProduct(x.value[j], w) } }
                }
            }
        }
        if normalize {
            out.withUnsafeMutableBufferPointer { po in
                let o = UnsafeSendable(po)
                Kernels.blocks(n) { r in for j in r { o.value[j] /= total } }
            }
        }
        return TensorMergeOutput(values: out)
    }
}

/// Metrics-weighted averaging: a soup whose weights come from each expert's recorded metric.
///
/// With `mode=loss`, wᵢ ∝ mᵢ^(−κ): a lower loss weighs more; with `mode=score`, wᵢ ∝ mᵢ^κ. κ is the
/// penalty factor (0 gives the uniform average). The metric values come from each expert commit's
/// `--metric NAME=VALUE`. The published paper's exact formula was not available; this is the
/// power-law form its abstract describes.
public struct MWA: TensorMergeMethod {
    public static let id = "mwa"
    public static let displayName = "Metrics-Weighted Averaging"
    public static let paper = "https://arxiv.org/abs/2504.18580"
    public static let summary = "A weighted average whose weights come from each expert's recorded metric (commit --metric): wᵢ ∝ mᵢ^−κ for losses, mᵢ^κ for scores, normalised to sum to 1."
    public static let requiresBase = false
    public static let expertCount: ClosedRange<Int> = 2...64
    public static let parameters = [
        ParameterSpec("metric", .text, default: .text("eval_loss"), help: "Name of the commit metric that sets the weights (as recorded with commit --metric)."),
        ParameterSpec("mode", .choice(["loss", "score"]), default: .text("loss"), help: "loss: lower is better (wᵢ ∝ mᵢ^−κ); score: higher is better (wᵢ ∝ mᵢ^κ)."),
        ParameterSpec("penalty", .number(range: 0...1000), default: .number(1), help: "Penalty factor κ ≥ 0: how strongly the metric separates the weights; 0 is the uniform average."),
    ]
    public init() {}

    /// The commit metric named by `metric` (default `eval_loss`), which every expert must record.
    public static func expertMetrics(_ parameters: ParameterSet) -> [String] {
        [parameters.text("metric") ?? "eval_loss"]
    }

    /// The normalised weights for metric values.
    public static func weights(metrics: [Double], mode: String, penalty: Double) -> [Double] {
        let raw = metrics.map { m in mode == "score" ? pow(m, penalty) : pow(m, -penalty) }
        let total = raw.reduce(0, +)
        return raw.map { $0 / total }
    }

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput {
        let ctx = input.context
        let metric = Self.expertMetrics(input.parameters)[0]
        var metrics: [Double] = []
        for i in 0..<input.experts.count {
            guard i < input.expertMetrics.count, let m = input.expertMetrics[i][metric] else {
                throw MergeError.missingExpertMetric(method: Self.id, metric: metric, expert: "expert \(i + 1)")
            }
            metrics.append(m)
        }
        let w = Self.weights(metrics: metrics, mode: input.parameters.text("mode") ?? "loss",
                             penalty: input.parameters.number("penalty", ctx) ?? 1)
        var soup = input
        soup.parameters = ParameterSet(global: ["normalize": .flag(true)],
                                       perExpert: w.map { ["weight": .number($0)] })
        var out = try Linear().merge(soup)
        for (i, x) in w.enumerated() { out.notes["weight_\(i)"] = x }
        return out
    }
}
