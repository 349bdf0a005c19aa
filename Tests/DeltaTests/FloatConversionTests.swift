import Delta
import Testing

@Suite struct FloatConversionTests {
    func toFloats(_ dtype: DType, _ bytes: [UInt8]) -> [Float] {
        var out = [Float](repeating: 0, count: bytes.count / dtype.byteSize)
        bytes.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { FloatConversion.toFloat(dtype, raw, into: $0) }
        }
        return out
    }

    func fromFloats(_ dtype: DType, _ values: [Float]) -> [UInt8] {
        var out = [UInt8](repeating: 0xAA, count: values.count * dtype.byteSize)
        values.withUnsafeBufferPointer { v in
            out.withUnsafeMutableBytes { FloatConversion.fromFloat(dtype, v, into: $0) }
        }
        return out
    }

    // MARK: - bfloat16

    @Test func bfloat16RoundsToNearestEven() {
        let cases: [(UInt32, UInt16)] = [
            (0x3F80_0000, 0x3F80),  // 1.0 exactly
            (0x3F80_8000, 0x3F80),  // halfway, tie to the even 0x3F80
            (0x3F81_8000, 0x3F82),  // halfway, tie to the even 0x3F82
            (0x3F80_8001, 0x3F81),  // just above halfway rounds up
            (0x3F80_7FFF, 0x3F80),  // just below halfway rounds down
            (0xBF81_8000, 0xBF82),  // negative values round by magnitude
            (0x8000_0000, 0x8000),  // -0 keeps its sign
            (0x0000_0001, 0x0000),  // the smallest subnormal rounds to 0
            (0x7F7F_FFFF, 0x7F80),  // the largest float rounds to infinity
            (0xFF80_0000, 0xFF80),  // -infinity stays
        ]
        for (input, expected) in cases {
            #expect(FloatConversion.bfloat16Bits(Float(bitPattern: input)) == expected, "\(String(input, radix: 16))")
        }
    }

    @Test func bfloat16KeepsNaNAQuietNaN() {
        // A signalling NaN whose payload sits only in the low 16 bits must not become infinity.
        for bits: UInt32 in [0x7F80_0001, 0x7FC0_0000, 0xFF80_0001, 0x7FBF_FFFF] {
            let b = FloatConversion.bfloat16Bits(Float(bitPattern: bits))
            #expect(b & 0x7F80 == 0x7F80 && b & 0x007F != 0, "\(String(bits, radix: 16)) → \(String(b, radix: 16))")
            #expect(b & 0x0040 != 0, "quiet bit set")
            #expect(b & 0x8000 == UInt16(bits >> 16) & 0x8000, "sign kept")
        }
    }

    @Test func bfloat16ArraysConvertBothWays() {
        let values: [Float] = [1, -2.5, 0.15625, 3.0e38, -1.0e-38]
        let bytes = fromFloats(.bf16, values)
        let back = toFloats(.bf16, bytes)
        #expect(back[0] == 1 && back[1] == -2.5 && back[2] == 0.15625)
        #expect(back[3] == Float(bitPattern: UInt32(FloatConversion.bfloat16Bits(3.0e38)) << 16))
        // Every bfloat16 pattern is a float32 with the low half zero.
        #expect(values.indices.allSatisfy { back[$0].bitPattern & 0xFFFF == 0 })
    }

    // MARK: - float16

    @Test func float16RoundsToNearestEvenAndOverflowsToInfinity() {
        let input: [Float] = [1, 1 + 1.0 / 2048, 1 + 3.0 / 2048, 65504, 65519, 65520, -1e9, 0x1p-24, 0x1p-25, .nan]
        let halves = values(fromFloats(.f16, input), as: UInt16.self)
        #expect(halves[0] == 0x3C00)
        #expect(halves[1] == 0x3C00)  // tie → even
        #expect(halves[2] == 0x3C02)  // tie → even
        #expect(halves[3] == 0x7BFF)  // largest finite
        #expect(halves[4] == 0x7BFF)  // below the rounding boundary
        #expect(halves[5] == 0x7C00)  // rounds to infinity
        #expect(halves[6] == 0xFC00)
        #expect(halves[7] == 0x0001)  // smallest subnormal
        #expect(halves[8] == 0x0000)  // half of it: tie → even (zero)
        #expect(halves[9] & 0x7C00 == 0x7C00 && halves[9] & 0x03FF != 0)
        let back = toFloats(.f16, bytesOf([UInt16(0x3C00), 0xC000, 0x0001, 0x7C00, 0x8000]))
        #expect(back[0] == 1 && back[1] == -2 && back[2] == 0x1p-24 && back[3] == .infinity)
        #expect(back[4] == 0 && back[4].sign == .minus)
    }

    // MARK: - float8

    @Test func e4m3SaturatesAndHasNoInfinity() {
        #expect(FloatConversion.e4m3Bits(448) == 0x7E)
        #expect(FloatConversion.e4m3Bits(464) == 0x7E)  // tie between 448 and 480 → even (448)
        #expect(FloatConversion.e4m3Bits(470) == 0x7E)  // would round to 480, which is the NaN code: saturate
        #expect(FloatConversion.e4m3Bits(1e6) == 0x7E)
        #expect(FloatConversion.e4m3Bits(-1e6) == 0xFE)
        #expect(FloatConversion.e4m3Bits(.infinity) == 0x7F)
        #expect(FloatConversion.e4m3Bits(-.infinity) == 0xFF)
        #expect(FloatConversion.e4m3Bits(.nan) == 0x7F)
        #expect(FloatConversion.e4m3Bits(1) == 0x38)
        #expect(FloatConversion.e4m3Bits(0.5) == 0x30)
        #expect(FloatConversion.e4m3Bits(-0.0) == 0x80)
        #expect(FloatConversion.e4m3Bits(0x1p-6) == 0x08)  // smallest normal
        #expect(FloatConversion.e4m3Bits(0x1p-9) == 0x01)  // smallest subnormal
        #expect(FloatConversion.e4m3Bits(0x1p-10) == 0x00)  // half of it: tie → even (zero)
        #expect(FloatConversion.e4m3Bits(3 * 0x1p-10) == 0x02)  // 1.5 subnormal steps: tie → even (2)
        #expect(FloatConversion.e4m3Bits(1.9999) == 0x40)  // rounds up into the next binade (2.0)
        #expect(FloatConversion.e4m3Bits(1.0625) == 0x38)  // 1 + 1/16: tie → even (1.0)
        #expect(FloatConversion.e4m3Bits(1.1875) == 0x3A)  // 1 + 3/16: tie → even (1.25)
        let decoded = toFloats(.f8e4m3, [0x7E, 0xFE, 0x7F, 0xFF, 0x01, 0x80])
        #expect(decoded[0] == 448 && decoded[1] == -448)
        #expect(decoded[2].isNaN && decoded[3].isNaN)
        #expect(decoded[4] == 0x1p-9)
        #expect(decoded[5] == 0 && decoded[5].sign == .minus)
    }

    /// Values a narrowing would not keep are found before anything is written: F8_E4M3, which has
    /// no infinity, past 464 (they were clamped to 448 without a word; PyTorch makes them NaN), as
    /// F16 from 65520.
    @Test func narrowingOverflowsAtEachDTypesLimit() {
        func overflows(_ dtype: DType, _ values: [Float]) -> Bool {
            values.withUnsafeBufferPointer { FloatConversion.narrowingOverflows(dtype, $0) }
        }
        #expect(!overflows(.f8e4m3, [448, 464, -464, .infinity, .nan]))
        #expect(overflows(.f8e4m3, [1, 464.5]) && overflows(.f8e4m3, [-479.9]) && overflows(.f8e4m3, [512]))
        #expect(!overflows(.f16, [65519]) && overflows(.f16, [65520]))
        #expect(!overflows(.f8e5m2, [61439]) && overflows(.f8e5m2, [-61440]))
        #expect(!overflows(.f32, [3e38]))
    }

    @Test func e5m2RoundsAndKeepsInfinityAndNaN() {
        #expect(FloatConversion.e5m2Bits(1) == 0x3C)
        #expect(FloatConversion.e5m2Bits(-2) == 0xC0)
        #expect(FloatConversion.e5m2Bits(57344) == 0x7B)  // largest finite
        #expect(FloatConversion.e5m2Bits(58000) == 0x7B)  // rounds down to the largest finite
        #expect(FloatConversion.e5m2Bits(1e6) == 0x7C)  // overflows to infinity, as PyTorch does
        #expect(FloatConversion.e5m2Bits(-1e6) == 0xFC)
        #expect(FloatConversion.e5m2Bits(.infinity) == 0x7C)
        #expect(FloatConversion.e5m2Bits(-.infinity) == 0xFC)
        #expect(FloatConversion.e5m2Bits(.nan) & 0x7F > 0x7C)
        #expect(FloatConversion.e5m2Bits(0x1p-16) == 0x01)  // smallest subnormal
        #expect(FloatConversion.e5m2Bits(1.125) == 0x3C)  // tie → even (1.0)
        #expect(FloatConversion.e5m2Bits(1.375) == 0x3E)  // tie → even (1.5)
        let decoded = toFloats(.f8e5m2, [0x7C, 0xFC, 0x7D, 0x01, 0x7B])
        #expect(decoded[0] == .infinity && decoded[1] == -.infinity && decoded[2].isNaN)
        #expect(decoded[3] == 0x1p-16 && decoded[4] == 57344)
    }

    @Test(arguments: [DType.f8e4m3, .f8e5m2])
    func everyFloat8PatternRoundTrips(dtype: DType) {
        let all = (0...255).map { UInt8($0) }
        let floats = toFloats(dtype, all)
        let back = fromFloats(dtype, floats)
        for b in all {
            if floats[Int(b)].isNaN {
                // NaN comes back as a NaN code (its sign is not kept).
                #expect(back[Int(b)] & 0x7F == (dtype == .f8e4m3 ? 0x7F : 0x7E))
            } else {
                #expect(back[Int(b)] == b, "\(dtype) 0x\(String(b, radix: 16)) → \(floats[Int(b)]) → 0x\(String(back[Int(b)], radix: 16))")
            }
        }
    }

    // MARK: - Integers

    @Test func integersRoundToNearestEvenAndClamp() {
        let input: [Float] = [2.5, 3.5, -2.5, 200, -200, .nan, .infinity, -.infinity, 126.6]
        #expect(values(fromFloats(.i8, input), as: Int8.self) == [2, 4, -2, 127, -128, 0, 127, -128, 127])
        #expect(fromFloats(.u8, input) == [2, 4, 0, 200, 0, 0, 255, 0, 127])
        #expect(values(fromFloats(.i16, [40000, -40000, 1.5]), as: Int16.self) == [32767, -32768, 2])
        #expect(values(fromFloats(.u16, [70000, -1, 65535]), as: UInt16.self) == [65535, 0, 65535])
        #expect(values(fromFloats(.i32, [3e9, -3e9, -7]), as: Int32.self) == [.max, .min, -7])
        #expect(values(fromFloats(.u32, [5e9, -5]), as: UInt32.self) == [.max, 0])
        #expect(values(fromFloats(.i64, [1e30, -1e30, 0x1p40]), as: Int64.self) == [.max, .min, 1 << 40])
        #expect(values(fromFloats(.u64, [1e30, -1e30, 12345]), as: UInt64.self) == [.max, 0, 12345])
        #expect(fromFloats(.bool, [0, -0.0, 0.5, -3, 1]) == [0, 0, 1, 1, 1])
    }

    @Test(arguments: DType.allCases)
    func exactlyRepresentableValuesRoundTrip(dtype: DType) {
        let values: [Float]
        switch dtype {
        case .bool: values = [0, 1, 1, 0]
        case .u8, .u16, .u32, .u64: values = [0, 1, 7, 100, 255]
        case .i8, .i16, .i32, .i64: values = [0, -1, 7, -128, 127]
        case .f8e4m3: values = [0, -0.5, 1.5, 448, -448, 0x1p-9, 0.875]
        case .f8e5m2: values = [0, -0.5, 1.5, 57344, -0x1p-16, 0.875]
        case .f16: values = ([0, -0.5, 1.5, 65504, 0x1p-24, 0.1] as [Float16]).map { Float($0) }
        case .bf16: values = [0, -0.5, 1.5, 0x1p127, -0x1p-133, 3.140625]
        case .f32: values = [0, -0.5, .pi, .greatestFiniteMagnitude, .leastNonzeroMagnitude, .infinity]
        case .f64: values = [0, -0.5, .pi, .greatestFiniteMagnitude, .leastNonzeroMagnitude, -.infinity]
        }
        let back = toFloats(dtype, fromFloats(dtype, values))
        #expect(back.map(\.bitPattern) == values.map(\.bitPattern), "\(dtype)")
    }

    /// In place (the merge's output path) gives the same bytes as converting into a new buffer,
    /// across block boundaries, for every dtype of at most 4 bytes.
    @Test(arguments: DType.allCases.filter { $0.byteSize <= 4 })
    func inPlaceConversionMatchesCopying(dtype: DType) {
        var rng = SystemRandomNumberGenerator()
        let values = (0..<2500).map { i in Float(i % 7 == 0 ? -3 : 1) * Float.random(in: 0..<100, using: &rng) }
        var buffer = values
        buffer.withUnsafeMutableBufferPointer { FloatConversion.fromFloatInPlace(dtype, count: values.count, UnsafeMutableRawBufferPointer($0)) }
        let inPlace = buffer.withUnsafeBytes { Array($0[0..<(values.count * dtype.byteSize)]) }
        #expect(inPlace == fromFloats(dtype, values), "\(dtype)")
    }

    @Test func wideIntegersAndDoublesConvertToFloat() {
        #expect(toFloats(.i64, bytesOf([Int64(-5), 1 << 50])) == [-5, 0x1p50])
        #expect(toFloats(.u64, bytesOf([UInt64.max])) == [0x1p64])
        #expect(toFloats(.i32, bytesOf([Int32.min])) == [-0x1p31])
        #expect(toFloats(.f64, bytesOf([1e300, 0.1])) == [.infinity, 0.1])
        #expect(toFloats(.i8, [0x80, 0x7F]) == [-128, 127])
        #expect(toFloats(.bool, [0, 1]) == [0, 1])
        // An empty input writes nothing.
        #expect(toFloats(.f32, []).isEmpty)
        #expect(fromFloats(.bf16, []).isEmpty)
    }
}
