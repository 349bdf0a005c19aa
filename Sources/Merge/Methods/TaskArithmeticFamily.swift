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
public struct GeneralizedTaskArithmetic<Configuration: TaskArithmeticConfiguration>: BlockMergeMethod {
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
            // mergekit's int8_mask only changes the dtype of its sign masks, never the result.
            ParameterSpec("int8_mask", .flag, default: .flag(false),
                          help: "Accepted for mergekit recipes (most published TIES and DARE recipes set it); it changes nothing: the masks are booleans either way."),
            // Kept for every method of the family, as mergekit accepts it for all of them (recipes carry over).
            ParameterSpec("rescale", .flag, default: .flag(Configuration.rescaleByDefault),
                          help: Configuration.sparsifier == nil
                            ? "Accepted for mergekit recipes; without sparsification it changes nothing."
                            : "After sparsifying, scale the kept deltas so the task vector's L1 norm is unchanged."),
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
                                       help: "Half-width of the keep-probability window around density (MagPrune); where density < 1, density − epsilon must be above 0 and density + epsilon below 1."))
        }
        return specs
    }

    public init() {}

    /// DELLA's keep-probability window, density ± epsilon, must lie inside (0, 1) for every expert
    /// that sparsifies (density < 1), as mergekit requires: checked before any tensor is read when
    /// the values are the same for every tensor, else as each tensor is merged.
    public static func validate(_ parameters: ParameterSet, experts: [String]) throws(MergeError) {
        guard Configuration.sparsifier == .dellaMagprune else { return }
        for i in experts.indices {
            guard let d = parameters.uniform("density", expert: i)?.numberValue, d < 1,
                  let e = parameters.uniform("epsilon", expert: i)?.numberValue else { continue }
            if !(d - e > 0 && d + e < 1) {
                throw MergeError.invalidParameter(method: id, parameter: "density",
                    problem: "\(ParameterValue.format(d)) with epsilon \(ParameterValue.format(e)) (expert '\(experts[i])'): DELLA needs 0 < density − epsilon and density + epsilon < 1")
            }
        }
    }

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput { try mergeArrays(input) }

    func readsInputs(_ context: TensorContext, parameters p: ParameterSet, expertCount: Int) -> Bool {
        guard let sparsifier = Configuration.sparsifier else { return false }
        let rescale = p.flag("rescale", context) ?? Configuration.rescaleByDefault
        for i in 0..<expertCount where (p.number("density", expert: i, context) ?? 1) < 1 {
            if sparsifier != .bernoulli || rescale { return true }
        }
        return false
    }

    func prepare(_ input: BlockMergeInput) throws -> any BlockMerger {
        guard input.hasBase else {
            throw MergeError.invalidInputs(method: Self.id, problem: "needs the merge base")
        }
        let ctx = input.context
        let p = input.parameters
        let n = input.count
        let k = input.expertCount
        let rescale = p.flag("rescale", ctx) ?? Configuration.rescaleByDefault
        // Pass 1, per expert: which deltas survive, and the L1 rescale factor.
        var masks: [DeltaMask] = []
        for i in 0..<k {
            let density = p.number("density", expert: i, ctx) ?? 1
            let seed = input.seed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15
            if let mask = DeltaMask.independentOfValues(Configuration.sparsifier, count: n, density: density, rescale: rescale, seed: seed) {
                masks.append(mask)
                continue
            }
            guard let base = input.base, let experts = input.experts else {
                throw MergeError.invalidInputs(method: Self.id, problem: "needs the merge base and the whole task vectors")
            }
            masks.append(try DeltaMask.build(
                Configuration.sparsifier, expert: UnsafeBufferPointer(start: experts[i], count: n), base: UnsafeBufferPointer(start: base, count: n),
                density: density, gamma: p.number("gamma", expert: i, ctx) ?? 0.01, epsilon: p.number("epsilon", expert: i, ctx) ?? 0.15,
                rows: ctx.shape.count >= 2 ? ctx.shape[0] : 1, rescale: rescale, seed: seed, name: ctx.name,
                expertName: i < input.expertNames.count ? input.expertNames[i] : nil))
        }
        let weights = (0..<k).map { Float(p.number("weight", expert: $0, ctx) ?? 1) }
        return Merger(count: n, masks: masks, weights: weights, normalize: p.flag("normalize", ctx) ?? Configuration.normalizeByDefault,
                      lambda: Float(p.number("lambda", ctx) ?? 1))
    }

    /// Pass 2, element by element: thinned, weighted deltas; sign election; normalisation; λ.
    final class Merger: BlockMerger {
        let count: Int
        let masks: [DeltaMask]
        let weights: [Float]
        let scales: [Float]
        let normalize: Bool
        let lambda: Float
        let totalWeight: Float
        /// Kept elements per block and expert, for the masks whose kept fraction the merge pass counts.
        /// Blocks run on several threads, each writing only its own block's row (the disjointness
        /// the wrapper stands for), and ``finish()`` reads them after every block has run.
        let keptCounts: UnsafeSendable<UnsafeMutablePointer<Int>>
        let blockCount: Int

        init(count: Int, masks: [DeltaMask], weights: [Float], normalize: Bool, lambda: Float) {
            self.count = count
            self.masks = masks
            self.weights = weights
            scales = masks.map(\.scale)
            self.normalize = normalize
            self.lambda = lambda
            totalWeight = weights.reduce(0, +)
            blockCount = (count + Kernels.block - 1) / Kernels.block
            let counts = UnsafeMutablePointer<Int>.allocate(capacity: max(1, blockCount * masks.count))
            counts.initialize(repeating: 0, count: max(1, blockCount * masks.count))
            keptCounts = UnsafeSendable(counts)
        }

        deinit { keptCounts.value.deallocate() }

        func mergeBlock(_ r: Range<Int>, base: UnsafePointer<Float>?, experts: [UnsafePointer<Float>], into out: UnsafeMutablePointer<Float>) {
            GeneralizedTaskArithmetic.mergeBlock(r, base: base!, experts: experts, masks: masks, weights: weights, scales: scales,
                                                 electSign: Configuration.electsSign, normalize: normalize, totalWeight: totalWeight,
                                                 lambda: lambda, out: out, kept: keptCounts.value + (r.lowerBound / Kernels.block) * masks.count)
        }

        func finish() -> (keptFraction: [Double]?, notes: [String: Double]) {
            let k = masks.count, n = count
            let kept = masks.enumerated().map { i, m -> Double in
                guard m.keptFraction.isNaN else { return m.keptFraction }
                var total = 0
                for block in 0..<blockCount { total += keptCounts.value[block * k + i] }
                return n == 0 ? 1 : Double(total) / Double(n)
            }
            // Tied thresholds not settled by replaying torch's sort (tensors above TorchSortOrder.maxCount,
            // see DeltaMask): the earlier indices among the tied elements were kept.
            let positional = masks.reduce(0) { $0 + $1.positionalTies }
            return (Configuration.sparsifier == nil ? nil : kept, positional > 0 ? ["ties_by_position": Double(positional)] : [:])
        }
    }

    /// Pass 2 over one block: each expert's thinned, weighted deltas into a row of a block buffer
    /// (one loop per expert, specialised by mask kind, so the common cases vectorise), then the
    /// element-wise election and sum. Same operation order as mergekit: v = w·(δ·scale); S = Σ v;
    /// the agreeing v and w summed; divided; times λ; added to the base. `base` and `experts` point
    /// at element `r.lowerBound`; writes `out[0..<r.count]`.
    static func mergeBlock(_ r: Range<Int>, base: UnsafePointer<Float>, experts: [UnsafePointer<Float>], masks: [DeltaMask],
                           weights: [Float], scales: [Float], electSign: Bool, normalize: Bool, totalWeight: Float,
                           lambda: Float, out: UnsafeMutablePointer<Float>, kept: UnsafeMutablePointer<Int>) {
        BlockScratch.with(floats: (experts.count + 3) * Kernels.block) { scratch in
            mergeBlock(r, base: base, experts: experts, masks: masks, weights: weights, scales: scales, electSign: electSign,
                       normalize: normalize, totalWeight: totalWeight, lambda: lambda, out: out, kept: kept, scratch: scratch)
        }
    }

    /// ``mergeBlock(_:base:experts:masks:weights:scales:electSign:normalize:totalWeight:lambda:out:kept:)``
    /// with its scratch: (experts + 3) blocks of Float32.
    private static func mergeBlock(_ r: Range<Int>, base: UnsafePointer<Float>, experts: [UnsafePointer<Float>], masks: [DeltaMask],
                                   weights: [Float], scales: [Float], electSign: Bool, normalize: Bool, totalWeight: Float,
                                   lambda: Float, out: UnsafeMutablePointer<Float>, kept: UnsafeMutablePointer<Int>,
                                   scratch: UnsafeMutablePointer<Float>) {
        let k = experts.count
        let len = r.count
        let r0 = r.lowerBound
        let blockIndex = r0 / Kernels.block
        let v = scratch, sum = scratch + k * Kernels.block
        let b = base
        for i in 0..<k {
            let x = experts[i]
            let vi = v + i * Kernels.block
            let w = weights[i], f = scales[i]
            masks[i].withCursor(block: blockIndex) { c in
                switch c.kind {
                case 0:
                    _ = Self.weightedDeltas(x, b, into: vi, count: len, weight: w, scale: f, threshold: nil)
                case 1:
                    // Elements equal to the threshold (rare) are left out here and fixed up after.
                    let t = c.threshold1
                    let equal = Self.weightedDeltas(x, b, into: vi, count: len, weight: w, scale: f, threshold: t)
                    if equal > 0 { Self.settleEqual(x, b, into: vi, count: len, equal: equal, weight: w, scale: f, cursor: &c) }
                case 2:
                    // Breadcrumbs' band: strictly between the two thresholds is in; elements equal to
                    // either (rare) are settled after, in index order, as the cursor ranks them.
                    let t1 = c.threshold1, t2 = c.threshold2
                    var (count, equal) = Self.weightedBand(x, b, into: vi, count: len, weight: w, scale: f, low: t1, high: t2)
                    if equal > 0 {
                        for jj in 0..<len {
                            let d = x[jj] - b[jj]
                            let bits = d.bitPattern & 0x7FFF_FFFF
                            guard bits == t1 || bits == t2 else { continue }
                            let keep = DeltaMask.keep(&c, d, r0 + jj)
                            count &+= keep ? 1 : 0
                            vi[jj] = keep ? w * (d * f) : 0
                        }
                    }
                    kept[i] = count
                case 5:
                    // DARE: the draws are bits made in the first pass; branch-free select.
                    let words = c.words!
                    for jj in 0..<len {
                        let j = r0 + jj
                        let d = x[jj] - b[jj]
                        let mask = UInt32(truncatingIfNeeded: 0 &- (words[j >> 6] >> UInt64(j & 63) & 1))
                        vi[jj] = Float(bitPattern: (w * (d * f)).bitPattern & mask)
                    }
                default:
                    var count = 0
                    for jj in 0..<len {
                        let d = x[jj] - b[jj]
                        let keep = DeltaMask.keep(&c, d, r0 + jj)
                        count &+= keep ? 1 : 0
                        vi[jj] = keep ? w * (d * f) : 0
                    }
                    kept[i] = count
                }
            }
        }
        for jj in 0..<len { sum[jj] = v[jj] }
        for i in 1..<max(k, 1) {
            let vi = v + i * Kernels.block
            for jj in 0..<len { sum[jj] += vi[jj] }
        }
        if electSign {
            let acc = sum + Kernels.block, div = sum + 2 * Kernels.block
            acc.initialize(repeating: 0, count: len)
            div.initialize(repeating: 0, count: len)
            for i in 0..<k {
                let vi = v + i * Kernels.block
                let w = weights[i]
                for jj in 0..<len {
                    let x = vi[jj]
                    let agrees = sum[jj] >= 0 ? x > 0 : x < 0
                    let mask: UInt32 = agrees ? 0xFFFF_FFFF : 0
                    acc[jj] += Float(bitPattern: x.bitPattern & mask)
                    div[jj] += Float(bitPattern: w.bitPattern & mask)
                }
            }
            Self.disjointMean(acc, div, base: b, into: out, count: len, normalize: normalize, lambda: lambda)
        } else {
            let divisor: Float = abs(totalWeight) < 1e-8 ? 1 : totalWeight
            for jj in 0..<len {
                var mixed = normalize ? sum[jj] / divisor : sum[jj]
                if lambda != 1 { mixed *= lambda }
                out[jj] = b[jj] + mixed
            }
        }
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
