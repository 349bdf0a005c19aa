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

    func check<W: FixedWidthInteger & UnsignedInteger>(_ type: W.Type, _ dtype: DType, elements: Int, seed: UInt64) throws {
        // Random bits (every exponent), or few distinct exponents, as real weights have: the top
        // byte (sign and high exponent bits) one of two values.
        var reference = testTensor(dtype, elementCount: elements, seed: seed)
        if seed % 2 == 1 {
            let width = dtype.byteSize
            for i in 0..<elements { reference[i * width + width - 1] = reference[i * width] & 1 == 0 ? 0x3C : 0xBC }
        }
        let source = nearbyReference(dtype, reference, seed: seed + 1)
        let expected = naiveGroup(type, dtype, source: source, reference: reference)
        var grouped = [UInt8](repeating: 0, count: source.count)
        source.withUnsafeBytes { s in
            reference.withUnsafeBytes { r in
                grouped.withUnsafeMutableBytes { g in
                    ChunkCodec.groupedResiduals(dtype: dtype, source: s, reference: r, words: g)
                }
            }
        }
        #expect(grouped == expected, "\(dtype) × \(elements)")
        var restored = [UInt8](repeating: 0, count: source.count)
        grouped.withUnsafeBytes { g in
            reference.withUnsafeBytes { r in
                restored.withUnsafeMutableBytes { d in
                    ChunkCodec.ungroupResiduals(dtype: dtype, words: g, reference: r, destination: d)
                }
            }
        }
        #expect(restored == source, "\(dtype) × \(elements)")
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
}
