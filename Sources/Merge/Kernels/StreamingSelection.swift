import Delta
import Synchronization

/// A tensor's first pass (or passes) run over its inputs fed a chunk at a time, deciding what the
/// range-wise merge that follows needs: TIES' thresholds (``StreamingSelection``), Model Stock's
/// Gram tables (``ModelStock/passes(plan:context:count:expertCount:chunkElements:)``).
public protocol ChunkPasses: AnyObject, Sendable {
    /// Whether another pass over the inputs is needed.
    var needsPass: Bool { get }
    /// Whether ``observe(_:base:experts:)`` must see the chunks one at a time, in element order
    /// (its sums keep their order); otherwise chunks may come in any order, on any thread.
    var ordered: Bool { get }
    /// Whether keeping the first pass's decoded inputs for the later passes and the merge (the
    /// passes' spill) saves time: more than one decoding is saved. With a single pass the spill
    /// saves one decoding, and writing then reading back the chunks cost as much on the machines
    /// measured (docs/benchmarks.md, mspeed5).
    var spillPays: Bool { get }
    /// Feeds elements `elements` (whole blocks from a block boundary; the last may be short) of the
    /// base and of every expert (recipe order; pointers at `elements.lowerBound`) to the current pass.
    func observe(_ elements: Range<Int>, base: UnsafePointer<Float>, experts: [UnsafePointer<Float>])
    /// The same for bf16 inputs read as they are stored (no Float32 copies); false when the current
    /// pass wants ``observe(_:base:experts:)`` instead.
    func observe(_ elements: Range<Int>, bf16Base base: UnsafePointer<UInt16>, experts: [UnsafePointer<UInt16>]) -> Bool
    /// Ends the current pass (every chunk observed once) and readies the next one, if any.
    func endPass()
    /// The tensor's merge, once every pass is done, to be fed a range at a time.
    func stream() throws -> TensorStream
    /// Forgets what the passes found (the tensor is merged), so that a long run's memory does not
    /// grow with every tensor it has finished.
    func release()
}

/// TIES' trim decided from inputs fed a chunk at a time, in a few passes, without holding a tensor whole.
///
/// Why: the magnitude threshold of a task vector is its k-th largest |δ| over the whole tensor, so
/// the whole-input path holds every input of the tensor (and its Float32 copy): 7 GB for the
/// 128256 × 3072 embedding of a 3B bf16 model. The same decision takes passes over the inputs, each
/// fed chunk by chunk in any order and on any thread (``observe(_:base:experts:)``):
///
/// 1. a 65536-bin histogram of the top 16 bits of every expert's |δ| bit patterns (their order is
///    the order of the magnitudes), which fixes the threshold's top half;
/// 2. a histogram of the low 16 bits inside that bucket: the threshold, how many elements equal it
///    and how many of those are kept, exactly as ``DeltaMask/topK(_:_:k:)`` finds them;
/// 3. only when some of the elements equal to the threshold are kept and others not: each block's
///    count of them (their ranks in index order) and, for tensors of at most
///    ``TorchSortOrder/maxCount`` elements, the replay's items (4 bytes per element, written in place
///    by each chunk), so that torch's sort settles the ties as it does for the whole-input path
///    (reference §11). Experts are replayed a group at a time within ``replayBudget`` bytes.
///
/// The masks are then the ones ``DeltaMask/build(_:expert:base:density:gamma:epsilon:rows:rescale:seed:name:)``
/// makes from whole inputs, bit for bit, and the tensor is merged a range at a time.
///
/// A tensor whose ties would be replayed, and whose experts' magnitudes fit ``replayBudget`` at
/// 4 bytes each (a 3B model's MLP projections: 100 MB per expert), takes one pass only (``keyed``):
/// the first pass keeps every magnitude's bits as it makes the top-bits histogram, and the low-bits
/// histogram, the tied elements' counts and the replay's items are then made from those bits in
/// memory, not by reading every input again (``StreamingSelection+Keys.swift``).
public final class StreamingSelection: ChunkPasses {
    /// Bytes of replay items held at once (one expert's are always allowed); also the bound of a
    /// one-pass selection's magnitudes (``keyed``), which become the replay's items.
    public static let replayBudget = 512 << 20

    let plan: MergePlan
    let context: TensorContext
    let n: Int
    let blockCount: Int
    /// Per expert: how many magnitudes it keeps, nil when it keeps every delta.
    let ks: [Int?]
    let makeMerger: @Sendable ([DeltaMask]) -> any BlockMerger
    /// Tensors above this many elements settle ties by position (``TorchSortOrder/maxCount``; tests lower it).
    let replayLimit: Int
    /// Whether the first pass keeps every selecting expert's magnitude bits, so that it is the only
    /// pass over the inputs (see the type's notes).
    let keyed: Bool
    let state: Mutex<State>

    enum Pass: Sendable { case high, low, ties, done }

    /// One expert's threshold once found.
    struct Found: Sendable {
        var top: DeltaMask.TopK
        var positional = 0
    }

    struct State {
        var pass = Pass.high
        var high: [[Int]]
        var low: [[Int]]
        /// Per expert: the top-16-bit bucket of the threshold, the kept elements still to place in it, and those above it.
        var bucket: [(high: UInt32, remaining: Int, greater: Int)?]
        var found: [Found?]
        /// Ambiguous experts waiting for a tie pass, and those in the current one.
        var waiting: [Int] = []
        var group: [Int] = []
        /// Per expert in the group: elements equal to the threshold, per block.
        var equal: [[Int]] = []
        /// Per expert in the group: the replay's items (nil: ties are settled by position).
        var items: [UnsafeMutablePointer<UInt32>?] = []
        /// A one-pass selection's magnitude bits, per expert (nil: the expert selects nothing), from
        /// its pass until they become the replay's items or are freed.
        var keys: [UnsafeMutablePointer<UInt32>?] = []
    }

    /// A tensor's selection for `plan`, or nil when its method's first pass is not a magnitude trim
    /// that passes can decide (another method, a rescale, `--balance norm`).
    /// `keyBudget` bounds the magnitudes a one-pass selection keeps (``replayBudget``; tests set 0
    /// to take the passes).
    public static func make(plan: MergePlan, context: TensorContext, count n: Int, expertCount: Int,
                            replayLimit: Int? = nil, keyBudget: Int = replayBudget) -> StreamingSelection? {
        guard n > 0, plan.recipe.balance != .norm, let method = plan.instance as? any StreamableTrim,
              let trim = method.streamingTrim(context, parameters: plan.parameterSet, expertCount: expertCount, count: n),
              trim.ks.contains(where: { $0 != nil }) else { return nil }
        return StreamingSelection(plan: plan, context: context, count: n, ks: trim.ks, replayLimit: replayLimit ?? TorchSortOrder.maxCount,
                                  keyBudget: keyBudget, makeMerger: trim.merger)
    }

    init(plan: MergePlan, context: TensorContext, count n: Int, ks: [Int?], replayLimit: Int, keyBudget: Int = replayBudget,
         makeMerger: @escaping @Sendable ([DeltaMask]) -> any BlockMerger) {
        self.replayLimit = replayLimit
        self.plan = plan
        self.context = context
        self.n = n
        self.ks = ks
        self.makeMerger = makeMerger
        blockCount = (n + Kernels.block - 1) / Kernels.block
        let selecting = ks.map { $0.map { $0 < n } ?? false }
        let selectingCount = selecting.filter { $0 }.count
        keyed = n <= replayLimit && selectingCount > 0 && 4 * n <= keyBudget / selectingCount
        // The histograms are made by the first pass: every tensor's selection is made before
        // any runs (85 of them, 1 MB each, for a 3B model).
        state = Mutex(State(high: ks.map { _ in [] },
                            low: ks.map { _ in [] }, bucket: ks.map { _ in nil },
                            found: ks.enumerated().map { i, k in
                                // k ≥ n keeps everything, as DeltaMask.topK decides it.
                                guard k != nil, !selecting[i] else { return nil }
                                return Found(top: DeltaMask.TopK(threshold: 0, need: n, equalBefore: [Int](repeating: 0, count: (n + Kernels.block - 1) / Kernels.block),
                                                                 k: n, equalCount: n))
                            }))
        if !selecting.contains(true) { state.withLock { $0.pass = .done } }
    }

    deinit {
        state.withLock { s in
            for p in s.items { p?.deallocate() }
            for p in s.keys { p?.deallocate() }
        }
    }

    /// Whether another pass over the inputs is needed.
    public var needsPass: Bool { state.withLock { $0.pass != .done } }

    /// Forgets the thresholds found (the tensor is merged): the selection is done.
    public func release() {
        state.withLock { s in
            for p in s.items { p?.deallocate() }
            for p in s.keys { p?.deallocate() }
            s = State(pass: .done, high: [], low: [], bucket: [], found: [], waiting: [], group: [], equal: [], items: [], keys: [])
        }
    }

    /// Histograms and counts: chunks in any order.
    public var ordered: Bool { false }

    /// Two or three passes, then the merge.
    public var spillPays: Bool { true }

    /// Feeds elements `elements` (whole blocks from a block boundary; the last may be short) of the
    /// base and of every expert (recipe order; pointers at `elements.lowerBound`) to the current pass.
    public func observe(_ elements: Range<Int>, base: UnsafePointer<Float>, experts: [UnsafePointer<Float>]) {
        precondition(elements.lowerBound % Kernels.block == 0, "ranges start at a block")
        let (pass, bucket, group, found, items, keys) = state.withLock { s in
            if keyed, s.pass == .high, s.keys.isEmpty { s.keys = allocateKeys(s.found) }
            return (s.pass, s.bucket, s.group, s.found, s.items.map { UnsafeSendable($0) }, s.keys.map { UnsafeSendable($0) })
        }
        let count = elements.count
        switch pass {
        case .done:
            return
        case .high, .low:
            histogramPass(pass, elements, bucket: bucket, found: found, keys: keys, base: base, experts: experts) {
                DeltaMask.magnitudeBits($0, $1)
            }
        case .ties:
            let firstBlock = elements.lowerBound / Kernels.block
            let blocks = (count + Kernels.block - 1) / Kernels.block
            var counts = [[Int]](repeating: [Int](repeating: 0, count: blocks), count: group.count)
            for (g, i) in group.enumerated() {
                let x = experts[i]
                let top = found[i]!.top
                let t = top.threshold
                // The replay's keys (descending sort as an ascending one on complemented magnitudes)
                // with the tied elements numbered from 0 in each block; endPass adds the earlier blocks' counts.
                let tie = t ^ 0x7FFF_FFFF, widen = UInt32(max(top.equalCount - 1, 0))
                for b in 0..<blocks {
                    let lo = b * Kernels.block, hi = min(count, lo + Kernels.block)
                    var c = 0
                    if let out = items[g].value.map({ $0 + elements.lowerBound }) {
                        for j in lo..<hi {
                            let key = DeltaMask.magnitudeBits(x[j], base[j]) ^ 0x7FFF_FFFF
                            if key == tie {
                                out[j] = tie &+ UInt32(c)
                                c += 1
                            } else {
                                out[j] = key > tie ? key &+ widen : key
                            }
                        }
                    } else {
                        for j in lo..<hi where DeltaMask.magnitudeBits(x[j], base[j]) == t { c += 1 }
                    }
                    counts[g][b] = c
                }
            }
            state.withLock { s in
                for g in group.indices {
                    for b in 0..<blocks { s.equal[g][firstBlock + b] = counts[g][b] }
                }
            }
        }
    }

    /// Adds one chunk's histograms (per expert) to the pass's.
    func add(_ local: [(Int, [UInt32])], pass: Pass) {
        state.withLock { s in
            for (i, h) in local {
                if pass == .high {
                    if s.high[i].isEmpty { s.high[i] = [Int](repeating: 0, count: 1 << 16) }
                    for v in 0..<(1 << 16) where h[v] != 0 { s.high[i][v] += Int(h[v]) }
                } else {
                    for v in 0..<(1 << 16) where h[v] != 0 { s.low[i][v] += Int(h[v]) }
                }
            }
        }
    }

    /// Ends the current pass (every chunk observed once) and readies the next one, if any.
    public func endPass() {
        state.withLock { s in
            switch s.pass {
            case .done:
                return
            case .high:
                for i in ks.indices {
                    guard let k = ks[i], s.found[i] == nil else { continue }
                    if s.high[i].isEmpty { s.high[i] = [Int](repeating: 0, count: 1 << 16) }
                    var remaining = k, b = (1 << 16) - 1
                    while b > 0, s.high[i][b] < remaining {
                        remaining -= s.high[i][b]
                        b -= 1
                    }
                    s.bucket[i] = (UInt32(b), remaining, k - remaining)
                    s.low[i] = [Int](repeating: 0, count: 1 << 16)
                    s.high[i] = []
                }
                guard keyed else {
                    s.pass = .low
                    return
                }
                // One pass: the rest is decided from the kept bits.
                lowFromKeys(&s)
                settleLow(&s)
                tiesFromKeys(&s)
                s.pass = .done
                return
            case .low:
                settleLow(&s)
            case .ties:
                settleTies(&s)
            }
            startTiePass(&s)
        }
    }

    /// After the low-bits histogram: each selecting expert's threshold; those whose tied elements
    /// are partly kept wait for a tie pass.
    func settleLow(_ s: inout State) {
        for i in ks.indices {
            guard let k = ks[i], s.found[i] == nil, let b = s.bucket[i] else { continue }
            var remaining = b.remaining, greater = b.greater, sub = (1 << 16) - 1
            while sub > 0, s.low[i][sub] < remaining {
                remaining -= s.low[i][sub]
                greater += s.low[i][sub]
                sub -= 1
            }
            let top = DeltaMask.TopK(threshold: b.high << 16 | UInt32(sub), need: k - greater,
                                     equalBefore: [Int](repeating: 0, count: blockCount), k: k, equalCount: s.low[i][sub])
            s.low[i] = []
            s.found[i] = Found(top: top)
            // Which tied elements are kept matters only when some are and some are not.
            if top.isAmbiguous { s.waiting.append(i) }
        }
    }

    /// Starts a tie pass for the next group of waiting experts, or ends the passes.
    private func startTiePass(_ s: inout State) {
        guard !s.waiting.isEmpty else {
            s.pass = .done
            return
        }
        let replay = n <= replayLimit
        var group: [Int] = []
        while let i = s.waiting.first, group.isEmpty || !replay || (group.count + 1) * 4 * n <= Self.replayBudget {
            group.append(i)
            s.waiting.removeFirst()
        }
        s.group = group
        s.equal = group.map { _ in [Int](repeating: 0, count: blockCount) }
        s.items = group.map { _ in replay ? UnsafeMutablePointer<UInt32>.allocate(capacity: n) : nil }
        s.pass = .ties
    }

    /// After a tie pass: each block's rank base, and torch's choice among the tied elements.
    func settleTies(_ s: inout State) {
        var tops: [DeltaMask.TopK] = []
        for (g, i) in s.group.enumerated() {
            var top = s.found[i]!.top
            var before = [Int](repeating: 0, count: blockCount)
            for b in 1..<max(blockCount, 1) { before[b] = before[b - 1] + s.equal[g][b - 1] }
            top.equalBefore = before
            tops.append(top)
        }
        // The replays of the group's experts are independent and each runs on one core (a 3B
        // model's MLP projection: about 0.2 s per expert), so they run side by side.
        let n = self.n
        let items = s.items.map { UnsafeSendable($0) }
        let replayed = s.group.indices.filter { s.items[$0] != nil }
        var chosen = [[UInt64]](repeating: [], count: s.group.count)
        chosen.withUnsafeMutableBufferPointer { out in
            let out = UnsafeSendable(out)
            try? Parallel.forEach(replayed.count) { k, _ in
                let g = replayed[k]
                let top = tops[g], items = items[g].value!
                let tie = top.threshold ^ 0x7FFF_FFFF, width = UInt32(top.equalCount)
                let o = UnsafeSendable(items), starts = top.equalBefore
                Kernels.blocks(n) { r in
                    let add = UInt32(starts[r.lowerBound / Kernels.block])
                    guard add > 0 else { return }
                    for j in r where o.value[j] &- tie < width { o.value[j] &+= add }
                }
                let keys = BandedKeys(ties: [tie], counts: [top.equalCount])
                TorchSortOrder.arrange(items, count: n, boundaries: [top.k], keys: keys)
                out.value[g] = keys.split(items, count: n, key: tie, boundary: top.k).before
            }
        }
        for (g, i) in s.group.enumerated() {
            var top = tops[g]
            guard let items = s.items[g] else {
                // Above TorchSortOrder.maxCount: the earlier indices among the tied elements are kept.
                s.found[i] = Found(top: top, positional: 1)
                continue
            }
            top.chosen = chosen[g]
            s.found[i] = Found(top: top)
            items.deallocate()
        }
        s.items = []
        s.group = []
        s.equal = []
    }

    /// The tensor's merge, once every pass is done, to be fed a range at a time.
    public func stream() throws -> TensorStream {
        let masks = try state.withLock { s -> [DeltaMask] in
            // (No thresholds at all: the selection was released.)
            guard s.pass == .done, s.found.count == ks.count else {
                throw MergeError.tensor(name: context.name, problem: "the magnitude passes are not finished")
            }
            return ks.indices.map { i in
                guard let f = s.found[i] else { return DeltaMask(rule: .all, scale: 1, keptFraction: 1) }
                return DeltaMask(rule: .top(f.top), scale: 1, keptFraction: Double(f.top.k) / Double(n), positionalTies: f.positional)
            }
        }
        return try TensorStream(plan: plan, context: context, count: n, expertCount: ks.count, hasBase: true,
                                wholeBase: nil, wholeExperts: nil, prepared: makeMerger(masks))
    }
}

/// A method whose first pass can be a ``StreamingSelection``.
protocol StreamableTrim {
    /// Per expert, the k of its magnitude trim (nil: keeps every delta), and the second pass from
    /// the masks; nil when the first pass reads anything else of the whole inputs.
    func streamingTrim(_ context: TensorContext, parameters: ParameterSet, expertCount: Int, count: Int)
        -> (ks: [Int?], merger: @Sendable ([DeltaMask]) -> any BlockMerger)?
}

extension GeneralizedTaskArithmetic: StreamableTrim {
    func streamingTrim(_ context: TensorContext, parameters p: ParameterSet, expertCount: Int, count n: Int)
        -> (ks: [Int?], merger: @Sendable ([DeltaMask]) -> any BlockMerger)? {
        guard Configuration.sparsifier == .magnitude, !(p.flag("rescale", context) ?? Configuration.rescaleByDefault) else { return nil }
        let ks: [Int?] = (0..<expertCount).map { i in
            let density = p.number("density", expert: i, context) ?? 1
            // As DeltaMask.build: density 1 keeps all; else at least one element (mergekit 0.1.5).
            return density < 1 ? max(1, Int((density * Double(n)).rounded(.down))) : nil
        }
        let weights = (0..<expertCount).map { Float(p.number("weight", expert: $0, context) ?? 1) }
        let normalize = p.flag("normalize", context) ?? Configuration.normalizeByDefault
        let lambda = Float(p.number("lambda", context) ?? 1)
        return (ks, { masks in Merger(count: n, masks: masks, weights: weights, normalize: normalize, lambda: lambda) })
    }
}
