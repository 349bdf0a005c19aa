/// Converts tensor elements to and from `Float` for arithmetic (merges, diffs).
///
/// Narrow formats are rounded to nearest, ties to even, as PyTorch does. `F8_E4M3` has no
/// infinity: finite values beyond its range saturate to ±448 and infinities become NaN.
/// `F8_E5M2`, `F16` and `BF16` overflow to infinity.
public enum FloatConversion {
    /// What an overflowing value of `dtype` would be written as, for messages.
    public static func overflowResult(_ dtype: DType) -> String {
        dtype == .f8e4m3 ? "±448 (F8_E4M3 has no infinity)" : "±inf"
    }

    /// Converts `bytes` (whole elements of `dtype`) to `Float`s.
    public static func toFloat(_ dtype: DType, _ bytes: UnsafeRawBufferPointer, into out: UnsafeMutableBufferPointer<Float>) {
        let n = bytes.count / dtype.byteSize
        precondition(out.count >= n, "output holds every element")
        guard n > 0 else { return }
        let p = bytes.baseAddress!
        switch dtype {
        case .f32:
            for i in 0..<n { out[i] = p.loadUnaligned(fromByteOffset: 4 * i, as: Float.self) }
        case .bf16:
            for i in 0..<n { out[i] = Float(bitPattern: UInt32(p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16) }
        case .f16:
            for i in 0..<n { out[i] = Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) }
        case .f64:
            for i in 0..<n { out[i] = Float(p.loadUnaligned(fromByteOffset: 8 * i, as: Double.self)) }
        case .f8e4m3:
            for i in 0..<n { out[i] = e4m3Table[Int(p.load(fromByteOffset: i, as: UInt8.self))] }
        case .f8e5m2:
            for i in 0..<n { out[i] = Float(Float16(bitPattern: UInt16(p.load(fromByteOffset: i, as: UInt8.self)) << 8)) }
        case .i64: for i in 0..<n { out[i] = Float(p.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)) }
        case .i32: for i in 0..<n { out[i] = Float(p.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)) }
        case .i16: for i in 0..<n { out[i] = Float(p.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)) }
        case .i8: for i in 0..<n { out[i] = Float(p.load(fromByteOffset: i, as: Int8.self)) }
        case .u64: for i in 0..<n { out[i] = Float(p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)) }
        case .u32: for i in 0..<n { out[i] = Float(p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
        case .u16: for i in 0..<n { out[i] = Float(p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) }
        case .u8, .bool: for i in 0..<n { out[i] = Float(p.load(fromByteOffset: i, as: UInt8.self)) }
        }
    }

    /// Converts `Float`s to elements of `dtype`, rounding to nearest even.
    /// Integer dtypes round to the nearest integer and clamp to the type's range.
    public static func fromFloat(_ dtype: DType, _ values: UnsafeBufferPointer<Float>, into out: UnsafeMutableRawBufferPointer) {
        let n = values.count
        precondition(out.count >= n * dtype.byteSize, "output holds every element")
        guard n > 0 else { return }
        let p = out.baseAddress!
        switch dtype {
        case .f32:
            for i in 0..<n { p.storeBytes(of: values[i], toByteOffset: 4 * i, as: Float.self) }
        case .bf16:
            for i in 0..<n { p.storeBytes(of: bfloat16Bits(values[i]), toByteOffset: 2 * i, as: UInt16.self) }
        case .f16:
            for i in 0..<n { p.storeBytes(of: Float16(values[i]).bitPattern, toByteOffset: 2 * i, as: UInt16.self) }
        case .f64:
            for i in 0..<n { p.storeBytes(of: Double(values[i]), toByteOffset: 8 * i, as: Double.self) }
        case .f8e4m3:
            for i in 0..<n { p.storeBytes(of: e4m3Bits(values[i]), toByteOffset: i, as: UInt8.self) }
        case .f8e5m2:
            for i in 0..<n { p.storeBytes(of: e5m2Bits(values[i]), toByteOffset: i, as: UInt8.self) }
        case .i64: for i in 0..<n { p.storeBytes(of: clampInt(values[i], Int64.self), toByteOffset: 8 * i, as: Int64.self) }
        case .i32: for i in 0..<n { p.storeBytes(of: clampInt(values[i], Int32.self), toByteOffset: 4 * i, as: Int32.self) }
        case .i16: for i in 0..<n { p.storeBytes(of: clampInt(values[i], Int16.self), toByteOffset: 2 * i, as: Int16.self) }
        case .i8: for i in 0..<n { p.storeBytes(of: clampInt(values[i], Int8.self), toByteOffset: i, as: Int8.self) }
        case .u64: for i in 0..<n { p.storeBytes(of: clampInt(values[i], UInt64.self), toByteOffset: 8 * i, as: UInt64.self) }
        case .u32: for i in 0..<n { p.storeBytes(of: clampInt(values[i], UInt32.self), toByteOffset: 4 * i, as: UInt32.self) }
        case .u16: for i in 0..<n { p.storeBytes(of: clampInt(values[i], UInt16.self), toByteOffset: 2 * i, as: UInt16.self) }
        case .u8: for i in 0..<n { p.storeBytes(of: clampInt(values[i], UInt8.self), toByteOffset: i, as: UInt8.self) }
        case .bool: for i in 0..<n { p.storeBytes(of: values[i] != 0 ? UInt8(1) : 0, toByteOffset: i, as: UInt8.self) }
        }
    }

    /// Whether converting these finite Float32 values to `dtype` turns one into ±inf: a magnitude
    /// at or past the halfway point between the dtype's largest finite value and the next power,
    /// which round-to-nearest-even takes up (the largest mantissa is odd in F16, BF16 and E5M2, so
    /// the tie goes up). F8_E4M3 has no infinity: past 464 (NaN in PyTorch's conversion, ±448
    /// in this converter's) counts as overflowing too.
    /// Values already ±inf or NaN are not counted (they pass through as they are). One max over
    /// the masked bit patterns, which vectorises.
    public static func narrowingOverflows(_ dtype: DType, _ values: UnsafePointer<Float>, count: Int) -> Bool {
        let limit: UInt32
        switch dtype {
        case .f16: limit = Float(65520).bitPattern
        case .bf16: limit = 0x7F7F_8000
        case .f8e5m2: limit = Float(61440).bitPattern
        // No infinity: past 464 (halfway from 448, the largest, to 480, whose code is NaN) values
        // round to NaN in PyTorch's conversion (and saturate to 448 here); 464 itself ties to 448.
        case .f8e4m3: limit = Float(464).nextUp.bitPattern
        default: return false
        }
        return UnsafeRawPointer(values).withMemoryRebound(to: UInt32.self, capacity: count) { bits in
            var top: UInt32 = 0
            for i in 0..<count {
                let magnitude = bits[i] & 0x7FFF_FFFF
                // Non-finite values (exponent all ones) count as 0 here.
                top = Swift.max(top, magnitude < 0x7F80_0000 ? magnitude : 0)
            }
            return top >= limit
        }
    }

    /// ``narrowingOverflows(_:_:count:)`` of a buffer (false when empty).
    public static func narrowingOverflows(_ dtype: DType, _ values: UnsafeBufferPointer<Float>) -> Bool {
        values.baseAddress.map { narrowingOverflows(dtype, $0, count: values.count) } ?? false
    }

    public static func holdsNonFinite(_ values: UnsafeBufferPointer<Float>) -> Bool {
        values.baseAddress.map { holdsNonFinite($0, count: values.count) } ?? false
    }

    /// Whether any of `count` values is ±inf or NaN (exponent bits all set): one max over the
    /// masked bit patterns, which vectorises.
    public static func holdsNonFinite(_ values: UnsafePointer<Float>, count: Int) -> Bool {
        UnsafeRawPointer(values).withMemoryRebound(to: UInt32.self, capacity: count) { bits in
            var top: UInt32 = 0
            for i in 0..<count { top = Swift.max(top, bits[i] & 0x7F80_0000) }
            return top == 0x7F80_0000
        }
    }

    /// Converts `count` Floats stored at the start of `buffer` to `dtype`, a dtype of at most 4
    /// bytes, writing the result at the start of the same buffer.
    public static func fromFloatInPlace(_ dtype: DType, count: Int, _ buffer: UnsafeMutableRawBufferPointer) {
        precondition(dtype.byteSize <= 4, "in-place conversion narrows or keeps the element size")
        precondition(buffer.count >= 4 * count, "buffer holds every Float")
        guard dtype != .f32, count > 0 else { return }
        let p = buffer.baseAddress!
        let size = dtype.byteSize
        // Block by block, in order, through a copy: block [s, e) is written to [size·s, size·e), at or
        // below 4·e, where the next block's reads begin.
        let block = 1024
        withUnsafeTemporaryAllocation(of: Float.self, capacity: block) { temp in
            var start = 0
            while start < count {
                let n = min(block, count - start)
                temp.baseAddress!.update(from: (p + 4 * start).assumingMemoryBound(to: Float.self), count: n)
                fromFloat(dtype, UnsafeBufferPointer(rebasing: temp[0..<n]),
                          into: UnsafeMutableRawBufferPointer(start: p + size * start, count: size * n))
                start += n
            }
        }
    }

    /// Float32 → bfloat16 bits, round to nearest even; NaN stays a quiet NaN.
    @inline(__always)
    public static func bfloat16Bits(_ x: Float) -> UInt16 {
        let u = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: (u >> 16) | 0x40) }
        let rounded = u &+ 0x7FFF &+ ((u >> 16) & 1)
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }

    /// Float32 → F8_E4M3 (bias 7, no infinity, NaN = 0x7F).
    public static func e4m3Bits(_ x: Float) -> UInt8 {
        let sign: UInt8 = x.sign == .minus ? 0x80 : 0
        if x.isNaN || x.isInfinite { return sign | 0x7F }
        return sign | minifloatMagnitude(abs(x), exponentBits: 4, mantissaBits: 3, saturation: 0x7E)
    }

    /// Float32 → F8_E5M2 (bias 15, IEEE-like with infinity and NaN).
    public static func e5m2Bits(_ x: Float) -> UInt8 {
        let sign: UInt8 = x.sign == .minus ? 0x80 : 0
        if x.isNaN { return sign | 0x7E }
        if x.isInfinite { return sign | 0x7C }
        // Like IEEE formats (and PyTorch), values that round beyond the largest finite number become infinity.
        let m = minifloatMagnitude(abs(x), exponentBits: 5, mantissaBits: 2, saturation: 0x7C)
        return sign | m
    }

    /// Rounds a non-negative finite value to a small float format (nearest, ties to even); codes
    /// beyond `saturation` become `saturation` (the largest finite code for E4M3, infinity for E5M2).
    static func minifloatMagnitude(_ a: Float, exponentBits: Int, mantissaBits: Int, saturation: UInt8) -> UInt8 {
        if a == 0 { return 0 }
        let bias = (1 << (exponentBits - 1)) - 1
        let minExponent = 1 - bias
        var e = max(Int(a.exponent), minExponent)
        var q = (a * Float(sign: .plus, exponent: mantissaBits - e, significand: 1)).rounded(.toNearestOrEven)
        let implicit = Float(1 << mantissaBits)
        if q >= 2 * implicit {
            e += 1
            q = implicit
        }
        let code: Int
        if q >= implicit {
            code = ((e + bias) << mantissaBits) | (Int(q) - (1 << mantissaBits))
        } else {
            code = Int(q)
        }
        return code > Int(saturation) ? saturation : UInt8(code)
    }

    static let e4m3Table: [Float] = (0..<256).map { b in
        let sign: Float = b & 0x80 != 0 ? -1 : 1
        let e = (b >> 3) & 0xF
        let m = b & 7
        if e == 15 && m == 7 { return .nan }
        if e == 0 { return sign * Float(m) / 8 * Float(sign: .plus, exponent: -6, significand: 1) }
        return sign * (1 + Float(m) / 8) * Float(sign: .plus, exponent: e - 7, significand: 1)
    }

    @inline(__always)
    static func clampInt<T: FixedWidthInteger>(_ x: Float, _: T.Type) -> T {
        if x.isNaN { return 0 }
        let r = x.rounded(.toNearestOrEven)
        if r <= Float(T.min) { return T.min }
        if r >= Float(T.max) { return T.max }
        return T(r)
    }
}
