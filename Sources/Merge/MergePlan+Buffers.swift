import Delta
import Synchronization

extension MergePlan {
    /// Merges one floating-point tensor held in buffers and measures its conflicts, block by block:
    /// each block is merged, post-processed (consensus, LiNeS) and measured, then stored in `output`.
    ///
    /// `output` may be the buffer of an expert that no other input shares: a block is stored only
    /// after everything that reads that block of the inputs is done, and no block reads another's
    /// range (methods that need whole tensors, such as TIES' thresholds or SLERP's angle, read them
    /// before the first block).
    ///
    /// - Parameters:
    ///   - base: the merge base's values (needed by task-vector methods and for the metrics).
    ///   - experts: each expert's values, in recipe order; all of `output.count` elements.
    public func merge(_ context: TensorContext, base: UnsafePointer<Float>?, experts: [UnsafePointer<Float>],
                      into output: UnsafeMutableBufferPointer<Float>) throws -> ConflictMetrics {
        let n = output.count
        let stream = try TensorStream(plan: self, context: context, count: n, expertCount: experts.count, hasBase: base != nil,
                                      wholeBase: base, wholeExperts: experts)
        guard n > 0 else { return try stream.finishChecked(context.name) }
        let out = UnsafeSendable(output.baseAddress!)
        let b = UnsafeSendable(base)
        Kernels.blocks(n) { r in
            BlockScratch.with(floats: Kernels.block) { block in
                stream.mergeBlock(r, base: b.value.map { $0 + r.lowerBound }, experts: experts.map { $0 + r.lowerBound }, into: block)
                (out.value + r.lowerBound).update(from: block, count: r.count)
            }
        }
        return try stream.finishChecked(context.name)
    }

    /// Whether a tensor can be merged a range at a time (``TensorStream`` without whole inputs): the
    /// method decides nothing from the inputs' values before the first block.
    public func mergesByRange(_ context: TensorContext, expertCount: Int) -> Bool {
        guard let blockMethod = instance as? any BlockMergeMethod, recipe.balance != .norm else { return false }
        return !blockMethod.readsInputs(context, parameters: parameterSet, expertCount: expertCount)
    }
}

/// One tensor's merge, fed block by block: the method's second pass, the post-processing
/// (consensus, LiNeS) and the conflict metrics. Blocks may come in any order and on any thread;
/// ``finish()`` gives the metrics once every block is done.
public final class TensorStream: Sendable {
    let merger: any BlockMerger
    let accumulator: ConflictMetrics.Accumulator
    let post: Bool
    let consensus: (k: Int, lambda: Float)?
    let lines: Float?
    let usesBase: Bool
    /// A block came out with ±inf or NaN where every input was finite: float32 overflowed.
    private let overflowed = Atomic<Bool>(false)
    /// The inputs found holding NaN or ±inf: bit 0 the base, bit i + 1 expert i (bit 63 for
    /// expert 62 and later).
    private let nonFiniteInputs = Atomic<UInt64>(0)
    /// The experts' names, in the recipe's order, and the tensor's, for the error.
    private let expertNames: [String]

    /// Prepares a tensor's merge.
    ///
    /// - Parameters:
    ///   - hasBase: whether the blocks will get the merge base (needed by task-vector methods and
    ///     for the metrics).
    ///   - wholeBase, wholeExperts: the whole inputs, for methods that read them before the first
    ///     block; nil when the tensor is fed a range at a time (``MergePlan/mergesByRange(_:expertCount:)``).
    public convenience init(plan: MergePlan, context: TensorContext, count n: Int, expertCount: Int, hasBase: Bool,
                            wholeBase: UnsafePointer<Float>? = nil, wholeExperts: [UnsafePointer<Float>]? = nil) throws {
        try self.init(plan: plan, context: context, count: n, expertCount: expertCount, hasBase: hasBase,
                      wholeBase: wholeBase, wholeExperts: wholeExperts, prepared: nil)
    }

    /// `prepared`: the method's second pass, when its first pass was run elsewhere (over streamed
    /// chunks: ``StreamingSelection``).
    init(plan: MergePlan, context: TensorContext, count n: Int, expertCount: Int, hasBase: Bool,
         wholeBase: UnsafePointer<Float>?, wholeExperts: [UnsafePointer<Float>]?, prepared: (any BlockMerger)?) throws {
        let seed = plan.recipe.seed ^ SeededRandom.fnv1a(context.name)
        expertNames = plan.recipe.experts
        usesBase = plan.method.requiresBase && hasBase
        accumulator = ConflictMetrics.Accumulator(count: n, experts: expertCount, measures: hasBase,
                                                  tallLambda: plan.recipe.consensus?.lambda ?? 1)
        guard let instance = plan.instance else {
            throw MergeError.invalidInputs(method: plan.method.id, problem: "merges whole models, not tensor by tensor")
        }
        // `--balance norm` rescales whole task vectors before the method, so the method sees the
        // rescaled experts as whole arrays; the metrics still measure the experts as given.
        let balance = usesBase && plan.recipe.balance == .norm
        if let prepared {
            merger = prepared
        } else if let blockMethod = instance as? any BlockMergeMethod, !balance {
            merger = try blockMethod.prepare(BlockMergeInput(
                context: context, count: n, expertCount: expertCount, base: usesBase ? wholeBase : nil, experts: wholeExperts,
                hasBase: usesBase, parameters: plan.parameterSet, seed: seed, expertMetrics: plan.expertMetrics, expertNames: plan.recipe.experts))
        } else {
            guard let wholeExperts else { preconditionFailure("methods without a block form get whole inputs") }
            // Their arithmetic (an SVD, a Gram matrix) would fail without saying why, or spread a NaN.
            let found = TensorStream.nonFiniteInputs(base: usesBase ? wholeBase : nil, experts: wholeExperts, count: n)
            if found != 0 { throw TensorStream.nonFiniteError(context.name, found: found, experts: plan.recipe.experts) }
            let baseValues = usesBase ? wholeBase.map { Array(UnsafeBufferPointer(start: $0, count: n)) } : nil
            var expertValues = wholeExperts.map { Array(UnsafeBufferPointer(start: $0, count: n)) }
            if balance, let baseValues { expertValues = TaskVectorBalance.balanced(expertValues, base: baseValues).experts }
            merger = try ArrayMerger(instance.merge(TensorMergeInput(
                context: context, base: baseValues, experts: expertValues, parameters: plan.parameterSet, seed: seed,
                expertMetrics: plan.expertMetrics, statistics: plan.statistics)),
                count: n)
        }
        post = usesBase && (plan.recipe.consensus != nil || plan.recipe.lines != nil)
        lines = plan.recipe.lines.map { l -> Float in
            if let layer = context.layer, context.layerCount > 1 {
                return Float(l.alpha + l.beta * Double(layer) / Double(context.layerCount - 1))
            }
            return Float(l.alpha)
        }
        consensus = plan.recipe.consensus.map { (k: $0.k, lambda: Float($0.lambda)) }
    }

    /// Merges, post-processes and measures block `r` (one of ``Kernels/blocks(_:_:)``'s ranges):
    /// `base` and `experts` point at element `r.lowerBound` of each input; the result goes to
    /// `out[0..<r.count]`, which must not overlap the inputs.
    public func mergeBlock(_ r: Range<Int>, base: UnsafePointer<Float>?, experts: [UnsafePointer<Float>], into out: UnsafeMutablePointer<Float>) {
        merger.mergeBlock(r, base: usesBase ? base : nil, experts: experts, into: out)
        if post, let base {
            MergePlan.postprocess(count: r.count, base: base, experts: experts, merged: out, consensus: consensus, lines: lines)
        }
        if let base { accumulator.measure(r, base: base, experts: experts, merged: out) }
        // Scans of blocks in cache: a NaN or infinity among the inputs makes the merge meaningless
        // (and some methods would drop it silently, others spread it); one only in the output is an
        // overflow of float32.
        let found = TensorStream.nonFiniteInputs(base: usesBase ? base : nil, experts: experts, count: r.count)
        if found != 0 {
            nonFiniteInputs.bitwiseOr(found, ordering: .relaxed)
        } else if FloatConversion.holdsNonFinite(out, count: r.count) {
            overflowed.store(true, ordering: .relaxed)
        }
    }

    /// Merges every block of `elements` (whole blocks, the last one possibly short), pointers at
    /// `elements.lowerBound`, on the calling thread.
    public func mergeRange(_ elements: Range<Int>, base: UnsafePointer<Float>?, experts: [UnsafePointer<Float>], into out: UnsafeMutablePointer<Float>) {
        precondition(elements.lowerBound % Kernels.block == 0, "ranges start at a block")
        var start = elements.lowerBound
        while start < elements.upperBound {
            let r = start..<min(elements.upperBound, start + Kernels.block)
            let offset = start - elements.lowerBound
            mergeBlock(r, base: base.map { $0 + offset }, experts: experts.map { $0 + offset }, into: out + offset)
            start = r.upperBound
        }
    }

    /// ``finish()``, refusing a tensor one of whose inputs holds NaN or ±inf, or whose merge
    /// overflowed float32 (±inf or NaN from finite inputs: a weight or λ too large, or a zero
    /// denominator), which would otherwise be committed as such.
    public func finishChecked(_ name: String) throws -> ConflictMetrics {
        let found = nonFiniteInputs.load(ordering: .relaxed)
        if found != 0 { throw TensorStream.nonFiniteError(name, found: found, experts: expertNames) }
        if overflowed.load(ordering: .relaxed) {
            throw MergeError.tensor(name: name, problem: "the merge gives values beyond float32's range (±inf or NaN) where every input is finite: check the weights, λ and density; nothing was written")
        }
        return finish()
    }

    /// Which of `count` values of the inputs hold NaN or ±inf: bit 0 the base (nil: not read by the
    /// method), bit i + 1 expert i (bit 63 for expert 62 and later).
    static func nonFiniteInputs(base: UnsafePointer<Float>?, experts: [UnsafePointer<Float>], count: Int) -> UInt64 {
        var found: UInt64 = 0
        if let base, FloatConversion.holdsNonFinite(base, count: count) { found |= 1 }
        for (i, e) in experts.enumerated() where FloatConversion.holdsNonFinite(e, count: count) { found |= 1 << UInt64(min(i + 1, 63)) }
        return found
    }

    /// The error for inputs found holding NaN or ±inf, naming the first.
    private static func nonFiniteError(_ name: String, found: UInt64, experts expertNames: [String]) -> MergeError {
        var which = "an expert"
        if found & 1 != 0 {
            which = "the merge base"
        } else if let bit = (1..<63).first(where: { found & (UInt64(1) << UInt64($0)) != 0 }), bit - 1 < expertNames.count {
            which = "expert '\(expertNames[bit - 1])'"
        } else if found & (UInt64(1) << 63) != 0 {
            which = "an expert from the 63rd on"
        }
        return MergeError.nonFiniteInput(tensor: name, which)
    }

    /// The tensor's metrics, with the method's kept fractions and notes, once every block is merged.
    public func finish() -> ConflictMetrics {
        let (kept, notes) = merger.finish()
        return accumulator.finish(keptFraction: kept, notes: notes)
    }

    /// Elements per block: ranges fed to ``mergeRange(_:base:experts:into:)`` start at multiples of it.
    public static var blockElements: Int { Kernels.block }
}

extension MergePlan {
    /// Consensus masks, then LiNeS scaling, on one block of the merged task vector τ_M = θ_M − θ₀
    /// (`merged` holds the block; every pointer is at the block's first element).
    static func postprocess(count: Int, base b: UnsafePointer<Float>, experts xs: [UnsafePointer<Float>], merged: UnsafeMutablePointer<Float>,
                            consensus: (k: Int, lambda: Float)?, lines: Float?) {
        for j in 0..<count {
            var tau = merged[j] - b[j]
            if let c = consensus {
                var count = 0
                for e in xs where ConflictMetrics.tallSelects(e[j] - b[j], merged: tau, lambda: c.lambda) { count += 1 }
                if count < c.k { tau = 0 }
            }
            if let f = lines { tau *= f }
            merged[j] = b[j] + tau
        }
    }
}

/// A method without a block form: its whole result, handed out block by block.
private final class ArrayMerger: BlockMerger, Sendable {
    let output: TensorMergeOutput

    init(_ output: TensorMergeOutput, count: Int) throws {
        guard output.values.count == count else {
            throw MergeError.invalidInputs(method: "merge", problem: "the method returned \(output.values.count) values for \(count) elements")
        }
        self.output = output
    }

    func mergeBlock(_ r: Range<Int>, base: UnsafePointer<Float>?, experts: [UnsafePointer<Float>], into out: UnsafeMutablePointer<Float>) {
        output.values.withUnsafeBufferPointer { out.update(from: $0.baseAddress! + r.lowerBound, count: r.count) }
    }

    func finish() -> (keptFraction: [Double]?, notes: [String: Double]) { (output.keptFraction, output.notes) }
}
