@testable import Delta
import Testing

/// The blocked counting sort of ``ExponentGrouping`` must put every residual exactly where the
/// format's definition (docs/format.md §5.4) puts it: the order is part of the stored bytes.
@Suite struct ExponentGroupingTests {
    /// The definition, written plainly: residuals sorted by (bucket, index mod 4), stable.
    func naiveGroup<W: FixedWidthInteger & UnsignedInteger>(_: W.Type, _ dtype: DType, source: [UInt8], reference: [UInt8]) -> [UInt8] {
        let (shift, buckets) = ChunkCodec.exponentField(dtype)
        let width = MemoryLayout<W>.size, n = source.count / width
        func word(_ bytes: [UInt8], _ i: Int) -> W {
            var v: W = 0
            for k in 0..<width { v |= W(bytes[i * width + k]) << (8 * k) }
            return v
        }
        let order = (0..<n).sorted { a, b in
            let ka = (Int((word(reference, a) >> shift) & W(buckets - 1)), a % 4)
            let kb = (Int((word(reference, b) >> shift) & W(buckets - 1)), b % 4)
            return ka != kb ? ka < kb : a < b
        }
        var out: [UInt8] = []
        for i in order {
            let v = ChunkCodec.OrderedDelta.forward(word(source, i), word(reference, i))
            for k in 0..<width { out.append(UInt8(truncatingIfNeeded: v >> (8 * k))) }
        }
        return out
    }

    func check<W: FixedWidthInteger & UnsignedInteger>(_ type: W.Type, _ dtype: DType, elements: Int, seed: UInt64,
                                                        misaligned: Bool = false) throws {
        // Random bits (every exponent), or few distinct exponents, as real weights have: the top
        // byte (sign and high exponent bits) one of two values.
        var reference = testTensor(dtype, elementCount: elements, seed: seed)
        if seed % 2 == 1 {
            let width = dtype.byteSize
            for i in 0..<elements { reference[i * width + width - 1] = reference[i * width] & 1 == 0 ? 0x3C : 0xBC }
        }
        let source = nearbyReference(dtype, reference, seed: seed + 1)
        try check(type, dtype, source: source, reference: reference, misaligned: misaligned)
    }

    /// Groups and ungroups through ``ChunkCodec`` (the C kernels for 16- and 32-bit words in
    /// aligned buffers; the Swift counting sort otherwise, or with `misaligned`: every buffer one
    /// byte off its word) and compares with the definition.
    func check<W: FixedWidthInteger & UnsignedInteger>(_ type: W.Type, _ dtype: DType, source: [UInt8], reference: [UInt8],
                                                        misaligned: Bool = false) throws {
        let expected = naiveGroup(type, dtype, source: source, reference: reference)
        let shift = misaligned ? 1 : 0, count = source.count
        let s = [UInt8](repeating: 0, count: shift) + source, r = [UInt8](repeating: 0, count: shift) + reference
        var grouped = [UInt8](repeating: 0, count: count + shift)
        s.withUnsafeBytes { s in
            r.withUnsafeBytes { r in
                grouped.withUnsafeMutableBytes { g in
                    ChunkCodec.groupedResiduals(dtype: dtype, source: UnsafeRawBufferPointer(rebasing: s[shift...]),
                                                reference: UnsafeRawBufferPointer(rebasing: r[shift...]),
                                                words: UnsafeMutableRawBufferPointer(rebasing: g[shift...]))
                }
            }
        }
        #expect(Array(grouped[shift...]) == expected, "\(dtype) × \(count / dtype.byteSize), misaligned \(misaligned)")
        var restored = [UInt8](repeating: 0, count: count + shift)
        grouped.withUnsafeBytes { g in
            r.withUnsafeBytes { r in
                restored.withUnsafeMutableBytes { d in
                    ChunkCodec.ungroupResiduals(dtype: dtype, words: UnsafeRawBufferPointer(rebasing: g[shift...]),
                                                reference: UnsafeRawBufferPointer(rebasing: r[shift...]),
                                                destination: UnsafeMutableRawBufferPointer(rebasing: d[shift...]))
                }
            }
        }
        #expect(Array(restored[shift...]) == source, "\(dtype) × \(count / dtype.byteSize), misaligned \(misaligned)")
    }

    /// Sizes below the blocking threshold, at it, with a tail after the runs, and odd ones.
    @Test(arguments: [1, 3, 4, 1023, 1024, 1029, 4096, 5003, 20_000])
    func blockedGroupingIsTheFormatsOrder(elements: Int) throws {
        try check(UInt32.self, .f32, elements: elements, seed: UInt64(elements))
        try check(UInt32.self, .f32, elements: elements, seed: UInt64(elements) + 1)
        try check(UInt16.self, .bf16, elements: elements, seed: UInt64(elements) + 2)
        try check(UInt16.self, .f16, elements: elements, seed: UInt64(elements) + 3)
        try check(UInt64.self, .f64, elements: elements, seed: UInt64(elements) + 4)
        try check(UInt8.self, .f8e4m3, elements: elements, seed: UInt64(elements) + 5)
    }

    /// The Swift counting sort still serves buffers the C kernels refuse (not aligned to the word).
    @Test(arguments: [3, 1029, 5003])
    func misalignedBuffersGroupAlike(elements: Int) throws {
        try check(UInt32.self, .f32, elements: elements, seed: UInt64(elements) + 7, misaligned: true)
        try check(UInt16.self, .bf16, elements: elements, seed: UInt64(elements) + 8, misaligned: true)
        try check(UInt16.self, .f16, elements: elements, seed: UInt64(elements) + 9, misaligned: true)
    }

    /// Every 16-bit pattern as a reference (every exponent and sign, NaNs and infinities), against
    /// sources that differ by every kind of residual; lengths that end in a partial lane group and
    /// in a partial block of the kernels.
    @Test(arguments: [65_536, 65_533, 1_025])
    func everySixteenBitReference(elements: Int) throws {
        var reference = [UInt8](), source = [UInt8]()
        var rng = SeededRandom(seed: UInt64(elements))
        for i in 0..<elements {
            let r = UInt16(truncatingIfNeeded: i &* 40_503)  // odd multiplier: a permutation of the patterns
            let u: UInt16 = i % 3 == 0 ? r : (i % 3 == 1 ? r &+ UInt16(truncatingIfNeeded: rng.next() % 9) &- 4 : UInt16(truncatingIfNeeded: rng.next()))
            reference += [UInt8(r & 0xFF), UInt8(r >> 8)]
            source += [UInt8(u & 0xFF), UInt8(u >> 8)]
        }
        try check(UInt16.self, .bf16, source: source, reference: reference)
        try check(UInt16.self, .f16, source: source, reference: reference)
    }

    /// Every float32 exponent (and sign) in the reference, with random mantissas.
    @Test func everyFloat32Exponent() throws {
        var reference = [UInt8](), source = [UInt8]()
        var rng = SeededRandom(seed: 32)
        for i in 0..<(512 * 9 + 3) {
            let r = UInt32(i % 512) << 23 | UInt32(truncatingIfNeeded: rng.next()) & 0x7F_FFFF
            let u = i % 2 == 0 ? r &+ UInt32(truncatingIfNeeded: rng.next() % 1001) &- 500 : UInt32(truncatingIfNeeded: rng.next())
            for k in 0..<4 {
                reference.append(UInt8(truncatingIfNeeded: r >> (8 * k)))
                source.append(UInt8(truncatingIfNeeded: u >> (8 * k)))
            }
        }
        try check(UInt32.self, .f32, source: source, reference: reference)
    }
}
