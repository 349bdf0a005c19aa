import Delta
import Foundation

/// How a task vector is thinned before merging (mergekit's `sparsify.py`).
///
/// For the two magnitude rules, the elements whose magnitude equals a threshold are chosen as torch's
/// CPU sort orders them (``TorchSortOrder``), so the kept set is mergekit's; in tensors of more than
/// ``TorchSortOrder/maxCount`` elements the earlier indices among them win instead.
public enum Sparsifier: String, Sendable {
    /// Keep the ⌊ρ·n⌋ largest magnitudes (TIES trim).
    case magnitude
    /// Keep each element with probability ρ (DARE).
    case bernoulli
    /// Drop the largest ⌊γ·n⌋ and the smallest magnitudes, keep ⌊ρ·n⌋ in between (Model Breadcrumbs).
    case magnitudeOutliers
    /// Per row, keep with a probability that grows with magnitude rank, in [ρ−ε, ρ+ε] (DELLA MagPrune).
    case dellaMagprune
}

/// Which elements of one expert's task vector δ = θ − θ₀ survive, and the L1 rescale factor.
///
/// Built in a first pass over the expert and the base, applied element by element in a second,
/// so no task vector is held in memory: a merge needs the inputs and the output only.
/// Random decisions come from one stream per block of ``Kernels/block`` elements (seeded by the
/// tensor's seed, the expert and the block), so both passes, and every thread count, see the same draws.
///
/// The magnitude rules keep exactly mergekit's set. Elements above a threshold magnitude are in,
/// below are out; of the elements equal to it, the ones torch's `argsort`/`sort` puts inside the
/// slice are in. When the first pass finds more threshold-equal elements than are kept, it replays
/// torch's sort (``TorchSortOrder``) and stores the choice as one bit per threshold-equal element,
/// which the second pass reads only at elements equal to the threshold. Tensors of more than
/// ``TorchSortOrder/maxCount`` elements skip the replay and keep the earlier indices among the ties
/// (``positionalTies`` counts such thresholds; merges report it as the note `ties_by_position`).
struct DeltaMask: Sendable {
    enum Rule: Sendable {
        case all
        case top(TopK)
        /// In the top `keep` and not in the top `drop` (Breadcrumbs).
        case band(keep: TopK, drop: TopK)
        /// Precomputed, one byte per element (DELLA's per-row ranks).
        case explicit([UInt8])
        /// Precomputed, one bit per element (DARE's draws, made once in the first pass).
        case bits([UInt64])
    }

    var rule: Rule
    /// Survivors are multiplied by this (the L1 rescale; 1 without it).
    var scale: Float
    var keptFraction: Double
    /// How many thresholds had ties the replay of torch's sort could not settle (tensor above
    /// ``TorchSortOrder/maxCount``), so that the earlier indices among the tied elements were kept.
    var positionalTies = 0

    /// Exact top-k membership by magnitude: the k largest magnitudes, and among the elements equal to
    /// the k-th largest, the ones torch's sort ranks first (see ``DeltaMask``).
    struct TopK: Sendable {
        /// Bit pattern of the k-th largest magnitude.
        var threshold: UInt32
        /// How many elements equal to the threshold are kept.
        var need: Int
        /// Per block: elements equal to the threshold in earlier blocks.
        var equalBefore: [Int]
        var k: Int
        /// How many elements equal the threshold.
        var equalCount: Int
        /// Which threshold-equal elements are kept: bit r for the r-th of them in index order. nil keeps
        /// the first `need` (the same when `need == equalCount`; the positional fallback otherwise).
        var chosen: [UInt64]?

        /// More elements equal the threshold than are kept: which ones is the sort's choice.
        var isAmbiguous: Bool { need > 0 && need < equalCount }

        /// Elements equal to the threshold in each block (what ``TorchSortOrder/tieSplits(_:_:descending:cuts:limit:blockCounts:)``
        /// would otherwise count in a pass of its own).
        var blockCounts: [Int] {
            equalBefore.indices.map { b in (b + 1 < equalBefore.count ? equalBefore[b + 1] : equalCount) - equalBefore[b] }
        }
    }

    /// Per-block state of the second pass: every constant the hot loop needs, as plain scalars
    /// (no arrays or enum payloads are touched per element).
    struct Cursor {
        /// 0 all, 1 top, 2 band, 4 explicit, 5 bits (see ``DeltaMask/cursor(block:)``).
        var kind: UInt8 = 0
        var threshold1: UInt32 = 0, rankBase1 = 0, need1 = 0
        var threshold2: UInt32 = 0, rankBase2 = 0, need2 = 0
        /// ``TopK/chosen`` of each threshold (nil: the first `need`).
        var chosen1: UnsafePointer<UInt64>?, chosen2: UnsafePointer<UInt64>?
        var explicit: UnsafePointer<UInt8>?
        var words: UnsafePointer<UInt64>?
    }

    static func magnitudeBits(_ e: Float, _ b: Float) -> UInt32 { (e - b).bitPattern & 0x7FFF_FFFF }

    // MARK: - Building

    /// First pass: decides the rule and measures the L1 norms for the rescale.
    static func build(_ sparsifier: Sparsifier?, expert: UnsafeBufferPointer<Float>, base: UnsafeBufferPointer<Float>,
                      density: Double, gamma: Double, epsilon: Double, rows: Int, rescale: Bool, seed: UInt64,
                      name: String, expertName: String? = nil) throws -> DeltaMask {
        let n = expert.count
        if let mask = independentOfValues(sparsifier, count: n, density: density, rescale: rescale, seed: seed) { return mask }
        guard let sparsifier else { return DeltaMask(rule: .all, scale: 1, keptFraction: 1) }
        let rule: Rule
        var positionalTies = 0
        switch sparsifier {
        case .magnitude:
            // mergekit 0.1.5: a positive density keeps at least one element of a non-empty tensor.
            let k = max(1, Int((density * Double(n)).rounded(.down)))
            let (top, positional) = magnitudeTop(expert, base, k: k)
            rule = .top(top)
            positionalTies = positional
        case .bernoulli:
            rule = .bits(bernoulliBits(n, p: density, seed: seed))
        case .magnitudeOutliers:
            let target = Int((density * Double(n)).rounded(.down))
            var nTop = Int((gamma * Double(n)).rounded(.down))
            var nBot = n - target - nTop
            if nBot < 0 {
                nTop += nBot
                nBot = 0
            }
            let band = outlierBand(expert, base, below: nBot, kept: target)
            rule = .band(keep: band.keep, drop: band.drop)
            positionalTies = band.positional
        case .dellaMagprune:
            guard density - epsilon > 0, density + epsilon < 1 else {
                let who = expertName.map { "expert '\($0)', " } ?? ""
                throw MergeError.tensor(name: name, problem: "DELLA needs 0 < density − epsilon and density + epsilon < 1 (\(who)density \(density), epsilon \(epsilon))")
            }
            rule = .explicit(dellaMask(expert, base, density: density, epsilon: epsilon, rows: rows, seed: seed))
        }
        var mask = DeltaMask(rule: rule, scale: 1, keptFraction: 1, positionalTies: positionalTies)
        if !rescale {
            // The kept fraction is exact for top-k; random and banded rules report it from the merge pass.
            switch rule {
            case let .top(t): mask.keptFraction = Double(t.k) / Double(n)
            case let .bits(words): mask.keptFraction = Double(words.reduce(0) { $0 + $1.nonzeroBitCount }) / Double(n)
            default: mask.keptFraction = .nan
            }
            return mask
        }
        // Second look: how many survive, and the L1 norms before and after.
        let blocks = (n + Kernels.block - 1) / Kernels.block
        var partial = [(kept: Int, before: Double, after: Double)](repeating: (0, 0, 0), count: blocks)
        partial.withUnsafeMutableBufferPointer { out in
            let o = UnsafeSendable(out), e = UnsafeSendable(expert), b = UnsafeSendable(base), m = mask
            Kernels.blocks(n) { r in
                let blockIndex = r.lowerBound / Kernels.block
                o.value[blockIndex] = m.withCursor(block: blockIndex) { cursor -> (kept: Int, before: Double, after: Double) in
                var kept = 0, before = 0.0, after = 0.0
                if let words = cursor.words {
                    // Precomputed draws: branch-free sums in four Double lanes.
                    var b4 = SIMD4<Double>(), a4 = SIMD4<Double>()
                    var j = r.lowerBound
                    while j + 4 <= r.upperBound {
                        let d = SIMD4<Float>(e.value[j] - b.value[j], e.value[j + 1] - b.value[j + 1], e.value[j + 2] - b.value[j + 2], e.value[j + 3] - b.value[j + 3])
                        let a = SIMD4<Double>(Double(abs(d[0])), Double(abs(d[1])), Double(abs(d[2])), Double(abs(d[3])))
                        let word = words[j >> 6] >> UInt64(j & 63)
                        let bits = SIMD4<Double>(Double(word & 1), Double(word >> 1 & 1), Double(word >> 2 & 1), Double(word >> 3 & 1))
                        b4 += a
                        a4 += a * bits
                        kept &+= (word & 0xF).nonzeroBitCount
                        j += 4
                    }
                    before = b4.sum()
                    after = a4.sum()
                    while j < r.upperBound {
                        let a = Double(abs(e.value[j] - b.value[j]))
                        let bit = words[j >> 6] >> UInt64(j & 63) & 1
                        before += a
                        after += bit != 0 ? a : 0
                        kept &+= Int(bit)
                        j += 1
                    }
                } else {
                    for j in r {
                        let d = e.value[j] - b.value[j]
                        let a = Double(abs(d))
                        before += a
                        if DeltaMask.keep(&cursor, d, j) {
                            kept += 1
                            after += a
                        }
                    }
                }
                return (kept, before, after)
                }
            }
        }
        let kept = partial.reduce(0) { $0 + $1.kept }
        let before = partial.reduce(0.0) { $0 + $1.before }, after = partial.reduce(0.0) { $0 + $1.after }
        mask.keptFraction = Double(kept) / Double(n)
        if before >= 1e-7, after >= 1e-7 { mask.scale = Float(before / after) }
        return mask
    }

    /// The mask when it does not depend on the task vector's values (no sparsifier, density 1, or
    /// DARE's draws without the rescale), as ``build(_:expert:base:density:gamma:epsilon:rows:rescale:seed:name:)``
    /// would make it; nil when it does. Such a mask lets a tensor be merged a range at a time.
    static func independentOfValues(_ sparsifier: Sparsifier?, count n: Int, density: Double, rescale: Bool, seed: UInt64) -> DeltaMask? {
        guard let sparsifier, density < 1, n > 0 else { return DeltaMask(rule: .all, scale: 1, keptFraction: 1) }
        guard sparsifier == .bernoulli, !rescale else { return nil }
        let words = bernoulliBits(n, p: density, seed: seed)
        return DeltaMask(rule: .bits(words), scale: 1, keptFraction: Double(words.reduce(0) { $0 + $1.nonzeroBitCount }) / Double(n))
    }

    /// TIES' trim: the k largest magnitudes of e − b, as mergekit's `argsort(|δ|, descending=True)[:k]`
    /// keeps them. Returns how many thresholds fell back to the positional rule (0 or 1): tensors of
    /// more than `limit` elements (``TorchSortOrder/maxCount``; tests lower it).
    static func magnitudeTop(_ e: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>, k: Int,
                             limit: Int = TorchSortOrder.maxCount) -> (TopK, positional: Int) {
        var top = topK(e, b, k: k)
        guard top.isAmbiguous else { return (top, 0) }
        guard let splits = TorchSortOrder.tieSplits(e, b, descending: true, cuts: [.init(boundary: top.k, tie: top.threshold)],
                                                    limit: limit, blockCounts: [top.threshold: top.blockCounts]) else {
            return (top, 1)
        }
        top.chosen = splits[0].before
        return (top, 0)
    }

    /// Breadcrumbs' band: mergekit keeps `sort(|δ|).indices[below : below + kept]` (ascending), i.e. the
    /// top n − below magnitudes (`keep`) minus the top n − below − kept (`drop`). Among ties at either
    /// threshold, the top sets hold the elements torch's ascending sort puts at or after the slice's
    /// start (`keep`) or end (`drop`). `positional` counts thresholds that fell back to the positional rule
    /// (tensors of more than `limit` elements).
    static func outlierBand(_ e: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>, below: Int, kept: Int,
                            limit: Int = TorchSortOrder.maxCount) -> (keep: TopK, drop: TopK, positional: Int) {
        let n = e.count
        // Both thresholds come from one histogram of the top bits (when either needs one).
        let high = [n - below, n - below - kept].contains { $0 > 0 && $0 < n } ? histogram(e, b, within: nil).counts : nil
        var keep = topK(e, b, k: n - below, high: high), drop = topK(e, b, k: n - below - kept, high: high)
        var cuts: [TorchSortOrder.Cut] = []
        if keep.isAmbiguous { cuts.append(.init(boundary: below, tie: keep.threshold)) }
        if drop.isAmbiguous { cuts.append(.init(boundary: below + kept, tie: drop.threshold)) }
        guard !cuts.isEmpty else { return (keep, drop, 0) }
        let known = [keep.threshold: keep.blockCounts].merging([drop.threshold: drop.blockCounts]) { first, _ in first }
        guard let splits = TorchSortOrder.tieSplits(e, b, descending: false, cuts: cuts, limit: limit, blockCounts: known) else {
            return (keep, drop, cuts.count)
        }
        var next = 0
        if keep.isAmbiguous {
            keep.chosen = splits[next].after
            next += 1
        }
        if drop.isAmbiguous { drop.chosen = splits[next].after }
        return (keep, drop, 0)
    }

    /// The k largest magnitudes of e − b: a radix select on the bit patterns, then the count of
    /// threshold-equal elements per block. Among the threshold-equal elements the first `need` are
    /// marked kept; ``magnitudeTop(_:_:k:)`` and ``outlierBand(_:_:below:kept:)`` settle them as torch does.
    /// `high`: the histogram of the top 16 bits, when the caller has it (Breadcrumbs' two thresholds share it).
    static func topK(_ e: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>, k: Int, high: [Int]? = nil) -> TopK {
        let n = e.count
        let blocks = (n + Kernels.block - 1) / Kernels.block
        if k >= n { return TopK(threshold: 0, need: n, equalBefore: [Int](repeating: 0, count: blocks), k: n, equalCount: n) }
        if k <= 0 { return TopK(threshold: UInt32.max, need: 0, equalBefore: [Int](repeating: 0, count: blocks), k: 0, equalCount: 0) }
        // Pass 1: top 16 bits.
        let high = high ?? histogram(e, b, within: nil).counts
        var remaining = k
        var bucket = (1 << 16) - 1
        while bucket > 0, high[bucket] < remaining {
            remaining -= high[bucket]
            bucket -= 1
        }
        let hb = UInt32(bucket)
        var greater = k - remaining
        // Pass 2: low 16 bits inside that bucket. When the bucket holds few elements (and blocks are
        // numbered in 16 bits), the pass also keeps each one's block and low bits, from which the
        // threshold-equal elements are counted per block without a third pass.
        let gather = high[bucket] <= n / 4 && blocks <= 1 << 16
        let (low, candidates) = histogram(e, b, within: hb, gather: gather)
        var sub = (1 << 16) - 1
        while sub > 0, low[sub] < remaining {
            remaining -= low[sub]
            greater += low[sub]
            sub -= 1
        }
        let threshold = hb << 16 | UInt32(sub)
        var equal = [Int](repeating: 0, count: blocks)
        if let candidates {
            let mark = UInt32(sub)
            for part in candidates {
                for c in part where c & 0xFFFF == mark { equal[Int(c >> 16)] += 1 }
            }
        } else {
            // Pass 3: elements equal to the threshold, per block.
            equal.withUnsafeMutableBufferPointer { out in
                let o = UnsafeSendable(out), x = UnsafeSendable(e), y = UnsafeSendable(b)
                Kernels.blocks(n) { r in
                    var c = 0
                    for j in r where magnitudeBits(x.value[j], y.value[j]) == threshold { c += 1 }
                    o.value[r.lowerBound / Kernels.block] = c
                }
            }
        }
        var before = [Int](repeating: 0, count: blocks)
        for i in 1..<max(blocks, 1) { before[i] = before[i - 1] + equal[i - 1] }
        return TopK(threshold: threshold, need: k - greater, equalBefore: before, k: k,
                    equalCount: blocks > 0 ? before[blocks - 1] + equal[blocks - 1] : 0)
    }

    /// A 65536-bin histogram of the magnitudes' bits, computed on every core: of the top 16 bits
    /// (`within == nil`), or of the low 16 bits of magnitudes whose top 16 bits are `within`. With
    /// `gather` (and `within`), also each counted element as `block << 16 | low bits`, per part.
    static func histogram(_ e: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>, within: UInt32?,
                          gather: Bool = false) -> (counts: [Int], gathered: [[UInt32]]?) {
        let n = e.count
        // 32-bit bins (half the cache of Int's): a part covers fewer than 2³² elements.
        let parts = max(1, min(Parallel.workerCount, n / Kernels.block), (n >> 31) + 1)
        let counts = UnsafeMutablePointer<UInt32>.allocate(capacity: parts << 16)
        counts.initialize(repeating: 0, count: parts << 16)
        defer { counts.deallocate() }
        // One list per part, each written by its part only.
        let lists = UnsafeMutablePointer<[UInt32]>.allocate(capacity: parts)
        lists.initialize(repeating: [], count: parts)
        defer { lists.deinitialize(count: parts).deallocate() }
        let o = UnsafeSendable(counts), g = UnsafeSendable(lists), x = UnsafeSendable(e), y = UnsafeSendable(b)
        try? Parallel.forEach(parts) { part, _ in
            let start = n * part / parts, end = n * (part + 1) / parts
            let h = o.value + (part << 16)
            let xp = x.value.baseAddress!, yp = y.value.baseAddress!
            if let high = within {
                if gather {
                    var list: [UInt32] = []
                    for j in start..<end {
                        let bits = magnitudeBits(xp[j], yp[j])
                        if bits >> 16 == high {
                            h[Int(bits & 0xFFFF)] &+= 1
                            list.append(UInt32(j / Kernels.block) << 16 | bits & 0xFFFF)
                        }
                    }
                    g.value[part] = list
                } else {
                    for j in start..<end {
                        let bits = magnitudeBits(xp[j], yp[j])
                        if bits >> 16 == high { h[Int(bits & 0xFFFF)] &+= 1 }
                    }
                }
            } else {
                for j in start..<end { h[Int(magnitudeBits(xp[j], yp[j]) >> 16)] &+= 1 }
            }
        }
        var total = [Int](repeating: 0, count: 1 << 16)
        for part in 0..<parts {
            for i in 0..<(1 << 16) { total[i] += Int(counts[(part << 16) + i]) }
        }
        return (total, gather ? Array(UnsafeBufferPointer(start: lists, count: parts)) : nil)
    }

    /// DARE's keep decisions, one bit per element, drawn block by block (the stream of a block
    /// depends only on the seed and the block index): element kept when its 32-bit draw is below p·2³².
    static func bernoulliBits(_ n: Int, p: Double, seed: UInt64) -> [UInt64] {
        var bits = [UInt64](repeating: 0, count: (n + 63) / 64)
        let below = UInt64((min(max(p, 0), 1) * 4_294_967_296).rounded(.down))
        bits.withUnsafeMutableBufferPointer { out in
            let o = UnsafeSendable(out)
            Kernels.blocks(n) { r in
                var rng = SeededRandom(seed: seed, stream: "bernoulli", index: UInt64(r.lowerBound / Kernels.block))
                var j = r.lowerBound
                // Blocks start at multiples of 64, so each word belongs to one block.
                while j < r.upperBound {
                    // 32 draws of 64 bits give 64 decisions: each draw's low half, then its high half.
                    var word: UInt64 = 0
                    for pair in 0..<32 {
                        let draw = rng.next()
                        let low: UInt64 = draw & 0xFFFF_FFFF < below ? 1 : 0
                        let high: UInt64 = draw >> 32 < below ? 1 : 0
                        word |= low << UInt64(2 * pair) | high << UInt64(2 * pair + 1)
                    }
                    let end = min(r.upperBound, j + 64)
                    if end - j < 64 { word &= (1 << UInt64(end - j)) - 1 }
                    o.value[j >> 6] = word
                    j = end
                }
            }
        }
        return bits
    }

    /// DELLA's keep decisions: per row, rank by magnitude (ties by position) and draw with
    /// probability (ρ−ε) + 2ε·rank/(C−1). One random stream per row.
    static func dellaMask(_ e: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>, density: Double, epsilon: Double,
                          rows: Int, seed: UInt64) -> [UInt8] {
        let n = e.count
        let r = max(1, rows)
        let c = n / r
        var mask = [UInt8](repeating: 0, count: n)
        mask.withUnsafeMutableBufferPointer { out in
            let o = UnsafeSendable(out), x = UnsafeSendable(e), y = UnsafeSendable(b)
            try? Parallel.forEach(r) { row, _ in
                let start = row * c
                let magnitude = (0..<c).map { abs(x.value[start + $0] - y.value[start + $0]) }
                let order = (0..<c).sorted { (magnitude[$0], $0) < (magnitude[$1], $1) }
                var rng = SeededRandom(seed: seed, stream: "della-row", index: UInt64(row))
                var decisions = [UInt8](repeating: 0, count: c)
                for (rank, j) in order.enumerated() {
                    let position = c > 1 ? Double(rank) / Double(c - 1) : 0.5
                    decisions[j] = rng.uniform() < (density - epsilon) + 2 * epsilon * position ? 1 : 0
                }
                for j in 0..<c { o.value[start + j] = decisions[j] }
            }
        }
        return mask
    }
}
