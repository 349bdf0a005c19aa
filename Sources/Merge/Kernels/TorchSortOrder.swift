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
/// memory 8 bytes per element (a packed key and index), plus two bits per element while the tied
/// elements' choice is read out.
///
/// Keys are unsigned integers compared as such. mrepo's keys are magnitude bit patterns
/// (`bits & 0x7FFF_FFFF`), whose order is the order of the non-negative floats (NaN above +∞, as
/// torch's comparators put NaN past every number; NaNs of different payloads, equal for torch, differ
/// here); a descending sort is replayed as an ascending one on complemented keys, which compares
/// exactly as torch's `a > b` does.
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
                          cuts: [Cut], limit: Int = maxCount) -> [TieSplit]? {
        let n = e.count
        guard n <= limit else { return nil }
        let flip: UInt32 = descending ? UInt32.max : 0
        let items = UnsafeMutablePointer<UInt64>.allocate(capacity: max(n, 1))
        defer { items.deallocate() }
        let o = UnsafeSendable(items), x = UnsafeSendable(e), y = UnsafeSendable(b)
        Kernels.blocks(n) { r in
            let xp = x.value.baseAddress!, yp = y.value.baseAddress!
            for j in r { o.value[j] = (UInt64(DeltaMask.magnitudeBits(xp[j], yp[j]) ^ flip) << 32) | UInt64(j) }
        }
        arrange(items, count: n, boundaries: cuts.map(\.boundary))
        return cuts.map { split(items, count: n, key: $0.tie ^ flip, boundary: $0.boundary) }
    }

    /// The indices torch's sort of |values| puts in positions `0..<boundary`, for each boundary,
    /// in ascending index order (a readable form of the same replay, for tests and small inputs).
    static func indicesBefore(magnitudesOf values: [Float], descending: Bool, boundaries: [Int],
                              depthLimit: Int? = nil) -> [[Int]] {
        let n = values.count
        let flip: UInt32 = descending ? UInt32.max : 0
        var items = values.enumerated().map { j, v in (UInt64((v.bitPattern & 0x7FFF_FFFF) ^ flip) << 32) | UInt64(j) }
        items.withUnsafeMutableBufferPointer { p in
            if let base = p.baseAddress { arrange(base, count: n, boundaries: boundaries, depthLimit: depthLimit) }
        }
        return boundaries.map { b in items.prefix(max(0, min(b, n))).map { Int($0 & 0xFFFF_FFFF) }.sorted() }
    }

    // MARK: - The replay

    /// Rearranges `items` (key in the high 32 bits, index in the low 32) so that for every boundary
    /// b, positions `0..<b` hold exactly the elements an ascending `std::sort` on the keys (indices
    /// ignored) would put there. Inside a side of every boundary the order is not the sort's.
    ///
    /// `depthLimit` replaces libstdc++'s 2·⌊log₂ n⌋ (tests use it to reach the heap sort).
    static func arrange(_ a: UnsafeMutablePointer<UInt64>, count n: Int, boundaries: [Int], depthLimit: Int? = nil) {
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
                    heapSort(a + first, count: last - first)
                    sorted = true
                    break
                }
                depth -= 1
                let cut = partitionAroundPivot(a, first, last)
                pending.append((cut, last, depth))
                last = cut
            }
            if !sorted, last - first <= insertionThreshold, straddles(first, last) {
                insertionSort(a, first, last)
            }
        }
    }

    @inline(__always)
    static func key(_ item: UInt64) -> UInt64 { item >> 32 }

    /// `__unguarded_partition_pivot`: the median of a[first + 1], a[mid], a[last − 1] to a[first],
    /// then `__unguarded_partition(first + 1, last, first)`. Returns the cut.
    @inline(__always)
    static func partitionAroundPivot(_ a: UnsafeMutablePointer<UInt64>, _ first: Int, _ last: Int) -> Int {
        let mid = first + (last - first) / 2
        moveMedianToFirst(a, result: first, first + 1, mid, last - 1)
        let pivot = key(a[first])
        var f = first + 1, l = last
        while true {
            while key(a[f]) < pivot { f += 1 }
            l -= 1
            while pivot < key(a[l]) { l -= 1 }
            if !(f < l) { return f }
            (a[f], a[l]) = (a[l], a[f])
            f += 1
        }
    }

    /// `__move_median_to_first`.
    @inline(__always)
    static func moveMedianToFirst(_ a: UnsafeMutablePointer<UInt64>, result: Int, _ x: Int, _ y: Int, _ z: Int) {
        let kx = key(a[x]), ky = key(a[y]), kz = key(a[z])
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
    static func insertionSort(_ a: UnsafeMutablePointer<UInt64>, _ first: Int, _ last: Int) {
        guard last - first > 1 else { return }
        for i in (first + 1)..<last {
            let value = a[i]
            var j = i
            while j > first, key(value) < key(a[j - 1]) {
                a[j] = a[j - 1]
                j -= 1
            }
            a[j] = value
        }
    }

    /// `__partial_sort(first, last, last)`: `__make_heap`, then `__sort_heap` (the selection loop of
    /// `__heap_select` is empty when middle == last).
    static func heapSort(_ a: UnsafeMutablePointer<UInt64>, count len: Int) {
        guard len >= 2 else { return }
        var parent = (len - 2) / 2
        while true {
            adjustHeap(a, hole: parent, count: len, value: a[parent])
            if parent == 0 { break }
            parent -= 1
        }
        var last = len
        while last > 1 {
            last -= 1
            // __pop_heap(first, last, last)
            let value = a[last]
            a[last] = a[0]
            adjustHeap(a, hole: 0, count: last, value: value)
        }
    }

    /// `__adjust_heap` followed by its `__push_heap`.
    static func adjustHeap(_ a: UnsafeMutablePointer<UInt64>, hole start: Int, count len: Int, value: UInt64) {
        let top = start
        var hole = start, child = start
        while child < (len - 1) / 2 {
            child = 2 * (child + 1)
            if key(a[child]) < key(a[child - 1]) { child -= 1 }
            a[hole] = a[child]
            hole = child
        }
        if len & 1 == 0, child == (len - 2) / 2 {
            child = 2 * (child + 1)
            a[hole] = a[child - 1]
            hole = child - 1
        }
        var parent = (hole - 1) / 2
        while hole > top, key(a[parent]) < key(value) {
            a[hole] = a[parent]
            hole = parent
            parent = (hole - 1) / 2
        }
        a[hole] = value
    }

    /// After ``arrange(_:count:boundaries:depthLimit:)``: the elements with key `key`, numbered in
    /// index order, and which of them sit before `boundary`.
    static func split(_ a: UnsafeMutablePointer<UInt64>, count n: Int, key k: UInt32, boundary: Int) -> TieSplit {
        let words = (n + 63) / 64
        var tied = [UInt64](repeating: 0, count: words), before = [UInt64](repeating: 0, count: words)
        let wanted = UInt64(k)
        for p in 0..<n where key(a[p]) == wanted {
            let j = Int(a[p] & 0xFFFF_FFFF)
            let bit = UInt64(1) << UInt64(j & 63)
            tied[j >> 6] |= bit
            if p < boundary { before[j >> 6] |= bit }
        }
        // Renumber from indices to ranks among the tied elements.
        let count = tied.reduce(0) { $0 + $1.nonzeroBitCount }
        var out = [UInt64](repeating: 0, count: (count + 63) / 64)
        var rank = 0
        for w in 0..<words where tied[w] != 0 {
            var t = tied[w]
            let s = before[w]
            if s == t {
                // Every tied element of the word lands before: set a run of bits.
                let c = t.nonzeroBitCount
                for r in rank..<(rank + c) { out[r >> 6] |= 1 << UInt64(r & 63) }
                rank += c
                continue
            }
            while t != 0 {
                let bit = t & (0 &- t)
                if s & bit != 0 { out[rank >> 6] |= 1 << UInt64(rank & 63) }
                rank += 1
                t &= t - 1
            }
        }
        return TieSplit(count: count, before: out)
    }
}
