import Delta
import Foundation
import Merge
import Synchronization

/// Merges tensors chunk by chunk, for methods that decide nothing from whole inputs (linear, task
/// arithmetic, DARE without rescaling, layer swapping: ``MergePlan/mergesByRange(_:expertCount:)``).
///
/// A work item is one chunk of one tensor: the base's chunk is decoded, each expert's chunk is
/// decoded against it, the chunk is merged, post-processed and measured (``TensorStream``), written
/// to the prepared checkout, and coded against the base's chunk, all while the chunk is in cache.
/// Items run on every core, several tensors at once (a small tensor is one chunk). Each tensor is
/// then completed in chunk order by whichever worker finished the next chunk: the inputs' and the
/// result's identities are hashed and the coded chunks appended to the object file. No tensor is
/// ever held whole: memory is a few chunks per core, and the object files are those
/// ``ObjectStore/write(kind:dtype:shape:source:reference:options:batch:referenceBytes:didProcess:window:)``
/// would write, byte for byte.
final class StreamingMerge: @unchecked Sendable {
    /// One tensor to merge, prepared by ``MergeContext``.
    struct Job {
        var name: String
        var stream: TensorStream
        var base: Input
        /// Inputs other than the base (an expert that holds the base's tensor, or another
        /// expert's, is not decoded twice).
        var inputs: [Input]
        /// For each expert: -1 for the base, else its index in `inputs`.
        var slots: [Int]
        var header: EncodedTensorHeader
        /// The base's stored facts (the result is a delta against it, one level deeper).
        var baseInfo: ObjectInfo
        /// Offered each chunk of the result (nil: nothing is prepared).
        var prepared: PreparedCheckout?
    }

    /// A stored tensor decoded chunk by chunk: its own reference is the merge base's chunk, a
    /// source of decoded chunks, or nothing (whole).
    struct Input {
        var id: ObjectID
        var tensor: EncodedTensor
        var reference: Reference

        enum Reference {
            case none
            case base
            case chunks(ChunkSource)
        }
    }

    /// What a job produced.
    struct Output {
        var info: ObjectInfo
        var isNew: Bool
        var metrics: ConflictMetrics
    }

    private let store: ObjectStore
    private let batch: ObjectStore.Batch
    private let level: Int32
    private let pool = ChunkBufferPool()

    init(store: ObjectStore, batch: ObjectStore.Batch, level: Int32) {
        self.store = store
        self.batch = batch
        self.level = level
    }

    /// Whether a tensor can be merged by chunks: every input stored with the base's dtype, size and
    /// chunk size, chunks holding whole blocks of the method, and a result coded against the base.
    static func accepts(base: EncodedTensorHeader, baseInfo: ObjectInfo?, experts: [EncodedTensorHeader], outputDType: DType?) -> Bool {
        guard base.byteCount > 0, base.dtype.isFloatingPoint, base.encoding != .lowRank, outputDType == nil || outputDType == base.dtype,
              let baseInfo, baseInfo.depth < ObjectStore.maxDepth,
              base.chunkByteCount % (TensorStream.blockElements * base.dtype.byteSize) == 0 else { return false }
        return experts.allSatisfy {
            $0.dtype == base.dtype && $0.byteCount == base.byteCount && $0.chunkByteCount == base.chunkByteCount && $0.encoding != .lowRank
        }
    }

    /// Merges every job; results in job order. On failure nothing is left in the batch by this call
    /// and the first error is thrown.
    func run(_ jobs: [Job], progress: ProgressCounter?) throws -> [Output] {
        let runs = jobs.map { JobRun($0, pool: pool, level: level, incoming: store.root + "/incoming") }
        var items: [(job: Int, chunk: Int)] = []
        for (j, job) in jobs.enumerated() {
            for c in 0..<job.header.chunkCount { items.append((j, c)) }
        }
        // At most this many chunks are decoded and not yet completed: a worker waits before it takes
        // another while an earlier chunk of some tensor is still being merged elsewhere.
        let limit = Int(ProcessInfo.processInfo.environment["MREPO_INFLIGHT"] ?? "") ?? (Parallel.workerCount + 2)
        let inFlight = DispatchSemaphore(value: limit)
        let failure = Mutex<(any Error)?>(nil)
        func fail(_ error: any Error) {
            let first = failure.withLock { f -> Bool in
                if f == nil { f = error; return true }
                return false
            }
            // Wake every waiting worker: they see the failure and stop.
            if first { for _ in 0..<(limit + Parallel.workerCount) { inFlight.signal() } }
        }
        try Parallel.forEach(items.count) { item, _ in
            let (j, c) = items[item]
            if failure.withLock({ $0 != nil }) { return }
            inFlight.wait()
            if failure.withLock({ $0 != nil }) { inFlight.signal(); return }
            do {
                let chunk = try runs[j].compute(c)
                try runs[j].submit(chunk) { [store, batch] in
                    inFlight.signal()
                    if try runs[j].finishIfComplete(store: store, batch: batch) { progress?.add(1) }
                }
            } catch {
                fail(error)
                inFlight.signal()
            }
        }
        if let error = failure.withLock({ $0 }) {
            for run in runs { run.abort() }
            pool.drain()
            throw error
        }
        pool.drain()
        return try runs.map { try $0.output() }
    }
}

/// One job in progress: its chunks, completed in order.
private final class JobRun: @unchecked Sendable {
    let job: StreamingMerge.Job
    let pool: ChunkBufferPool
    let level: Int32
    let encoding: TensorEncoding
    let elementSize: Int
    let chunkCapacity: Int
    let hashers: [SHA256]
    let outputHasher: SHA256
    /// Chunks decoded and merged, waiting for their turn; the next chunk to complete; whether a
    /// worker is completing chunks.
    private let order = Mutex<(pending: [Int: ChunkWork], next: Int, busy: Bool)>(([:], 0, false))
    /// Where object files are written before the batch names them.
    let incoming: String
    private var writer: AtomicFileWriter?
    private var stored = 0
    private var result: StreamingMerge.Output?

    init(_ job: StreamingMerge.Job, pool: ChunkBufferPool, level: Int32, incoming: String) {
        self.job = job
        self.pool = pool
        self.level = level
        self.incoming = incoming
        let h = job.header
        encoding = TensorEncoding.preferredDelta(for: h.dtype)
        elementSize = h.dtype.byteSize
        chunkCapacity = min(h.chunkByteCount, max(h.byteCount, 1))
        hashers = ([job.base] + job.inputs).map { _ in SHA256() }
        for s in hashers { s.update(TensorHasher.prefix(dtype: h.dtype, shape: h.shape)) }
        outputHasher = SHA256()
        outputHasher.update(TensorHasher.prefix(dtype: h.dtype, shape: h.shape))
    }

    /// Decodes, merges, measures and codes chunk `c`.
    func compute(_ c: Int) throws -> ChunkWork {
        let h = job.header
        let range = h.chunkRange(c)
        let count = range.count
        let elements = (range.lowerBound / elementSize)..<(range.upperBound / elementSize)
        let work = ChunkWork(index: c, pool: pool)
        do {
            let base = work.take(chunkCapacity)
            try decode(job.base, chunk: c, into: UnsafeMutableRawBufferPointer(rebasing: base[0..<count]), baseChunk: nil, positions: nil)
            work.raw.append(base)
            let baseChunk = UnsafeRawBufferPointer(rebasing: base[0..<count])
            // The base chunk's grouped order, shared by every delta against it (the inputs and the result).
            let positions = work.takeScratch(chunkCapacity / elementSize * 4).baseAddress!.bindMemory(to: UInt32.self, capacity: max(count / elementSize, 1))
            ChunkCodec.groupPositions(dtype: h.dtype, reference: baseChunk, into: positions)
            for input in job.inputs {
                let buffer = work.take(chunkCapacity)
                try decode(input, chunk: c, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]), baseChunk: baseChunk,
                           positions: UnsafePointer(positions))
                work.raw.append(buffer)
            }
            // Float32 views of the inputs: the bytes themselves, or widened copies.
            let floats: [UnsafeMutablePointer<Float>] = work.raw.map { raw in
                if h.dtype == .f32 { return raw.baseAddress!.assumingMemoryBound(to: Float.self) }
                let f = work.takeScratch(chunkCapacity / elementSize * 4)
                let out = f.baseAddress!.bindMemory(to: Float.self, capacity: elements.count)
                FloatConversion.toFloat(h.dtype, UnsafeRawBufferPointer(rebasing: raw[0..<count]),
                                        into: UnsafeMutableBufferPointer(start: out, count: elements.count))
                return out
            }
            let merged = work.take(chunkCapacity / elementSize * 4)
            let out = merged.baseAddress!.bindMemory(to: Float.self, capacity: max(elements.count, 1))
            let experts = job.slots.map { UnsafePointer(floats[$0 + 1]) }
            job.stream.mergeRange(elements, base: UnsafePointer(floats[0]), experts: experts, into: out)
            if h.dtype != .f32 {
                FloatConversion.fromFloatInPlace(h.dtype, count: elements.count, UnsafeMutableRawBufferPointer(rebasing: merged[0..<(elements.count * 4)]))
            }
            work.output = UnsafeRawBufferPointer(rebasing: merged[0..<count])
            job.prepared?.writePart(job.name, work.output, at: range.lowerBound)
            // Coded against the base's chunk, as TensorPipeline.encode codes a chunk.
            let coded = work.take(Zstd.compressBound(chunkCapacity) + 8)
            let planes = work.takeScratch(TensorEncoding.scratchFactor * chunkCapacity)
            let (coder, n) = ChunkCodec.encode(dtype: h.dtype, encoding: encoding, level: level, source: work.output, reference: baseChunk,
                                               planes: planes, output: UnsafeMutableRawBufferPointer(rebasing: coded[8...]),
                                               positions: UnsafePointer(positions))
            coded[0] = coder.rawValue
            coded[1] = 0; coded[2] = 0; coded[3] = 0
            coded.storeBytes(of: UInt32(n).littleEndian, toByteOffset: 4, as: UInt32.self)
            work.record = UnsafeRawBufferPointer(rebasing: coded[0..<(8 + n)])
            work.releaseScratch()
            return work
        } catch {
            work.release()
            throw error
        }
    }

    private func decode(_ input: StreamingMerge.Input, chunk c: Int, into destination: UnsafeMutableRawBufferPointer,
                        baseChunk: UnsafeRawBufferPointer?, positions: UnsafePointer<UInt32>?) throws {
        let k = TensorEncoding.scratchFactor
        try withScratch((k + 1) * chunkCapacity) { scratch in
            var reference: UnsafeRawBufferPointer?
            var grouped: UnsafePointer<UInt32>?
            switch input.reference {
            case .none:
                break
            case .base:
                reference = baseChunk
                grouped = positions
            case let .chunks(source):
                let buffer = UnsafeMutableRawBufferPointer(rebasing: scratch[(k * chunkCapacity)..<(k * chunkCapacity + destination.count)])
                try source(c, buffer)
                reference = UnsafeRawBufferPointer(buffer)
            }
            do {
                try input.tensor.decodeChunk(c, into: destination, referenceChunk: reference,
                                             scratch: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<(k * chunkCapacity)]), positions: grouped)
            } catch let DeltaError.corruptData(_, problem) {
                throw RepoError.corruptObject(object: input.id.short, problem: problem)
            }
        }
        input.tensor.releaseStoredBytes(ofChunk: c)
    }

    /// Queues a computed chunk; completes every chunk that is next in order, unless another worker
    /// is at it (it then completes this one too). `didComplete` runs after each completed chunk.
    func submit(_ work: ChunkWork, didComplete: () throws -> Void) throws {
        let proceed = order.withLock { s -> Bool in
            s.pending[work.index] = work
            guard !s.busy else { return false }
            s.busy = true
            return true
        }
        guard proceed else { return }
        while true {
            let next = order.withLock { s -> ChunkWork? in
                guard let w = s.pending.removeValue(forKey: s.next) else {
                    s.busy = false
                    return nil
                }
                return w
            }
            guard let next else { return }
            do {
                try complete(next)
            } catch {
                order.withLock { $0.busy = false }
                throw error
            }
            order.withLock { $0.next += 1 }
            try didComplete()
        }
    }

    /// Hashes one chunk of every input and of the result, appends its record to the object file.
    private func complete(_ work: ChunkWork) throws {
        defer { work.release() }
        for (i, raw) in work.raw.enumerated() {
            hashers[i].update(UnsafeRawBufferPointer(rebasing: raw[0..<work.output.count]))
        }
        outputHasher.update(work.output)
        if writer == nil {
            // Opened at the first chunk's completion and handed over at the last: few files are
            // open at once, whatever the number of tensors.
            let w = try AtomicFileWriter(destination: incoming)
            try w.write(ObjectStore.fileHeader(.tensor))
            let header = EncodedTensorHeader(encoding: encoding, dtype: job.header.dtype, shape: job.header.shape,
                                             byteCount: job.header.byteCount, chunkByteCount: job.header.chunkByteCount,
                                             reference: job.base.id)
            let bytes = header.serialized()
            try w.write(bytes)
            stored = bytes.count
            writer = w
        }
        try writer!.write(work.record)
        stored += work.record.count
    }

    /// After the last chunk: verifies the inputs, names the result and hands its file to the batch.
    /// Returns whether the tensor is done.
    func finishIfComplete(store: ObjectStore, batch: ObjectStore.Batch) throws -> Bool {
        let done = order.withLock { $0.next == job.header.chunkCount }
        guard done, result == nil, let writer else { return false }
        for (i, input) in ([job.base] + job.inputs).enumerated() {
            let digest = hashers[i].finalize()
            if digest != input.id {
                throw RepoError.corruptObject(object: input.id.short, problem: "decoded bytes hash to \(digest.short), expected \(input.id.short)")
            }
        }
        let id = outputHasher.finalize()
        let info = ObjectInfo(id: id, kind: .tensor, encoding: encoding, reference: job.base.id, logicalByteCount: job.header.byteCount,
                              storedByteCount: ObjectStore.headerByteCount + stored, depth: job.baseInfo.depth + 1)
        let staged = try store.stage(writer, info: info, batch: batch)
        self.writer = nil
        job.prepared?.completed(job.name)
        result = StreamingMerge.Output(info: staged.info, isNew: staged.isNew, metrics: job.stream.finish())
        return true
    }

    func output() throws -> StreamingMerge.Output {
        guard let result else { throw RepoError.failed("tensor '\(job.name)' was not merged") }
        return result
    }

    /// Deletes the object file being written (a failed run).
    func abort() {
        writer?.abort()
        writer = nil
        order.withLock { s in
            for w in s.pending.values { w.release() }
            s.pending.removeAll()
        }
    }
}

/// The buffers of one chunk, from compute to completion.
private final class ChunkWork: @unchecked Sendable {
    let index: Int
    let pool: ChunkBufferPool
    /// The base's chunk, then each decoded input's, in their own dtype.
    var raw: [UnsafeMutableRawBufferPointer] = []
    /// The merged chunk in the tensor's dtype, and its coded record.
    var output = UnsafeRawBufferPointer(start: nil, count: 0)
    var record = UnsafeRawBufferPointer(start: nil, count: 0)
    private var held: [UnsafeMutableRawBufferPointer] = []
    private var scratch: [UnsafeMutableRawBufferPointer] = []

    init(index: Int, pool: ChunkBufferPool) {
        self.index = index
        self.pool = pool
    }

    /// A buffer kept until the chunk is completed.
    func take(_ size: Int) -> UnsafeMutableRawBufferPointer {
        let b = pool.take(size)
        held.append(b)
        return b
    }

    /// A buffer given back as soon as the chunk is computed.
    func takeScratch(_ size: Int) -> UnsafeMutableRawBufferPointer {
        let b = pool.take(size)
        scratch.append(b)
        return b
    }

    func releaseScratch() {
        for b in scratch { pool.give(b) }
        scratch.removeAll()
    }

    func release() {
        releaseScratch()
        for b in held { pool.give(b) }
        held.removeAll()
        raw.removeAll()
    }
}

/// Chunk-sized buffers reused across chunks and tensors (fresh ones cost a page fault per page).
private final class ChunkBufferPool: @unchecked Sendable {
    private let free = Mutex<[Int: [UnsafeSendable<UnsafeMutableRawBufferPointer>]]>([:])

    func take(_ size: Int) -> UnsafeMutableRawBufferPointer {
        let size = max(size, 1)
        if let b = free.withLock({ $0[size]?.popLast() }) { return b.value }
        return .allocate(byteCount: size, alignment: 64)
    }

    func give(_ buffer: UnsafeMutableRawBufferPointer) {
        let b = UnsafeSendable(buffer)
        free.withLock { $0[b.value.count, default: []].append(b) }
    }

    /// Frees every buffer (the run is over).
    func drain() {
        let all = free.withLock { f -> [UnsafeSendable<UnsafeMutableRawBufferPointer>] in
            defer { f.removeAll() }
            return f.values.flatMap { $0 }
        }
        for b in all { b.value.deallocate() }
    }
}
