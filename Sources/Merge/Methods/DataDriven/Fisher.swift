/// Fisher merging (Matena & Raffel, NeurIPS 2022): per element, θ* = Σᵢ λᵢFᵢθᵢ / Σᵢ λᵢFᵢ with each
/// expert's diagonal Fisher Fᵢ, read from `mrepo_stats/fisher.safetensors` in its commit.
///
/// As in the authors' and FusionBench's code: ε is added to every Fisher value, so parameters no
/// expert's data touched fall back to the λ-weighted average; with `normalize` (FusionBench's
/// default) each expert's λᵢ is multiplied by sᵢ = (1/(‖Fᵢ‖ + ε)) / Σⱼ 1/(‖Fⱼ‖ + ε), ‖Fᵢ‖ the L2
/// norm of its whole Fisher file, so an expert measured on more or louder data does not win every
/// element. A tensor that some expert's file lacks takes the λ-weighted average (noted in the report).
public struct Fisher: TensorMergeMethod {
    public static let id = "fisher"
    public static let displayName = "Fisher merging"
    public static let paper = "https://arxiv.org/abs/2111.09832"
    public static let summary = "Weighted average per element by each expert's diagonal Fisher information, θ = Σ λᵢFᵢθᵢ / Σ λᵢFᵢ, read from mrepo_stats/fisher.safetensors committed with each expert (scripts/compute_merge_stats.py computes it). Tensors without Fisher values take the λ-weighted average. No merge base."
    public static let requiresBase = false
    public static let expertCount: ClosedRange<Int> = 1...64
    public static let parameters = [
        ParameterSpec("normalize", .flag, default: .flag(true),
                      help: "Scale each expert's λ by 1/‖Fᵢ‖ (the L2 norm of its whole Fisher file), normalised over the experts (FusionBench's normalize_fisher_weight)."),
        ParameterSpec("epsilon", .number(range: 0...1), default: .number(1e-6),
                      help: "Added to every Fisher value, so elements without Fisher take the λ-weighted average (FusionBench's minimal_fisher_weight)."),
    ]
    public static let expertParameters = [
        ParameterSpec("weight", .number(range: 0...(.infinity)), default: .number(1), help: "λᵢ, the expert's weight (the paper's default is uniform)."),
    ]

    public init() {}

    public static func expertStatistics(_ parameters: ParameterSet) -> [String] { [StatisticsLayout.fisher] }

    public static func validate(_ parameters: ParameterSet, experts: [String]) throws(MergeError) {
        let expertCount = experts.count
        let ctx = TensorContext(name: "", shape: [], layerCount: 0)
        let total = (0..<expertCount).reduce(0.0) { $0 + (parameters.number("weight", expert: $1, ctx) ?? 1) }
        if expertCount > 0, total <= 0 { throw .invalidParameter(method: id, parameter: "weight", problem: "must be positive for at least one expert") }
    }

    /// The per-expert factors λᵢ·sᵢ.
    static func expertFactors(_ input: TensorMergeInput, normalize: Bool, epsilon: Double) throws -> [Double] {
        let ctx = input.context
        let lambdas = input.experts.indices.map { input.parameters.number("weight", expert: $0, ctx) ?? 1 }
        guard normalize, let source = input.statistics else { return lambdas }
        let inverse = try input.experts.indices.map { 1 / (try source.norm(expert: $0, kind: StatisticsLayout.fisher) + epsilon) }
        let total = inverse.reduce(0, +)
        return zip(lambdas, inverse).map { $0 * $1 / total }
    }

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput {
        let ctx = input.context
        let n = input.elementCount
        let normalize = input.parameters.flag("normalize", ctx) ?? true
        let epsilon = input.parameters.number("epsilon", ctx) ?? 1e-6
        let factors = try Self.expertFactors(input, normalize: normalize, epsilon: epsilon)
        var out = [Float](repeating: 0, count: n)
        guard let fishers = try input.expertStatistics(kind: StatisticsLayout.fisher, name: ctx.name, count: n, method: Self.id) else {
            // No Fisher for this tensor: the λ-weighted average.
            let total = factors.reduce(0, +)
            for j in 0..<n {
                var s = 0.0
                for (i, e) in input.experts.enumerated() { s += factors[i] * Double(e[j]) }
                out[j] = Float(s / total)
            }
            return TensorMergeOutput(values: out, notes: ["fisher_missing": 1])
        }
        for j in 0..<n {
            var num = 0.0, den = 0.0
            for i in input.experts.indices {
                let w = factors[i] * (Double(fishers[i][j]) + epsilon)
                num += w * Double(input.experts[i][j])
                den += w
            }
            out[j] = den > 0 ? Float(num / den) : 0
        }
        var notes: [String: Double] = [:]
        for (i, f) in factors.enumerated() { notes["fisher_factor_\(i)"] = f }
        return TensorMergeOutput(values: out, notes: notes)
    }
}
