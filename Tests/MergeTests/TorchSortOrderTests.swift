import Delta
import Foundation
import Testing

@testable import Merge

/// A literal port of libstdc++'s `std::sort` (`__introsort_loop`,
/// `__unguarded_partition_pivot`, `__partial_sort`, `__final_insertion_sort`) on (value, index) pairs,
/// comparing values only: the whole order, for checking the replay in ``TorchSortOrder`` (which
/// processes only what decides the sets at given positions) and for reading torch's order off.
struct ReferenceIntrosort {
    var a: [(value: Float, index: Int)]
    let less: (Float, Float) -> Bool

    /// The sorted indices of |values| (torch's `argsort(|x|, descending:)` on CPU).
    static func order(_ values: [Float], descending: Bool, depthLimit: Int? = nil) -> [Int] {
        var s = ReferenceIntrosort(a: values.enumerated().map { (abs($1), $0) }, less: descending ? { $0 > $1 } : { $0 < $1 })
        s.sort(depthLimit: depthLimit)
        return s.a.map(\.index)
    }

    func comp(_ i: Int, _ j: Int) -> Bool { less(a[i].value, a[j].value) }

    mutating func sort(depthLimit: Int?) {
        let n = a.count
        guard n > 0 else { return }
        introsortLoop(0, n, depthLimit ?? 2 * (Int.bitWidth - 1 - n.leadingZeroBitCount))
        finalInsertionSort(0, n)
    }

    mutating func introsortLoop(_ first: Int, _ end: Int, _ limit: Int) {
        var last = end, depth = limit
        while last - first > 16 {
            if depth == 0 {
                partialSort(first, last, last)
                return
            }
            depth -= 1
            let cut = unguardedPartitionPivot(first, last)
            introsortLoop(cut, last, depth)
            last = cut
        }
    }

    mutating func unguardedPartitionPivot(_ first: Int, _ last: Int) -> Int {
        let mid = first + (last - first) / 2
        moveMedianToFirst(first, first + 1, mid, last - 1)
        return unguardedPartition(first + 1, last, first)
    }

    mutating func moveMedianToFirst(_ result: Int, _ x: Int, _ y: Int, _ z: Int) {
        if comp(x, y) {
            if comp(y, z) { a.swapAt(result, y) } else if comp(x, z) { a.swapAt(result, z) } else { a.swapAt(result, x) }
        } else if comp(x, z) {
            a.swapAt(result, x)
        } else if comp(y, z) {
            a.swapAt(result, z)
        } else {
            a.swapAt(result, y)
        }
    }

    mutating func unguardedPartition(_ start: Int, _ end: Int, _ pivot: Int) -> Int {
        var first = start, last = end
        while true {
            while comp(first, pivot) { first += 1 }
            last -= 1
            while comp(pivot, last) { last -= 1 }
            if !(first < last) { return first }
            a.swapAt(first, last)
            first += 1
        }
    }

    mutating func partialSort(_ first: Int, _ middle: Int, _ last: Int) {
        makeHeap(first, middle)
        for i in middle..<last where comp(i, first) { popHeap(first, middle, i) }
        var end = middle
        while end - first > 1 {
            end -= 1
            popHeap(first, end, end)
        }
    }

    mutating func makeHeap(_ first: Int, _ last: Int) {
        let len = last - first
        if len < 2 { return }
        var parent = (len - 2) / 2
        while true {
            adjustHeap(first, parent, len, a[first + parent])
            if parent == 0 { return }
            parent -= 1
        }
    }

    mutating func popHeap(_ first: Int, _ last: Int, _ result: Int) {
        let value = a[result]
        a[result] = a[first]
        adjustHeap(first, 0, last - first, value)
    }

    mutating func adjustHeap(_ first: Int, _ start: Int, _ len: Int, _ value: (value: Float, index: Int)) {
        let top = start
        var hole = start, second = start
        while second < (len - 1) / 2 {
            second = 2 * (second + 1)
            if comp(first + second, first + (second - 1)) { second -= 1 }
            a[first + hole] = a[first + second]
            hole = second
        }
        if len & 1 == 0, second == (len - 2) / 2 {
            second = 2 * (second + 1)
            a[first + hole] = a[first + (second - 1)]
            hole = second - 1
        }
        // __push_heap
        var parent = (hole - 1) / 2
        while hole > top, less(a[first + parent].value, value.value) {
            a[first + hole] = a[first + parent]
            hole = parent
            parent = (hole - 1) / 2
        }
        a[first + hole] = value
    }

    mutating func finalInsertionSort(_ first: Int, _ last: Int) {
        if last - first > 16 {
            insertionSort(first, first + 16)
            for i in (first + 16)..<last { unguardedLinearInsert(i) }
        } else {
            insertionSort(first, last)
        }
    }

    mutating func insertionSort(_ first: Int, _ last: Int) {
        if first == last { return }
        for i in (first + 1)..<last {
            if comp(i, first) {
                let value = a[i]
                var j = i
                while j > first {
                    a[j] = a[j - 1]
                    j -= 1
                }
                a[first] = value
            } else {
                unguardedLinearInsert(i)
            }
        }
    }

    mutating func unguardedLinearInsert(_ end: Int) {
        let value = a[end]
        var last = end, next = end - 1
        while less(value.value, a[next].value) {
            a[last] = a[next]
            last = next
            next -= 1
        }
        a[last] = value
    }
}

/// torch's CPU sort order among tied magnitudes (mergekit's TIES and Breadcrumbs slices), against
/// torch itself (Golden/ties_order.json, written by scripts/golden_ties.py with torch 2.15.0),
/// libstdc++'s own introsort with forced depth limits (same file) and the reference port above.
@Suite struct TorchSortOrderTests {
    struct GoldenArray {
        var values: [Float]
        /// Per direction ("descending", "ascending"): k → the indices torch puts in the first k positions.
        var prefixes: [String: [Int: Set<Int>]]
        /// Per direction: torch's whole order (arrays up to 1000 elements).
        var orders: [String: [Int]]
        /// libstdc++'s order with a forced depth limit.
        var limited: [(depth: Int, descending: Bool, order: [Int])]
    }

    static func goldenArrays() throws -> [GoldenArray] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Golden").appendingPathComponent("ties_order.json")
        let doc = try JSONValue.parse([UInt8](try Data(contentsOf: url)))
        var out: [GoldenArray] = []
        for a in doc["arrays"]?.arrayValue ?? [] {
            let table = (a["table"]?.arrayValue ?? []).map { Float($0.doubleValue ?? .nan) }
            let values = (a["codes"]?.stringValue ?? "").map { table[Int(String($0))!] }
            #expect(values.count == a["n"]?.intValue)
            var prefixes: [String: [Int: Set<Int>]] = [:], orders: [String: [Int]] = [:]
            for direction in ["descending", "ascending"] {
                for member in a[direction]?["prefix"]?.objectValue ?? [] {
                    prefixes[direction, default: [:]][Int(member.key)!] = decodeMask(member.value.stringValue ?? "")
                }
                if let order = a[direction]?["order"]?.arrayValue { orders[direction] = order.compactMap(\.intValue) }
            }
            let limited = (a["depth_limited"]?.arrayValue ?? []).map { c in
                (depth: c["depth"]?.intValue ?? -1, descending: c["descending"] == .bool(true),
                 order: (c["order"]?.arrayValue ?? []).compactMap(\.intValue))
            }
            out.append(GoldenArray(values: values, prefixes: prefixes, orders: orders, limited: limited))
        }
        return out
    }

    /// Hex digit i holds elements 4i..4i+3, lowest bit first.
    static func decodeMask(_ hex: String) -> Set<Int> {
        var out: Set<Int> = []
        for (i, c) in hex.enumerated() {
            let d = Int(String(c), radix: 16)!
            for bit in 0..<4 where d >> bit & 1 != 0 { out.insert(4 * i + bit) }
        }
        return out
    }

    @Test func goldenFileCoversTiesAndTheHeapSort() throws {
        let arrays = try Self.goldenArrays()
        #expect(arrays.map(\.values.count) == [7, 16, 17, 33, 100, 1000, 5000, 20000])
        for a in arrays {
            // Few distinct magnitudes: every prefix cut splits a tie.
            #expect(Set(a.values.map { abs($0) }).count <= 5)
            #expect(a.prefixes["descending"]?.isEmpty == false && a.prefixes["ascending"]?.isEmpty == false)
        }
        #expect(arrays.filter { !$0.limited.isEmpty }.count >= 6)
    }

    /// The port of std::sort gives torch's whole permutation, descending and ascending.
    @Test func referencePortIsTorchsOrder() throws {
        for a in try Self.goldenArrays() {
            for (direction, order) in a.orders {
                let mine = ReferenceIntrosort.order(a.values, descending: direction == "descending")
                #expect(mine == order, "n \(a.values.count) \(direction)")
            }
        }
    }

    /// With the depth limit forced low, the port follows libstdc++ into its heap sort.
    @Test func referencePortFollowsTheHeapSort() throws {
        for a in try Self.goldenArrays() {
            for c in a.limited {
                let mine = ReferenceIntrosort.order(a.values, descending: c.descending, depthLimit: c.depth)
                #expect(mine == c.order, "n \(a.values.count) depth \(c.depth) descending \(c.descending)")
            }
        }
    }

    /// The replay puts exactly torch's set in the first k positions, for every golden k.
    @Test func selectionIsTorchsSet() throws {
        for a in try Self.goldenArrays() {
            for (direction, byK) in a.prefixes {
                let ks = byK.keys.sorted()
                let sets = TorchSortOrder.indicesBefore(magnitudesOf: a.values, descending: direction == "descending", boundaries: ks)
                for (k, set) in zip(ks, sets) {
                    #expect(Set(set) == byK[k], "n \(a.values.count) \(direction) k \(k)")
                }
                // One boundary at a time processes other ranges: same sets.
                for k in ks {
                    let one = TorchSortOrder.indicesBefore(magnitudesOf: a.values, descending: direction == "descending", boundaries: [k])
                    #expect(Set(one[0]) == byK[k], "n \(a.values.count) \(direction) k \(k) alone")
                }
            }
        }
    }

    /// With a forced depth limit, the replay's sets are libstdc++'s (heap sort of a range that holds a boundary).
    @Test func selectionFollowsTheHeapSort() throws {
        for a in try Self.goldenArrays() where a.values.count > 16 {
            let n = a.values.count
            let ks = [1, n / 5, n / 3, n / 2, n - 1]
            for c in a.limited {
                let sets = TorchSortOrder.indicesBefore(magnitudesOf: a.values, descending: c.descending, boundaries: ks,
                                                        depthLimit: c.depth)
                for (k, set) in zip(ks, sets) {
                    #expect(Set(set) == Set(c.order.prefix(k)), "n \(n) depth \(c.depth) descending \(c.descending) k \(k)")
                }
            }
        }
    }

    /// 200 000 elements of 5 magnitudes (either sign), against the whole-order port: single and
    /// paired boundaries, both directions; then smaller depth limits, which reach the heap sort on
    /// large ranges.
    @Test func largeTiedVectorMatchesTheReferencePort() {
        let n = 200_000
        var rng = SeededRandom(seed: 42)
        let levels: [Float] = [0, 0.25, 0.5, 0.75, 1.5]
        let x = (0..<n).map { _ in levels[Int(rng.uniform() * 5)] * (rng.uniform() < 0.5 ? -1 : 1) }
        for descending in [true, false] {
            let order = ReferenceIntrosort.order(x, descending: descending)
            let boundaries = [[n / 2], [1, n - 1], [n / 10, n / 10 + n / 2], [123_457, 77_777]]
            for b in boundaries {
                let sets = TorchSortOrder.indicesBefore(magnitudesOf: x, descending: descending, boundaries: b)
                for (k, set) in zip(b, sets) {
                    #expect(set == order.prefix(k).sorted(), "descending \(descending) k \(k) of \(b)")
                }
            }
        }
        let m = 20_000
        let y = Array(x.prefix(m))
        for depth in [2, 5, 9] {
            for descending in [true, false] {
                let order = ReferenceIntrosort.order(y, descending: descending, depthLimit: depth)
                let ks = [m / 3, m / 2 + 1]
                let sets = TorchSortOrder.indicesBefore(magnitudesOf: y, descending: descending, boundaries: ks, depthLimit: depth)
                for (k, set) in zip(ks, sets) {
                    #expect(set == order.prefix(k).sorted(), "depth \(depth) descending \(descending) k \(k)")
                }
            }
        }
    }

    /// ``TorchSortOrder/tieSplits(_:_:descending:cuts:)`` numbers the tied elements in index order
    /// (magnitudes of e − b, several blocks), and `after` is the complement within the count.
    @Test func tieSplitsNumberTheTiedElementsInIndexOrder() {
        let n = 3 * Kernels.block + 1001
        var rng = SeededRandom(seed: 7)
        let levels: [Float] = [0.5, 1, 2]
        let base = randomValues(n, seed: 8).map { ($0 * 64).rounded() / 64 }
        let expert = base.enumerated().map { j, b in b + levels[Int(rng.uniform() * 3)] * (j % 3 == 0 ? -1 : 1) }
        let magnitudes = zip(expert, base).map { $0 - $1 }
        let k = n / 2
        let order = ReferenceIntrosort.order(magnitudes, descending: true)
        let threshold = abs(magnitudes[order[k - 1]]).bitPattern
        let splits = expert.withUnsafeBufferPointer { e in
            base.withUnsafeBufferPointer { b in
                TorchSortOrder.tieSplits(e, b, descending: true, cuts: [.init(boundary: k, tie: threshold)])
            }
        }
        let split = splits?.first
        #expect(split != nil)
        guard let split else { return }
        let tied = magnitudes.indices.filter { abs(magnitudes[$0]).bitPattern == threshold }
        #expect(split.count == tied.count)
        let kept = Set(order.prefix(k))
        for (r, j) in tied.enumerated() {
            #expect(split.contains(r) == kept.contains(j), "rank \(r) index \(j)")
        }
        let after = split.after
        let complement = (0..<split.count).allSatisfy { r in (after[r >> 6] >> UInt64(r & 63) & 1 != 0) != split.contains(r) }
        #expect(complement)
        let afterCount = after.reduce(0) { $0 + $1.nonzeroBitCount }, beforeCount = split.before.reduce(0) { $0 + $1.nonzeroBitCount }
        #expect(afterCount + beforeCount == split.count)
        #expect(beforeCount == k - magnitudes.filter { abs($0).bitPattern > threshold }.count)
    }

    /// Two cuts of an ascending sort (Breadcrumbs' band), each at a tied magnitude, over several
    /// blocks with odd lengths (the eight-lane item pass and its tail): each cut's tied elements land
    /// as the whole-order port puts them, whether the per-block tie counts are passed in or counted.
    @Test func tieSplitsOfTwoCutsMatchTheReferencePort() {
        let n = 2 * Kernels.block + 777
        var rng = SeededRandom(seed: 11)
        let levels: [Float] = [0.125, 0.5, 1, 2, 4]
        let base = randomValues(n, seed: 12).map { ($0 * 64).rounded() / 64 }
        let expert = base.map { b in b + levels[Int(rng.uniform() * 5)] * (rng.uniform() < 0.5 ? -1 : 1) }
        let magnitudes = zip(expert, base).map { $0 - $1 }
        let order = ReferenceIntrosort.order(magnitudes, descending: false)
        let lowCut = n / 10, highCut = n - n / 7
        let cuts = [lowCut, highCut].map { c in
            TorchSortOrder.Cut(boundary: c, tie: abs(magnitudes[order[c]]).bitPattern)
        }
        #expect(cuts[0].tie != cuts[1].tie)
        let blockCount = (n + Kernels.block - 1) / Kernels.block
        var known: [UInt32: [Int]] = [:]
        for cut in cuts {
            known[cut.tie] = (0..<blockCount).map { block in
                (block * Kernels.block..<min(n, (block + 1) * Kernels.block)).filter { abs(magnitudes[$0]).bitPattern == cut.tie }.count
            }
        }
        for counts in [[:], known] {
            let splits = expert.withUnsafeBufferPointer { e in
                base.withUnsafeBufferPointer { b in TorchSortOrder.tieSplits(e, b, descending: false, cuts: cuts, blockCounts: counts) }
            }
            #expect(splits?.count == 2)
            guard let splits else { return }
            for (cut, split) in zip(cuts, splits) {
                let tied = magnitudes.indices.filter { abs(magnitudes[$0]).bitPattern == cut.tie }
                let before = Set(order.prefix(cut.boundary))
                #expect(split.count == tied.count)
                let agrees = tied.enumerated().allSatisfy { r, j in split.contains(r) == before.contains(j) }
                #expect(agrees, "cut \(cut.boundary), counts passed in: \(!counts.isEmpty)")
            }
        }
    }

    /// One partition step (the median of three, then the scans and swaps found a block at a time)
    /// leaves every element where libstdc++'s leaves it, and returns its cut: ranges of 17 to 700
    /// elements (a partial block at either end) with 1 to 40 distinct magnitudes, so that scans stop
    /// often on keys equal to the pivot, both directions, for PackedKeys and BandedKeys items alike.
    @Test func partitionStepIsLibstdcxxs() {
        var rng = SeededRandom(seed: 99)
        for trial in 0..<400 {
            let n = 17 + Int(rng.uniform() * 684)
            let levels = 1 + Int(rng.uniform() * 40)
            let values = (0..<n).map { _ in Float(Int(rng.uniform() * Double(levels)) + 1) * (rng.uniform() < 0.5 ? -1 : 1) }
            let descending = trial % 2 == 0
            var reference = ReferenceIntrosort(a: values.enumerated().map { (abs($1), $0) }, less: descending ? { $0 > $1 } : { $0 < $1 })
            let expectedCut = reference.unguardedPartitionPivot(0, n)
            let flip: UInt32 = descending ? 0x7FFF_FFFF : 0
            var packed = values.enumerated().map { j, v in UInt64((v.bitPattern & 0x7FFF_FFFF) ^ flip) << 32 | UInt64(j) }
            let cut = packed.withUnsafeMutableBufferPointer { TorchSortOrder.partitionAroundPivot($0.baseAddress!, 0, n, PackedKeys()) }
            #expect(cut == expectedCut, "trial \(trial) n \(n)")
            #expect(packed.map { Int($0 & 0xFFFF_FFFF) } == reference.a.map(\.index), "trial \(trial) n \(n)")
            // Banded items: the elements of one tied magnitude numbered in index order.
            let tie = (abs(values[n / 2]).bitPattern) ^ flip
            let tied = values.filter { (abs($0).bitPattern ^ flip) == tie }.count
            let keys = BandedKeys(ties: [tie], counts: [tied])
            var rank = 0
            var banded = values.map { v -> UInt32 in
                let k = abs(v).bitPattern ^ flip
                if k == tie {
                    rank += 1
                    return keys.starts[0] + UInt32(rank - 1)
                }
                return k > tie ? k + UInt32(tied - 1) : k
            }
            let itemOfIndex = banded
            let bandedCut = banded.withUnsafeMutableBufferPointer { TorchSortOrder.partitionAroundPivot($0.baseAddress!, 0, n, keys) }
            #expect(bandedCut == expectedCut, "trial \(trial) n \(n) banded")
            #expect(banded == reference.a.map { itemOfIndex[$0.index] }, "trial \(trial) n \(n) banded")
        }
    }
}
