import Delta
import Synchronization

// The buffers and the ordering of ``StreamingMerge``'s work: a chunk's buffers from compute to
// completion, the pool they come from, and the baton that runs per-chunk work in chunk order.
// Raw buffers cross threads inside ``UnsafeSendable`` (Delta's one wrapper for them): each is owned
// by one chunk at a time, handed over under a lock.

/// Runs work for indices in increasing order, each once, by whichever thread marks the next one
/// ready (it then runs every ready index that follows, while the others go on).
final class OrderedBaton: Sendable {
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

/// The buffers of one chunk, from compute to completion. A chunk is worked on by one thread at a
/// time (computed by one worker, completed by whichever completes in order); the lock hands it over.
final class ChunkWork: Sendable {
    typealias Buffer = UnsafeSendable<UnsafeMutableRawBufferPointer>

    private struct Buffers: Sendable {
        var raw: [Buffer] = []
        var output = UnsafeSendable(UnsafeRawBufferPointer(start: nil, count: 0))
        var record = UnsafeSendable(UnsafeRawBufferPointer(start: nil, count: 0))
        var held: [Buffer] = []
        var scratch: [Buffer] = []
    }

    let index: Int
    let pool: ChunkBufferPool
    private let buffers = Mutex(Buffers())

    init(index: Int, pool: ChunkBufferPool) {
        self.index = index
        self.pool = pool
    }

    /// Range-wise tensors: the base's chunk, then each decoded input's, in their own dtype.
    var raw: [UnsafeMutableRawBufferPointer] { buffers.withLock { $0.raw.map(\.value) } }

    func appendRaw(_ buffer: UnsafeMutableRawBufferPointer) {
        let b = UnsafeSendable(buffer)
        buffers.withLock { $0.raw.append(b) }
    }

    /// The merged chunk in the tensor's dtype.
    var output: UnsafeRawBufferPointer {
        get { buffers.withLock { $0.output.value } }
        set {
            let b = UnsafeSendable(newValue)
            buffers.withLock { $0.output = b }
        }
    }

    /// The merged chunk's coded record.
    var record: UnsafeRawBufferPointer {
        get { buffers.withLock { $0.record.value } }
        set {
            let b = UnsafeSendable(newValue)
            buffers.withLock { $0.record = b }
        }
    }

    /// A buffer kept until the chunk is completed.
    func take(_ size: Int) -> UnsafeMutableRawBufferPointer {
        let b = UnsafeSendable(pool.take(size))
        buffers.withLock { $0.held.append(b) }
        return b.value
    }

    /// A buffer given back as soon as the chunk is computed.
    func takeScratch(_ size: Int) -> UnsafeMutableRawBufferPointer {
        let b = UnsafeSendable(pool.take(size))
        buffers.withLock { $0.scratch.append(b) }
        return b.value
    }

    func releaseScratch() {
        let scratch = buffers.withLock { s -> [Buffer] in
            defer { s.scratch.removeAll() }
            return s.scratch
        }
        for b in scratch { pool.give(b.value) }
    }

    func release() {
        releaseScratch()
        let held = buffers.withLock { s -> [Buffer] in
            defer {
                s.held.removeAll()
                s.raw.removeAll()
            }
            return s.held
        }
        for b in held { pool.give(b.value) }
    }
}

/// Buffers reused across chunks and tensors, by size (fresh ones cost a page fault per page).
final class ChunkBufferPool: Sendable {
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
