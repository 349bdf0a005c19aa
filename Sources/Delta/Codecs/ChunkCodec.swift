import CKernels

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
public enum ChunkCoder: UInt8, Sendable, CaseIterable {
    /// Planes stored as they are (chosen when compression would not shrink them).
    case raw = 0
    /// Planes concatenated into one zstd frame with a content checksum.
    case zstd = 1
    /// Each plane raw or coded with static 12-bit frequency tables (one, one per block, or one per
    /// byte of the next more significant plane) into one interleaved rANS stream (``RansCodec``).
    /// Only in encoded tensors of version 2 (docs/format.md §5.5).
    case rans = 2
}

/// Encodes and decodes one chunk of a tensor: residual transform, byte-plane split, zstd.
public enum ChunkCodec {
    /// Encodes `source` (whole elements of `dtype`) against the matching chunk of the reference.
    ///
    /// - Parameters:
    ///   - planes: scratch of at least `TensorEncoding.scratchFactor × source.count` bytes.
    ///   - output: at least `Zstd.compressBound(source.count)` bytes.
    ///   - coders: whether rANS may be used, and the rows its blocks may follow.
    ///   - firstElement: the index of the chunk's first element in the tensor (for the rows).
    /// - Returns: the coder used and the number of bytes written to `output`.
    ///   - positions: for ``TensorEncoding/integerDeltaByExponent``, the reference chunk's
    ///     ``groupPositions(dtype:reference:into:)`` when the caller has them (they are computed otherwise).
    public static func encode(dtype: DType, encoding: TensorEncoding, level: Int32,
                              source: UnsafeRawBufferPointer, reference: UnsafeRawBufferPointer?,
                              planes: UnsafeMutableRawBufferPointer,
                              output: UnsafeMutableRawBufferPointer,
                              coders: ChunkCoderOptions = .zstdOnly, firstElement: Int = 0,
                              positions: UnsafePointer<UInt32>? = nil) -> (ChunkCoder, Int) {
        precondition(source.count % dtype.byteSize == 0, "chunks hold whole elements")
        precondition(encoding != .lowRank, "low-rank tensors are encoded by LowRankCodec")
        precondition(!encoding.needsReference || reference?.count == source.count, "reference chunk matches in size")
        let planeBytes = UnsafeMutableRawBufferPointer(rebasing: planes[0..<source.count])
        if encoding == .integerDeltaByExponent {
            let words = UnsafeMutableRawBufferPointer(rebasing: planes[source.count..<(2 * source.count)])
            if let positions {
                groupedResiduals(dtype: dtype, source: source, reference: reference!, positions: positions, words: words)
            } else {
                groupedResiduals(dtype: dtype, source: source, reference: reference!, words: words)
            }
            split(dtype: dtype, encoding: .whole, plainWords: true, source: UnsafeRawBufferPointer(words), reference: nil, planes: planeBytes)
        } else {
            split(dtype: dtype, encoding: encoding, source: source, reference: reference, planes: planeBytes)
        }
        if coders.rans, source.count > 0 {
            // The second half of the scratch is free once the planes are split.
            let streamScratch = UnsafeMutableRawBufferPointer(rebasing: planes[source.count..<(2 * source.count)])
            let rows = coders.rowLength.map { RansPlanner.Rows(length: $0, offset: firstElement) }
            guard let n = RansCodec.encode(planes: UnsafeRawBufferPointer(planeBytes), width: dtype.byteSize, rows: rows,
                                           output: output, scratch: streamScratch, limit: source.count)
            else { return zstdOrRaw(planeBytes, level: level, output: output) }
            if source.count >= ChunkCoderOptions.zstdTrialBelow { return (.rans, n) }
            // A small chunk: keep rANS's bytes aside while zstd tries.
            return withScratch(n) { kept in
                kept.baseAddress!.copyMemory(from: output.baseAddress!, byteCount: n)
                if let z = Zstd.compress(UnsafeRawBufferPointer(planeBytes), into: output, level: level), z < n { return (.zstd, z) }
                output.baseAddress!.copyMemory(from: kept.baseAddress!, byteCount: n)
                return (.rans, n)
            }
        }
        return zstdOrRaw(planeBytes, level: level, output: output)
    }

    /// The planes as one zstd frame, or raw when that is not smaller.
    private static func zstdOrRaw(_ planes: UnsafeMutableRawBufferPointer, level: Int32,
                                  output: UnsafeMutableRawBufferPointer) -> (ChunkCoder, Int) {
        if let n = Zstd.compress(UnsafeRawBufferPointer(planes), into: output, level: level), n < planes.count {
            return (.zstd, n)
        }
        if planes.count > 0 { output.baseAddress!.copyMemory(from: planes.baseAddress!, byteCount: planes.count) }
        return (.raw, planes.count)
    }

    /// Decodes one chunk into `destination` (the chunk's original bytes).
    ///
    /// - Parameters:
    ///   - planes: scratch of at least `TensorEncoding.scratchFactor × destination.count` bytes.
    /// - Throws: ``DeltaError/corruptData(object:problem:)`` naming `object` when the stored
    ///   bytes do not decode.
    ///   - positions: for ``TensorEncoding/integerDeltaByExponent``, the reference chunk's
    ///     ``groupPositions(dtype:reference:into:)`` when the caller has them (they are computed otherwise).
    public static func decode(dtype: DType, encoding: TensorEncoding, coder: ChunkCoder,
                              stored: UnsafeRawBufferPointer, reference: UnsafeRawBufferPointer?,
                              planes: UnsafeMutableRawBufferPointer,
                              destination: UnsafeMutableRawBufferPointer, object: String,
                              positions: UnsafePointer<UInt32>? = nil) throws(DeltaError) {
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
        case .rans:
            guard destination.count > 0 else { throw .corruptData(object: object, problem: "rans: empty chunk") }
            // The second half of the scratch holds the block selectors until the planes are joined.
            let selectors = UnsafeMutableRawBufferPointer(rebasing: planes[destination.count..<(2 * destination.count)])
            do {
                try RansCodec.decode(stored, width: dtype.byteSize, into: planeBytes, scratch: selectors)
            } catch {
                throw .corruptData(object: object, problem: "rans: \(error.message)")
            }
        }
        if encoding.needsReference, reference?.count != destination.count {
            throw .corruptData(object: object, problem: "reference chunk is missing or has the wrong size")
        }
        if encoding == .integerDeltaByExponent {
            let words = UnsafeMutableRawBufferPointer(rebasing: planes[destination.count..<(2 * destination.count)])
            join(dtype: dtype, encoding: .whole, plainWords: true, planes: UnsafeRawBufferPointer(planeBytes), reference: nil, destination: words)
            if let positions {
                ungroupResiduals(dtype: dtype, words: UnsafeRawBufferPointer(words), reference: reference!, positions: positions, destination: destination)
            } else {
                ungroupResiduals(dtype: dtype, words: UnsafeRawBufferPointer(words), reference: reference!, destination: destination)
            }
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

    /// Elements are sorted by (exponent bucket of the reference element, element index mod
    /// `lanes`), bucket-major, stable within each (bucket, lane). Four independent lanes keep
    /// the counting sort's position counters out of each other's way (one counter per lane
    /// breaks the store-to-load dependency between neighbouring elements).
    ///
    /// A format constant, not a tuning knob: the order is part of the stored bytes
    /// (docs/format.md), and the unrolled loops below are written for exactly four lanes.
    private static let lanes = 4

    /// Start position of each (bucket, lane) run: `starts[lane * buckets + bucket]`.
    private static func laneStarts<W: FixedWidthInteger & UnsignedInteger>(
        _: W.Type, _ dtype: DType, _ reference: UnsafeRawBufferPointer, _ n: Int
    ) -> [Int] {
        let (shift, buckets) = exponentField(dtype)
        let mask = W(buckets - 1)
        let width = MemoryLayout<W>.size
        let ref = reference.baseAddress!
        var counts = [Int](repeating: 0, count: lanes * buckets)
        counts.withUnsafeMutableBufferPointer { c in
            let c0 = c.baseAddress!, c1 = c0 + buckets, c2 = c1 + buckets, c3 = c2 + buckets
            var i = 0
            while i + 4 <= n {
                c0[Int((ref.loadUnaligned(fromByteOffset: i * width, as: W.self) >> shift) & mask)] += 1
                c1[Int((ref.loadUnaligned(fromByteOffset: (i + 1) * width, as: W.self) >> shift) & mask)] += 1
                c2[Int((ref.loadUnaligned(fromByteOffset: (i + 2) * width, as: W.self) >> shift) & mask)] += 1
                c3[Int((ref.loadUnaligned(fromByteOffset: (i + 3) * width, as: W.self) >> shift) & mask)] += 1
                i += 4
            }
            while i < n {
                c[(i % lanes) * buckets + Int((ref.loadUnaligned(fromByteOffset: i * width, as: W.self) >> shift) & mask)] += 1
                i += 1
            }
        }
        var starts = [Int](repeating: 0, count: lanes * buckets)
        var running = 0
        for b in 0..<buckets {
            for l in 0..<lanes {
                starts[l * buckets + b] = running
                running += counts[l * buckets + b]
            }
        }
        return starts
    }

    /// Where each element of a chunk goes in ``TensorEncoding/integerDeltaByExponent``'s grouped
    /// order, from the reference chunk alone: `positions[i]` is element i's place among the grouped
    /// words. Computed once per reference chunk, they serve every delta coded against it (each
    /// expert of a merge, and the merged result), which then gathers or scatters without the
    /// counting sort's per-element counter updates.
    public static func groupPositions(dtype: DType, reference: UnsafeRawBufferPointer, into positions: UnsafeMutablePointer<UInt32>) {
        switch dtype.byteSize {
        case 1: positionsOf(UInt8.self, dtype, reference, positions)
        case 2: positionsOf(UInt16.self, dtype, reference, positions)
        case 4: positionsOf(UInt32.self, dtype, reference, positions)
        default: positionsOf(UInt64.self, dtype, reference, positions)
        }
    }

    static func groupedResiduals(dtype: DType, source: UnsafeRawBufferPointer, reference: UnsafeRawBufferPointer,
                                 positions: UnsafePointer<UInt32>, words: UnsafeMutableRawBufferPointer) {
        if dtype.byteSize == 4, let s = source.baseAddress, let r = reference.baseAddress, let w = words.baseAddress {
            mrepo_group_u32(s.assumingMemoryBound(to: UInt32.self), r.assumingMemoryBound(to: UInt32.self), positions,
                            w.assumingMemoryBound(to: UInt32.self), source.count / 4)
            return
        }
        switch dtype.byteSize {
        case 1: scatter(UInt8.self, source, reference, positions, words)
        case 2: scatter(UInt16.self, source, reference, positions, words)
        case 4: scatter(UInt32.self, source, reference, positions, words)
        default: scatter(UInt64.self, source, reference, positions, words)
        }
    }

    static func ungroupResiduals(dtype: DType, words: UnsafeRawBufferPointer, reference: UnsafeRawBufferPointer,
                                 positions: UnsafePointer<UInt32>, destination: UnsafeMutableRawBufferPointer) {
        // Float32: a gather in C (AVX2 where the processor has it), the same integer arithmetic.
        if dtype.byteSize == 4, let w = words.baseAddress, let r = reference.baseAddress, let d = destination.baseAddress {
            mrepo_ungroup_u32(w.assumingMemoryBound(to: UInt32.self), r.assumingMemoryBound(to: UInt32.self), positions,
                              d.assumingMemoryBound(to: UInt32.self), destination.count / 4)
            return
        }
        switch dtype.byteSize {
        case 1: gather(UInt8.self, words, reference, positions, destination)
        case 2: gather(UInt16.self, words, reference, positions, destination)
        case 4: gather(UInt32.self, words, reference, positions, destination)
        default: gather(UInt64.self, words, reference, positions, destination)
        }
    }

    /// The counting sort of ``group(_:_:_:_:_:)``, recording each element's position.
    private static func positionsOf<W: FixedWidthInteger & UnsignedInteger>(
        _: W.Type, _ dtype: DType, _ reference: UnsafeRawBufferPointer, _ out: UnsafeMutablePointer<UInt32>
    ) {
        let width = MemoryLayout<W>.size
        let n = reference.count / width
        guard n > 0 else { return }
        precondition(n <= Int(UInt32.max), "a chunk's positions fit 32 bits")
        let (shift, buckets) = exponentField(dtype)
        let mask = W(buckets - 1)
        var next = laneStarts(W.self, dtype, reference, n)
        let ref = reference.baseAddress!
        next.withUnsafeMutableBufferPointer { pos in
            let p0 = pos.baseAddress!, p1 = p0 + buckets, p2 = p1 + buckets, p3 = p2 + buckets
            @inline(__always) func place(_ i: Int, _ p: UnsafeMutablePointer<Int>) {
                let b = Int((ref.loadUnaligned(fromByteOffset: i * width, as: W.self) >> shift) & mask)
                out[i] = UInt32(truncatingIfNeeded: p[b])
                p[b] += 1
            }
            var i = 0
            while i + 4 <= n {
                place(i, p0); place(i + 1, p1); place(i + 2, p2); place(i + 3, p3)
                i += 4
            }
            while i < n {
                place(i, p0 + (i % lanes) * buckets)
                i += 1
            }
        }
    }

    private static func scatter<W: FixedWidthInteger & UnsignedInteger>(
        _: W.Type, _ source: UnsafeRawBufferPointer, _ reference: UnsafeRawBufferPointer, _ positions: UnsafePointer<UInt32>,
        _ words: UnsafeMutableRawBufferPointer
    ) {
        let width = MemoryLayout<W>.size
        let n = source.count / width
        guard n > 0 else { return }
        let src = source.baseAddress!, ref = reference.baseAddress!
        let out = words.baseAddress!.assumingMemoryBound(to: W.self)
        for i in 0..<n {
            let r = ref.loadUnaligned(fromByteOffset: i * width, as: W.self)
            let u = src.loadUnaligned(fromByteOffset: i * width, as: W.self)
            out[Int(positions[i])] = OrderedDelta.forward(u, r)
        }
    }

    private static func gather<W: FixedWidthInteger & UnsignedInteger>(
        _: W.Type, _ words: UnsafeRawBufferPointer, _ reference: UnsafeRawBufferPointer, _ positions: UnsafePointer<UInt32>,
        _ destination: UnsafeMutableRawBufferPointer
    ) {
        let width = MemoryLayout<W>.size
        let n = destination.count / width
        guard n > 0 else { return }
        let inp = words.baseAddress!.assumingMemoryBound(to: W.self), ref = reference.baseAddress!
        let dst = destination.baseAddress!
        for i in 0..<n {
            let r = ref.loadUnaligned(fromByteOffset: i * width, as: W.self)
            dst.storeBytes(of: OrderedDelta.inverse(inp[Int(positions[i])], r), toByteOffset: i * width, as: W.self)
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
