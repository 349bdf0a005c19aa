import CKernels

/// Grouping by reference exponent (``TensorEncoding/integerDeltaByExponent``, docs/format.md §5.4).
extension ChunkCodec {
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

    /// The residuals of `source` against `reference` in grouped order. With `positions` (the
    /// reference chunk's ``groupPositions(dtype:reference:into:)``), a scatter; without, the
    /// counting sort of ``ExponentGrouping``.
    static func groupedResiduals(dtype: DType, source: UnsafeRawBufferPointer, reference: UnsafeRawBufferPointer,
                                 positions: UnsafePointer<UInt32>? = nil, words: UnsafeMutableRawBufferPointer) {
        onWords(of: dtype, Group(dtype: dtype, source: source, reference: reference, positions: positions, words: words))
    }

    /// The inverse of ``groupedResiduals(dtype:source:reference:positions:words:)``.
    static func ungroupResiduals(dtype: DType, words: UnsafeRawBufferPointer, reference: UnsafeRawBufferPointer,
                                 positions: UnsafePointer<UInt32>? = nil, destination: UnsafeMutableRawBufferPointer) {
        onWords(of: dtype, Ungroup(dtype: dtype, words: words, reference: reference, positions: positions, destination: destination))
    }

    /// Where each element of a chunk goes in ``TensorEncoding/integerDeltaByExponent``'s grouped
    /// order, from the reference chunk alone: `positions[i]` is element i's place among the grouped
    /// words. Computed once per reference chunk, they serve every delta coded against it (each
    /// expert of a merge, and the merged result), which then gathers or scatters without the
    /// counting sort's per-element counter updates.
    public static func groupPositions(dtype: DType, reference: UnsafeRawBufferPointer, into positions: UnsafeMutablePointer<UInt32>) {
        onWords(of: dtype, Positions(dtype: dtype, reference: reference, out: positions))
    }

    private struct Group: WordKernel {
        let dtype: DType, source: UnsafeRawBufferPointer, reference: UnsafeRawBufferPointer
        let positions: UnsafePointer<UInt32>?, words: UnsafeMutableRawBufferPointer
        func run<W: FixedWidthInteger & UnsignedInteger>(_: W.Type) {
            guard let positions else {
                let (shift, buckets) = exponentField(dtype)
                if countingKernel(W.self, shift: shift, buckets: buckets, source, reference, UnsafeRawBufferPointer(words), group: true) { return }
                ExponentGrouping.group(W.self, shift: shift, buckets: buckets, source, reference, words)
                return
            }
            // Float32: a scatter in C, the same integer arithmetic.
            if W.self == UInt32.self, let s = source.baseAddress, let r = reference.baseAddress, let w = words.baseAddress {
                mrepo_group_u32(s.assumingMemoryBound(to: UInt32.self), r.assumingMemoryBound(to: UInt32.self), positions,
                                w.assumingMemoryBound(to: UInt32.self), source.count / 4)
                return
            }
            scatter(W.self, source, reference, positions, words)
        }
    }

    private struct Ungroup: WordKernel {
        let dtype: DType, words: UnsafeRawBufferPointer, reference: UnsafeRawBufferPointer
        let positions: UnsafePointer<UInt32>?, destination: UnsafeMutableRawBufferPointer
        func run<W: FixedWidthInteger & UnsignedInteger>(_: W.Type) {
            guard let positions else {
                let (shift, buckets) = exponentField(dtype)
                if countingKernel(W.self, shift: shift, buckets: buckets, words, reference, UnsafeRawBufferPointer(destination), group: false) { return }
                ExponentGrouping.ungroup(W.self, shift: shift, buckets: buckets, words, reference, destination)
                return
            }
            // Float32: a gather in C (AVX2 where the processor has it), the same integer arithmetic.
            if W.self == UInt32.self, let w = words.baseAddress, let r = reference.baseAddress, let d = destination.baseAddress {
                mrepo_ungroup_u32(w.assumingMemoryBound(to: UInt32.self), r.assumingMemoryBound(to: UInt32.self), positions,
                                  d.assumingMemoryBound(to: UInt32.self), destination.count / 4)
                return
            }
            gather(W.self, words, reference, positions, destination)
        }
    }

    /// The counting sort in C for 16- and 32-bit words (bfloat16, float16, float32): the same
    /// order as ``ExponentGrouping``, about twice as fast (the residual arithmetic runs in straight
    /// loops, apart from the scatter). `input` is the source (grouping) or the grouped words
    /// (ungrouping); `output` is written. False when the C code does not apply: another width, more
    /// than 256 buckets, or a buffer not aligned to its word (the kernels read whole words).
    private static func countingKernel<W: FixedWidthInteger & UnsignedInteger>(
        _: W.Type, shift: Int, buckets: Int, _ input: UnsafeRawBufferPointer, _ reference: UnsafeRawBufferPointer,
        _ output: UnsafeRawBufferPointer, group: Bool
    ) -> Bool {
        let width = MemoryLayout<W>.size
        guard width == 2 || width == 4, buckets <= 256, let i = input.baseAddress, let r = reference.baseAddress,
              let o = output.baseAddress else { return false }
        guard (Int(bitPattern: i) | Int(bitPattern: r) | Int(bitPattern: o)) % width == 0 else { return false }
        let n = (group ? input.count : output.count) / width, mask = UInt32(buckets - 1), sh = UInt32(shift)
        let out = UnsafeMutableRawPointer(mutating: o)
        if width == 2 {
            let (i, r, o) = (i.assumingMemoryBound(to: UInt16.self), r.assumingMemoryBound(to: UInt16.self), out.assumingMemoryBound(to: UInt16.self))
            return (group ? mrepo_group_uint16_t(i, r, n, sh, mask, o) : mrepo_ungroup_uint16_t(i, r, n, sh, mask, o)) != 0
        }
        let (i32, r32, o32) = (i.assumingMemoryBound(to: UInt32.self), r.assumingMemoryBound(to: UInt32.self), out.assumingMemoryBound(to: UInt32.self))
        return (group ? mrepo_group_uint32_t(i32, r32, n, sh, mask, o32) : mrepo_ungroup_uint32_t(i32, r32, n, sh, mask, o32)) != 0
    }

    private struct Positions: WordKernel {
        let dtype: DType, reference: UnsafeRawBufferPointer, out: UnsafeMutablePointer<UInt32>
        func run<W: FixedWidthInteger & UnsignedInteger>(_: W.Type) { positionsOf(W.self, dtype, reference, out) }
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
}
