import Delta
import Foundation
import Merge
import Synchronization

/// Merges tensors chunk by chunk, several tensors at once, on every core.
///
/// A tensor whose method decides nothing from whole inputs (linear, task arithmetic, DARE without
/// rescaling: ``MergePlan/mergesByRange(_:expertCount:)``) is merged one chunk per work item: the
/// base's chunk is decoded, each expert's chunk decoded against it, the chunk merged, post-processed
/// and measured (``TensorStream``), written to the prepared checkout and coded against the base's
/// chunk, all while the chunk is in cache; no tensor is held whole. Other tensors (TIES' thresholds,
/// SLERP's angle, Model Stock's cosines) are decoded chunk by chunk into whole buffers, prepared once
/// every chunk is in, then merged and coded chunk by chunk the same way.
///
/// Each tensor is completed in chunk order by whichever worker finished the next chunk: the inputs'
/// and the result's identities are hashed and the coded chunks appended to the object file, which is
/// the file ``ObjectStore/write(kind:dtype:shape:source:reference:options:batch:referenceBytes:didProcess:window:)``
/// would write, byte for byte. Work items are taken from a queue ordered by tensor; tensors held whole
/// are admitted while their buffers fit a budget of about one largest tensor's inputs.
final class StreamingMerge: @unchecked Sendable {
    /// One tensor to merge, prepared by ``MergeContext``.
    struct Job {
        var name: String
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
        var merging: Merging
        /// A result whose metrics trip these is not stored.
        var thresholds: ConflictThresholds
    }

    /// How a tensor's merge is prepared.
    enum Merging {
        /// Ready to take ranges.
        case byRange(TensorStream)
        /// Prepared from the whole inputs (base, then each expert, as Float32) once they are decoded.
        case whole(@Sendable (_ base: UnsafePointer<Float>, _ experts: [UnsafePointer<Float>]) throws -> TensorStream)
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

    /// What a job produced: its object (nil when a threshold was tripped) and metrics.
    struct Output {
        var info: ObjectInfo?
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

    /// Merges every job; results in job order. On failure the objects this call wrote are deleted
    /// and the first error is thrown.
    func run(_ jobs: [Job], progress: ProgressCounter?) throws -> [Output] {
        let runs = jobs.map { JobRun($0, pool: pool, level: level, store: store, batch: batch, progress: progress) }
        let queue = WorkQueue(runs: runs)
        try Parallel.forEach(Parallel.workerCount) { _, _ in
            while let item = queue.next() {
                do {
                    try item.perform()
                    queue.done(item)
                } catch {
                    queue.fail(error)
                }
            }
        }
        defer { pool.drain() }
        if let error = queue.failure {
            for run in runs { run.abort() }
            throw error
        }
        return try runs.map { try $0.output() }
    }
}

/// Hands out work items in tensor order: a tensor held whole is admitted once its buffers fit the
/// budget; its merge items, once it is prepared, come before anything else (they free memory).
private final class WorkQueue: @unchecked Sendable {
    enum Kind { case stream, decode, merge }

    struct Item {
        var kind: Kind
        var job: JobRun
        var chunk: Int
        var queue: WorkQueue

        func perform() throws {
            switch kind {
            case .stream: try job.stream(chunk)
            case .decode:
                if try job.decodeWhole(chunk) { queue.prepared(job) }
            case .merge: try job.mergeWhole(chunk)
            }
        }
    }

    private let runs: [JobRun]
    private let condition = NSCondition()
    /// Merge items of prepared tensors.
    private var urgent: [(run: JobRun, chunk: Int)] = []
    /// The tensor being handed out, and its next chunk.
    private var job = 0, chunk = 0
    /// Whole-tensor bytes admitted and not yet released, and the budget.
    private var wholeBytes = 0
    private let budget: Int
    /// Chunks handed out of range-wise tensors and not completed, and their limit.
    private var streaming = 0
    private let streamingLimit = Parallel.workerCount + 2
    private var outstanding: Int
    private(set) var failure: (any Error)?

    init(runs: [JobRun]) {
        self.runs = runs
        // The largest tensor held whole, and room for a few small ones beside it.
        let largest = runs.map(\.wholeByteCount).max() ?? 0
        budget = largest + max(largest / 8, 16 << 20)
        outstanding = runs.reduce(0) { $0 + $1.itemCount }
    }

    /// The next item, waiting while none can start; nil when every item is done or one failed.
    func next() -> Item? {
        condition.lock()
        defer { condition.unlock() }
        while true {
            if failure != nil || outstanding == 0 { return nil }
            if !urgent.isEmpty {
                let (run, c) = urgent.removeFirst()
                return Item(kind: .merge, job: run, chunk: c, queue: self)
            }
            if job < runs.count {
                let run = runs[job]
                if chunk == 0, run.isWhole, wholeBytes > 0, wholeBytes + run.wholeByteCount > budget {
                    // Wait for memory: the tensors admitted finish first.
                } else if !run.isWhole, streaming >= streamingLimit {
                    // Wait for completions.
                } else {
                    if chunk == 0, run.isWhole {
                        wholeBytes += run.wholeByteCount
                        run.allocateWhole()
                    }
                    let c = chunk
                    chunk += 1
                    if chunk == run.chunkCount { job += 1; chunk = 0 }
                    if run.isWhole { return Item(kind: .decode, job: run, chunk: c, queue: self) }
                    streaming += 1
                    return Item(kind: .stream, job: run, chunk: c, queue: self)
                }
            }
            condition.wait()
        }
    }

    /// A whole tensor is prepared: its merge items go first.
    func prepared(_ run: JobRun) {
        condition.lock()
        for c in 0..<run.chunkCount { urgent.append((run, c)) }
        condition.broadcast()
        condition.unlock()
    }

    func done(_ item: Item) {
        let completed = item.job.takeCompleted()
        condition.lock()
        outstanding -= 1
        if item.kind == .stream { streaming -= completed.chunks }
        if completed.released { wholeBytes -= item.job.wholeByteCount }
        condition.broadcast()
        condition.unlock()
    }

    func fail(_ error: any Error) {
        condition.lock()
        if failure == nil { failure = error }
        condition.broadcast()
        condition.unlock()
    }
}

/// One tensor in progress.
private final class JobRun: @unchecked Sendable {
    let job: StreamingMerge.Job
    let pool: ChunkBufferPool
    let level: Int32
    let store: ObjectStore
    let batch: ObjectStore.Batch
    let progress: ProgressCounter?
    let encoding: TensorEncoding
    let elementSize: Int
    let chunkCount: Int
    /// Pool buffers are sized by the tensor's chunk size, so every tensor reuses the same ones.
    let chunkCapacity: Int
    let hashers: [SHA256]
    let outputHasher: SHA256
    let isWhole: Bool
    /// Bytes of the whole inputs (raw and Float32) of a tensor merged whole; 0 otherwise.
    let wholeByteCount: Int
    var itemCount: Int { isWhole ? 2 * chunkCount : chunkCount }

    private var tensorStream: TensorStream?
    /// Chunks computed and waiting for their turn; the next chunk to complete; whether a worker is completing.
    private let order = Mutex<(pending: [Int: ChunkWork], next: Int, busy: Bool)>(([:], 0, false))
    /// Chunks completed since the queue last asked, and whether the whole buffers were given back.
    private let completions = Mutex<(chunks: Int, released: Bool)>((0, false))
    /// Whole inputs: the base's then each input's bytes, and their Float32 views.
    private var wholeRaw: [UnsafeMutableRawBufferPointer] = []
    private var wholeFloats: [UnsafeMutablePointer<Float>] = []
    private let decoded = Mutex(0)
    /// Input chunks hashed, in order per input (whole tensors hash as they decode).
    private var inputBatons: [OrderedBaton] = []
    /// Parts left before the tensor is finished: its chunks' completions, and (whole tensors) every
    /// input chunk's hash.
    private let remaining: Mutex<Int>
    private var writer: AtomicFileWriter?
    private var stored = 0
    private var result: StreamingMerge.Output?

    init(_ job: StreamingMerge.Job, pool: ChunkBufferPool, level: Int32, store: ObjectStore, batch: ObjectStore.Batch, progress: ProgressCounter?) {
        self.job = job
        self.pool = pool
        self.level = level
        self.store = store
        self.batch = batch
        self.progress = progress
        let h = job.header
        encoding = TensorEncoding.preferredDelta(for: h.dtype)
        elementSize = h.dtype.byteSize
        chunkCount = h.chunkCount
        chunkCapacity = h.chunkByteCount
        hashers = ([job.base] + job.inputs).map { _ in SHA256() }
        for s in hashers { s.update(TensorHasher.prefix(dtype: h.dtype, shape: h.shape)) }
        outputHasher = SHA256()
        outputHasher.update(TensorHasher.prefix(dtype: h.dtype, shape: h.shape))
        switch job.merging {
        case let .byRange(s):
            tensorStream = s
            isWhole = false
            wholeByteCount = 0
            remaining = Mutex(h.chunkCount)
        case .whole:
            isWhole = true
            let perInput = h.byteCount + (h.dtype == .f32 ? 0 : h.byteCount / elementSize * 4)
            wholeByteCount = (1 + job.inputs.count) * perInput
            remaining = Mutex(h.chunkCount * (2 + job.inputs.count))
        }
    }

    // MARK: - Range-wise tensors

    /// Decodes, merges, measures and codes chunk `c` of a range-wise tensor, then completes what is in order.
    func stream(_ c: Int) throws {
        let work = ChunkWork(index: c, pool: pool)
        do {
            let count = job.header.chunkRange(c).count
            let base = work.take(chunkCapacity)
            try decode(job.base, chunk: c, into: UnsafeMutableRawBufferPointer(rebasing: base[0..<count]), baseChunk: nil, positions: nil)
            work.raw.append(base)
            let baseChunk = UnsafeRawBufferPointer(rebasing: base[0..<count])
            let positions = groupPositions(of: baseChunk, work: work)
            for input in job.inputs {
                let buffer = work.take(chunkCapacity)
                try decode(input, chunk: c, into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count]), baseChunk: baseChunk,
                           positions: positions)
                work.raw.append(buffer)
            }
            // Float32 views of the inputs: the bytes themselves, or widened copies.
            let floats: [UnsafePointer<Float>] = work.raw.map { raw in
                if job.header.dtype == .f32 { return UnsafePointer(raw.baseAddress!.assumingMemoryBound(to: Float.self)) }
                let f = work.takeScratch(chunkCapacity / elementSize * 4)
                let out = f.baseAddress!.bindMemory(to: Float.self, capacity: count / elementSize)
                FloatConversion.toFloat(job.header.dtype, UnsafeRawBufferPointer(rebasing: raw[0..<count]),
                                        into: UnsafeMutableBufferPointer(start: out, count: count / elementSize))
                return UnsafePointer(out)
            }
            try mergeAndCode(c, base: floats[0], experts: job.slots.map { floats[$0 + 1] }, baseChunk: baseChunk, positions: positions, work: work)
        } catch {
            work.release()
            throw error
        }
        try submit(work)
    }

    // MARK: - Tensors merged whole

    /// Allocates the whole inputs' buffers (the queue admits the tensor).
    func allocateWhole() {
        let h = job.header
        for _ in 0..<(1 + job.inputs.count) {
            let raw = pool.take(h.byteCount)
            wholeRaw.append(raw)
            if h.dtype == .f32 {
                wholeFloats.append(raw.baseAddress!.assumingMemoryBound(to: Float.self))
            } else {
                wholeFloats.append(pool.take(h.byteCount / elementSize * 4).baseAddress!.bindMemory(to: Float.self, capacity: h.byteCount / elementSize))
            }
            inputBatons.append(OrderedBaton())
        }
    }

    /// Decodes chunk `c` of every input into the whole buffers and hashes what is in order. Returns
    /// true for the chunk that completes the decoding, after preparing the merge.
    func decodeWhole(_ c: Int) throws -> Bool {
        let h = job.header
        let range = h.chunkRange(c)
        let work = ChunkWork(index: c, pool: pool)
        defer { work.release() }
        func chunk(_ i: Int) -> UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(rebasing: wholeRaw[i][range]) }
        try decode(job.base, chunk: c, into: chunk(0), baseChunk: nil, positions: nil)
        let baseChunk = UnsafeRawBufferPointer(chunk(0))
        let positions = job.inputs.contains(where: { if case .base = $0.reference { return true } else { return false } })
            ? groupPositions(of: baseChunk, work: work) : nil
        for (i, input) in job.inputs.enumerated() {
            try decode(input, chunk: c, into: chunk(i + 1), baseChunk: baseChunk, positions: positions)
        }
        for i in 0..<wholeRaw.count {
            if h.dtype != .f32 {
                let first = range.lowerBound / elementSize
                FloatConversion.toFloat(h.dtype, UnsafeRawBufferPointer(chunk(i)),
                                        into: UnsafeMutableBufferPointer(start: wholeFloats[i] + first, count: range.count / elementSize))
            }
            try inputBatons[i].ready(c) { k in
                hashers[i].update(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(wholeRaw[i])[h.chunkRange(k)]))
                try partDone()
            }
        }
        let last = decoded.withLock { d -> Bool in
            d += 1
            return d == chunkCount
        }
        guard last, case let .whole(prepare) = job.merging else { return false }
        tensorStream = try prepare(UnsafePointer(wholeFloats[0]), job.slots.map { UnsafePointer(wholeFloats[$0 + 1]) })
        return true
    }

    /// Merges and codes chunk `c` of a tensor held whole, then completes what is in order.
    func mergeWhole(_ c: Int) throws {
        let range = job.header.chunkRange(c)
        let first = range.lowerBound / elementSize
        let work = ChunkWork(index: c, pool: pool)
        do {
            let baseChunk = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(wholeRaw[0])[range])
            let positions = groupPositions(of: baseChunk, work: work)
            try mergeAndCode(c, base: UnsafePointer(wholeFloats[0] + first), experts: job.slots.map { UnsafePointer(wholeFloats[$0 + 1] + first) },
                             baseChunk: baseChunk, positions: positions, work: work)
        } catch {
            work.release()
            throw error
        }
        try submit(work)
    }

    // MARK: - Shared steps

    /// The base chunk's grouped order, shared by every delta against it (the inputs and the result).
    private func groupPositions(of baseChunk: UnsafeRawBufferPointer, work: ChunkWork) -> UnsafePointer<UInt32> {
        let buffer = work.takeScratch(chunkCapacity / elementSize * 4)
        let positions = buffer.baseAddress!.bindMemory(to: UInt32.self, capacity: max(baseChunk.count / elementSize, 1))
        ChunkCodec.groupPositions(dtype: job.header.dtype, reference: baseChunk, into: positions)
        return UnsafePointer(positions)
    }

    /// Merges one chunk (Float32 inputs at its first element), offers it to the prepared checkout and
    /// codes it against the base's chunk, as TensorPipeline.encode codes a chunk.
    private func mergeAndCode(_ c: Int, base: UnsafePointer<Float>, experts: [UnsafePointer<Float>], baseChunk: UnsafeRawBufferPointer,
                              positions: UnsafePointer<UInt32>, work: ChunkWork) throws {
        let h = job.header
        let range = h.chunkRange(c)
        let elements = (range.lowerBound / elementSize)..<(range.upperBound / elementSize)
        let merged = work.take(chunkCapacity / elementSize * 4)
        let out = merged.baseAddress!.bindMemory(to: Float.self, capacity: elements.count)
        tensorStream!.mergeRange(elements, base: base, experts: experts, into: out)
        if h.dtype != .f32 {
            FloatConversion.fromFloatInPlace(h.dtype, count: elements.count, UnsafeMutableRawBufferPointer(rebasing: merged[0..<(elements.count * 4)]))
        }
        work.output = UnsafeRawBufferPointer(rebasing: merged[0..<range.count])
        job.prepared?.writePart(job.name, work.output, at: range.lowerBound)
        let coded = work.take(Zstd.compressBound(chunkCapacity) + 8)
        let planes = work.takeScratch(TensorEncoding.scratchFactor * chunkCapacity)
        let (coder, n) = ChunkCodec.encode(dtype: h.dtype, encoding: encoding, level: level, source: work.output, reference: baseChunk,
                                           planes: planes, output: UnsafeMutableRawBufferPointer(rebasing: coded[8...]), positions: positions)
        coded[0] = coder.rawValue
        coded[1] = 0; coded[2] = 0; coded[3] = 0
        coded.storeBytes(of: UInt32(n).littleEndian, toByteOffset: 4, as: UInt32.self)
        work.record = UnsafeRawBufferPointer(rebasing: coded[0..<(8 + n)])
        work.releaseScratch()
    }

    private func decode(_ input: StreamingMerge.Input, chunk c: Int, into destination: UnsafeMutableRawBufferPointer,
                        baseChunk: UnsafeRawBufferPointer?, positions: UnsafePointer<UInt32>?) throws {
        let k = TensorEncoding.scratchFactor
        // One more chunk only for a reference decoded here.
        let copies: Bool
        if case .chunks = input.reference { copies = true } else { copies = false }
        try withScratch((copies ? k + 1 : k) * chunkCapacity) { scratch in
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

    // MARK: - Completion, in chunk order

    /// Queues a computed chunk; completes every chunk that is next in order, unless another worker
    /// is at it (it then completes this one too).
    private func submit(_ work: ChunkWork) throws {
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
            completions.withLock { $0.chunks += 1 }
            try partDone()
        }
    }

    /// Hashes one chunk of the result (and, for range-wise tensors, of every input) and appends its
    /// record to the object file.
    private func complete(_ work: ChunkWork) throws {
        defer { work.release() }
        if !isWhole {
            for (i, raw) in work.raw.enumerated() {
                hashers[i].update(UnsafeRawBufferPointer(rebasing: raw[0..<work.output.count]))
            }
        }
        outputHasher.update(work.output)
        if writer == nil {
            // Opened at the first chunk's completion and handed over at the last: few files are
            // open at once, whatever the number of tensors.
            // Records are written as they are (no copy into a buffer); the two headers go first in one write.
            let w = try store.incomingWriter(bufferByteCount: 0)
            let header = EncodedTensorHeader(encoding: encoding, dtype: job.header.dtype, shape: job.header.shape,
                                             byteCount: job.header.byteCount, chunkByteCount: job.header.chunkByteCount,
                                             reference: job.base.id)
            let bytes = header.serialized()
            try w.write(ObjectStore.fileHeader(.tensor) + bytes)
            stored = bytes.count
            writer = w
        }
        try writer!.write(work.record)
        stored += work.record.count
    }

    /// Counts one finished part; the last one finishes the tensor.
    private func partDone() throws {
        let last = remaining.withLock { r -> Bool in
            r -= 1
            return r == 0
        }
        if last { try finish() }
    }

    /// After every part: verifies the inputs, names the result and hands its file to the batch (or
    /// drops it when a threshold is tripped), and gives back the whole buffers.
    private func finish() throws {
        guard let writer else { throw RepoError.failed("tensor '\(job.name)' was not written") }
        self.writer = nil
        defer { releaseWhole() }
        for (i, input) in ([job.base] + job.inputs).enumerated() {
            let digest = hashers[i].finalize()
            if digest != input.id {
                writer.abort()
                throw RepoError.corruptObject(object: input.id.short, problem: "decoded bytes hash to \(digest.short), expected \(input.id.short)")
            }
        }
        let metrics = tensorStream!.finish()
        if job.thresholds.violation(metrics) != nil {
            writer.abort()
            result = StreamingMerge.Output(info: nil, isNew: false, metrics: metrics)
            progress?.add(1)
            return
        }
        let id = outputHasher.finalize()
        let info = ObjectInfo(id: id, kind: .tensor, encoding: encoding, reference: job.base.id, logicalByteCount: job.header.byteCount,
                              storedByteCount: ObjectStore.headerByteCount + stored, depth: job.baseInfo.depth + 1)
        let staged = try store.stage(writer, info: info, batch: batch)
        job.prepared?.completed(job.name)
        result = StreamingMerge.Output(info: staged.info, isNew: staged.isNew, metrics: metrics)
        progress?.add(1)
    }

    private func releaseWhole() {
        guard isWhole, !wholeRaw.isEmpty else { return }
        for raw in wholeRaw { pool.give(raw) }
        if job.header.dtype != .f32 {
            let count = job.header.byteCount / elementSize * 4
            for f in wholeFloats { pool.give(UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(f), count: count)) }
        }
        wholeRaw.removeAll()
        wholeFloats.removeAll()
        completions.withLock { $0.released = true }
    }

    /// What completed since the last call (for the queue's accounting).
    func takeCompleted() -> (chunks: Int, released: Bool) {
        completions.withLock { c in
            defer { c = (0, false) }
            return c
        }
    }

    func output() throws -> StreamingMerge.Output {
        guard let result else { throw RepoError.failed("tensor '\(job.name)' was not merged") }
        return result
    }

    /// Deletes the object file being written and gives back every buffer (a failed run).
    func abort() {
        writer?.abort()
        writer = nil
        order.withLock { s in
            for w in s.pending.values { w.release() }
            s.pending.removeAll()
        }
        releaseWhole()
    }
}

/// Runs work for indices in increasing order, each once, by whichever thread marks the next one
/// ready (it then runs every ready index that follows, while the others go on).
private final class OrderedBaton: @unchecked Sendable {
    private let state = Mutex<(ready: Set<Int>, next: Int, busy: Bool)>(([], 0, false))

    func ready(_ index: Int, _ body: (Int) throws -> Void) throws {
        let proceed = state.withLock { s -> Bool in
            s.ready.insert(index)
            guard !s.busy else { return false }
            s.busy = true
            return true
        }
        guard proceed else { return }
        while true {
            let next = state.withLock { s -> Int? in
                guard s.ready.remove(s.next) != nil else {
                    s.busy = false
                    return nil
                }
                return s.next
            }
            guard let next else { return }
            do {
                try body(next)
            } catch {
                state.withLock { $0.busy = false }
                throw error
            }
            state.withLock { $0.next += 1 }
        }
    }
}

/// The buffers of one chunk, from compute to completion.
private final class ChunkWork: @unchecked Sendable {
    let index: Int
    let pool: ChunkBufferPool
    /// Range-wise tensors: the base's chunk, then each decoded input's, in their own dtype.
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

/// Buffers reused across chunks and tensors, by size (fresh ones cost a page fault per page).
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
