import Delta

/// Which elements torch's CPU sort puts on each side of given positions, when values tie.
///
/// Why: mergekit trims a task vector δ with torch sorts of its magnitudes: TIES keeps
/// `torch.argsort(|δ|, descending=True)[:k]`, Breadcrumbs keeps `torch.sort(|δ|).indices[nBot : nBot + target]`.
/// Fine-tunes have many exactly equal magnitudes (hundreds of thousands at the threshold of one
/// embedding matrix is common), so *which* tied elements land inside the slice decides the merged
/// values. torch's default (unstable) CPU sort of a float32 vector is libstdc++'s `std::sort` on
/// (value, index) pairs initialised to (xᵢ, i), comparing values only (descending: a > b,
/// ascending: a < b); mrepo replays that sort to keep the same elements.
///
/// `std::sort` is an introsort: while a range holds more than 16 elements, move the median of its
/// second, middle and last elements to its front, partition the rest around it (both scans stop on
/// equal elements and swap them), recurse into the right part and loop on the left, and heap-sort a
/// range once the depth limit (2·⌊log₂ n⌋) is spent; then one insertion sort over everything. The
/// replay does every one of those steps on the same data, with one shortcut: a partition never moves
/// an element across its cut, so a range that contains no boundary already holds the set the full
/// sort would leave there and is not processed further (as in quickselect). The final insertion sort
/// only reorders elements inside the ≤ 16-element ranges the loop left (an element never passes
/// one that does not compare greater, and every element of an earlier range compares less or equal;
/// heap-sorted ranges are already in order), so a leaf range that contains a boundary is
/// insertion-sorted on its own. Expected cost O(n) per boundary (about 0.1 s for 12 M elements);
/// memory 4 bytes per element (``BandedKeys``: each element's key, with the tied elements' identities
/// folded into it).
///
/// Keys are unsigned integers compared as such. mrepo's keys are magnitude bit patterns
/// (`bits & 0x7FFF_FFFF`), whose order is the order of the non-negative floats (NaN above +∞, as
/// torch's comparators put NaN past every number; NaNs of different payloads, equal for torch, differ
/// here); a descending sort is replayed as an ascending one on complemented keys (`0x7FFF_FFFF − bits`),
/// which compares exactly as torch's `a > b` does.
enum TorchSortOrder {
    /// The largest element count replayed: the replay holds 8 bytes per element (2 GiB at this bound).
    /// Larger tensors keep the positional rule (earlier index first) among threshold ties.
    static let maxCount = 1 << 28

    /// libstdc++'s `_S_threshold`: ranges of at most this many elements are left to the final insertion sort.
    static let insertionThreshold = 16

    /// One boundary and the key whose ties it splits.
    struct Cut: Sendable, Equatable {
        /// A sorted position: the question is which elements land in `0..<boundary`.
        var boundary: Int
        /// The key (uncomplemented) of the tied elements to report on.
        var tie: UInt32
    }

    /// Which elements with a given key land before a boundary.
    struct TieSplit: Sendable, Equatable {
        /// How many elements have the key.
        var count: Int
        /// Bit r (of word r / 64, bit r % 64) is set when the r-th element with the key, in index
        /// order, lands before the boundary.
        var before: [UInt64]

        func contains(_ r: Int) -> Bool { before[r >> 6] >> UInt64(r & 63) & 1 != 0 }

        /// The complement within `count`: bit r set when the r-th element lands at or after the boundary.
        var after: [UInt64] {
            var words = before.map { ~$0 }
            if count & 63 != 0, !words.isEmpty { words[words.count - 1] &= (1 << UInt64(count & 63)) - 1 }
            return words
        }
    }

    // MARK: - Magnitudes of a task vector

    /// For each cut, which elements whose magnitude |e − b| has the bit pattern `cut.tie` land before
    /// `cut.boundary` in torch's sort of the magnitudes (descending or ascending). nil when the tensor
    /// has more than `limit` elements (``maxCount``; tests lower it).
    static func tieSplits(_ e: UnsafeBufferPointer<Float>, _ b: UnsafeBufferPointer<Float>, descending: Bool,
                          cuts: [Cut], limit: Int = maxCount, blockCounts known: [UInt32: [Int]] = [:]) -> [TieSplit]? {
        let n = e.count
        guard n <= limit else { return nil }
        let flip: UInt32 = descending ? 0x7FFF_FFFF : 0
        // The tie keys (as sorted), ascending, and how many elements have each, per block: from the
        // caller's count (`known`, by uncomplemented key) when it has one, else by a pass.
        let ties = Array(Set(cuts.map { $0.tie ^ flip })).sorted()
        let blockCount = (n + Kernels.block - 1) / Kernels.block
        let t0 = ties[0], t1 = ties.count > 1 ? ties[1] : UInt32.max
        var counts = [Int](repeating: 0, count: max(1, blockCount * ties.count))
        let x = UnsafeSendable(e), y = UnsafeSendable(b)
        if ties.allSatisfy({ known[$0 ^ flip]?.count == blockCount }) {
            for (t, tie) in ties.enumerated() {
                for (block, c) in known[tie ^ flip]!.enumerated() { counts[block * ties.count + t] = c }
            }
        } else {
            counts.withUnsafeMutableBufferPointer { c in
                let out = UnsafeSendable(c), width = ties.count
                Kernels.blocks(n) { r in
                    let xp = x.value.baseAddress!, yp = y.value.baseAddress!
                    var c0 = 0, c1 = 0
                    for j in r {
                        let k = DeltaMask.magnitudeBits(xp[j], yp[j]) ^ flip
                        c0 &+= k == t0 ? 1 : 0
                        c1 &+= k == t1 ? 1 : 0
                    }
                    let row = out.value.baseAddress! + (r.lowerBound / Kernels.block) * width
                    row[0] = c0
                    if width > 1 { row[1] = c1 }
                }
            }
        }
        let keys = BandedKeys(ties: ties, counts: (0..<ties.count).map { t in stride(from: t, to: counts.count, by: ties.count).reduce(0) { $0 + counts[$1] } })
        // Each tied element's rank among its key's elements starts at the counts of earlier blocks.
        var rankBase = [Int](repeating: 0, count: max(1, blockCount * ties.count))
        for t in ties.indices {
            var running = 0
            for block in 0..<blockCount {
                rankBase[block * ties.count + t] = running
                running += counts[block * ties.count + t]
            }
        }
        let items = UnsafeMutablePointer<UInt32>.allocate(capacity: max(n, 1))
        defer { items.deallocate() }
        let o = UnsafeSendable(items), k = keys
        rankBase.withUnsafeBufferPointer { rb in
            let bases = UnsafeSendable(rb)
            Kernels.blocks(n) { r in
                let row = (r.lowerBound / Kernels.block) * ties.count
                k.items(x.value.baseAddress! + r.lowerBound, y.value.baseAddress! + r.lowerBound, count: r.count, flip: flip,
                        into: o.value + r.lowerBound, rank0: bases.value[row], rank1: ties.count > 1 ? bases.value[row + 1] : 0)
            }
        }
        arrange(items, count: n, boundaries: cuts.map(\.boundary), keys: keys)
        return cuts.map { keys.split(items, count: n, key: $0.tie ^ flip, boundary: $0.boundary) }
    }

    /// The indices torch's sort of |values| puts in positions `0..<boundary`, for each boundary,
    /// in ascending index order (a readable form of the same replay, for tests and small inputs:
    /// items are (key, index) pairs).
    static func indicesBefore(magnitudesOf values: [Float], descending: Bool, boundaries: [Int],
                              depthLimit: Int? = nil) -> [[Int]] {
        let n = values.count
        let flip: UInt32 = descending ? 0x7FFF_FFFF : 0
        var items = values.enumerated().map { j, v in (UInt64((v.bitPattern & 0x7FFF_FFFF) ^ flip) << 32) | UInt64(j) }
        items.withUnsafeMutableBufferPointer { p in
            if let base = p.baseAddress { arrange(base, count: n, boundaries: boundaries, depthLimit: depthLimit, keys: PackedKeys()) }
        }
        return boundaries.map { b in items.prefix(max(0, min(b, n))).map { Int($0 & 0xFFFF_FFFF) }.sorted() }
    }

    // MARK: - The replay

    /// Rearranges `items` (key in the high 32 bits, index in the low 32) so that for every boundary
    /// b, positions `0..<b` hold exactly the elements an ascending `std::sort` on the keys (indices
    /// ignored) would put there. Inside a side of every boundary the order is not the sort's.
    ///
    /// `depthLimit` replaces libstdc++'s 2·⌊log₂ n⌋ (tests use it to reach the heap sort).
    static func arrange<K: SortKeys>(_ a: UnsafeMutablePointer<K.Item>, count n: Int, boundaries: [Int], depthLimit: Int? = nil, keys: K) {
        let cuts = Array(Set(boundaries.filter { $0 > 0 && $0 < n })).sorted()
        guard n > 1, !cuts.isEmpty else { return }
        /// Whether a boundary falls strictly inside first..<last.
        func straddles(_ first: Int, _ last: Int) -> Bool {
            for c in cuts where c > first && c < last { return true }
            return false
        }
        // Ranges still to process, as __introsort_loop would reach them (the order does not matter:
        // they are disjoint).
        var pending: [(first: Int, last: Int, depth: Int)] = [(0, n, depthLimit ?? 2 * (Int.bitWidth - 1 - n.leadingZeroBitCount))]
        while case let (first, end, startDepth)? = pending.popLast() {
            var last = end, depth = startDepth
            var sorted = false
            while last - first > insertionThreshold, straddles(first, last) {
                if depth == 0 {
                    heapSort(a + first, count: last - first, keys)
                    sorted = true
                    break
                }
                depth -= 1
                let cut = partitionAroundPivot(a, first, last, keys)
                pending.append((cut, last, depth))
                last = cut
            }
            if !sorted, last - first <= insertionThreshold, straddles(first, last) {
                insertionSort(a, first, last, keys)
            }
        }
    }

    /// `__unguarded_partition_pivot`: the median of a[first + 1], a[mid], a[last − 1] to a[first],
    /// then `__unguarded_partition(first + 1, last, first)`. Returns the cut.
    ///
    /// The partition's result is fixed by two lists of the range as it was: the left scan's stops
    /// L₁ < L₂ < … (items whose key is not below the pivot's, from first + 1 up) and the right scan's
    /// stops R₁ > R₂ > … (keys not above it, from last − 1 down). The i-th step swaps Lᵢ and Rᵢ while
    /// Lᵢ < Rᵢ; at the first step where that fails the cut is min(Lᵢ, Rᵢ₋₁) (R₀ = last): a scan that
    /// runs past the other's last stop meets an item already swapped there and stops on it. The lists
    /// are found 64 positions at a time without branches (what decides a stop is a comparison with the
    /// pivot, unpredictable), so the swaps, and the cut, are libstdc++'s exactly. A stop read past the
    /// other scan's last stop may see a swapped item; it is never used, as the cut is taken first.
    @inline(__always)
    static func partitionAroundPivot<K: SortKeys>(_ a: UnsafeMutablePointer<K.Item>, _ first: Int, _ last: Int, _ keys: K) -> Int {
        let mid = first + (last - first) / 2
        moveMedianToFirst(a, result: first, first + 1, mid, last - 1, keys)
        // The items whose key is the pivot's are one interval of item values (``SortKeys/bounds(of:)``),
        // so the scans compare items directly: key < pivot's exactly when item < low, and so on.
        let (low, high) = keys.bounds(of: a[first])
        return withUnsafeTemporaryAllocation(of: Int.self, capacity: 2 * partitionBlock) { buffer in
            let stopsL = buffer.baseAddress!, stopsR = stopsL + partitionBlock
            var nextL = first + 1, nextR = last - 1
            var countL = 0, takenL = 0, countR = 0, takenR = 0
            var previousR = last
            while true {
                // Lᵢ: the next left stop below R₍ᵢ₋₁₎, if any.
                while takenL == countL, nextL < previousR {
                    let end = min(nextL + partitionBlock, previousR)
                    countL = 0
                    takenL = 0
                    var p = nextL
                    while p < end {
                        stopsL[countL] = p
                        // A Bool's byte, not a select: the compiler would branch on `? 1 : 0`.
                        countL &+= Int(unsafeBitCast(!(a[p] < low), to: UInt8.self))
                        p += 1
                    }
                    nextL = end
                }
                guard takenL < countL, stopsL[takenL] < previousR else { return previousR }
                let l = stopsL[takenL]
                // Rᵢ: the next right stop above Lᵢ, if any.
                while takenR == countR, nextR > l {
                    let end = max(nextR - partitionBlock, l)
                    countR = 0
                    takenR = 0
                    var p = nextR
                    while p > end {
                        stopsR[countR] = p
                        countR &+= Int(unsafeBitCast(!(high < a[p]), to: UInt8.self))
                        p -= 1
                    }
                    nextR = end
                }
                guard takenR < countR, stopsR[takenR] > l else { return l }
                let r = stopsR[takenR]
                (a[l], a[r]) = (a[r], a[l])
                takenL += 1
                takenR += 1
                previousR = r
            }
        }
    }

    /// Positions a partition scan reads at a time.
    static let partitionBlock = 64

    /// `__move_median_to_first`.
    @inline(__always)
    static func moveMedianToFirst<K: SortKeys>(_ a: UnsafeMutablePointer<K.Item>, result: Int, _ x: Int, _ y: Int, _ z: Int, _ keys: K) {
        let kx = keys.key(a[x]), ky = keys.key(a[y]), kz = keys.key(a[z])
        let median: Int
        if kx < ky {
            median = ky < kz ? y : (kx < kz ? z : x)
        } else if kx < kz {
            median = x
        } else {
            median = ky < kz ? z : y
        }
        (a[result], a[median]) = (a[median], a[result])
    }

    /// The final insertion sort on one leaf range (stable: an element moves left only past greater keys).
    static func insertionSort<K: SortKeys>(_ a: UnsafeMutablePointer<K.Item>, _ first: Int, _ last: Int, _ keys: K) {
        guard last - first > 1 else { return }
        for i in (first + 1)..<last {
            let value = a[i]
            var j = i
            while j > first, keys.key(value) < keys.key(a[j - 1]) {
                a[j] = a[j - 1]
                j -= 1
            }
            a[j] = value
        }
    }

    /// `__partial_sort(first, last, last)`: `__make_heap`, then `__sort_heap` (the selection loop of
    /// `__heap_select` is empty when middle == last).
    static func heapSort<K: SortKeys>(_ a: UnsafeMutablePointer<K.Item>, count len: Int, _ keys: K) {
        guard len >= 2 else { return }
        var parent = (len - 2) / 2
        while true {
            adjustHeap(a, hole: parent, count: len, value: a[parent], keys)
            if parent == 0 { break }
            parent -= 1
        }
        var last = len
        while last > 1 {
            last -= 1
            // __pop_heap(first, last, last)
            let value = a[last]
            a[last] = a[0]
            adjustHeap(a, hole: 0, count: last, value: value, keys)
        }
    }

    /// `__adjust_heap` followed by its `__push_heap`.
    static func adjustHeap<K: SortKeys>(_ a: UnsafeMutablePointer<K.Item>, hole start: Int, count len: Int, value: K.Item, _ keys: K) {
        let top = start
        var hole = start, child = start
        while child < (len - 1) / 2 {
            child = 2 * (child + 1)
            if keys.key(a[child]) < keys.key(a[child - 1]) { child -= 1 }
            a[hole] = a[child]
            hole = child
        }
        if len & 1 == 0, child == (len - 2) / 2 {
            child = 2 * (child + 1)
            a[hole] = a[child - 1]
            hole = child - 1
        }
        var parent = (hole - 1) / 2
        while hole > top, keys.key(a[parent]) < keys.key(value) {
            a[hole] = a[parent]
            hole = parent
            parent = (hole - 1) / 2
        }
        a[hole] = value
    }
}

/// How the replay reads an item's sort key (items are moved whole; only keys are compared).
protocol SortKeys {
    associatedtype Item: Comparable
    func key(_ item: Item) -> UInt64
    /// The least and the greatest item value whose key is `item`'s: keys are non-decreasing in the
    /// item's value and each key's items are one interval, so comparing an item with these decides
    /// how its key compares with `item`'s.
    func bounds(of item: Item) -> (low: Item, high: Item)
}

/// Items that pack a key (high 32 bits) and an index (low 32 bits).
struct PackedKeys: SortKeys {
    @inline(__always) func key(_ item: UInt64) -> UInt64 { item >> 32 }
    @inline(__always) func bounds(of item: UInt64) -> (low: UInt64, high: UInt64) {
        (item & 0xFFFF_FFFF_0000_0000, item | 0xFFFF_FFFF)
    }
}

/// 32-bit items for ``TorchSortOrder/tieSplits(_:_:descending:cuts:limit:)``: each element's key,
/// shifted so that every element with a tie key gets a value of its own in a band that compares as
/// that key. Keys are at most 31 bits, so keys and bands fit 32 bits for tensors of up to 2³¹
/// elements; half the memory of (key, index) pairs, and the tied elements' identities survive.
///
/// With the tie keys T₁ < T₂ < … and counts c₁, c₂, …, a key k becomes k + Σ_{Tⱼ < k}(cⱼ − 1), and the
/// r-th element (in index order) with key Tⱼ becomes Sⱼ + r, where Sⱼ = Tⱼ + Σ_{Tᵢ < Tⱼ}(cᵢ − 1): order
/// and equality between keys are kept, and [Sⱼ, Sⱼ + cⱼ) compares as one value.
struct BandedKeys: SortKeys {
    let ties: [UInt32]
    let counts: [Int]
    /// Band starts and widths (at most two bands are read without a loop).
    let start0: UInt32, width0: UInt32, start1: UInt32, width1: UInt32
    let starts: [UInt32]

    init(ties: [UInt32], counts: [Int]) {
        self.ties = ties
        self.counts = counts
        var starts: [UInt32] = []
        var shift = 0
        for (t, tie) in ties.enumerated() {
            starts.append(UInt32(Int(tie) + shift))
            shift += max(counts[t] - 1, 0)
        }
        self.starts = starts
        start0 = starts.first ?? UInt32.max
        width0 = UInt32(counts.first ?? 0)
        start1 = starts.count > 1 ? starts[1] : UInt32.max
        width1 = counts.count > 1 ? UInt32(counts[1]) : 0
        precondition(ties.count <= 2, "a replay has at most two cuts")
    }

    /// A band's items compare as its start.
    @inline(__always)
    func key(_ item: UInt32) -> UInt64 {
        if item &- start0 < width0 { return UInt64(start0) }
        if item &- start1 < width1 { return UInt64(start1) }
        return UInt64(item)
    }

    /// A band's items are [start, start + width); any other item is alone with its key.
    @inline(__always)
    func bounds(of item: UInt32) -> (low: UInt32, high: UInt32) {
        if item &- start0 < width0 { return (start0, start0 + (width0 - 1)) }
        if item &- start1 < width1 { return (start1, start1 + (width1 - 1)) }
        return (item, item)
    }

    /// The items of `count` elements with magnitudes |x − y| (keys `bits ^ flip`), in index order;
    /// `rank0`, `rank1`: the tied elements of each tie key before `x` (in index order). Eight elements at a time, one at a time where a lane holds a tie key.
    @inline(__always)
    func items(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int, flip: UInt32, into out: UnsafeMutablePointer<UInt32>,
               rank0: Int, rank1: Int) {
        // Keys are at most 31 bits: UInt32.max stands for "no second tie key" and matches nothing.
        let t0 = ties[0], t1 = ties.count > 1 ? ties[1] : UInt32.max
        let s0 = starts[0], s1 = ties.count > 1 ? starts[1] : 0
        let sh0 = UInt32(max(counts[0] - 1, 0)), sh1 = ties.count > 1 ? UInt32(max(counts[1] - 1, 0)) : 0
        var r0 = UInt32(rank0), r1 = UInt32(rank1)
        @inline(__always) func one(_ k: UInt32) -> UInt32 {
            if k == t0 {
                r0 &+= 1
                return s0 &+ (r0 &- 1)
            }
            if k == t1 {
                r1 &+= 1
                return s1 &+ (r1 &- 1)
            }
            return k &+ (k > t0 ? sh0 : 0) &+ (k > t1 ? sh1 : 0)
        }
        let rx = UnsafeRawPointer(x), ry = UnsafeRawPointer(y), ro = UnsafeMutableRawPointer(out)
        let magnitude = SIMD8<UInt32>(repeating: 0x7FFF_FFFF), f8 = SIMD8<UInt32>(repeating: flip)
        let vt0 = SIMD8<UInt32>(repeating: t0), vt1 = SIMD8<UInt32>(repeating: t1)
        let vsh0 = SIMD8<UInt32>(repeating: sh0), vsh1 = SIMD8<UInt32>(repeating: sh1), zero = SIMD8<UInt32>(repeating: 0)
        var j = 0
        while j + 8 <= count {
            let d = rx.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self) - ry.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self)
            let k = (unsafeBitCast(d, to: SIMD8<UInt32>.self) & magnitude) ^ f8
            if any((k .== vt0) .| (k .== vt1)) {
                for lane in 0..<8 { out[j + lane] = one(k[lane]) }
            } else {
                let v = k &+ zero.replacing(with: vsh0, where: k .> vt0) &+ zero.replacing(with: vsh1, where: k .> vt1)
                ro.storeBytes(of: v, toByteOffset: 4 * j, as: SIMD8<UInt32>.self)
            }
            j += 8
        }
        while j < count {
            out[j] = one(DeltaMask.magnitudeBits(x[j], y[j]) ^ flip)
            j += 1
        }
    }

    /// After the replay: which elements with tie key `key` (numbered in index order) sit before `boundary`.
    func split(_ a: UnsafeMutablePointer<UInt32>, count n: Int, key: UInt32, boundary: Int) -> TorchSortOrder.TieSplit {
        let t = ties.firstIndex(of: key)!
        let count = counts[t], start = starts[t], width = UInt32(count)
        var before = [UInt64](repeating: 0, count: (count + 63) / 64)
        for p in 0..<min(max(0, boundary), n) {
            let r = a[p] &- start
            if r < width { before[Int(r) >> 6] |= 1 << UInt64(r & 63) }
        }
        return TorchSortOrder.TieSplit(count: count, before: before)
    }
}
