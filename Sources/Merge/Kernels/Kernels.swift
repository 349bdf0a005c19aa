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
                guard let x = pa.baseAddress, let y = pb.baseAddress else { return 0 }
                return dot(x, y, count: pa.count)
            }
        }
    }

    /// Σ aᵢbᵢ over `n` elements in Double, in four independent lanes (element i goes to lane i mod 4,
    /// the tail to lane 0), summed as (s0 + s1) + (s2 + s3).
    @inline(__always)
    static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, count n: Int) -> Double {
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        var s = SIMD4<Double>()
        var i = 0
        while i + 4 <= n {
            let x = SIMD4<Double>(ra.loadUnaligned(fromByteOffset: 4 * i, as: SIMD4<Float>.self))
            let y = SIMD4<Double>(rb.loadUnaligned(fromByteOffset: 4 * i, as: SIMD4<Float>.self))
            s += x * y
            i += 4
        }
        while i < n {
            s[0] += Double(a[i]) * Double(b[i])
            i += 1
        }
        return (s[0] + s[1]) + (s[2] + s[3])
    }

    /// Adds τᵢ·τⱼ (τ = expert − base) over `n` elements to `lanes` for every pair i ≤ j, in the order
    /// (0,0), (0,1), …, (0,k−1), (1,1), …: each pair's four Double lanes as ``dot(_:_:count:)`` keeps
    /// them (element i of the groups of four from `base` in lane i mod 4, the tail in lane 0).
    /// `deltas` is scratch for `experts.count` lanes. The conflict report's pair dots and Model
    /// Stock's Gram tables (fed a chunk at a time, so the lanes carry on) both sum through it.
    static func addPairDots(count n: Int, base: UnsafePointer<Float>, experts: [UnsafePointer<Float>],
                            lanes: UnsafeMutablePointer<SIMD4<Double>>, deltas: UnsafeMutablePointer<SIMD4<Double>>) {
        let k = experts.count
        let rb = UnsafeRawPointer(base)
        var i = 0
        if k == 3 {
            // Three experts (the common octopus merge): the six sums in registers, the same operations.
            let r0 = UnsafeRawPointer(experts[0]), r1 = UnsafeRawPointer(experts[1]), r2 = UnsafeRawPointer(experts[2])
            var s00 = lanes[0], s01 = lanes[1], s02 = lanes[2], s11 = lanes[3], s12 = lanes[4], s22 = lanes[5]
            while i + 4 <= n {
                let z = rb.loadUnaligned(fromByteOffset: 4 * i, as: SIMD4<Float>.self)
                let d0 = SIMD4<Double>(r0.loadUnaligned(fromByteOffset: 4 * i, as: SIMD4<Float>.self) - z)
                let d1 = SIMD4<Double>(r1.loadUnaligned(fromByteOffset: 4 * i, as: SIMD4<Float>.self) - z)
                let d2 = SIMD4<Double>(r2.loadUnaligned(fromByteOffset: 4 * i, as: SIMD4<Float>.self) - z)
                s00 += d0 * d0
                s01 += d0 * d1
                s02 += d0 * d2
                s11 += d1 * d1
                s12 += d1 * d2
                s22 += d2 * d2
                i += 4
            }
            (lanes[0], lanes[1], lanes[2], lanes[3], lanes[4], lanes[5]) = (s00, s01, s02, s11, s12, s22)
        } else if k == 2 {
            let r0 = UnsafeRawPointer(experts[0]), r1 = UnsafeRawPointer(experts[1])
            var s00 = lanes[0], s01 = lanes[1], s11 = lanes[2]
            while i + 4 <= n {
                let z = rb.loadUnaligned(fromByteOffset: 4 * i, as: SIMD4<Float>.self)
                let d0 = SIMD4<Double>(r0.loadUnaligned(fromByteOffset: 4 * i, as: SIMD4<Float>.self) - z)
                let d1 = SIMD4<Double>(r1.loadUnaligned(fromByteOffset: 4 * i, as: SIMD4<Float>.self) - z)
                s00 += d0 * d0
                s01 += d0 * d1
                s11 += d1 * d1
                i += 4
            }
            (lanes[0], lanes[1], lanes[2]) = (s00, s01, s11)
        }
        while i + 4 <= n {
            let z = rb.loadUnaligned(fromByteOffset: 4 * i, as: SIMD4<Float>.self)
            for e in 0..<k { deltas[e] = SIMD4<Double>(UnsafeRawPointer(experts[e]).loadUnaligned(fromByteOffset: 4 * i, as: SIMD4<Float>.self) - z) }
            var p = 0
            for a in 0..<k {
                for b in a..<k {
                    lanes[p] += deltas[a] * deltas[b]
                    p += 1
                }
            }
            i += 4
        }
        while i < n {
            var p = 0
            for a in 0..<k {
                for b in a..<k {
                    lanes[p][0] += Double(experts[a][i] - base[i]) * Double(experts[b][i] - base[i])
                    p += 1
                }
            }
            i += 1
        }
    }

    /// Σ (aᵢ − cᵢ)(bᵢ − cᵢ) over `n` elements, each difference formed in Float32 and the products
    /// summed in Double exactly as ``dot(_:_:count:)`` sums them: the dot product of two task
    /// vectors without storing them.
    @inline(__always)
    static func dotOfDifferences(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafePointer<Float>, count n: Int) -> Double {
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b), rc = UnsafeRawPointer(c)
        var s = SIMD4<Double>()
        var i = 0
        while i + 4 <= n {
            let z = rc.loadUnaligned(fromByteOffset: 4 * i, as: SIMD4<Float>.self)
            let x = SIMD4<Double>(ra.loadUnaligned(fromByteOffset: 4 * i, as: SIMD4<Float>.self) - z)
            let y = SIMD4<Double>(rb.loadUnaligned(fromByteOffset: 4 * i, as: SIMD4<Float>.self) - z)
            s += x * y
            i += 4
        }
        while i < n {
            s[0] += Double(a[i] - c[i]) * Double(b[i] - c[i])
            i += 1
        }
        return (s[0] + s[1]) + (s[2] + s[3])
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
        precondition(a.count == b.count, "vectors of one tensor have one length")
        var out = [Float](repeating: 0, count: a.count)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { po in
                    let o = UnsafeSendable(po), x = UnsafeSendable(pa), y = UnsafeSendable(pb)
                    blocks(pa.count) { r in for i in r { o.value[i] = x.value[i] - y.value[i] } }
                }
            }
        }
        return out
    }

    /// a + b.
    public static func add(_ a: [Float], _ b: [Float]) -> [Float] {
        precondition(a.count == b.count, "vectors of one tensor have one length")
        var out = [Float](repeating: 0, count: a.count)
        a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                out.withUnsafeMutableBufferPointer { po in
                    let o = UnsafeSendable(po), x = UnsafeSendable(pa), y = UnsafeSendable(pb)
                    blocks(pa.count) { r in for i in r { o.value[i] = x.value[i] + y.value[i] } }
                }
            }
        }
        return out
    }

    // MARK: - Exact top-k by magnitude

    /// Marks the `k` elements of largest magnitude, as `torch.argsort(|x|, descending=True)[:k]` on
    /// CPU does: among magnitudes equal to the k-th largest, the ones torch's sort ranks first.
    ///
    /// The rule the magnitude sparsifiers apply in merges (``DeltaMask/magnitudeTop(_:_:k:)`` against
    /// a zero base): a radix select on the magnitudes' bit patterns (for non-negative floats, bit order
    /// is value order), then, only when the threshold is tied, a replay of torch's sort
    /// (``TorchSortOrder``); above ``TorchSortOrder/maxCount`` elements the earlier indices among the
    /// ties win. NaN counts as the largest magnitude.
    public static func topKMask(_ x: [Float], k: Int) -> [Bool] {
        let zeros = [Float](repeating: 0, count: x.count)
        return x.withUnsafeBufferPointer { px in
            zeros.withUnsafeBufferPointer { pz in
                let mask = DeltaMask(rule: .top(DeltaMask.magnitudeTop(px, pz, k: k).0), scale: 1, keptFraction: 1)
                var out = [Bool](repeating: false, count: px.count)
                mask.withCursor(block: 0) { cursor in
                    for j in 0..<px.count {
                        if j % block == 0 { mask.reposition(&cursor, block: j / block) }
                        out[j] = DeltaMask.keep(&cursor, px[j] - pz[j], j)
                    }
                }
                return out
            }
        }
    }

    // MARK: - Sign consensus

    /// Σᵢ vᵢ over experts, element-wise.
    static func sum(_ vectors: [[Float]], count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        out.withUnsafeMutableBufferPointer { po in
            let o = UnsafeSendable(po)
            for v in vectors {
                v.withUnsafeBufferPointer { pv in
                    let x = UnsafeSendable(pv)
                    blocks(count) { r in for i in r { o.value[i] += x.value[i] } }
                }
            }
        }
        return out
    }
}

