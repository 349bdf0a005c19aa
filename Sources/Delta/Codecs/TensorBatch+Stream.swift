import Foundation

/// The decoding side of ``TensorBatch`` as a stream without barriers.
///
/// Windows coded in lock step leave a core idle at every window's end (the last chunk of a window
/// decodes alone, and the last window's bytes are hashed and written alone), and the serial work
/// (the file's SHA-256, the writes) can never run beside more than one window of decoding. Here
/// decoder threads take the chunks in order and decode each into a ring of bytes as soon as its
/// place there is free; the consumers (the sink on the calling thread, and each further consumer
/// on a thread of its own: the file's hash, the tensors' identities) read the chunks in order as
/// soon as each is decoded. A place in the ring is free once every consumer has read what was
/// there. Memory: the ring (a few chunks per decoder) and one chunk's scratch per decoder.
extension TensorBatch {
    /// A consumer of the decoded chunks: called once per entry (a chunk, or an empty tensor with
    /// empty bytes), in order, on one thread.
    typealias StreamConsumer = (_ entry: StreamPlan.Entry, _ bytes: UnsafeRawBufferPointer) throws -> Void

    /// Decodes `jobs` with `decoders` threads and hands every entry to each consumer in order:
    /// `sink` on the calling thread, each of `others` on a thread of its own. With one decoder or
    /// at most one chunk, everything runs on the calling thread, entry after entry.
    ///
    /// - Throws: the first error of a decoder or a consumer; the others stop at their next entry.
    static func stream(_ jobs: [TensorDecodeJob], decoders: Int, others: [StreamConsumer],
                       sink: (_ entry: StreamPlan.Entry, _ bytes: UnsafeRawBufferPointer) throws -> Void) throws {
        let plan = StreamPlan(headers: jobs.map(\.tensor.header), decoders: decoders)
        guard !plan.entries.isEmpty else { return }
        let ring = ScratchPool.shared.take(plan.ringBytes)
        defer { ScratchPool.shared.give([ring]) }
        // Read by the decoders and consumers at the places the ring's protocol hands them.
        let base = UnsafeSendable(ring.bytes)

        let decode: @Sendable (_ e: Int, _ scratch: UnsafeMutableRawBufferPointer) throws -> Void = { e, scratch in
            let entry = plan.entries[e]
            guard entry.chunk >= 0 else { return }
            let job = jobs[entry.job]
            let out = UnsafeMutableRawBufferPointer(rebasing: base.value[entry.place..<(entry.place + entry.range.count)])
            try job.tensor.decodeChunk(entry.chunk, into: out, reference: job.reference,
                                       scratch: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<((TensorEncoding.scratchFactor + 1) * entry.range.count)]))
            job.chunkDone?(entry.chunk)
        }
        let bytes: @Sendable (_ e: Int) -> UnsafeRawBufferPointer = { e in
            let entry = plan.entries[e]
            return UnsafeRawBufferPointer(rebasing: base.value[entry.place..<(entry.place + entry.range.count)])
        }
        let scratchBytes = (TensorEncoding.scratchFactor + 1) * plan.largestChunk

        if decoders <= 1 || plan.chunkCount <= 1 {
            try withScratch(scratchBytes) { scratch in
                for e in plan.entries.indices {
                    try decode(e, scratch)
                    try sink(plan.entries[e], bytes(e))
                    for consume in others { try consume(plan.entries[e], bytes(e)) }
                }
            }
            return
        }

        let state = StreamState(entries: plan.entries, ringBytes: plan.ringBytes, consumers: others.count + 1)
        let threads = DispatchGroup()
        for _ in 0..<decoders {
            threads.enter()
            Thread {
                defer { threads.leave() }
                let scratch = ScratchPool.shared.take(scratchBytes)
                defer { ScratchPool.shared.give([scratch]) }
                while let e = state.claim() {
                    do {
                        try decode(e, scratch.bytes)
                        state.decoded(e)
                    } catch {
                        state.fail(error)
                        return
                    }
                }
            }.start()
        }
        let run: @Sendable (_ c: Int, _ consume: UnsafeSendable<StreamConsumer>) -> Void = { c, consume in
            for e in plan.entries.indices {
                guard state.waitDecoded(e) else { return }
                do {
                    try consume.value(plan.entries[e], bytes(e))
                } catch {
                    state.fail(error)
                    return
                }
                state.consumed(e, by: c)
            }
        }
        // Each consumer is called from one thread.
        for (c, consume) in others.enumerated() {
            let box = UnsafeSendable(consume)
            threads.enter()
            Thread {
                defer { threads.leave() }
                run(c + 1, box)
            }.start()
        }
        for e in plan.entries.indices {
            guard state.waitDecoded(e) else { break }
            do {
                try sink(plan.entries[e], bytes(e))
            } catch {
                state.fail(error)
                break
            }
            state.consumed(e, by: 0)
        }
        threads.wait()
        if let error = state.error { throw error }
    }
}

/// The entries of a stream (every chunk of every tensor, in order) and their places in the ring.
struct StreamPlan {
    struct Entry {
        var job: Int
        /// The chunk's index, or -1 for a tensor without chunks (empty).
        var chunk: Int
        /// The chunk's byte range in its tensor.
        var range: Range<Int>
        /// Whether this is the tensor's last entry.
        var isLast: Bool
        /// Where the entry starts and ends on the ring's unrolled line (each lap adds the ring's
        /// size; an entry that would cross the ring's end starts the next lap), and where it
        /// starts in the ring.
        var start = 0
        var end = 0
        var place = 0
    }

    var entries: [Entry] = []
    var ringBytes = 64
    var largestChunk = 1
    var chunkCount = 0

    /// A ring of a few chunks per decoder: one being decoded by each, one being read, and room
    /// for the decoders to run ahead of the readers.
    init(headers: [EncodedTensorHeader], decoders: Int) {
        entries = EncodedTensorHeader.chunkList(headers).map { Entry(job: $0.job, chunk: $0.chunk, range: $0.range, isLast: $0.isLast) }
        var total = 0
        for e in entries where e.chunk >= 0 {
            largestChunk = max(largestChunk, e.range.count)
            total += (e.range.count + 63) & ~63
            chunkCount += 1
        }
        let aligned = (largestChunk + 63) & ~63
        ringBytes = max(aligned, min(total, max(decoders + 3, 4) * aligned))
        var line = 0
        for i in entries.indices {
            let size = (entries[i].range.count + 63) & ~63
            if line % ringBytes + size > ringBytes { line += ringBytes - line % ringBytes }
            entries[i].start = line
            entries[i].place = line % ringBytes
            line += size
            entries[i].end = line
        }
    }
}

/// Who may decode or read which entry: claims in order, what is decoded, how far every consumer
/// has read, and the first failure. Every field is read and written under `condition`'s lock.
private final class StreamState: Sendable {
    private let condition = NSCondition()
    private let fields: UnsafeSendable<Fields>

    private final class Fields {
        let entries: [StreamPlan.Entry]
        let ringBytes: Int
        var claimed = 0
        var decoded: [Bool]
        var consumed: [Int]
        /// The ring's line up to which every consumer has read.
        var freed = 0
        var error: (any Error)?

        init(entries: [StreamPlan.Entry], ringBytes: Int, consumers: Int) {
            self.entries = entries
            self.ringBytes = ringBytes
            decoded = [Bool](repeating: false, count: entries.count)
            consumed = [Int](repeating: 0, count: consumers)
        }
    }

    init(entries: [StreamPlan.Entry], ringBytes: Int, consumers: Int) {
        fields = UnsafeSendable(Fields(entries: entries, ringBytes: ringBytes, consumers: consumers))
    }

    private func locked<T>(_ body: (Fields) -> T) -> T {
        condition.lock()
        defer { condition.unlock() }
        return body(fields.value)
    }

    var error: (any Error)? { locked { $0.error } }

    /// The next entry to decode, once its place in the ring is free; nil when there is none left
    /// or the stream failed.
    func claim() -> Int? {
        condition.lock()
        defer { condition.unlock() }
        let f = fields.value
        guard f.error == nil, f.claimed < f.entries.count else { return nil }
        let e = f.claimed
        f.claimed += 1
        while f.error == nil, f.freed < f.entries[e].end - f.ringBytes { condition.wait() }
        return f.error == nil ? e : nil
    }

    func decoded(_ e: Int) {
        locked { $0.decoded[e] = true }
        condition.broadcast()
    }

    /// Waits until entry `e` is decoded; false when the stream failed.
    func waitDecoded(_ e: Int) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        let f = fields.value
        while f.error == nil, !f.decoded[e] { condition.wait() }
        return f.error == nil
    }

    func consumed(_ e: Int, by consumer: Int) {
        locked { f in
            f.consumed[consumer] = e + 1
            let read = f.consumed.min()!
            if read > 0 { f.freed = f.entries[read - 1].end }
        }
        condition.broadcast()
    }

    func fail(_ error: any Error) {
        locked { f in if f.error == nil { f.error = error } }
        condition.broadcast()
    }
}
