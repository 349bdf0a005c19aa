/// Streams one tensor through the chunk codec on all cores with bounded memory.
///
/// Chunks are processed in windows of a few per core. While the workers code the chunks of one
/// window, one more job hashes the tensor's bytes in order and hands the previous window's
/// results to the sink, so hashing, coding and writing overlap. Memory stays at two windows of
/// chunks, whatever the tensor's size.
public enum TensorPipeline {
    /// What ``encode(dtype:shape:source:encoding:reference:options:sink:didProcess:)`` produced.
    public struct EncodeResult: Sendable {
        /// The tensor's identity (``TensorHasher``).
        public var digest: Digest
        /// Bytes handed to the sink (header and chunk records).
        public var storedByteCount: Int
    }

    /// A delta reference: its identity and a way to produce its decoded chunks, or its bytes.
    public struct Reference: Sendable {
        public var digest: Digest
        public var chunks: ChunkSource
        /// The reference's decoded bytes, when the caller holds them: read in place, not copied.
        public var bytes: UnsafeRawBufferPointer? {
            get { heldBytes?.value }
            set { heldBytes = newValue.map(UnsafeSendable.init) }
        }
        /// Only read, while the encoding that uses this reference runs and the caller keeps them.
        private var heldBytes: UnsafeSendable<UnsafeRawBufferPointer>?

        public init(digest: Digest, chunks: @escaping ChunkSource) {
            self.digest = digest
            self.chunks = chunks
        }

        /// A reference whose bytes the caller holds (valid while the encoding runs).
        public init(digest: Digest, bytes: UnsafeRawBufferPointer, chunkByteCount: Int) {
            self.digest = digest
            self.chunks = memoryChunkSource(bytes, chunkByteCount: chunkByteCount)
            self.bytes = bytes
        }
    }

    static var windowSize: Int { max(2, 2 * Parallel.workerCount) }

    /// What the identity hash of the streamed bytes covers.
    public enum Identity: Sendable {
        /// A tensor: ``TensorHasher`` (dtype, shape, bytes).
        case tensor
        /// A non-tensor file: ``BlobHasher`` (byte count, bytes).
        case blob

        func hasher(dtype: DType, shape: Shape, byteCount: Int) -> SHA256 {
            let sha = SHA256()
            switch self {
            case .tensor: sha.update(TensorHasher.prefix(dtype: dtype, shape: shape))
            case .blob: sha.update(BlobHasher.prefix(byteCount: byteCount))
            }
            return sha
        }
    }

    /// Encodes `source` and streams the encoded bytes to `sink`.
    ///
    /// - Parameters:
    ///   - encoding: `.whole`, or a delta encoding when `reference` is given.
    ///   - reference: the reference tensor (same dtype and shape, same chunk size).
    ///   - sink: receives the encoded bytes in order, on one thread at a time.
    ///   - didProcess: called with each source byte range after it has been hashed and coded
    ///     (callers release mapped pages there and advance progress bars).
    ///   - window: chunks coded at once (two windows are in memory); the default keeps every core
    ///     busy with a few chunks each.
    public static func encode(dtype: DType, shape: Shape, source: UnsafeRawBufferPointer, encoding: TensorEncoding,
                              reference: Reference?, options: CodecOptions, identity: Identity = .tensor,
                              sink: (UnsafeRawBufferPointer) throws -> Void,
                              didProcess: ((Range<Int>) -> Void)? = nil, window requestedWindow: Int? = nil) throws -> EncodeResult {
        var encoding = reference == nil ? TensorEncoding.whole : encoding
        // Exponent grouping needs an exponent; integers get the plain integer difference.
        if encoding == .integerDeltaByExponent, !dtype.isFloatingPoint { encoding = .integerDelta }
        // The same choice as TensorBatch's, so both paths write the same bytes.
        let coders = options.rans ? ChunkCoderOptions.writer(dtype: dtype, shape: shape, byteCount: source.count, encoding: encoding) : .zstdOnly
        let header = EncodedTensorHeader(encoding: encoding, dtype: dtype, shape: shape, byteCount: source.count,
                                         chunkByteCount: options.chunkByteCount, reference: reference?.digest,
                                         version: coders.headerVersion)
        var stored = 0
        let headerBytes = header.serialized()
        try headerBytes.withUnsafeBytes { try sink($0) }
        stored += headerBytes.count

        let hasher = identity.hasher(dtype: dtype, shape: shape, byteCount: source.count)
        let chunkCount = header.chunkCount
        let window = max(1, requestedWindow ?? windowSize)
        let slotCount = min(window, max(chunkCount, 1))
        let chunkSize = min(options.chunkByteCount, max(source.count, 1))
        let referenceBytes = reference?.bytes.flatMap { $0.count == source.count ? $0 : nil }
        let banks = (0..<2).map { _ in
            (0..<slotCount).map { _ in EncodeSlot(chunkSize: chunkSize, copiesReference: reference != nil && referenceBytes == nil) }
        }
        let windowCount = (chunkCount + window - 1) / window
        var storedTotal = stored
        let storedBox = CounterBox()

        func flush(_ w: Int) throws {
            let bank = banks[w % 2]
            let first = w * window
            let last = min(chunkCount, first + window)
            for i in first..<last {
                let slot = bank[i - first]
                try sink(slot.output.filled)
                storedBox.value += slot.output.used
            }
            didProcess?(header.chunkRange(first).lowerBound..<header.chunkRange(last - 1).upperBound)
        }

        // Jobs of one window: 0 hashes this window's source, 1 writes the previous window's
        // output, the rest code this window's chunks. Hashing and writing are the two serial
        // parts; as separate jobs they run on different cores.
        for w in 0..<windowCount {
            let first = w * window
            let last = min(chunkCount, first + window)
            let bank = banks[w % 2]
            try Parallel.forEach(last - first + 2) { job, failed in
                if job == 0 {
                    let range = header.chunkRange(first).lowerBound..<header.chunkRange(last - 1).upperBound
                    hasher.update(UnsafeRawBufferPointer(rebasing: source[range]))
                    return
                }
                if job == 1 {
                    if w > 0 { try flush(w - 1) }
                    return
                }
                if failed() { return }
                let index = first + job - 2
                let range = header.chunkRange(index)
                let slot = bank[job - 2]
                var refBytes: UnsafeRawBufferPointer?
                if let referenceBytes {
                    refBytes = UnsafeRawBufferPointer(rebasing: referenceBytes[range])
                } else if let reference, let copy = slot.reference {
                    let refBuffer = UnsafeMutableRawBufferPointer(rebasing: copy.bytes[0..<range.count])
                    try reference.chunks(index, refBuffer)
                    refBytes = UnsafeRawBufferPointer(refBuffer)
                }
                let out = slot.output.bytes
                let (coder, n) = ChunkCodec.encode(
                    dtype: dtype, encoding: encoding, level: options.level,
                    source: UnsafeRawBufferPointer(rebasing: source[range]), reference: refBytes,
                    planes: slot.planes.bytes, output: UnsafeMutableRawBufferPointer(rebasing: out[8...]),
                    coders: coders, firstElement: range.lowerBound / dtype.byteSize)
                out[0] = coder.rawValue
                out[1] = 0; out[2] = 0; out[3] = 0
                out.storeBytes(of: UInt32(n).littleEndian, toByteOffset: 4, as: UInt32.self)
                slot.output.used = 8 + n
            }
        }
        if windowCount == 0 {
            hasher.update(source)
        } else {
            try withExtendedLifetime(banks) { try flush(windowCount - 1) }
        }
        storedTotal += storedBox.value
        let digest = hasher.finalize()
        return EncodeResult(digest: digest, storedByteCount: storedTotal)
    }

    /// Decodes a tensor, streams its bytes to `sink`, and verifies its identity.
    ///
    /// - Parameters:
    ///   - expected: the identity the bytes must hash to; nil skips the check.
    ///   - window: chunks decoded at once (nil: two per core). A caller that already decodes
    ///     several tensors at once passes 1: each window slot holds about four chunks of scratch
    ///     memory, and a fresh slot costs a page fault per page when first touched.
    ///   - sink: receives the decoded bytes in order, on one thread at a time.
    /// - Returns: the identity of the decoded bytes.
    /// - Throws: ``DeltaError/corruptData(object:problem:)`` when a chunk does not decode or the
    ///   bytes hash to something other than `expected`. Bytes already given to `sink` must then be
    ///   discarded by the caller.
    @discardableResult
    public static func decode(_ tensor: EncodedTensor, reference: ChunkSource?, expected: Digest?, identity: Identity = .tensor,
                              window requestedWindow: Int? = nil, sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Digest {
        let header = tensor.header
        let hasher = identity.hasher(dtype: header.dtype, shape: header.shape, byteCount: header.byteCount)
        let chunkCount = header.chunkCount
        let window = max(1, requestedWindow ?? windowSize)
        let slotCount = min(window, max(chunkCount, 1))
        let chunkSize = min(header.chunkByteCount, max(header.byteCount, 1))
        let banks = (0..<2).map { _ in
            (0..<slotCount).map { _ in DecodeSlot(chunkSize: chunkSize) }
        }
        let windowCount = (chunkCount + window - 1) / window

        func outputs(_ w: Int) -> [UnsafeRawBufferPointer] {
            let bank = banks[w % 2]
            let first = w * window
            let last = min(chunkCount, first + window)
            return (first..<last).map { bank[$0 - first].output.filled }
        }

        // Jobs of one window: 0 hashes and 1 writes the previous window's bytes (the serial
        // parts, on different cores), the rest decode this window's chunks.
        for w in 0..<windowCount {
            let first = w * window
            let last = min(chunkCount, first + window)
            let bank = banks[w % 2]
            try Parallel.forEach(last - first + 2) { job, failed in
                if job == 0 {
                    if w > 0 { for out in outputs(w - 1) { hasher.update(out) } }
                    return
                }
                if job == 1 {
                    if w > 0 { for out in outputs(w - 1) { try sink(out) } }
                    return
                }
                if failed() { return }
                let index = first + job - 2
                let slot = bank[job - 2]
                let count = header.chunkRange(index).count
                slot.output.used = count
                try tensor.decodeChunk(index, into: UnsafeMutableRawBufferPointer(rebasing: slot.output.bytes[0..<count]),
                                       reference: reference, scratch: slot.scratch.bytes)
            }
        }
        if windowCount > 0 {
            // The buffers are the banks' memory: keep the banks alive while their bytes are read.
            try withExtendedLifetime(banks) {
                for out in outputs(windowCount - 1) {
                    hasher.update(out)
                    try sink(out)
                }
            }
        }
        let digest = hasher.finalize()
        if let expected, digest != expected {
            throw DeltaError.corruptData(object: tensor.name, problem: "decoded bytes hash to \(digest.short), expected \(expected.short)")
        }
        return digest
    }

    /// Decodes a whole tensor into memory and verifies its identity.
    public static func decodeToArray(_ tensor: EncodedTensor, reference: ChunkSource?, expected: Digest?,
                                     identity: Identity = .tensor) throws -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(tensor.header.byteCount)
        try decode(tensor, reference: reference, expected: expected, identity: identity) { out.append(contentsOf: $0) }
        return out
    }
}

private final class EncodeSlot {
    let planes: ScratchBuffer
    /// The reference's chunk, copied (nil when the reference's bytes are read in place).
    let reference: ScratchBuffer?
    let output: ScratchBuffer
    init(chunkSize: Int, copiesReference: Bool) {
        planes = ScratchPool.shared.take(TensorEncoding.scratchFactor * chunkSize)
        reference = copiesReference ? ScratchPool.shared.take(chunkSize) : nil
        output = ScratchPool.shared.take(Zstd.compressBound(chunkSize) + 8)
    }
    deinit { ScratchPool.shared.give([planes, output] + (reference.map { [$0] } ?? [])) }
}

private final class DecodeSlot {
    let scratch: ScratchBuffer
    let output: ScratchBuffer
    init(chunkSize: Int) {
        scratch = ScratchPool.shared.take((TensorEncoding.scratchFactor + 1) * chunkSize)
        output = ScratchPool.shared.take(chunkSize)
    }
    deinit { ScratchPool.shared.give([scratch, output]) }
}

final class CounterBox {
    var value = 0
}
