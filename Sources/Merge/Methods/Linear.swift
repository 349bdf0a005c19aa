import Delta
import Foundation

/// Weighted average of the experts themselves (a model soup): θ = Σ wᵢθᵢ / Σ wᵢ. No base is used.
public struct Linear: BlockMergeMethod {
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

    /// Weights that sum to 0 with normalize on are refused before any tensor is read (a dry run
    /// included) when they are the same for every tensor; per-tensor ones as each tensor is merged.
    public static func validate(_ parameters: ParameterSet, experts: [String]) throws(MergeError) {
        let n = experts.count
        guard parameters.uniform("normalize")?.boolValue ?? false else { return }
        var total: Float = 0
        for i in 0..<n {
            guard let w = parameters.uniform("weight", expert: i)?.numberValue else { return }
            total += Float(w)  // as Merger sums them
        }
        if total == 0 {
            throw MergeError.invalidInputs(method: id, problem: "the weights sum to 0; an average is undefined (use normalize=false)")
        }
    }

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput { try mergeArrays(input) }

    func readsInputs(_ context: TensorContext, parameters: ParameterSet, expertCount: Int) -> Bool { false }

    func prepare(_ input: BlockMergeInput) throws -> any BlockMerger {
        let ctx = input.context
        let weights = (0..<input.expertCount).map { Float(input.parameters.number("weight", expert: $0, ctx) ?? 1) }
        let normalize = input.parameters.flag("normalize", ctx) ?? true
        // Weights the same everywhere were checked before any tensor (validate); these differ by
        // tensor (a filter, a gradient), so the tensor is named.
        if normalize, weights.reduce(0, +) == 0 {
            throw MergeError.tensor(name: ctx.name, problem: "linear: the weights sum to 0 here; an average is undefined (use normalize=false)")
        }
        return try Merger(weights: weights, normalize: normalize, notes: [:])
    }

    /// θ = Σ wᵢθᵢ, divided by Σ wᵢ when normalising.
    final class Merger: BlockMerger, Sendable {
        let weights: [Float]
        let normalize: Bool
        let total: Float
        let notes: [String: Double]

        init(weights: [Float], normalize: Bool, notes: [String: Double]) throws {
            self.weights = weights
            self.normalize = normalize
            self.notes = notes
            total = weights.reduce(0, +)
            if normalize, total == 0 {
                throw MergeError.invalidInputs(method: Linear.id, problem: "the weights sum to 0; an average is undefined (use normalize=false)")
            }
        }

        func mergeBlock(_ r: Range<Int>, base: UnsafePointer<Float>?, experts: [UnsafePointer<Float>], into out: UnsafeMutablePointer<Float>) {
            let len = r.count
            out.initialize(repeating: 0, count: len)
            // Fused multiply-add, as torch's CPU addcmul_ compiles (mergekit accumulates with it):
            // the same rounding, so mergekit's numbers to the bit.
            for (i, e) in experts.enumerated() {
                FusedKernels.addProduct(out, e, weights[i], count: len)
            }
            if normalize {
                let t = total
                for j in 0..<len { out[j] /= t }
            }
        }

        func finish() -> (keptFraction: [Double]?, notes: [String: Double]) { (nil, notes) }
    }
}

/// Metrics-weighted averaging: a soup whose weights come from each expert's recorded metric.
///
/// With `mode=loss`, wᵢ ∝ mᵢ^(−κ): a lower loss weighs more; with `mode=score`, wᵢ ∝ mᵢ^κ. κ is the
/// penalty factor (0 gives the uniform average). The metric values come from each expert commit's
/// `--metric NAME=VALUE`. The published paper's exact formula was not available; this is the
/// power-law form its abstract describes.
public struct MWA: BlockMergeMethod {
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

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput { try mergeArrays(input) }

    func readsInputs(_ context: TensorContext, parameters: ParameterSet, expertCount: Int) -> Bool { false }

    func prepare(_ input: BlockMergeInput) throws -> any BlockMerger {
        let ctx = input.context
        let metric = Self.expertMetrics(input.parameters)[0]
        var metrics: [Double] = []
        for i in 0..<input.expertCount {
            guard i < input.expertMetrics.count, let m = input.expertMetrics[i][metric] else {
                throw MergeError.missingExpertMetric(method: Self.id, metric: metric, expert: "expert \(i + 1)")
            }
            metrics.append(m)
        }
        let w = Self.weights(metrics: metrics, mode: input.parameters.text("mode") ?? "loss",
                             penalty: input.parameters.number("penalty", ctx) ?? 1)
        var notes: [String: Double] = [:]
        for (i, x) in w.enumerated() { notes["weight_\(i)"] = x }
        // A soup with these weights (Float32, as Linear reads them from its parameters), normalised.
        return try Linear.Merger(weights: w.map { Float($0) }, normalize: true, notes: notes)
    }
}
