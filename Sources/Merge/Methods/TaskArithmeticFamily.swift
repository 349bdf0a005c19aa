import Delta

/// The axes of mergekit's generalized task arithmetic: how task vectors are thinned, whether
/// signs are elected, and the defaults of `normalize` and `rescale`.
public protocol TaskArithmeticConfiguration: Sendable {
    static var id: String { get }
    static var displayName: String { get }
    static var paper: String { get }
    static var summary: String { get }
    static var sparsifier: Sparsifier? { get }
    /// Elect a sign per element by the weighted sum and keep only agreeing deltas (TIES).
    static var electsSign: Bool { get }
    static var normalizeByDefault: Bool { get }
    static var rescaleByDefault: Bool { get }
}

/// Generalized task arithmetic (mergekit's `GeneralizedTaskArithmeticMerge`), per tensor:
///
/// 1. task vectors δᵢ = θᵢ − θ₀;
/// 2. optional sparsification of each δᵢ (magnitude, Bernoulli, outliers, MagPrune), with optional
///    L1 rescaling;
/// 3. weighting by wᵢ; with sign election, the sign of Σ wᵢδᵢ wins (ties elect +) and only
///    deltas of that sign count;
/// 4. sum, divided by the sum of the (agreeing) weights when `normalize`;
/// 5. times λ, added to θ₀.
public struct GeneralizedTaskArithmetic<Configuration: TaskArithmeticConfiguration>: MergeMethod {
    public static var id: String { Configuration.id }
    public static var displayName: String { Configuration.displayName }
    public static var paper: String { Configuration.paper }
    public static var summary: String { Configuration.summary }
    public static var requiresBase: Bool { true }
    public static var expertCount: ClosedRange<Int> { 1...64 }
    public static var usesSeed: Bool { Configuration.sparsifier == .bernoulli || Configuration.sparsifier == .dellaMagprune }

    public static var parameters: [ParameterSpec] {
        [
            ParameterSpec("lambda", .number(range: -.infinity...(.infinity)), default: .number(1),
                          help: "Scale of the merged task vector before it is added to the base (λ)."),
            ParameterSpec("normalize", .flag, default: .flag(Configuration.normalizeByDefault),
                          help: Configuration.electsSign
                            ? "Divide by the sum of the weights of the experts that agree with the elected sign (TIES' disjoint mean)."
                            : "Divide the weighted sum by the sum of the weights (an average instead of a sum)."),
            ParameterSpec("rescale", .flag, default: .flag(Configuration.rescaleByDefault),
                          help: "After sparsifying, scale the kept deltas so the task vector's L1 norm is unchanged."),
        ]
    }

    public static var expertParameters: [ParameterSpec] {
        var specs = [ParameterSpec("weight", .number(range: -.infinity...(.infinity)), default: .number(1),
                                   help: "Weight of the expert's task vector (negative values subtract it).")]
        if Configuration.sparsifier != nil {
            specs.append(ParameterSpec("density", .number(range: 0...1, lowerOpen: true), default: .number(1),
                                       help: "Fraction of the task vector's elements kept, in (0, 1]; 1 keeps all."))
        }
        if Configuration.sparsifier == .magnitudeOutliers {
            specs.append(ParameterSpec("gamma", .number(range: 0...1), default: .number(0.01),
                                       help: "Fraction of the largest-magnitude elements dropped as outliers."))
        }
        if Configuration.sparsifier == .dellaMagprune {
            specs.append(ParameterSpec("epsilon", .number(range: 0...0.5), default: .number(0.15),
                                       help: "Half-width of the keep-probability window around density (MagPrune)."))
        }
        return specs
    }

    public init() {}

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput {
        guard let base = input.base else {
            throw MergeError.invalidInputs(method: Self.id, problem: "needs the merge base")
        }
        let ctx = input.context
        let p = input.parameters
        let n = base.count
        var deltas: [[Float]] = []
        var kept: [Double]? = Configuration.sparsifier == nil ? nil : []
        for (i, expert) in input.experts.enumerated() {
            var d = Kernels.subtract(expert, base)
            if let sparsifier = Configuration.sparsifier {
                var rng = SeededRandom(seed: input.seed, stream: "sparsify", index: UInt64(i))
                let density = p.number("density", expert: i, ctx) ?? 1
                let (thin, fraction) = try Sparsify.apply(
                    sparsifier, d, density: density, gamma: p.number("gamma", expert: i, ctx) ?? 0.01,
                    epsilon: p.number("epsilon", expert: i, ctx) ?? 0.15, rows: ctx.shape.count >= 2 ? ctx.shape[0] : 1,
                    rescale: p.flag("rescale", ctx) ?? Configuration.rescaleByDefault, rng: &rng, name: ctx.name)
                d = thin
                kept?.append(fraction)
            }
            deltas.append(d)
        }
        let weights = (0..<input.experts.count).map { Float(p.number("weight", expert: $0, ctx) ?? 1) }
        let normalize = p.flag("normalize", ctx) ?? Configuration.normalizeByDefault
        let lambda = Float(p.number("lambda", ctx) ?? 1)
        let mixed = Self.combine(deltas, weights: weights, count: n, electSign: Configuration.electsSign, normalize: normalize)
        var out = [Float](repeating: 0, count: n)
        out.withUnsafeMutableBufferPointer { po in
            base.withUnsafeBufferPointer { pb in
                mixed.withUnsafeBufferPointer { pm in
                    let o = SendableMutable(po), b = SendableConst(pb), m = SendableConst(pm)
                    Kernels.blocks(n) { r in
                        for j in r { o.p[j] = b.p[j] + (lambda == 1 ? m.p[j] : m.p[j] * lambda) }
                    }
                }
            }
        }
        return TensorMergeOutput(values: out, keptFraction: kept)
    }

    /// Weighted combination of task vectors, with optional sign election and normalisation.
    static func combine(_ deltas: [[Float]], weights: [Float], count n: Int, electSign: Bool, normalize: Bool) -> [Float] {
        var mixed = [Float](repeating: 0, count: n)
        let totalWeight = weights.reduce(0, +)
        let pointers = deltas.map { d in d.withUnsafeBufferPointer { SendableConst($0) } }
        // The arrays outlive this call: `deltas` holds them.
        withExtendedLifetime(deltas) {
            mixed.withUnsafeMutableBufferPointer { pm in
                let m = SendableMutable(pm)
                Kernels.blocks(n) { r in
                    for j in r {
                        if electSign {
                            var s: Float = 0
                            for (i, d) in pointers.enumerated() { s += weights[i] * d.p[j] }
                            let majority: Float = s >= 0 ? 1 : -1
                            var acc: Float = 0, div: Float = 0
                            for (i, d) in pointers.enumerated() {
                                let wd = weights[i] * d.p[j]
                                if (wd > 0 && majority > 0) || (wd < 0 && majority < 0) {
                                    acc += wd
                                    div += weights[i]
                                }
                            }
                            if normalize {
                                m.p[j] = acc / (div == 0 ? 1 : div)
                            } else {
                                m.p[j] = acc
                            }
                        } else {
                            var acc: Float = 0
                            for (i, d) in pointers.enumerated() { acc += weights[i] * d.p[j] }
                            m.p[j] = normalize ? acc / (abs(totalWeight) < 1e-8 ? 1 : totalWeight) : acc
                        }
                    }
                }
            }
        }
        return mixed
    }
}

public enum TaskArithmeticConfig: TaskArithmeticConfiguration {
    public static let id = "task_arithmetic"
    public static let displayName = "Task Arithmetic"
    public static let paper = "https://arxiv.org/abs/2212.04089"
    public static let summary = "Adds the weighted sum of the experts' task vectors to the base: θ = θ₀ + λ Σ wᵢ(θᵢ − θ₀)."
    public static let sparsifier: Sparsifier? = nil
    public static let electsSign = false
    public static let normalizeByDefault = false
    public static let rescaleByDefault = false
}

public enum TIESConfig: TaskArithmeticConfiguration {
    public static let id = "ties"
    public static let displayName = "TIES"
    public static let paper = "https://arxiv.org/abs/2306.01708"
    public static let summary = "Trims each task vector to its largest-magnitude fraction (density), elects a sign per element by the weighted sum, and averages only the deltas that agree with it (disjoint mean)."
    public static let sparsifier: Sparsifier? = .magnitude
    public static let electsSign = true
    public static let normalizeByDefault = true
    public static let rescaleByDefault = false
}

public enum DARELinearConfig: TaskArithmeticConfiguration {
    public static let id = "dare_linear"
    public static let displayName = "DARE (linear)"
    public static let paper = "https://arxiv.org/abs/2311.03099"
    public static let summary = "Drops each task-vector element at random with probability 1 − density, rescales the survivors (L1), and sums the weighted task vectors. Seeded: the same seed gives the same result."
    public static let sparsifier: Sparsifier? = .bernoulli
    public static let electsSign = false
    public static let normalizeByDefault = false
    public static let rescaleByDefault = true
}

public enum DARETIESConfig: TaskArithmeticConfiguration {
    public static let id = "dare_ties"
    public static let displayName = "DARE-TIES"
    public static let paper = "https://arxiv.org/abs/2311.03099"
    public static let summary = "DARE's random drop and rescale, then TIES' sign election; the agreeing deltas are summed. Seeded."
    public static let sparsifier: Sparsifier? = .bernoulli
    public static let electsSign = true
    public static let normalizeByDefault = false
    public static let rescaleByDefault = true
}

public enum BreadcrumbsConfig: TaskArithmeticConfiguration {
    public static let id = "breadcrumbs"
    public static let displayName = "Model Breadcrumbs"
    public static let paper = "https://arxiv.org/abs/2312.06795"
    public static let summary = "Drops both the largest-magnitude outliers (gamma) and the smallest deltas, keeping a density fraction in between, then sums the weighted task vectors."
    public static let sparsifier: Sparsifier? = .magnitudeOutliers
    public static let electsSign = false
    public static let normalizeByDefault = false
    public static let rescaleByDefault = false
}

public enum BreadcrumbsTIESConfig: TaskArithmeticConfiguration {
    public static let id = "breadcrumbs_ties"
    public static let displayName = "Model Breadcrumbs with TIES"
    public static let paper = "https://arxiv.org/abs/2312.06795"
    public static let summary = "Breadcrumbs' outlier and small-delta removal, then TIES' sign election."
    public static let sparsifier: Sparsifier? = .magnitudeOutliers
    public static let electsSign = true
    public static let normalizeByDefault = false
    public static let rescaleByDefault = false
}

public enum DELLAConfig: TaskArithmeticConfiguration {
    public static let id = "della"
    public static let displayName = "DELLA"
    public static let paper = "https://arxiv.org/abs/2406.11617"
    public static let summary = "MagPrune: per row, keeps each delta with a probability that rises with its magnitude rank (density ± epsilon), rescales, elects signs and takes the disjoint mean. Seeded."
    public static let sparsifier: Sparsifier? = .dellaMagprune
    public static let electsSign = true
    public static let normalizeByDefault = true
    public static let rescaleByDefault = true
}

public enum DELLALinearConfig: TaskArithmeticConfiguration {
    public static let id = "della_linear"
    public static let displayName = "DELLA (linear)"
    public static let paper = "https://arxiv.org/abs/2406.11617"
    public static let summary = "DELLA's MagPrune and rescale, then a weighted sum without sign election. Seeded."
    public static let sparsifier: Sparsifier? = .dellaMagprune
    public static let electsSign = false
    public static let normalizeByDefault = false
    public static let rescaleByDefault = true
}

public typealias TaskArithmetic = GeneralizedTaskArithmetic<TaskArithmeticConfig>
public typealias TIES = GeneralizedTaskArithmetic<TIESConfig>
public typealias DARELinear = GeneralizedTaskArithmetic<DARELinearConfig>
public typealias DARETIES = GeneralizedTaskArithmetic<DARETIESConfig>
public typealias Breadcrumbs = GeneralizedTaskArithmetic<BreadcrumbsConfig>
public typealias BreadcrumbsTIES = GeneralizedTaskArithmetic<BreadcrumbsTIESConfig>
public typealias DELLA = GeneralizedTaskArithmetic<DELLAConfig>
public typealias DELLALinear = GeneralizedTaskArithmetic<DELLALinearConfig>
