/// How a tensor's bits are turned into a residual before byte-plane splitting.
///
/// Every encoding is a bijection on bit patterns, so decoding is bit-exact for any input,
/// NaN payloads, negative zero and subnormals included.
public enum TensorEncoding: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// No reference. Floating-point words are rotated left by one bit, so the exponent
    /// fills the top byte and the sign joins the lowest mantissa byte.
    case whole = 0
    /// Bitwise XOR with the reference tensor's word.
    case xor = 1
    /// Difference of the words as ordered integers, zigzag-coded (small changes of either
    /// sign give small unsigned numbers). Floats are first mapped to integers that sort like
    /// the float values, so a tiny change across zero or a binade stays a small number.
    case integerDelta = 2
    /// ``integerDelta`` with the elements grouped by the exponent of their reference value
    /// before plane splitting (a stable counting sort the decoder repeats from the reference).
    /// A fine-tune's update is about the same size in absolute terms everywhere, so its size
    /// in units of the last place depends on the reference's exponent; grouping puts alike
    /// residuals together, and zstd's per-block statistics then code them more tightly.
    case integerDeltaByExponent = 3
    /// The reference plus a product of low-rank Float32 factors (lossy: `commit --lowrank`, a
    /// reversible merge's view). See ``LowRankCodec``.
    case lowRank = 4

    public var description: String {
        switch self {
        case .whole: return "whole"
        case .xor: return "xor"
        case .integerDelta: return "int-delta"
        case .integerDeltaByExponent: return "int-delta/exp"
        case .lowRank: return "low-rank"
        }
    }

    /// Whether decoding needs a reference tensor.
    public var needsReference: Bool { self != .whole }

    /// The encodings of the byte-plane codec (every one but ``lowRank``).
    public static let lossless: [TensorEncoding] = [.whole, .xor, .integerDelta, .integerDeltaByExponent]

    /// The delta encoding mrepo uses for a dtype when a reference exists: the ordered-integer
    /// difference grouped by reference exponent for floating-point dtypes, the plain integer
    /// difference for integers, XOR for `BOOL`.
    /// (docs/benchmarks.md, "Codec choice", has the measurements.)
    public static func preferredDelta(for dtype: DType) -> TensorEncoding {
        if dtype.isFloatingPoint { return .integerDeltaByExponent }
        return dtype == .bool ? .xor : .integerDelta
    }

    /// Scratch bytes the codec needs per chunk byte (planes, and the grouped words).
    public static let scratchFactor = 2
}

/// How the planes of one chunk are stored.
public enum ChunkCoder: UInt8, Sendable {
    /// Planes stored as they are (chosen when compression would not shrink them).
    case raw = 0
    /// Planes concatenated into one zstd frame with a content checksum.
    case zstd = 1
}

/// Encodes and decodes one chunk of a tensor: residual transform, byte-plane split, zstd.
public enum ChunkCodec {
    /// Encodes `source` (whole elements of `dtype`) against the matching chunk of the reference.
    ///
    /// - Parameters:
    ///   - planes: scratch of at least `TensorEncoding.scratchFactor × source.count` bytes.
    ///   - output: at least `Zstd.compressBound(source.count)` bytes.
    /// - Returns: the coder used and the number of bytes written to `output`.
    public static func encode(dtype: DType, encoding: TensorEncoding, level: Int32,
                              source: UnsafeRawBufferPointer, reference: UnsafeRawBufferPointer?,
                              planes: UnsafeMutableRawBufferPointer,
                              output: UnsafeMutableRawBufferPointer) -> (ChunkCoder, Int) {
        precondition(source.count % dtype.byteSize == 0, "chunks hold whole elements")
        precondition(encoding != .lowRank, "low-rank tensors are encoded by LowRankCodec")
        precondition(!encoding.needsReference || reference?.count == source.count, "reference chunk matches in size")
        let planeBytes = UnsafeMutableRawBufferPointer(rebasing: planes[0..<source.count])
        if encoding == .integerDeltaByExponent {
            let words = UnsafeMutableRawBufferPointer(rebasing: planes[source.count..<(2 * source.count)])
            groupedResiduals(dtype: dtype, source: source, reference: reference!, words: words)
            split(dtype: dtype, encoding: .whole, plainWords: true, source: UnsafeRawBufferPointer(words), reference: nil, planes: planeBytes)
        } else {
            split(dtype: dtype, encoding: encoding, source: source, reference: reference, planes: planeBytes)
        }
        if let n = Zstd.compress(UnsafeRawBufferPointer(planeBytes), into: output, level: level), n < source.count {
            return (.zstd, n)
        }
        output.baseAddress!.copyMemory(from: planeBytes.baseAddress!, byteCount: source.count)
        return (.raw, source.count)
    }

    /// Decodes one chunk into `destination` (the chunk's original bytes).
    ///
    /// - Parameters:
    ///   - planes: scratch of at least `TensorEncoding.scratchFactor × destination.count` bytes.
    /// - Throws: ``DeltaError/corruptData(object:problem:)`` naming `object` when the stored
    ///   bytes do not decode.
    public static func decode(dtype: DType, encoding: TensorEncoding, coder: ChunkCoder,
                              stored: UnsafeRawBufferPointer, reference: UnsafeRawBufferPointer?,
                              planes: UnsafeMutableRawBufferPointer,
                              destination: UnsafeMutableRawBufferPointer, object: String) throws(DeltaError) {
        if encoding == .lowRank { throw .corruptData(object: object, problem: "a low-rank tensor has no chunk records") }
        let planeBytes = UnsafeMutableRawBufferPointer(rebasing: planes[0..<destination.count])
        switch coder {
        case .raw:
            guard stored.count == destination.count else {
                throw .corruptData(object: object, problem: "raw chunk holds \(stored.count) bytes, expected \(destination.count)")
            }
            if destination.count > 0 { planeBytes.baseAddress!.copyMemory(from: stored.baseAddress!, byteCount: stored.count) }
        case .zstd:
            do {
                try Zstd.decompress(stored, into: planeBytes)
            } catch {
                throw .corruptData(object: object, problem: "zstd: \(error.message)")
            }
        }
        if encoding.needsReference, reference?.count != destination.count {
            throw .corruptData(object: object, problem: "reference chunk is missing or has the wrong size")
        }
        if encoding == .integerDeltaByExponent {
            let words = UnsafeMutableRawBufferPointer(rebasing: planes[destination.count..<(2 * destination.count)])
            join(dtype: dtype, encoding: .whole, plainWords: true, planes: UnsafeRawBufferPointer(planeBytes), reference: nil, destination: words)
            ungroupResiduals(dtype: dtype, words: UnsafeRawBufferPointer(words), reference: reference!, destination: destination)
        } else {
            join(dtype: dtype, encoding: encoding, planes: UnsafeRawBufferPointer(planeBytes), reference: reference,
                 destination: destination)
        }
    }

    // MARK: - Transforms

    static func split(dtype: DType, encoding: TensorEncoding, plainWords: Bool = false, source: UnsafeRawBufferPointer,
                      reference: UnsafeRawBufferPointer?, planes: UnsafeMutableRawBufferPointer) {
        let float = dtype.isFloatingPoint && !plainWords
        switch dtype.byteSize {
        case 1: splitWords(UInt8.self, float: float, encoding, source, reference, planes)
        case 2: splitWords(UInt16.self, float: float, encoding, source, reference, planes)
        case 4: splitWords(UInt32.self, float: float, encoding, source, reference, planes)
        default: splitWords(UInt64.self, float: float, encoding, source, reference, planes)
        }
    }

    static func join(dtype: DType, encoding: TensorEncoding, plainWords: Bool = false, planes: UnsafeRawBufferPointer,
                     reference: UnsafeRawBufferPointer?, destination: UnsafeMutableRawBufferPointer) {
        let float = dtype.isFloatingPoint && !plainWords
        switch dtype.byteSize {
        case 1: joinWords(UInt8.self, float: float, encoding, planes, reference, destination)
        case 2: joinWords(UInt16.self, float: float, encoding, planes, reference, destination)
        case 4: joinWords(UInt32.self, float: float, encoding, planes, reference, destination)
        default: joinWords(UInt64.self, float: float, encoding, planes, reference, destination)
        }
    }

    /// Maps a sign-magnitude float word to an unsigned integer that orders like the float.
    @inline(__always)
    static func ordered<W: FixedWidthInteger & UnsignedInteger>(_ u: W) -> W {
        let signBit = W(1) << (W.bitWidth - 1)
        let negative = W(0) &- (u >> (W.bitWidth - 1))  // all ones when the sign bit is set
        return u ^ (negative | signBit)
    }

    @inline(__always)
    static func unordered<W: FixedWidthInteger & UnsignedInteger>(_ o: W) -> W {
        let signBit = W(1) << (W.bitWidth - 1)
        let negative = (o >> (W.bitWidth - 1)) &- 1  // all ones when the original was negative
        return o ^ (negative | signBit)
    }

    @inline(__always)
    static func zigzag<W: FixedWidthInteger & UnsignedInteger>(_ d: W) -> W {
        let sign = W(0) &- (d >> (W.bitWidth - 1))
        return (d << 1) ^ sign
    }

    @inline(__always)
    static func unzigzag<W: FixedWidthInteger & UnsignedInteger>(_ z: W) -> W {
        (z >> 1) ^ (W(0) &- (z & 1))
    }

    @inline(__always)
    static func rotateLeft<W: FixedWidthInteger & UnsignedInteger>(_ u: W) -> W {
        (u << 1) | (u >> (W.bitWidth - 1))
    }

    @inline(__always)
    static func rotateRight<W: FixedWidthInteger & UnsignedInteger>(_ u: W) -> W {
        (u >> 1) | (u << (W.bitWidth - 1))
    }

    private static func splitWords<W: FixedWidthInteger & UnsignedInteger>(
        _: W.Type, float: Bool, _ encoding: TensorEncoding, _ source: UnsafeRawBufferPointer,
        _ reference: UnsafeRawBufferPointer?, _ planes: UnsafeMutableRawBufferPointer
    ) {
        let n = source.count / MemoryLayout<W>.size
        guard n > 0 else { return }
        let src = source.baseAddress!, out = planes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let ref = reference?.baseAddress ?? src
        switch (encoding, float) {
        case (.whole, true): splitLoop(W.self, RotateLeft.self, n, src, ref, out)
        case (.whole, false): splitLoop(W.self, Identity.self, n, src, ref, out)
        case (.xor, _): splitLoop(W.self, Xor.self, n, src, ref, out)
        case (.integerDelta, true), (.integerDeltaByExponent, true): splitLoop(W.self, OrderedDelta.self, n, src, ref, out)
        case (.integerDelta, false), (.integerDeltaByExponent, false): splitLoop(W.self, IntegerDelta.self, n, src, ref, out)
        case (.lowRank, _): preconditionFailure("low-rank tensors have no byte planes (LowRankCodec)")
        }
    }

    private static func joinWords<W: FixedWidthInteger & UnsignedInteger>(
        _: W.Type, float: Bool, _ encoding: TensorEncoding, _ planes: UnsafeRawBufferPointer,
        _ reference: UnsafeRawBufferPointer?, _ destination: UnsafeMutableRawBufferPointer
    ) {
        let n = destination.count / MemoryLayout<W>.size
        guard n > 0 else { return }
        let inp = planes.baseAddress!.assumingMemoryBound(to: UInt8.self), dst = destination.baseAddress!
        let ref = reference?.baseAddress ?? UnsafeRawPointer(dst)
        switch (encoding, float) {
        case (.whole, true): joinLoop(W.self, RotateLeft.self, n, inp, ref, dst)
        case (.whole, false): joinLoop(W.self, Identity.self, n, inp, ref, dst)
        case (.xor, _): joinLoop(W.self, Xor.self, n, inp, ref, dst)
        case (.integerDelta, true), (.integerDeltaByExponent, true): joinLoop(W.self, OrderedDelta.self, n, inp, ref, dst)
        case (.integerDelta, false), (.integerDeltaByExponent, false): joinLoop(W.self, IntegerDelta.self, n, inp, ref, dst)
        case (.lowRank, _): preconditionFailure("low-rank tensors have no byte planes (LowRankCodec)")
        }
    }

    /// One residual transform, applied element by element. Loops are specialised per transform
    /// and word width, with no branch inside, so the compiler vectorises them.
    protocol WordTransform {
        static func forward<W: FixedWidthInteger & UnsignedInteger>(_ u: W, _ r: W) -> W
        static func inverse<W: FixedWidthInteger & UnsignedInteger>(_ v: W, _ r: W) -> W
    }

    enum Identity: WordTransform {
        @inline(__always) static func forward<W: FixedWidthInteger & UnsignedInteger>(_ u: W, _ r: W) -> W { u }
        @inline(__always) static func inverse<W: FixedWidthInteger & UnsignedInteger>(_ v: W, _ r: W) -> W { v }
    }

    enum RotateLeft: WordTransform {
        @inline(__always) static func forward<W: FixedWidthInteger & UnsignedInteger>(_ u: W, _ r: W) -> W { rotateLeft(u) }
        @inline(__always) static func inverse<W: FixedWidthInteger & UnsignedInteger>(_ v: W, _ r: W) -> W { rotateRight(v) }
    }

    enum Xor: WordTransform {
        @inline(__always) static func forward<W: FixedWidthInteger & UnsignedInteger>(_ u: W, _ r: W) -> W { u ^ r }
        @inline(__always) static func inverse<W: FixedWidthInteger & UnsignedInteger>(_ v: W, _ r: W) -> W { v ^ r }
    }

    enum IntegerDelta: WordTransform {
        @inline(__always) static func forward<W: FixedWidthInteger & UnsignedInteger>(_ u: W, _ r: W) -> W { zigzag(u &- r) }
        @inline(__always) static func inverse<W: FixedWidthInteger & UnsignedInteger>(_ v: W, _ r: W) -> W { r &+ unzigzag(v) }
    }

    enum OrderedDelta: WordTransform {
        @inline(__always) static func forward<W: FixedWidthInteger & UnsignedInteger>(_ u: W, _ r: W) -> W {
            zigzag(ordered(u) &- ordered(r))
        }
        @inline(__always) static func inverse<W: FixedWidthInteger & UnsignedInteger>(_ v: W, _ r: W) -> W {
            unordered(ordered(r) &+ unzigzag(v))
        }
    }

    @inline(__always)
    private static func splitLoop<W: FixedWidthInteger & UnsignedInteger, T: WordTransform>(
        _: W.Type, _: T.Type, _ n: Int, _ src: UnsafeRawPointer, _ ref: UnsafeRawPointer, _ out: UnsafeMutablePointer<UInt8>
    ) {
        let width = MemoryLayout<W>.size
        switch width {
        case 1:
            for i in 0..<n {
                out[i] = UInt8(truncatingIfNeeded: T.forward(src.loadUnaligned(fromByteOffset: i, as: W.self),
                                                            ref.loadUnaligned(fromByteOffset: i, as: W.self)))
            }
        case 2:
            let p1 = out + n
            for i in 0..<n {
                let v = T.forward(src.loadUnaligned(fromByteOffset: 2 * i, as: W.self), ref.loadUnaligned(fromByteOffset: 2 * i, as: W.self))
                out[i] = UInt8(truncatingIfNeeded: v)
                p1[i] = UInt8(truncatingIfNeeded: v >> 8)
            }
        case 4:
            let p1 = out + n, p2 = out + 2 * n, p3 = out + 3 * n
            for i in 0..<n {
                let v = T.forward(src.loadUnaligned(fromByteOffset: 4 * i, as: W.self), ref.loadUnaligned(fromByteOffset: 4 * i, as: W.self))
                out[i] = UInt8(truncatingIfNeeded: v)
                p1[i] = UInt8(truncatingIfNeeded: v >> 8)
                p2[i] = UInt8(truncatingIfNeeded: v >> 16)
                p3[i] = UInt8(truncatingIfNeeded: v >> 24)
            }
        default:
            for i in 0..<n {
                let v = T.forward(src.loadUnaligned(fromByteOffset: width * i, as: W.self), ref.loadUnaligned(fromByteOffset: width * i, as: W.self))
                for k in 0..<width { out[k * n + i] = UInt8(truncatingIfNeeded: v >> (8 * k)) }
            }
        }
    }

    @inline(__always)
    private static func joinLoop<W: FixedWidthInteger & UnsignedInteger, T: WordTransform>(
        _: W.Type, _: T.Type, _ n: Int, _ inp: UnsafePointer<UInt8>, _ ref: UnsafeRawPointer, _ dst: UnsafeMutableRawPointer
    ) {
        let width = MemoryLayout<W>.size
        switch width {
        case 1:
            for i in 0..<n {
                dst.storeBytes(of: T.inverse(W(inp[i]), ref.loadUnaligned(fromByteOffset: i, as: W.self)), toByteOffset: i, as: W.self)
            }
        case 2:
            let p1 = inp + n
            for i in 0..<n {
                let v = W(inp[i]) | W(p1[i]) << 8
                dst.storeBytes(of: T.inverse(v, ref.loadUnaligned(fromByteOffset: 2 * i, as: W.self)), toByteOffset: 2 * i, as: W.self)
            }
        case 4:
            let p1 = inp + n, p2 = inp + 2 * n, p3 = inp + 3 * n
            for i in 0..<n {
                let v = W(inp[i]) | W(p1[i]) << 8 | W(p2[i]) << 16 | W(p3[i]) << 24
                dst.storeBytes(of: T.inverse(v, ref.loadUnaligned(fromByteOffset: 4 * i, as: W.self)), toByteOffset: 4 * i, as: W.self)
            }
        default:
            for i in 0..<n {
                var v: W = 0
                for k in 0..<width { v |= W(inp[k * n + i]) << (8 * k) }
                dst.storeBytes(of: T.inverse(v, ref.loadUnaligned(fromByteOffset: width * i, as: W.self)), toByteOffset: width * i, as: W.self)
            }
        }
    }

    // MARK: - Grouping by reference exponent

    /// The exponent field's position and width for a floating-point dtype.
    static func exponentField(_ dtype: DType) -> (shift: Int, buckets: Int) {
        let mantissa: Int
        switch dtype {
        case .f64: mantissa = 52
        case .f32: mantissa = 23
        case .bf16: mantissa = 7
        case .f16: mantissa = 10
        case .f8e4m3: mantissa = 3
        case .f8e5m2: mantissa = 2
        default: mantissa = 0
        }
        return (mantissa, 1 << dtype.exponentBits)
    }

    static func groupedResiduals(dtype: DType, source: UnsafeRawBufferPointer, reference: UnsafeRawBufferPointer,
                                 words: UnsafeMutableRawBufferPointer) {
        switch dtype.byteSize {
        case 1: group(UInt8.self, dtype, source, reference, words)
        case 2: group(UInt16.self, dtype, source, reference, words)
        case 4: group(UInt32.self, dtype, source, reference, words)
        default: group(UInt64.self, dtype, source, reference, words)
        }
    }

    static func ungroupResiduals(dtype: DType, words: UnsafeRawBufferPointer, reference: UnsafeRawBufferPointer,
                                 destination: UnsafeMutableRawBufferPointer) {
        switch dtype.byteSize {
        case 1: ungroup(UInt8.self, dtype, words, reference, destination)
        case 2: ungroup(UInt16.self, dtype, words, reference, destination)
        case 4: ungroup(UInt32.self, dtype, words, reference, destination)
        default: ungroup(UInt64.self, dtype, words, reference, destination)
        }
    }

    /// Elements are sorted by (exponent bucket of the reference element, element index mod 4),
    /// bucket-major, stable within each (bucket, lane): ``ExponentGrouping``. The order is part of
    /// the stored bytes (docs/format.md §5.4).
    private static func group<W: FixedWidthInteger & UnsignedInteger>(
        _: W.Type, _ dtype: DType, _ source: UnsafeRawBufferPointer, _ reference: UnsafeRawBufferPointer,
        _ words: UnsafeMutableRawBufferPointer
    ) {
        let (shift, buckets) = exponentField(dtype)
        ExponentGrouping.group(W.self, shift: shift, buckets: buckets, source, reference, words)
    }

    private static func ungroup<W: FixedWidthInteger & UnsignedInteger>(
        _: W.Type, _ dtype: DType, _ words: UnsafeRawBufferPointer, _ reference: UnsafeRawBufferPointer,
        _ destination: UnsafeMutableRawBufferPointer
    ) {
        let (shift, buckets) = exponentField(dtype)
        ExponentGrouping.ungroup(W.self, shift: shift, buckets: buckets, words, reference, destination)
    }

}
