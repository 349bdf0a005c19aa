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
            groupedResiduals(dtype: dtype, source: source, reference: reference!, positions: positions, words: words)
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
    ///   - ransGrid: whether a coder 2 chunk may use the grid mode (tensors of version 3).
    public static func decode(dtype: DType, encoding: TensorEncoding, coder: ChunkCoder,
                              stored: UnsafeRawBufferPointer, reference: UnsafeRawBufferPointer?,
                              planes: UnsafeMutableRawBufferPointer,
                              destination: UnsafeMutableRawBufferPointer, object: String,
                              positions: UnsafePointer<UInt32>? = nil, ransGrid: Bool = true) throws(DeltaError) {
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
                try RansCodec.decode(stored, width: dtype.byteSize, into: planeBytes, scratch: selectors, grid: ransGrid)
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
            ungroupResiduals(dtype: dtype, words: UnsafeRawBufferPointer(words), reference: reference!, positions: positions,
                             destination: destination)
        } else {
            join(dtype: dtype, encoding: encoding, planes: UnsafeRawBufferPointer(planeBytes), reference: reference,
                 destination: destination)
        }
    }

    /// The one place where a dtype's width picks the word type every transform works on.
    static func onWords<K: WordKernel>(of dtype: DType, _ kernel: K) {
        switch dtype.byteSize {
        case 1: kernel.run(UInt8.self)
        case 2: kernel.run(UInt16.self)
        case 4: kernel.run(UInt32.self)
        default: kernel.run(UInt64.self)
        }
    }
}

/// Work on a chunk's elements as unsigned words of one width (``ChunkCodec/onWords(of:_:)``
/// chooses it): generic, so each width gets its own specialised loops.
protocol WordKernel {
    func run<W: FixedWidthInteger & UnsignedInteger>(_: W.Type)
}
