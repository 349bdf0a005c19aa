import Dispatch
import Foundation
import Synchronization

/// Data-parallel loops over the machine's cores.
public enum Parallel {
    /// Worker count: `MREPO_THREADS` when set, else the number of active processors.
    public static let workerCount: Int = {
        if let text = ProcessInfo.processInfo.environment["MREPO_THREADS"], let n = Int(text), n > 0 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }()

    /// Runs `body(0..<count)` on all cores and rethrows the first error.
    ///
    /// Iterations after a failure still run, but see `failed == true` and should return early.
    public static func forEach(_ count: Int, _ body: (_ index: Int, _ failed: () -> Bool) throws -> Void) throws {
        guard count > 0 else { return }
        if count == 1 || workerCount == 1 {
            for i in 0..<count { try body(i, { false }) }
            return
        }
        let state = FailureState()
        withoutActuallyEscaping(body) { body in
            let box = UnsafeSendable(body)
            DispatchQueue.concurrentPerform(iterations: count) { i in
                if state.failed { return }
                do {
                    try box.value(i, { state.failed })
                } catch {
                    state.record(error)
                }
            }
        }
        if let error = state.firstError { throw error }
    }
}

/// The first error of a parallel loop, and whether one happened.
private final class FailureState: Sendable {
    private let flag = Atomic<Bool>(false)
    private let error = Mutex<(any Error)?>(nil)

    var failed: Bool { flag.load(ordering: .relaxed) }
    var firstError: (any Error)? { error.withLock { $0 } }

    func record(_ e: any Error) {
        flag.store(true, ordering: .relaxed)
        error.withLock { if $0 == nil { $0 = e } }
    }
}

/// Reuses scratch buffers across tensors: a fresh multi-megabyte allocation costs a page fault
/// per page every time it is touched.
final class ScratchPool: Sendable {
    static let shared = ScratchPool()
    /// Buffers in the pool belong to no thread; `take` hands each to one caller, `give` takes it
    /// back when that caller is done with it (the hand-over ``UnsafeSendable`` describes).
    private let free = Mutex<[Int: [UnsafeSendable<ScratchBuffer>]]>([:])
    /// Bytes kept for reuse at most (the working set of one pipeline).
    private let limit = 160 << 20

    func take(_ count: Int) -> ScratchBuffer {
        let size = ScratchPool.sizeClass(count)
        // Its own size class first, else the smallest larger buffer that is free: memory already
        // touched costs nothing, a fresh buffer a page fault per page (in a short command, such
        // as the export of a small model, those faults are a fifth of the CPU time).
        let reused = free.withLock { pools -> UnsafeSendable<ScratchBuffer>? in
            if let b = pools[size]?.popLast() { return b }
            guard let larger = pools.keys.filter({ $0 > size && pools[$0]?.isEmpty == false }).min() else { return nil }
            return pools[larger]?.popLast()
        }
        if let b = reused { return b.value }
        return ScratchBuffer(count: size)
    }

    /// Sizes are rounded up to a few classes per power of two (at most 1/8 more), so that buffers
    /// asked for by tensors of different sizes are reused instead of freshly mapped and zeroed.
    static func sizeClass(_ count: Int) -> Int {
        let n = max(count, 1)
        guard n > 4096 else { return 4096 }
        let step = 1 << max(12, (Int.bitWidth - 1 - n.leadingZeroBitCount) - 3)
        return (n + step - 1) / step * step
    }

    func give(_ buffers: [ScratchBuffer]) {
        let buffers = buffers.map { UnsafeSendable($0) }
        free.withLock { pools in
            var kept = pools.reduce(0) { $0 + $1.key * $1.value.count }
            for b in buffers where kept + b.value.bytes.count <= limit {
                b.value.used = 0
                pools[b.value.bytes.count, default: []].append(b)
                kept += b.value.bytes.count
            }
        }
    }
}

/// A buffer of raw bytes owned by one window slot of a pipeline, reused across windows.
final class ScratchBuffer {
    let bytes: UnsafeMutableRawBufferPointer
    var used = 0

    init(count: Int) {
        bytes = .allocate(byteCount: max(count, 1), alignment: 64)
    }

    deinit { bytes.deallocate() }

    var filled: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[0..<used]) }
}

/// Runs `body` with a pooled scratch buffer of at least `count` bytes.
public func withScratch<T>(_ count: Int, _ body: (UnsafeMutableRawBufferPointer) throws -> T) rethrows -> T {
    let buffer = ScratchPool.shared.take(count)
    defer { ScratchPool.shared.give([buffer]) }
    return try body(buffer.bytes)
}
