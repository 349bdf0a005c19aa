/// The residual transforms and the byte-plane split of ``ChunkCodec``.
extension ChunkCodec {
    static func split(dtype: DType, encoding: TensorEncoding, plainWords: Bool = false, source: UnsafeRawBufferPointer,
                      reference: UnsafeRawBufferPointer?, planes: UnsafeMutableRawBufferPointer) {
        onWords(of: dtype, Split(float: dtype.isFloatingPoint && !plainWords, encoding: encoding, source: source,
                                 reference: reference, planes: planes))
    }

    static func join(dtype: DType, encoding: TensorEncoding, plainWords: Bool = false, planes: UnsafeRawBufferPointer,
                     reference: UnsafeRawBufferPointer?, destination: UnsafeMutableRawBufferPointer) {
        onWords(of: dtype, Join(float: dtype.isFloatingPoint && !plainWords, encoding: encoding, planes: planes,
                                reference: reference, destination: destination))
    }

    private struct Split: WordKernel {
        let float: Bool, encoding: TensorEncoding, source: UnsafeRawBufferPointer
        let reference: UnsafeRawBufferPointer?, planes: UnsafeMutableRawBufferPointer
        func run<W: FixedWidthInteger & UnsignedInteger>(_: W.Type) {
            splitWords(W.self, float: float, encoding, source, reference, planes)
        }
    }

    private struct Join: WordKernel {
        let float: Bool, encoding: TensorEncoding, planes: UnsafeRawBufferPointer
        let reference: UnsafeRawBufferPointer?, destination: UnsafeMutableRawBufferPointer
        func run<W: FixedWidthInteger & UnsignedInteger>(_: W.Type) {
            joinWords(W.self, float: float, encoding, planes, reference, destination)
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
}
