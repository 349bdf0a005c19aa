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
/// is bounded by ``budget`` (oldest chunks go first); a reference is a stored, verified object, so
/// its decoded chunks are the same bytes whoever decodes them.
final class ReferenceChunkCache: Sendable {
    private struct Key: Hashable {
        var id: ObjectID
        var index: Int
    }

    /// One chunk: decoded once, by the caller that created the entry; the others wait on `ready`.
    private final class Entry: @unchecked Sendable {
        /// Signalled once `bytes` is set (nil: the decode failed, each caller decodes for itself).
        /// Every waiter signals it again on its way out, so it stays open for the next.
        let ready = DispatchSemaphore(value: 0)
        /// Written once before `ready` is first signalled, read only after waiting on it.
        var bytes: [UInt8]?
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

    init(budget: Int = 64 << 20) {
        self.budget = budget
    }

    /// A chunk source for reference `id` that decodes each chunk through `inner` once.
    func source(for id: ObjectID, wrapping inner: @escaping ChunkSource) -> ChunkSource {
        { [self] index, into in
            let key = Key(id: id, index: index)
            let (entry, mine) = state.withLock { s -> (Entry?, Bool) in
                if let e = s.entries[key] { return (e, false) }
                // A chunk larger than a quarter of the budget is not kept: it would evict the rest.
                guard into.count * 4 <= budget else { return (nil, false) }
                let e = Entry()
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
                do {
                    try inner(index, into)
                    entry.bytes = Array(UnsafeRawBufferPointer(into))
                    entry.ready.signal()
                } catch {
                    entry.ready.signal()
                    throw error
                }
                return
            }
            entry.ready.wait()
            entry.ready.signal()
            if let bytes = entry.bytes, bytes.count == into.count {
                bytes.withUnsafeBytes { into.copyMemory(from: $0) }
            } else {
                try inner(index, into)
            }
        }
    }
}
