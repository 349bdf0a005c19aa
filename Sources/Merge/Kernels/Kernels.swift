import Delta

/// Element-wise building blocks shared by the methods. Loops run over blocks in parallel; every
/// reduction accumulates in `Double`.
public enum Kernels {
    /// Elements per parallel block.
    static let block = 1 << 16

    /// Runs `body(range)` over `0..<count` in parallel blocks.
    @inline(__always)
    static func blocks(_ count: Int, _ body: (Range<Int>) -> Void) {
        let n = (count + block - 1) / block
        if n <= 1 {
            body(0..<count)
            return
        }
        try? Parallel.forEach(n) { b, _ in body((b * block)..<min(count, (b + 1) * block)) }
    }

    /// Σ aᵢbᵢ in Double.
    public static func dot(_ a: [Float], _ b: [Float]) -> Double {
        precondition(a.count == b.count, "vectors of one tensor have one length")
        return a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
                var i = 0
                let n = pa.count
                while i + 4 <= n {
                    s0 += Double(pa[i]) * Double(pb[i])
                    s1 += Double(pa[i + 1]) * Double(pb[i + 1])
                    s2 += Double(pa[i + 2]) * Double(pb[i + 2])
                    s3 += Double(pa[i + 3]) * Double(pb[i + 3])
                    i += 4
                }
                while i < n {
                    s0 += Double(pa[i]) * Double(pb[i])
                    i += 1
                }
                return (s0 + s1) + (s2 + s3)
            }
        }
    }

    /// ‖a‖₂ in Double.
    public static func norm(_ a: [Float]) -> Double { dot(a, a).squareRoot() }

    /// ‖a‖₁ in Double.
    public static func l1(_ a: [Float]) -> Double {
        a.withUnsafeBufferPointer { p in
            var s0 = 0.0, s1 = 0.0
            var i = 0
            while i + 2 <= p.count {
                s0 += Double(abs(p[i]))
                s1 += Double(abs(p[i + 1]))
                i += 2
            }
            if i < p.count { s0 += Double(abs(p[i])) }
            return s0 + s1
        }
    }

    /// a − b.
    public static func subtract(_ a: [Float], _ b: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: a.count)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { po in
                    let o = SendableMutable(po), x = SendableConst(pa), y = SendableConst(pb)
                    blocks(pa.count) { r in for i in r { o.p[i] = x.p[i] - y.p[i] } }
                }
            }
        }
        return out
    }

    /// a + b.
    public static func add(_ a: [Float], _ b: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: a.count)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { po in
                    let o = SendableMutable(po), x = SendableConst(pa), y = SendableConst(pb)
                    blocks(pa.count) { r in for i in r { o.p[i] = x.p[i] + y.p[i] } }
                }
            }
        }
        return out
    }

    // MARK: - Exact top-k by magnitude

    /// Marks the `k` elements of largest magnitude (ties broken by position, earlier first).
    ///
    /// Exact and O(n): a two-pass radix select on the magnitudes' bit patterns (for non-negative
    /// floats, bit order is value order) finds the k-th largest magnitude; every larger element is
    /// kept, and equal ones in index order until `k` are kept. NaN counts as the largest magnitude.
    public static func topKMask(_ x: [Float], k: Int) -> [Bool] {
        let n = x.count
        if k >= n { return [Bool](repeating: true, count: n) }
        if k <= 0 { return [Bool](repeating: false, count: n) }
        let (threshold, greater) = kthLargestMagnitude(x, k: k)
        var takeEqual = k - greater
        var mask = [Bool](repeating: false, count: n)
        x.withUnsafeBufferPointer { p in
            mask.withUnsafeMutableBufferPointer { m in
                for i in 0..<n {
                    let bits = p[i].bitPattern & 0x7FFF_FFFF
                    if bits > threshold {
                        m[i] = true
                    } else if bits == threshold, takeEqual > 0 {
                        m[i] = true
                        takeEqual -= 1
                    }
                }
            }
        }
        return mask
    }

    /// The bit pattern of the k-th largest magnitude and how many magnitudes are strictly larger.
    static func kthLargestMagnitude(_ x: [Float], k: Int) -> (UInt32, Int) {
        // Pass 1: histogram of the top 16 bits.
        var high = [Int](repeating: 0, count: 1 << 16)
        x.withUnsafeBufferPointer { p in
            high.withUnsafeMutableBufferPointer { h in
                for v in p { h[Int((v.bitPattern & 0x7FFF_FFFF) >> 16)] += 1 }
            }
        }
        var remaining = k
        var bucket = (1 << 16) - 1
        while bucket > 0, high[bucket] < remaining {
            remaining -= high[bucket]
            bucket -= 1
        }
        let greaterThanBucket = k - remaining
        // Pass 2: histogram of the low 16 bits inside the bucket.
        var low = [Int](repeating: 0, count: 1 << 16)
        let hb = UInt32(bucket)
        x.withUnsafeBufferPointer { p in
            low.withUnsafeMutableBufferPointer { h in
                for v in p {
                    let bits = v.bitPattern & 0x7FFF_FFFF
                    if bits >> 16 == hb { h[Int(bits & 0xFFFF)] += 1 }
                }
            }
        }
        var sub = (1 << 16) - 1
        var greater = greaterThanBucket
        while sub > 0, low[sub] < remaining {
            remaining -= low[sub]
            greater += low[sub]
            sub -= 1
        }
        return (hb << 16 | UInt32(sub), greater)
    }

    // MARK: - Sign consensus

    /// Σᵢ vᵢ over experts, element-wise.
    static func sum(_ vectors: [[Float]], count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { po in
            let o = SendableMutable(po)
            for v in vectors {
                v.withUnsafeBufferPointer { pv in
                    let x = SendableConst(pv)
                    blocks(count) { r in for i in r { o.p[i] += x.p[i] } }
                }
            }
        }
        return out
    }
}

/// Buffers shared by parallel workers that touch disjoint indices.
struct SendableMutable: @unchecked Sendable {
    let p: UnsafeMutableBufferPointer<Float>
    init(_ p: UnsafeMutableBufferPointer<Float>) { self.p = p }
}

struct SendableConst: @unchecked Sendable {
    let p: UnsafeBufferPointer<Float>
    init(_ p: UnsafeBufferPointer<Float>) { self.p = p }
}
