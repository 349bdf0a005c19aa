import Delta
import Foundation
import Synchronization

/// What a fetch, clone or push moved.
public struct TransferResult: Sendable {
    /// The remote's name (or URL for a clone).
    public var remote: String
    public var commits = 0
    /// Objects moved (sent or received).
    public var objects = 0
    /// Objects the other side already had (skipped).
    public var skippedObjects = 0
    /// Bytes of object files and commit records moved.
    public var bytes = 0
    /// Refs that changed (remote-tracking refs for a fetch, remote refs for a push).
    public var refs: [RefChange] = []
    /// Refs a push could not move, with the reason (the remote is unchanged for them).
    public var rejected: [(name: String, reason: String)] = []

    public init(remote: String) {
        self.remote = remote
    }
}

/// One ref that a transfer changed.
public struct RefChange: Sendable, Equatable {
    public var name: String
    public var kind: Ref.Kind
    public var old: ObjectID?
    public var new: ObjectID?
    public var forced = false
}

/// Moves object files between a repository and a transport: several streams at once, references
/// before the deltas coded on them, each object through one file (so memory stays bounded).
struct ObjectMover: Sendable {
    let repository: Repository
    let transport: any RemoteTransport
    let progress: ProgressCounter

    /// Asks the remote which of `ids` it lacks, in batches.
    func remoteMissing(_ ids: [ObjectID]) async throws -> Set<ObjectID> {
        var out = Set<ObjectID>()
        var start = 0
        while start < ids.count {
            let end = min(ids.count, start + RemoteTransportLimits.negotiationBatch)
            out.formUnion(try await transport.missingObjects(Array(ids[start..<end])))
            start = end
        }
        return out
    }

    /// Downloads objects (shallowest first), verifying each before it is renamed into the store.
    /// Returns the bytes received.
    func download(_ infos: [ObjectInfo]) async throws -> Int {
        var total = 0
        for level in ObjectMover.levels(infos) {
            total += try await forEachParallel(level) { info in
                let incoming = repository.objects.incomingPath()
                do {
                    let n = try await transport.getObject(info.id, to: incoming)
                    try repository.receiveObject(info.id, file: incoming)
                    CrashPoint.reach("transfer.object-received")
                    progress.add(n)
                    return n
                } catch {
                    unlink(incoming)
                    throw error
                }
            }
        }
        return total
    }

    /// Uploads objects from this store (shallowest first). Returns the bytes sent.
    func upload(_ infos: [ObjectInfo]) async throws -> Int {
        var total = 0
        for level in ObjectMover.levels(infos) {
            total += try await forEachParallel(level) { info in
                // A lazy clone fetches what it has not read yet (never a blocking wait in here).
                if !repository.objects.exists(info.id) { _ = try await repository.fetchMissingObjects([info.id]) }
                let path = repository.objects.path(for: info.id)
                let size = FileStat.of(path)?.size ?? info.storedByteCount
                try await transport.putObject(info.id, from: path, byteCount: size)
                CrashPoint.reach("transfer.object-sent")
                progress.add(size)
                return size
            }
        }
        return total
    }

    /// Groups objects by delta depth: a receiver verifies a delta against its reference, which
    /// must therefore arrive in an earlier group.
    static func levels(_ infos: [ObjectInfo]) -> [[ObjectInfo]] {
        Dictionary(grouping: infos, by: \.depth).sorted { $0.key < $1.key }.map { $0.value.sorted { $0.id < $1.id } }
    }

    /// Runs `body` on every item with at most ``RemoteTransportLimits/parallelStreams`` at once;
    /// the first error cancels the rest. Returns the sum of the results.
    func forEachParallel(_ items: [ObjectInfo], _ body: @escaping @Sendable (ObjectInfo) async throws -> Int) async throws -> Int {
        try await withThrowingTaskGroup(of: Int.self) { group in
            var total = 0
            var next = 0
            while next < items.count && next < RemoteTransportLimits.parallelStreams {
                let item = items[next]
                group.addTask { try await body(item) }
                next += 1
            }
            while let n = try await group.next() {
                total += n
                if next < items.count {
                    let item = items[next]
                    group.addTask { try await body(item) }
                    next += 1
                }
            }
            return total
        }
    }
}

/// Runs async work from synchronous code (the CLI's commands and lazy object reads).
public func runBlocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    let done = DispatchSemaphore(value: 0)
    Task.detached {
        do {
            let value = try await body()
            box.result.withLock { $0 = .success(value) }
        } catch {
            box.result.withLock { $0 = .failure(error) }
        }
        done.signal()
    }
    done.wait()
    return try box.result.withLock { $0! }.get()
}

/// Carries a result from a task to the thread waiting for it (set before the semaphore is signalled).
private final class ResultBox<T: Sendable>: Sendable {
    let result = Mutex<Result<T, any Error>?>(nil)
}
