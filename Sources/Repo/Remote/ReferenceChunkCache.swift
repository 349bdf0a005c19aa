import Delta
import Dispatch
import Synchronization

/// Decoded chunks of delta references, shared by the verifications of one download.
///
/// A family's fine-tunes are coded against the same base tensors, so a clone verifies up to one
/// delta per fine-tune against each base chunk; without this cache each of them decoded that chunk
/// again (a fetch of the real MiniLM family decoded the base four times). Deltas on the same
/// reference arrive side by side (``ObjectMover/levels(_:)``), several at once: the first to ask
/// for a chunk decodes it while the others wait for its bytes instead of decoding it too. Memory
/// is bounded by ``budget`` (oldest chunks go first), and the buffers of evicted chunks are reused
/// for new ones: fresh memory for every chunk of a base cost a page fault per page, about as much
/// as the decodes it saved. A reference is a stored, verified object, so its decoded chunks are
/// the same bytes whoever decodes them.
final class ReferenceChunkCache: Sendable {
    private struct Key: Hashable {
        var id: ObjectID
        var index: Int
    }

    /// One chunk: decoded once, by the caller that created the entry; the others wait on `ready`.
    private final class Entry: @unchecked Sendable {
        /// Signalled once `filled` is set (false: the decode failed, each caller decodes for
        /// itself). Every waiter signals it again on its way out, so it stays open for the next.
        let ready = DispatchSemaphore(value: 0)
        /// The chunk's bytes: written once, before `ready` is first signalled, read only after
        /// waiting on it; given back to the pool when the last holder lets go of the entry.
        let buffer: UnsafeMutableRawBufferPointer
        let count: Int
        var filled = false
        private let pool: BufferPool

        init(count: Int, pool: BufferPool) {
            self.count = count
            self.pool = pool
            buffer = pool.take(count)
        }

        deinit { pool.give(buffer) }
    }

    /// Buffers by capacity (a multiple of 64 KiB: a family's tensors come in few sizes), kept for
    /// the next chunks, at most `limit` bytes of them.
    private final class BufferPool: Sendable {
        private let free = Mutex<[Int: [UnsafeSendable<UnsafeMutableRawBufferPointer>]]>([:])
        private let limit: Int
        private let kept = Atomic<Int>(0)

        init(limit: Int) { self.limit = limit }

        static func capacity(_ count: Int) -> Int { (max(count, 1) + 0xFFFF) & ~0xFFFF }

        func take(_ count: Int) -> UnsafeMutableRawBufferPointer {
            let capacity = BufferPool.capacity(count)
            // Its own size first, else the smallest larger one: a model's tensors come in several
            // sizes, and asking for the exact size only left most buffers unused (a MiniLM fetch
            // took about 20 000 page faults in fresh buffers for the cache's copies).
            let reused = free.withLock { lists -> UnsafeSendable<UnsafeMutableRawBufferPointer>? in
                if let b = lists[capacity]?.popLast() { return b }
                guard let larger = lists.keys.filter({ $0 > capacity && lists[$0]?.isEmpty == false }).min() else { return nil }
                return lists[larger]?.popLast()
            }
            if let b = reused {
                kept.subtract(b.value.count, ordering: .relaxed)
                return b.value
            }
            return UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 64)
        }

        func give(_ buffer: UnsafeMutableRawBufferPointer) {
            if kept.add(buffer.count, ordering: .relaxed).newValue <= limit {
                free.withLock { $0[buffer.count, default: []].append(UnsafeSendable(buffer)) }
            } else {
                kept.subtract(buffer.count, ordering: .relaxed)
                buffer.deallocate()
            }
        }

        deinit {
            for list in free.withLock({ $0.values }) { for b in list { b.value.deallocate() } }
        }
    }

    private struct State {
        var entries: [Key: Entry] = [:]
        /// Keys in insertion order, oldest first, with their sizes (for the budget).
        var order: [(Key, Int)] = []
        var bytes = 0
    }

    /// Bytes of decoded chunks kept at most (a few chunks of the largest tensors).
    let budget: Int
    private let state = Mutex(State())
    private let pool: BufferPool

    init(budget: Int = 32 << 20) {
        self.budget = budget
        pool = BufferPool(limit: budget)
    }

    /// A chunk source for reference `id` that decodes each chunk through `inner` once.
    func source(for id: ObjectID, wrapping inner: @escaping ChunkSource) -> ChunkSource {
        { [self] index, into in
            guard !into.isEmpty else { return try inner(index, into) }
            let key = Key(id: id, index: index)
            let (entry, mine) = state.withLock { s -> (Entry?, Bool) in
                if let e = s.entries[key] { return (e, false) }
                // A chunk larger than a quarter of the budget is not kept: it would evict the rest.
                guard into.count * 4 <= budget else { return (nil, false) }
                let e = Entry(count: into.count, pool: pool)
                s.entries[key] = e
                s.order.append((key, into.count))
                s.bytes += into.count
                while s.bytes > budget, let (old, size) = s.order.first, old != key {
                    s.order.removeFirst()
                    s.entries[old] = nil
                    s.bytes -= size
                }
                return (e, true)
            }
            guard let entry else { return try inner(index, into) }
            if mine {
                defer { entry.ready.signal() }
                try inner(index, into)
                entry.buffer.baseAddress!.copyMemory(from: into.baseAddress!, byteCount: into.count)
                entry.filled = true
                return
            }
            entry.ready.wait()
            entry.ready.signal()
            if entry.filled, entry.count == into.count {
                into.baseAddress!.copyMemory(from: entry.buffer.baseAddress!, byteCount: into.count)
            } else {
                try inner(index, into)
            }
        }
    }
}
