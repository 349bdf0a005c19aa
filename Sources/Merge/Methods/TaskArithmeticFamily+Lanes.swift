import Delta

// The lane kernels of the TIES family's block merge (``GeneralizedTaskArithmetic/mergeBlock(_:base:experts:masks:weights:scales:electSign:normalize:totalWeight:lambda:out:kept:)``):
// eight elements at a time, each lane doing the scalar operations in their order, so the bits are
// those of the scalar loops.
extension GeneralizedTaskArithmetic {
    /// vᵢ = w·((xᵢ − bᵢ)·f) for every element, or only where |xᵢ − bᵢ| is above `threshold` (its
    /// bit pattern is greater), 0 elsewhere. Eight lanes at a time; returns how many elements equal
    /// the threshold (left at 0 for the caller to settle).
    @inline(__always)
    static func weightedDeltas(_ x: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into v: UnsafeMutablePointer<Float>,
                               count: Int, weight w: Float, scale f: Float, threshold: UInt32?) -> Int {
        let rx = UnsafeRawPointer(x), rb = UnsafeRawPointer(b), rv = UnsafeMutableRawPointer(v)
        let magnitude = SIMD8<UInt32>(repeating: 0x7FFF_FFFF)
        let t = SIMD8<UInt32>(repeating: threshold ?? 0)
        var equal = SIMD8<UInt32>(repeating: 0)
        var j = 0
        while j + 8 <= count {
            let d = rx.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self) - rb.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self)
            var value = (d * f) * w
            if threshold != nil {
                let bits = unsafeBitCast(d, to: SIMD8<UInt32>.self) & magnitude
                value = SIMD8<Float>(repeating: 0).replacing(with: value, where: bits .> t)
                equal &+= SIMD8<UInt32>(repeating: 0).replacing(with: 1, where: bits .== t)
            }
            rv.storeBytes(of: value, toByteOffset: 4 * j, as: SIMD8<Float>.self)
            j += 8
        }
        var rest = 0
        while j < count {
            let d = x[j] - b[j]
            let bits = d.bitPattern & 0x7FFF_FFFF
            if let threshold {
                v[j] = bits > threshold ? w * (d * f) : 0
                rest += bits == threshold ? 1 : 0
            } else {
                v[j] = w * (d * f)
            }
            j += 1
        }
        return Int(equal.wrappedSum()) + rest
    }

    /// vᵢ = w·((xᵢ − bᵢ)·f) where the bit pattern of |xᵢ − bᵢ| is strictly between `low` and `high`,
    /// 0 elsewhere. Eight lanes at a time; returns how many elements were kept and how many equal
    /// either bound (left at 0 for the caller to settle).
    @inline(__always)
    static func weightedBand(_ x: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into v: UnsafeMutablePointer<Float>,
                             count: Int, weight w: Float, scale f: Float, low: UInt32, high: UInt32) -> (kept: Int, equal: Int) {
        let rx = UnsafeRawPointer(x), rb = UnsafeRawPointer(b), rv = UnsafeMutableRawPointer(v)
        let magnitude = SIMD8<UInt32>(repeating: 0x7FFF_FFFF)
        let lo = SIMD8<UInt32>(repeating: low), hi = SIMD8<UInt32>(repeating: high)
        let zero = SIMD8<UInt32>(repeating: 0), one = SIMD8<UInt32>(repeating: 1)
        var equal = zero, kept = zero
        var j = 0
        while j + 8 <= count {
            let d = rx.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self) - rb.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self)
            let bits = unsafeBitCast(d, to: SIMD8<UInt32>.self) & magnitude
            let inside = (bits .> lo) .& (bits .< hi)
            let value = SIMD8<Float>(repeating: 0).replacing(with: (d * f) * w, where: inside)
            kept &+= zero.replacing(with: one, where: inside)
            equal &+= zero.replacing(with: one, where: (bits .== lo) .| (bits .== hi))
            rv.storeBytes(of: value, toByteOffset: 4 * j, as: SIMD8<Float>.self)
            j += 8
        }
        var keptRest = 0, equalRest = 0
        while j < count {
            let d = x[j] - b[j]
            let bits = d.bitPattern & 0x7FFF_FFFF
            let inside = bits > low && bits < high
            v[j] = inside ? w * (d * f) : 0
            keptRest += inside ? 1 : 0
            equalRest += bits == low || bits == high ? 1 : 0
            j += 1
        }
        return (Int(kept.wrappedSum()) + keptRest, Int(equal.wrappedSum()) + equalRest)
    }

    /// The elements of a block equal to its threshold (`equal` of them, left at 0 by
    /// ``weightedDeltas(_:_:into:count:weight:scale:threshold:)``), in index order: each in or out
    /// as the cursor's tie choice says. bf16 task vectors tie by the thousand in a block, so the
    /// equal elements are found eight lanes at a time, and the scan ends at the last of them.
    @inline(__always)
    static func settleEqual(_ x: UnsafePointer<Float>, _ b: UnsafePointer<Float>, into v: UnsafeMutablePointer<Float>, count: Int,
                            equal: Int, weight w: Float, scale f: Float, cursor c: inout DeltaMask.Cursor) {
        let t = c.threshold1
        let rx = UnsafeRawPointer(x), rb = UnsafeRawPointer(b)
        let magnitude = SIMD8<UInt32>(repeating: 0x7FFF_FFFF), t8 = SIMD8<UInt32>(repeating: t)
        var left = equal, j = 0
        @inline(__always) func settle(_ d: Float, at jj: Int) {
            if DeltaMask.chosen(c.chosen1, rank: c.rankBase1, need: c.need1) { v[jj] = w * (d * f) }
            c.rankBase1 += 1
            left -= 1
        }
        while left > 0, j + 8 <= count {
            let d = rx.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self) - rb.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self)
            let tied = (unsafeBitCast(d, to: SIMD8<UInt32>.self) & magnitude) .== t8
            if any(tied) {
                for lane in 0..<8 where tied[lane] { settle(d[lane], at: j + lane) }
            }
            j += 8
        }
        while left > 0, j < count {
            let d = x[j] - b[j]
            if d.bitPattern & 0x7FFF_FFFF == t { settle(d, at: j) }
            j += 1
        }
    }

    /// TIES' disjoint mean added to the base: out = b + (normalize ? acc / (div == 0 ? 1 : div) : acc),
    /// times λ when it is not 1. Eight lanes at a time (each lane's operations are the scalar
    /// ones, so the bits are the same).
    @inline(__always)
    static func disjointMean(_ acc: UnsafePointer<Float>, _ div: UnsafePointer<Float>, base b: UnsafePointer<Float>,
                             into out: UnsafeMutablePointer<Float>, count: Int, normalize: Bool, lambda: Float) {
        let ra = UnsafeRawPointer(acc), rd = UnsafeRawPointer(div), rb = UnsafeRawPointer(b), ro = UnsafeMutableRawPointer(out)
        let one = SIMD8<Float>(repeating: 1), zero = SIMD8<Float>(repeating: 0), l8 = SIMD8<Float>(repeating: lambda)
        var j = 0
        while j + 8 <= count {
            let a = ra.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self)
            var mixed = a
            if normalize {
                let d = rd.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self)
                mixed = a / d.replacing(with: one, where: d .== zero)
            }
            if lambda != 1 { mixed *= l8 }
            ro.storeBytes(of: rb.loadUnaligned(fromByteOffset: 4 * j, as: SIMD8<Float>.self) + mixed, toByteOffset: 4 * j, as: SIMD8<Float>.self)
            j += 8
        }
        while j < count {
            var mixed = normalize ? acc[j] / (div[j] == 0 ? 1 : div[j]) : acc[j]
            if lambda != 1 { mixed *= lambda }
            out[j] = b[j] + mixed
            j += 1
        }
    }
}
