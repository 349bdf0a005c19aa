/// The grouping of ``TensorEncoding/integerDeltaByExponent`` (docs/format.md §5.4), computed
/// faster: a stable counting sort by (exponent bucket of the reference element, index mod 4).
///
/// The sort's cost is the running position counters: each element loads its (bucket, lane)
/// counter and stores it back incremented, and the next element of that lane with the same
/// bucket (most elements of a tensor share a handful of exponents) waits for that store. Here the
/// chunk is cut into ``blocks`` equal runs, each with counters of its own that start where the
/// previous runs' elements of the same (bucket, lane) end, and the runs are walked side by side:
/// four times the independent chains, the same order, the same bytes.
enum ExponentGrouping {
    /// Runs walked side by side (chunks too small to split are one run).
    static let blocks = 4
    /// The lanes of the format (index mod 4).
    static let lanes = 4

    /// The counters of every run: `counters[(run * lanes + lane) * buckets + bucket]`, first the
    /// counts, then (after ``starts``) the next position of each run's elements.
    private struct Plan {
        var runs: Int
        /// Elements per run (a multiple of ``lanes``); a last run holds the rest.
        var length: Int
        var tail: Int
        var buckets: Int
    }

    private static func plan(_ n: Int, buckets: Int) -> Plan {
        let length = n >= 1024 ? (n / blocks) & ~(lanes - 1) : 0
        let runs = length > 0 ? blocks : 0
        return Plan(runs: runs, length: length, tail: n - runs * length, buckets: buckets)
    }

    /// Counts each run's elements per (lane, bucket), then turns the counts into start positions.
    private static func starts<W: FixedWidthInteger & UnsignedInteger>(
        _: W.Type, _ plan: Plan, _ ref: UnsafeRawPointer, shift: Int, mask: W, into c: UnsafeMutablePointer<UInt32>
    ) {
        let width = MemoryLayout<W>.size, b = plan.buckets, stride = lanes * b
        @inline(__always) func bucket(_ i: Int) -> Int {
            Int(truncatingIfNeeded: (ref.loadUnaligned(fromByteOffset: i &* width, as: W.self) &>> shift) & mask)
        }
        let all = plan.runs + 1
        c.initialize(repeating: 0, count: all * stride)
        var j = 0
        while j < plan.length {
            var r = 0
            while r < plan.runs {
                let i = r &* plan.length &+ j, base = c + r &* stride
                base[bucket(i)] &+= 1
                base[b &+ bucket(i &+ 1)] &+= 1
                base[2 &* b &+ bucket(i &+ 2)] &+= 1
                base[3 &* b &+ bucket(i &+ 3)] &+= 1
                r &+= 1
            }
            j &+= lanes
        }
        let tailStart = plan.runs * plan.length, tailBase = c + plan.runs * stride
        for i in tailStart..<(tailStart + plan.tail) {
            tailBase[((i - tailStart) % lanes) &* b &+ bucket(i)] &+= 1
        }
        // Bucket-major, then lane, then index: within a (bucket, lane), run after run.
        var running: UInt32 = 0
        for bk in 0..<b {
            for lane in 0..<lanes {
                for r in 0..<all {
                    let k = (r * lanes + lane) * b + bk
                    let count = c[k]
                    c[k] = running
                    running &+= count
                }
            }
        }
    }

    /// Residuals of `source` against `reference` (``ChunkCodec/OrderedDelta``), in grouped order.
    static func group<W: FixedWidthInteger & UnsignedInteger>(
        _: W.Type, shift: Int, buckets: Int, _ source: UnsafeRawBufferPointer, _ reference: UnsafeRawBufferPointer,
        _ words: UnsafeMutableRawBufferPointer
    ) {
        let width = MemoryLayout<W>.size
        let n = source.count / width
        guard n > 0 else { return }
        let plan = plan(n, buckets: buckets)
        let mask = W(truncatingIfNeeded: buckets - 1)
        let src = source.baseAddress!, ref = reference.baseAddress!
        let out = words.baseAddress!.assumingMemoryBound(to: W.self)
        let count = (plan.runs + 1) * lanes * buckets
        let c = UnsafeMutablePointer<UInt32>.allocate(capacity: count)
        defer { c.deallocate() }
        starts(W.self, plan, ref, shift: shift, mask: mask, into: c)
        @inline(__always) func put(_ i: Int, _ p: UnsafeMutablePointer<UInt32>) {
            let r = ref.loadUnaligned(fromByteOffset: i &* width, as: W.self)
            let u = src.loadUnaligned(fromByteOffset: i &* width, as: W.self)
            let bk = Int(truncatingIfNeeded: (r &>> shift) & mask)
            let q = p[bk]
            out[Int(truncatingIfNeeded: q)] = ChunkCodec.OrderedDelta.forward(u, r)
            p[bk] = q &+ 1
        }
        let stride = lanes * buckets
        var j = 0
        while j < plan.length {
            var r = 0
            while r < plan.runs {
                let i = r &* plan.length &+ j, p = c + r &* stride
                put(i, p); put(i &+ 1, p + buckets); put(i &+ 2, p + 2 &* buckets); put(i &+ 3, p + 3 &* buckets)
                r &+= 1
            }
            j &+= lanes
        }
        let tailStart = plan.runs * plan.length, tail = c + plan.runs * stride
        for i in tailStart..<n { put(i, tail + ((i - tailStart) % lanes) * buckets) }
    }

    /// The inverse of ``group(_:shift:buckets:_:_:_:)``: puts each residual back at its index and
    /// undoes the difference.
    static func ungroup<W: FixedWidthInteger & UnsignedInteger>(
        _: W.Type, shift: Int, buckets: Int, _ words: UnsafeRawBufferPointer, _ reference: UnsafeRawBufferPointer,
        _ destination: UnsafeMutableRawBufferPointer
    ) {
        let width = MemoryLayout<W>.size
        let n = destination.count / width
        guard n > 0 else { return }
        let plan = plan(n, buckets: buckets)
        let mask = W(truncatingIfNeeded: buckets - 1)
        let inp = words.baseAddress!.assumingMemoryBound(to: W.self), ref = reference.baseAddress!
        let dst = destination.baseAddress!
        let count = (plan.runs + 1) * lanes * buckets
        let c = UnsafeMutablePointer<UInt32>.allocate(capacity: count)
        defer { c.deallocate() }
        starts(W.self, plan, ref, shift: shift, mask: mask, into: c)
        @inline(__always) func take(_ i: Int, _ p: UnsafeMutablePointer<UInt32>) {
            let r = ref.loadUnaligned(fromByteOffset: i &* width, as: W.self)
            let bk = Int(truncatingIfNeeded: (r &>> shift) & mask)
            let q = p[bk]
            p[bk] = q &+ 1
            dst.storeBytes(of: ChunkCodec.OrderedDelta.inverse(inp[Int(truncatingIfNeeded: q)], r), toByteOffset: i &* width, as: W.self)
        }
        let stride = lanes * buckets
        var j = 0
        while j < plan.length {
            var r = 0
            while r < plan.runs {
                let i = r &* plan.length &+ j, p = c + r &* stride
                take(i, p); take(i &+ 1, p + buckets); take(i &+ 2, p + 2 &* buckets); take(i &+ 3, p + 3 &* buckets)
                r &+= 1
            }
            j &+= lanes
        }
        let tailStart = plan.runs * plan.length, tail = c + plan.runs * stride
        for i in tailStart..<n { take(i, tail + ((i - tailStart) % lanes) * buckets) }
    }
}
