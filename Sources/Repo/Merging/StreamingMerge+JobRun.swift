import Delta
import Foundation
import Merge
import Synchronization

/// One tensor of a ``StreamingMerge`` in progress. Its state is behind locks: the chunks are computed
/// on any worker and completed, in order, by whichever holds the next one.
final class JobRun: Sendable {
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
    let hashers: [LockedHasher]
    let outputHasher: LockedHasher
    /// Which inputs their files' checksums verify (``checksumTrust()``), once known; the lock is a
    /// blocking one, as the first worker reads the files while the others wait. (The base's own
    /// digest is also left out when an input hashed against it verifies it: ``skipsBaseDigest``.)
    let trustLock = NSLock()
    nonisolated(unsafe) var trustKnown: [Bool]?
    let isWhole: Bool
    /// Bytes of the whole inputs (raw and Float32) of a tensor merged whole; 0 otherwise.
    let wholeByteCount: Int
    var itemCount: Int { isWhole ? 2 * chunkCount : chunkCount }

    /// The merge, once it is ready to take ranges.
    let preparedStream: Mutex<TensorStream?>
    private var tensorStream: TensorStream? { preparedStream.withLock { $0 } }
    /// A tensor decided by passes over its inputs.
    let selection: (any ChunkPasses)?
    /// Whether such a tensor's passes may keep its decoded inputs in a ``PassSpill``.
    let spills: Bool
    /// Where such a tensor's spill is kept in memory (nil: in a file).
    let arena: SpillArena?
    /// The decoded inputs kept by the first pass, from the passes until the tensor is finished.
    let spill = Mutex<PassSpill?>(nil)
    /// Whether the passes kept the inputs: the tensor is then merged next, before another spills.
    var spilled: Bool { spill.withLock { $0 != nil } }
    /// Chunks computed and waiting for their turn; the next chunk to complete; whether a worker is completing.
    private let order = Mutex<(pending: [Int: ChunkWork], next: Int, busy: Bool)>(([:], 0, false))
    /// Chunks completed since the queue last asked, and whether the whole buffers were given back.
    private let completions = Mutex<(chunks: Int, released: Bool)>((0, false))
    /// Whole inputs: the base's then each input's bytes, and their Float32 views.
    private struct WholeBuffers: Sendable {
        var raw: [UnsafeSendable<UnsafeMutableRawBufferPointer>] = []
        var floats: [UnsafeSendable<UnsafeMutablePointer<Float>>] = []
    }
    private let whole = Mutex(WholeBuffers())
    private var wholeRaw: [UnsafeMutableRawBufferPointer] { whole.withLock { $0.raw.map(\.value) } }
    private var wholeFloats: [UnsafeMutablePointer<Float>] { whole.withLock { $0.floats.map(\.value) } }
    private let decoded = Mutex(0)
    /// Input chunks hashed, in order per input (whole tensors hash as they decode).
    private let inputBatons: [OrderedBaton]
    /// Parts left before the tensor is finished: its chunks' completions, and (whole tensors) every
    /// input chunk's hash.
    private let remaining: Mutex<Int>
    /// The object file being written (opened at the first chunk's completion), its size so far,
    /// and the tensor's output once finished.
    private struct Written {
        var writer: AtomicFileWriter?
        var stored = 0
        var result: StreamingMerge.Output?
    }
    private let written = Mutex(Written())
    /// A one-chunk result's id, taken as soon as it is merged (so it is hashed once), and whether
    /// the store holds it already (a merge done again): it is then neither coded nor written
    /// (``mergeAndCode(_:base:experts:baseChunk:positions:work:)``).
    private let named = Mutex<(id: ObjectID, stored: Bool)?>(nil)
    /// Whether the result's coding waits for its id (``codeDeferred(_:)``): a range-wise tensor of
    /// several chunks with a place in the prepared file, of at most ``deferredCodingLimit`` bytes,
    /// in a merge that may have been done before (``PreparedCheckout/mayRepeat``).
    let defersCoding: Bool
    /// Such a tensor's base chunks, kept from the merge to the coding.
    let heldBase = Mutex<[Int: UnsafeSendable<UnsafeMutableRawBufferPointer>]>([:])

    init(_ job: StreamingMerge.Job, pool: ChunkBufferPool, level: Int32, store: ObjectStore, batch: ObjectStore.Batch, progress: ProgressCounter?,
         spills: Bool, arena: SpillArena? = nil) {
        self.job = job
        self.spills = spills
        self.arena = arena
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
        let prefix = TensorHasher.prefix(dtype: h.dtype, shape: h.shape)
        hashers = ([job.base] + job.inputs).map { _ in LockedHasher(prefix) }
        outputHasher = LockedHasher(prefix)
        switch job.merging {
        case let .byRange(s):
            preparedStream = Mutex(s)
            selection = nil
            isWhole = false
            wholeByteCount = 0
            remaining = Mutex(h.chunkCount)
        case let .passes(s):
            preparedStream = Mutex(nil)
            selection = s
            isWhole = false
            wholeByteCount = 0
            remaining = Mutex(h.chunkCount)
        case .whole where h.chunkCount == 1:
            // Its one chunk holds the whole inputs: decoded, prepared and merged in one work item
            // (``stream(_:)``), with no whole buffers.
            preparedStream = Mutex(nil)
            selection = nil
            isWhole = false
            wholeByteCount = 0
            remaining = Mutex(h.chunkCount)
        case .whole:
            preparedStream = Mutex(nil)
            selection = nil
            isWhole = true
            wholeByteCount = StreamingMerge.wholeByteCount(h, inputs: job.inputs.count)
            remaining = Mutex(h.chunkCount * (2 + job.inputs.count))
        }
        inputBatons = isWhole ? ([job.base] + job.inputs).map { _ in OrderedBaton() } : []
        defersCoding = !isWhole && h.chunkCount > 1 && h.byteCount <= JobRun.deferredCodingLimit
            && job.prepared?.mayRepeat == true && job.prepared?.hasPlace(for: job.name, byteCount: h.byteCount) == true
    }

    // MARK: - Range-wise tensors

    /// Decodes, merges, measures and codes chunk `c` of a range-wise tensor, then completes what is in order.
    func stream(_ c: Int) throws {
        let work = ChunkWork(index: c, pool: pool)
        do {
            let (count, baseChunk, positions) = try decodeInputs(c, into: work, positionsNeeded: true)
            let floats = floatViews(work, count: count)
            if chunkCount == 1, case let .whole(prepare) = job.merging {
                let stream = try prepare(floats[0], job.slots.map { floats[$0 + 1] })
                preparedStream.withLock { $0 = stream }
            }
            try mergeAndCode(c, base: floats[0], experts: job.slots.map { floats[$0 + 1] }, baseChunk: baseChunk, positions: positions!, work: work)
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
        var buffers = WholeBuffers()
        for _ in 0..<(1 + job.inputs.count) {
            let raw = pool.take(h.byteCount)
            buffers.raw.append(UnsafeSendable(raw))
            if h.dtype == .f32 {
                buffers.floats.append(UnsafeSendable(raw.baseAddress!.assumingMemoryBound(to: Float.self)))
            } else {
                let f = pool.take(h.byteCount / elementSize * 4).baseAddress!.bindMemory(to: Float.self, capacity: h.byteCount / elementSize)
                buffers.floats.append(UnsafeSendable(f))
            }
        }
        whole.withLock { $0 = buffers }
    }

    /// Decodes chunk `c` of every input into the whole buffers and hashes what is in order. Returns
    /// true for the chunk that completes the decoding, after preparing the merge.
    func decodeWhole(_ c: Int) throws -> Bool {
        let h = job.header
        let range = h.chunkRange(c)
        let work = ChunkWork(index: c, pool: pool)
        defer { work.release() }
        let wholeRaw = self.wholeRaw, wholeFloats = self.wholeFloats
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
                if verifiesDigest(of: i) {
                    hashers[i].update(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(wholeRaw[i])[h.chunkRange(k)]))
                }
                try partDone()
            }
        }
        let last = decoded.withLock { d -> Bool in
            d += 1
            return d == chunkCount
        }
        guard last, case let .whole(prepare) = job.merging else { return false }
        let stream = try prepare(UnsafePointer(wholeFloats[0]), job.slots.map { UnsafePointer(wholeFloats[$0 + 1]) })
        preparedStream.withLock { $0 = stream }
        return true
    }

    /// Merges and codes chunk `c` of a tensor held whole, then completes what is in order.
    func mergeWhole(_ c: Int) throws {
        let range = job.header.chunkRange(c)
        let first = range.lowerBound / elementSize
        let work = ChunkWork(index: c, pool: pool)
        let wholeRaw = self.wholeRaw, wholeFloats = self.wholeFloats
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
    func groupPositions(of baseChunk: UnsafeRawBufferPointer, work: ChunkWork) -> UnsafePointer<UInt32> {
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
        if FloatConversion.narrowingOverflows(h.dtype, out, count: elements.count) {
            throw MergeContext.narrowingOverflow(job.name, h.dtype)
        }
        if h.dtype != .f32 {
            FloatConversion.fromFloatInPlace(h.dtype, count: elements.count, UnsafeMutableRawBufferPointer(rebasing: merged[0..<(elements.count * 4)]))
        }
        work.output = UnsafeRawBufferPointer(rebasing: merged[0..<range.count])
        job.prepared?.writePart(job.name, work.output, at: range.lowerBound)
        // A tensor of one chunk is named as soon as it is merged: when the store holds it already
        // (the same merge done again), coding and writing it would only be thrown away.
        if chunkCount == 1 {
            let hasher = TensorHasher(dtype: h.dtype, shape: h.shape)
            hasher.update(work.output)
            let id = hasher.finalize()
            let stored = store.exists(id)
            named.withLock { $0 = (id, stored) }
            if stored { return }
        }
        if defersCoding {
            // Coded once its id is known, and only if the store lacks it (``codeDeferred(_:)``),
            // against the base's chunk: kept from now when the merge has written a result new to
            // the store (the result is likely new too), else decoded again if it turns out new.
            if job.prepared?.wroteNewResult != false {
                let copy = pool.take(chunkCapacity)
                copy.copyMemory(from: baseChunk)
                heldBase.withLock { $0[c] = UnsafeSendable(copy) }
            }
            return
        }
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

    func decode(_ input: StreamingMerge.Input, chunk c: Int, into destination: UnsafeMutableRawBufferPointer,
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
        let output = work.output, record = UnsafeSendable(work.record)
        if !isWhole {
            for (i, raw) in work.raw.enumerated() where verifiesDigest(of: i) {
                hashers[i].update(UnsafeRawBufferPointer(rebasing: raw[0..<output.count]))
            }
        }
        switch named.withLock({ $0 }) {
        case nil: outputHasher.update(output)
        case (_, true)?: return
        case (_, false)?: break
        }
        if defersCoding { return }
        try written.withLock { s in
            if s.writer == nil {
                // A result coded and written: likely new to the store, so the merged files are
                // likely new to the history, and their digests are taken as they are written.
                job.prepared?.resumeDigests()
                // Opened at the first chunk's completion and handed over at the last: few files are
                // open at once, whatever the number of tensors.
                // Records are written as they are (no copy into a buffer); the two headers go first in one write.
                let w = try store.incomingWriter(bufferByteCount: 0)
                let header = EncodedTensorHeader(encoding: encoding, dtype: job.header.dtype, shape: job.header.shape,
                                                 byteCount: job.header.byteCount, chunkByteCount: job.header.chunkByteCount,
                                                 reference: job.base.id)
                let bytes = header.serialized()
                try w.write(ObjectStore.fileHeader(.tensor) + bytes)
                s.stored = bytes.count
                s.writer = w
            }
            try s.writer!.write(record.value)
            s.stored += record.value.count
        }
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
        defer {
            releaseWhole()
            releaseSpill()
            releaseHeldBase()
            // Every job lives until the run ends: its masks (megabytes for a 3B projection: the
            // tied elements' choices, per-block counts) go with the tensor, not with the run.
            preparedStream.withLock { $0 = nil }
            selection?.release()
        }
        let early = named.withLock { $0 }
        let deferredID = defersCoding ? outputHasher.finalize() : nil
        let stored = early?.stored == true ? early?.id : deferredID.flatMap { store.exists($0) ? $0 : nil }
        try written.withLock { s in
            var writer = s.writer
            guard writer != nil || stored != nil || deferredID != nil else { throw RepoError.failed("tensor '\(job.name)' was not written") }
            s.writer = nil
            for (i, input) in ([job.base] + job.inputs).enumerated() where verifiesDigest(of: i) {
                let digest = hashers[i].finalize()
                if digest != input.id {
                    writer?.abort()
                    var problem = "decoded bytes hash to \(digest.short), expected \(input.id.short)"
                    // The base was not hashed on its own: it may be the damaged one.
                    if i > 0, skipsBaseDigest, case .base = input.reference { problem += " (or its reference \(job.base.id.short) is damaged)" }
                    throw RepoError.corruptObject(object: input.id.short, problem: problem)
                }
            }
            let metrics: ConflictMetrics
            do {
                metrics = try tensorStream!.finishChecked(job.name)
            } catch {
                writer?.abort()
                throw error
            }
            if job.thresholds.violation(metrics) != nil {
                writer?.abort()
                s.result = StreamingMerge.Output(info: nil, isNew: false, metrics: metrics)
                progress?.add(1)
                return
            }
            if let stored {
                // Stored already: its facts are the stored file's, as for any object found in place.
                s.result = StreamingMerge.Output(info: try store.inspect(stored), isNew: false, metrics: metrics)
                job.prepared?.completed(job.name)
                progress?.add(1)
                return
            }
            if let deferredID {
                job.prepared?.resumeDigests()
                let coded = try codeDeferred(deferredID)
                writer = coded.writer
                s.stored = coded.stored
            }
            guard let writer else { throw RepoError.failed("tensor '\(job.name)' was not written") }
            let id = early?.id ?? deferredID ?? outputHasher.finalize()
            let info = ObjectInfo(id: id, kind: .tensor, encoding: encoding, reference: job.base.id, logicalByteCount: job.header.byteCount,
                                  storedByteCount: ObjectStore.headerByteCount + s.stored, depth: job.baseInfo.depth + 1)
            let staged = try store.stage(writer, info: info, batch: batch)
            job.prepared?.completed(job.name)
            s.result = StreamingMerge.Output(info: staged.info, isNew: staged.isNew, metrics: metrics)
            progress?.add(1)
        }
    }

    private func releaseWhole() {
        guard isWhole else { return }
        let buffers = whole.withLock { w -> WholeBuffers in
            defer { w = WholeBuffers() }
            return w
        }
        guard !buffers.raw.isEmpty else { return }
        for raw in buffers.raw { pool.give(raw.value) }
        if job.header.dtype != .f32 {
            let count = job.header.byteCount / elementSize * 4
            for f in buffers.floats { pool.give(UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(f.value), count: count)) }
        }
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
        guard let result = written.withLock({ $0.result }) else { throw RepoError.failed("tensor '\(job.name)' was not merged") }
        return result
    }

    /// Deletes the object file being written and gives back every buffer (a failed run).
    func abort() {
        written.withLock { s in
            s.writer?.abort()
            s.writer = nil
        }
        order.withLock { s in
            for w in s.pending.values { w.release() }
            s.pending.removeAll()
        }
        releaseWhole()
        releaseSpill()
        releaseHeldBase()
    }
}
