/// Many tensors through the chunk codec at once, chunk by chunk on every core.
///
/// ``TensorPipeline`` codes one tensor at a time: a tensor of one chunk (most tensors of a small
/// model, every bias and norm of a large one) then runs on one core. Here the chunks of all the
/// given tensors form one sequence. The encoder cuts it into windows of a few chunks per core (or
/// of many small ones); while the workers code one window, one job hands the previous window's
/// results to the caller in order. Memory stays at two windows of output plus one chunk's scratch
/// per worker, whatever the tensors' sizes. The decoder streams it without windows
/// (TensorBatch+Stream.swift). Neither side hashes what it codes: the encoder's caller knows the
/// identities already (it hashed the bytes first), and the decoder hashes only the tensors it is
/// asked to verify, on a thread of its own.

/// One tensor to encode.
public struct TensorEncodeJob: Sendable {
    public var dtype: DType
    public var shape: Shape
    /// The tensor's bytes; read while ``TensorBatch/encode(_:sink:finished:didProcess:)`` runs.
    public var source: UnsafeRawBufferPointer {
        get { sourceBytes.value }
        set { sourceBytes = UnsafeSendable(newValue) }
    }
    /// Only read, by the workers, while the caller waits for the batch and keeps the bytes mapped.
    private var sourceBytes: UnsafeSendable<UnsafeRawBufferPointer>
    /// The delta encoding to use against `reference` (ignored without one).
    public var encoding: TensorEncoding
    public var reference: TensorPipeline.Reference?
    public var options: CodecOptions

    public init(dtype: DType, shape: Shape, source: UnsafeRawBufferPointer, encoding: TensorEncoding,
                reference: TensorPipeline.Reference?, options: CodecOptions) {
        self.dtype = dtype
        self.shape = shape
        self.sourceBytes = UnsafeSendable(source)
        self.encoding = encoding
        self.reference = reference
        self.options = options
    }

    /// The header the encoded tensor starts with: whole without a reference, and the plain
    /// integer difference for integer dtypes (exponent grouping needs an exponent).
    public var header: EncodedTensorHeader {
        var encoding = reference == nil ? TensorEncoding.whole : encoding
        if encoding == .integerDeltaByExponent, !dtype.isFloatingPoint { encoding = .integerDelta }
        return EncodedTensorHeader(encoding: encoding, dtype: dtype, shape: shape, byteCount: source.count,
                                   chunkByteCount: options.chunkByteCount, reference: reference?.digest,
                                   version: coders(encoding).headerVersion)
    }

    /// The coders the chunks may use (rANS only when the options ask for it).
    func coders(_ encoding: TensorEncoding) -> ChunkCoderOptions {
        options.rans ? ChunkCoderOptions.writer(dtype: dtype, shape: shape, byteCount: source.count, encoding: encoding) : .zstdOnly
    }
}

/// One encoded tensor to decode.
public struct TensorDecodeJob: Sendable {
    public var tensor: EncodedTensor
    /// Produces the reference's decoded chunks (delta and low-rank encodings).
    public var reference: ChunkSource?
    /// When set, the decoded bytes are hashed with this identity and must give this digest.
    public var expected: (digest: Digest, identity: TensorPipeline.Identity)?
    /// Called on a worker thread once chunk `i` is decoded (to drop the stored bytes' pages).
    public var chunkDone: (@Sendable (Int) -> Void)?

    public init(tensor: EncodedTensor, reference: ChunkSource?, expected: (digest: Digest, identity: TensorPipeline.Identity)?,
                chunkDone: (@Sendable (Int) -> Void)? = nil) {
        self.tensor = tensor
        self.reference = reference
        self.expected = expected
        self.chunkDone = chunkDone
    }
}

public enum TensorBatch {
    /// Encodes `jobs` and hands each one's encoded bytes (header, then chunk records) to `sink`,
    /// job after job, in order, from one thread at a time.
    ///
    /// - Parameters:
    ///   - finished: called after a job's last bytes, with the number of bytes it produced.
    ///   - didProcess: called with each job's source byte ranges once they are coded.
    public static func encode(_ jobs: [TensorEncodeJob], sink: (_ job: Int, UnsafeRawBufferPointer) throws -> Void,
                              finished: (_ job: Int, _ storedByteCount: Int) throws -> Void,
                              didProcess: ((_ job: Int, Range<Int>) -> Void)? = nil) throws {
        let headers = jobs.map(\.header)
        let coders = zip(jobs, headers).map { $0.coders($1.encoding) }
        let headerBytes = headers.map { $0.serialized() }
        let plan = WindowPlan(headers: headers, outputBytes: { Zstd.compressBound($0) + 8 })
        guard !plan.windows.isEmpty else { return }
        let arenas = (0..<2).map { _ in ScratchPool.shared.take(plan.arenaBytes) }
        defer { ScratchPool.shared.give(arenas) }
        let used = UnsafeMutableBufferPointer<Int>.allocate(capacity: plan.entries.count)
        defer { used.deallocate() }
        var stored = [Int](repeating: 0, count: jobs.count)

        func flush(_ w: Int) throws {
            let arena = arenas[w % 2].bytes
            for e in plan.windows[w] {
                let entry = plan.entries[e]
                if entry.chunk <= 0 {
                    try headerBytes[entry.job].withUnsafeBytes { try sink(entry.job, $0) }
                    stored[entry.job] = headerBytes[entry.job].count
                }
                if entry.chunk >= 0 {
                    try sink(entry.job, UnsafeRawBufferPointer(rebasing: arena[entry.offset..<(entry.offset + used[e])]))
                    stored[entry.job] += used[e]
                    didProcess?(entry.job, entry.range)
                }
                if entry.isLast { try finished(entry.job, stored[entry.job]) }
            }
        }

        for w in plan.windows.indices {
            let window = plan.windows[w]
            let arena = arenas[w % 2].bytes
            try Parallel.forEach(window.count + 1) { i, failed in
                if i == 0 {
                    if w > 0 { try flush(w - 1) }
                    return
                }
                if failed() { return }
                let e = window.lowerBound + i - 1
                let entry = plan.entries[e]
                guard entry.chunk >= 0 else { return }
                let job = jobs[entry.job], header = headers[entry.job]
                let n = entry.range.count
                let out = UnsafeMutableRawBufferPointer(rebasing: arena[entry.offset..<(entry.offset + entry.capacity)])
                try withScratch((TensorEncoding.scratchFactor + 1) * n) { scratch in
                    var refBytes: UnsafeRawBufferPointer?
                    if let reference = job.reference {
                        let refBuffer = UnsafeMutableRawBufferPointer(rebasing: scratch[(TensorEncoding.scratchFactor * n)..<((TensorEncoding.scratchFactor + 1) * n)])
                        try reference.chunks(entry.chunk, refBuffer)
                        refBytes = UnsafeRawBufferPointer(refBuffer)
                    }
                    let (coder, count) = ChunkCodec.encode(
                        dtype: job.dtype, encoding: header.encoding, level: job.options.level,
                        source: UnsafeRawBufferPointer(rebasing: job.source[entry.range]), reference: refBytes,
                        planes: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<(TensorEncoding.scratchFactor * n)]),
                        output: UnsafeMutableRawBufferPointer(rebasing: out[8...]),
                        coders: coders[entry.job], firstElement: entry.range.lowerBound / job.dtype.byteSize)
                    out[0] = coder.rawValue
                    out[1] = 0; out[2] = 0; out[3] = 0
                    out.storeBytes(of: UInt32(count).littleEndian, toByteOffset: 4, as: UInt32.self)
                    used[e] = 8 + count
                }
            }
        }
        try flush(plan.windows.count - 1)
    }

    /// Decodes `jobs` and hands each one's bytes to `sink`, job after job, in order, on the calling
    /// thread (``stream(_:decoders:others:sink:)``: decoding runs ahead on `decoders` threads). Jobs
    /// with an expected digest are hashed, in order, on a thread of their own, and verified.
    ///
    /// - Parameters:
    ///   - decoders: decoding threads (1: everything on the calling thread, in order).
    ///   - alongside: also given every job's bytes in order, on a thread of its own, beside the
    ///     sink (a file's SHA-256 while the sink writes it).
    /// - Throws: ``DeltaError/corruptData(object:problem:)`` when a chunk does not decode or a
    ///   verified tensor hashes to something else. Bytes already given to `sink` must then be
    ///   discarded by the caller.
    public static func decode(_ jobs: [TensorDecodeJob], decoders: Int = Parallel.workerCount,
                              alongside: ((UnsafeRawBufferPointer) -> Void)? = nil,
                              sink: (_ job: Int, UnsafeRawBufferPointer) throws -> Void) throws {
        // Each consumer is called on one thread, in order, while `stream` runs.
        var hashers = [SHA256?](repeating: nil, count: jobs.count)
        let verify: StreamConsumer = { entry, bytes in
            guard let expected = jobs[entry.job].expected else { return }
            let header = jobs[entry.job].tensor.header
            if entry.chunk <= 0 { hashers[entry.job] = expected.identity.hasher(dtype: header.dtype, shape: header.shape, byteCount: header.byteCount) }
            if entry.chunk >= 0 { hashers[entry.job]?.update(bytes) }
            if entry.isLast, let digest = hashers[entry.job]?.finalize() {
                hashers[entry.job] = nil
                if digest != expected.digest {
                    throw DeltaError.corruptData(object: jobs[entry.job].tensor.name,
                                                 problem: "decoded bytes hash to \(digest.short), expected \(expected.digest.short)")
                }
            }
        }
        var others: [StreamConsumer] = []
        if jobs.contains(where: { $0.expected != nil }) { others.append(verify) }
        if let alongside { others.append { entry, bytes in if entry.chunk >= 0 { alongside(bytes) } } }
        try stream(jobs, decoders: decoders, others: others) { entry, bytes in
            if entry.chunk >= 0 { try sink(entry.job, bytes) }
        }
    }
}

/// The chunks of a list of tensors, in order, cut into windows: each window a few chunks per
/// core, or many small ones, and never more output than ``arenaBytes``.
struct WindowPlan {
    struct Entry {
        var job: Int
        /// The chunk's index, or -1 for a tensor without chunks (empty).
        var chunk: Int
        var range: Range<Int>
        /// Whether this is the tensor's last entry.
        var isLast: Bool
        /// Where the chunk's output goes in its window's arena, and how much room it has there.
        var offset = 0
        var capacity = 0
    }

    var entries: [Entry] = []
    /// Each window's entries (indices into `entries`).
    var windows: [Range<Int>] = []
    /// The largest arena a window needs.
    var arenaBytes = 1

    /// Output per window: a few chunks of the default size per core.
    static var windowBytes: Int { max(2, 2 * Parallel.workerCount) * CodecOptions.default.chunkByteCount }
    /// Small tensors per window at most (each costs a little bookkeeping in the serial job).
    static let windowEntries = 512

    init(headers: [EncodedTensorHeader], outputBytes: (Int) -> Int) {
        entries = EncodedTensorHeader.chunkList(headers).map { Entry(job: $0.job, chunk: $0.chunk, range: $0.range, isLast: $0.isLast) }
        var start = 0, bytes = 0, offset = 0
        for i in entries.indices {
            let size = entries[i].range.count
            if i > start, bytes + size > WindowPlan.windowBytes || i - start >= WindowPlan.windowEntries {
                windows.append(start..<i)
                start = i
                bytes = 0
                offset = 0
            }
            let capacity = entries[i].chunk >= 0 ? outputBytes(size) : 0
            entries[i].offset = offset
            entries[i].capacity = capacity
            offset += (capacity + 63) & ~63
            bytes += size
            arenaBytes = max(arenaBytes, offset)
        }
        if start < entries.count { windows.append(start..<entries.count) }
    }
}

extension EncodedTensorHeader {
    /// Every chunk of `headers`' tensors, in order, as the batch coders walk them; a tensor without
    /// chunks (empty) is one entry of chunk -1.
    static func chunkList(_ headers: [EncodedTensorHeader]) -> [(job: Int, chunk: Int, range: Range<Int>, isLast: Bool)] {
        var list: [(job: Int, chunk: Int, range: Range<Int>, isLast: Bool)] = []
        for (j, h) in headers.enumerated() {
            if h.chunkCount == 0 { list.append((j, -1, 0..<0, true)) }
            for c in 0..<h.chunkCount { list.append((j, c, h.chunkRange(c), c == h.chunkCount - 1)) }
        }
        return list
    }
}
