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
    /// What the user should know although nothing failed (an empty clone, a remote too shallow to
    /// unshallow from), one line each.
    public var warnings: [String] = []

    public init(remote: String) {
        self.remote = remote
    }
}

/// A push that moved some refs while the remote refused others: `result` lists both (its `refs`
/// and `rejected`), `error` is the first refusal.
public struct PushPartlyRejected: Error, Sendable {
    public var result: TransferResult
    public var error: RepoError
}

/// One ref that a transfer changed.
public struct RefChange: Sendable, Equatable {
    /// The ref of this repository that changed (`origin/main` for a fetch, `main` for a push).
    public var name: String
    /// Its name on the side it came from (`main`); `name` when the same.
    public var source: String
    public var kind: Ref.Kind
    public var old: ObjectID?
    public var new: ObjectID?
    public var forced = false
    /// A fetched tag that created the local tag of its name (one that exists stays as it is).
    public var createdLocalTag = false

    public init(name: String, source: String? = nil, kind: Ref.Kind, old: ObjectID?, new: ObjectID?, forced: Bool = false) {
        self.name = name
        self.source = source ?? name
        self.kind = kind
        self.old = old
        self.new = new
        self.forced = forced
    }
}

/// Moves object files between a repository and a transport: several streams at once, references
/// before the deltas coded on them, each object through one file (so memory stays bounded).
struct ObjectMover: Sendable {
    let repository: Repository
    let transport: any RemoteTransport
    let progress: ProgressCounter
    /// The files a clone checks out, written from the objects as they are verified (nil: none).
    var prefill: ClonePrefill? = nil
    /// Decoded chunks of delta references, shared by the objects this mover verifies.
    let references = ReferenceChunkCache()
    /// The rows of the objects it verified (``Repository/receiveCommits(_:allowMissingObjects:shallow:known:)``).
    let verifiedRows = VerifiedRows()

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

    /// Uploads objects from this store (shallowest first). Returns the bytes sent.
    func upload(_ infos: [ObjectInfo]) async throws -> Int {
        var total = 0
        for level in ObjectMover.levels(infos) {
            total += try await forEachParallel(level) { info in
                // A lazy clone fetches what it has not read yet (never a blocking wait in here).
                if !repository.objects.exists(info.id) { try await repository.fetchMissingObjects([info.id]) }
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
    /// must therefore arrive in an earlier group. Within a group, deltas on the same reference
    /// are side by side, so their verifications share its decoded chunks (``ReferenceChunkCache``),
    /// and the runs with the most bytes come first: the largest objects start while there is
    /// other work to overlap them with, instead of finishing a level alone on one core.
    static func levels(_ infos: [ObjectInfo]) -> [[ObjectInfo]] {
        Dictionary(grouping: infos, by: \.depth).sorted { $0.key < $1.key }.map { level in largestRunsFirst(level.value) }
    }

    /// One level's objects in runs by delta reference (an object without one is a run of its
    /// own), the runs by stored bytes, most first (ties by reference id), each run by object id.
    private static func largestRunsFirst(_ level: [ObjectInfo]) -> [ObjectInfo] {
        struct Run {
            var key: ObjectID
            var bytes: Int
            var objects: [ObjectInfo]
        }
        var runs: [Run] = []
        for (key, objects) in Dictionary(grouping: level, by: { $0.reference ?? $0.id }) {
            let bytes = objects.reduce(0) { $0 + $1.storedByteCount }
            runs.append(Run(key: key, bytes: bytes, objects: objects.sorted { $0.id < $1.id }))
        }
        runs.sort { a, b in a.bytes != b.bytes ? a.bytes > b.bytes : a.key < b.key }
        return runs.flatMap(\.objects)
    }

    /// Runs `body` on every item with at most ``RemoteTransportLimits/parallelStreams`` at once;
    /// the first error cancels the rest. Returns the sum of the results.
    func forEachParallel(_ items: [ObjectInfo], _ body: @escaping @Sendable (ObjectInfo) async throws -> Int) async throws -> Int {
        try await mapParallel(items, body, discard: { _ in }).reduce(0, +)
    }

    /// Runs `body` on every item with at most ``RemoteTransportLimits/parallelStreams`` at once
    /// and returns the results (in completion order). On the first error the rest are cancelled
    /// and `discard` is called on every result already produced, before the error is rethrown.
    func mapParallel<T: Sendable>(_ items: [ObjectInfo], _ body: @escaping @Sendable (ObjectInfo) async throws -> T,
                                  discard: (T) -> Void) async throws -> [T] {
        var results: [T] = []
        results.reserveCapacity(items.count)
        do {
            try await withThrowingTaskGroup(of: T.self) { group in
                var next = 0
                while next < items.count && next < RemoteTransportLimits.parallelStreams {
                    let item = items[next]
                    group.addTask { try await body(item) }
                    next += 1
                }
                while let result = try await group.next() {
                    results.append(result)
                    if next < items.count {
                        let item = items[next]
                        group.addTask { try await body(item) }
                        next += 1
                    }
                }
            }
        } catch {
            results.forEach(discard)
            throw error
        }
        return results
    }
}

extension ObjectStore {
    /// Renames verified incoming files into place, durably and with two disk barriers in all: one
    /// `syncfs` before the renames (every file's contents on disk, so no name ever points at a
    /// partial file) and one after (the directory entries). An object stored meanwhile wins and its
    /// incoming file is deleted. On an error the files not yet renamed are deleted.
    func installVerified(_ objects: [ReceivedObject]) throws {
        let waiting = objects.filter { $0.path != nil }
        guard !waiting.isEmpty else { return }
        var done = 0
        defer { for o in waiting[done...] { unlink(o.path!) } }
        try AtomicFileWriter.syncFileSystem(containing: root)
        for o in waiting {
            if exists(o.id) {
                unlink(o.path!)
            } else {
                let dir = root + "/" + o.id.hex.prefix(2)
                if mkdir(dir, 0o755) != 0 && errno != EEXIST {
                    throw RepoError.io(path: dir, reason: errnoDescription())
                }
                guard rename(o.path!, path(for: o.id)) == 0 else {
                    throw RepoError.io(path: path(for: o.id), reason: "rename failed: \(errnoDescription())")
                }
            }
            done += 1
        }
        try AtomicFileWriter.syncFileSystem(containing: root)
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
