import Delta
import Dispatch
import Synchronization

/// Hands out ``StreamingMerge``'s work items in tensor order: a tensor held whole is admitted once
/// its buffers fit the budget; its merge items, once it is prepared, come before anything else
/// (they free memory).
///
/// A worker that finds nothing to start waits on a semaphore; every change that can let one start
/// (an item done, a tensor prepared, a failure) signals every waiter, which then looks again.
final class WorkQueue: Sendable {
    enum Kind { case stream, decode, merge }

    struct Item: Sendable {
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

    private struct State {
        /// Merge items of prepared tensors.
        var urgent: [(run: JobRun, chunk: Int)] = []
        /// The tensor being handed out, and its next chunk.
        var job = 0, chunk = 0
        /// Whole-tensor bytes admitted and not yet released.
        var wholeBytes = 0
        /// Chunks handed out of range-wise tensors and not completed.
        var streaming = 0
        var outstanding: Int
        var failure: (any Error)?
        /// Workers waiting on `wake`.
        var waiting = 0
    }

    private let runs: [JobRun]
    /// Whole-tensor bytes admitted at once: the largest tensor held whole, and room for a few small ones beside it.
    private let budget: Int
    /// Chunks of range-wise tensors in flight at once.
    private let streamingLimit = Parallel.workerCount + 2
    private let state: Mutex<State>
    private let wake = DispatchSemaphore(value: 0)

    init(runs: [JobRun]) {
        self.runs = runs
        let largest = runs.map(\.wholeByteCount).max() ?? 0
        budget = largest + max(largest / 8, 16 << 20)
        state = Mutex(State(outstanding: runs.reduce(0) { $0 + $1.itemCount }))
    }

    var failure: (any Error)? { state.withLock { $0.failure } }

    /// The next item, waiting while none can start; nil when every item is done or one failed.
    func next() -> Item? {
        while true {
            enum Step { case item(Item), finished, wait }
            let step = state.withLock { s -> Step in
                if s.failure != nil || s.outstanding == 0 { return .finished }
                if !s.urgent.isEmpty {
                    let (run, c) = s.urgent.removeFirst()
                    return .item(Item(kind: .merge, job: run, chunk: c, queue: self))
                }
                if s.job < runs.count {
                    let run = runs[s.job]
                    if s.chunk == 0, run.isWhole, s.wholeBytes > 0, s.wholeBytes + run.wholeByteCount > budget {
                        // Wait for memory: the tensors admitted finish first.
                    } else if !run.isWhole, s.streaming >= streamingLimit {
                        // Wait for completions.
                    } else {
                        if s.chunk == 0, run.isWhole {
                            s.wholeBytes += run.wholeByteCount
                            run.allocateWhole()
                        }
                        let c = s.chunk
                        s.chunk += 1
                        if s.chunk == run.chunkCount {
                            s.job += 1
                            s.chunk = 0
                        }
                        if run.isWhole { return .item(Item(kind: .decode, job: run, chunk: c, queue: self)) }
                        s.streaming += 1
                        return .item(Item(kind: .stream, job: run, chunk: c, queue: self))
                    }
                }
                s.waiting += 1
                return .wait
            }
            switch step {
            case let .item(item): return item
            case .finished: return nil
            case .wait: wake.wait()
            }
        }
    }

    /// Lets every waiting worker look again (called after any change, outside the lock).
    private func broadcast(_ waiting: Int) {
        for _ in 0..<waiting { wake.signal() }
    }

    /// A whole tensor is prepared: its merge items go first.
    func prepared(_ run: JobRun) {
        let waiting = state.withLock { s -> Int in
            for c in 0..<run.chunkCount { s.urgent.append((run, c)) }
            defer { s.waiting = 0 }
            return s.waiting
        }
        broadcast(waiting)
    }

    func done(_ item: Item) {
        let completed = item.job.takeCompleted()
        let waiting = state.withLock { s -> Int in
            s.outstanding -= 1
            if item.kind == .stream { s.streaming -= completed.chunks }
            if completed.released { s.wholeBytes -= item.job.wholeByteCount }
            defer { s.waiting = 0 }
            return s.waiting
        }
        broadcast(waiting)
    }

    func fail(_ error: any Error) {
        let waiting = state.withLock { s -> Int in
            if s.failure == nil { s.failure = error }
            defer { s.waiting = 0 }
            return s.waiting
        }
        broadcast(waiting)
    }
}
