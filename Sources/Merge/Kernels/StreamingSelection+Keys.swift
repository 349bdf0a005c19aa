import Delta
import Synchronization

// A one-pass selection (``StreamingSelection/keyed``): the first pass keeps each selecting expert's
// magnitude bits (4 bytes per element), and what the low-bits pass and the tie pass would find by
// reading every input again is found from them in memory. At 3B the MLP projections (two thirds of
// the elements) are decided so: each of their inputs is read once by the passes instead of three
// times (top bits, low bits, ties), and the bits become the replay's items where they lay.
extension StreamingSelection {
    /// The bits' buffers of a one-pass selection: one per expert still selecting.
    func allocateKeys(_ found: [Found?]) -> [UnsafeMutablePointer<UInt32>?] {
        ks.indices.map { i in ks[i] != nil && found[i] == nil ? UnsafeMutablePointer<UInt32>.allocate(capacity: n) : nil }
    }

    /// The low-bits histogram of every expert still selecting, from its kept bits (on every core),
    /// as the low-bits pass would count it.
    func lowFromKeys(_ s: inout State) {
        let n = self.n
        let parts = max(1, min(Parallel.workerCount, n / Kernels.block))
        for i in ks.indices {
            guard s.found[i] == nil, let within = s.bucket[i]?.high, i < s.keys.count, let keys = s.keys[i] else { continue }
            // 32-bit bins: a part covers fewer than 2³² elements (n is at most the replay's bound).
            let counts = UnsafeMutablePointer<UInt32>.allocate(capacity: parts << 16)
            counts.initialize(repeating: 0, count: parts << 16)
            defer { counts.deallocate() }
            let o = UnsafeSendable(counts), k = UnsafeSendable(keys)
            try? Parallel.forEach(parts) { part, _ in
                let h = o.value + (part << 16), bits = k.value
                for j in (n * part / parts)..<(n * (part + 1) / parts) {
                    let key = bits[j]
                    if key >> 16 == within { h[Int(key & 0xFFFF)] &+= 1 }
                }
            }
            for part in 0..<parts {
                for v in 0..<(1 << 16) where counts[(part << 16) + v] != 0 { s.low[i][v] += Int(counts[(part << 16) + v]) }
            }
        }
    }

    /// After the thresholds: the experts whose tied elements are partly kept have their bits made
    /// into the replay's items in place (as the tie pass writes them: complemented keys, the tied
    /// elements numbered from 0 in each block, the keys above widened) and are replayed together;
    /// the other experts' bits are freed.
    func tiesFromKeys(_ s: inout State) {
        let group = s.waiting
        s.waiting = []
        for (i, p) in s.keys.enumerated() where !group.contains(i) { p?.deallocate() }
        let keys = s.keys
        s.keys = []
        guard !group.isEmpty else { return }
        let n = self.n, blockCount = self.blockCount
        var equal = [[Int]](repeating: [], count: group.count)
        for (g, i) in group.enumerated() {
            let top = s.found[i]!.top
            let tie = top.threshold ^ 0x7FFF_FFFF, widen = UInt32(max(top.equalCount - 1, 0))
            var counts = [Int](repeating: 0, count: blockCount)
            counts.withUnsafeMutableBufferPointer { c in
                let out = UnsafeSendable(c), items = UnsafeSendable(keys[i]!)
                Kernels.blocks(n) { r in
                    out.value[r.lowerBound / Kernels.block] = Self.items(items.value + r.lowerBound, count: r.count, tie: tie, widen: widen)
                }
            }
            equal[g] = counts
        }
        s.group = group
        s.equal = equal
        s.items = group.map { keys[$0] }
        settleTies(&s)
    }

    /// Makes `count` magnitude bits into replay items in place; returns how many equal the threshold
    /// (`tie` is its complement). Eight at a time, one at a time where a lane holds the threshold.
    @inline(__always)
    static func items(_ p: UnsafeMutablePointer<UInt32>, count: Int, tie: UInt32, widen: UInt32) -> Int {
        let raw = UnsafeMutableRawPointer(p)
        let flip = SIMD8<UInt32>(repeating: 0x7FFF_FFFF), t = SIMD8<UInt32>(repeating: tie)
        let w = SIMD8<UInt32>(repeating: widen), zero = SIMD8<UInt32>(repeating: 0)
        var c = 0, j = 0
        @inline(__always) func one(_ j: Int) {
            let key = p[j] ^ 0x7FFF_FFFF
            if key == tie {
                p[j] = tie &+ UInt32(c)
                c += 1
            } else {
                p[j] = key > tie ? key &+ widen : key
            }
        }
        while j + 8 <= count {
            let key = raw.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<UInt32>.self) ^ flip
            if any(key .== t) {
                for lane in 0..<8 { one(j + lane) }
            } else {
                raw.storeBytes(of: key &+ zero.replacing(with: w, where: key .> t), toByteOffset: 4 * j, as: SIMD8<UInt32>.self)
            }
            j += 8
        }
        while j < count {
            one(j)
            j += 1
        }
        return c
    }
}
