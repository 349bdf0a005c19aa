import CLinux
import Delta
import Foundation
import Synchronization

/// Receiving objects: one pipeline over the whole download, so that the network, the CPU and the
/// disk are busy at once.
///
/// Objects are started shallowest first (``ObjectMover/levels(_:)``), at most
/// ``RemoteTransportLimits/parallelStreams`` at a time, and each stream starts the next object as
/// soon as its own is verified: there is no pause at the end of a batch or of a depth level. Each
/// object is written to its partial-download file (``PartialDownload``; an incoming file when
/// another process holds that; its write-back to disk started as soon as it is whole), verified
/// away from the tasks that drive the transfers (so the sockets keep being read while both cores
/// decode), and joins the open batch under that name. A batch is made durable and renamed into place
/// (``ObjectStore/installVerified(_:)``: one `syncfs`, the renames, one more) by a background
/// install, one batch after another, while the streams go on; it closes at ``batchObjects``
/// objects, ``batchBytes`` bytes, when the last object of a depth level is in, or once it has been
/// open ``batchSeconds`` (checked at each arrival and by a timer between them: so that on a slow
/// link an interruption loses about a second of transfer, not up to a level's worth, and deltas
/// waiting for their references' batch do not wait for a large object of that level).
///
/// A delta is verified against its reference, which must be verified first: a delta whose
/// reference comes in this download downloads its bytes at once but waits until the reference's
/// batch is closed (handed to the install queue), then decodes the reference from its incoming
/// file (or from its final name, if that batch was installed meanwhile). It does not wait for the
/// batch to be installed: that wait left both cores idle while the first level's batch was synced
/// (about 150 ms of a 0.95 s clone of the real MiniLM family). A delta therefore always joins a
/// later batch than its reference, and batches are installed one after another, so no delta gets
/// its name before its reference is durable under its own, also across a power loss. A reference is
/// always of a lower level than its deltas and is started first, and a level's last object closes
/// the batch, so the wait always ends. (A remote that misstates depths only makes that delta fail
/// its verification, as before.) Nothing changes for what is promised: every object is verified
/// before it gets its name, names point at durable files only, and `download` returns only once
/// every batch is installed, so no commit or ref can name an object before it is durable. An
/// interruption loses at most the batches not yet installed; what was installed is not fetched
/// again.
extension ObjectMover {
    /// Objects per durable batch, and bytes: large enough to amortise the disk barriers, small
    /// enough that an interruption loses little.
    /// Fewer where the open-file limit is low: every object of a batch keeps its file open until
    /// the batch is installed (see ``heldFiles()``).
    static let batchObjects = 512
    static let batchBytes = 256 << 20
    /// How many received objects may hold their files open at once, counting closed batches not
    /// installed yet: half of what the open-file limit leaves beside the descriptors open now and a
    /// reserve for the streams (a socket or source file, the partial file, mapped references). Past
    /// it, the download waits for the installs before it takes more (a fast link on many small
    /// objects closes batches faster than they are synced). The first download raises the process's
    /// soft limit to its hard one (only then: programs a command starts, hooks and evaluations, keep
    /// the usual limit unless they follow a download).
    static func heldFiles() -> Int {
        _ = raisedLimit
        let free = OpenFileLimit.current - OpenFileLimit.inUse - 8 * RemoteTransportLimits.parallelStreams - 8
        return max(1, min(4096, free / 2))
    }
    private static let raisedLimit: Void = OpenFileLimit.raise()
    /// How long a batch stays open, at most, while objects keep arriving: `MREPO_TRANSFER_BATCH_SECONDS`
    /// (0 or more; default 1). Each batch costs two `syncfs`, so on a fast link the limits above close
    /// batches first.
    static let batchSeconds: Duration = {
        guard let text = ProcessInfo.processInfo.environment["MREPO_TRANSFER_BATCH_SECONDS"], let s = Double(text), s >= 0, s < 1e6 else {
            return .seconds(1)
        }
        return .milliseconds(Int64(s * 1000))
    }()

    /// How often the open batch's age is checked between arrivals.
    static var timerTick: Duration { max(.milliseconds(50), batchSeconds / 4) }

    /// Whether the open batch closes once an object of a level with `levelLeft` objects still to
    /// come has joined it.
    static func closesBatch(objects: Int, bytes: Int, levelLeft: Int, openFor age: Duration, heldFiles: Int = .max) -> Bool {
        objects >= min(batchObjects, max(1, heldFiles / 2)) || bytes >= batchBytes || levelLeft == 0 || age >= batchSeconds
    }

    /// Downloads and verifies `infos` into the store. Returns the bytes received, and how many
    /// objects were found whole in their partial files (nothing asked for them).
    func download(_ infos: [ObjectInfo]) async throws -> (bytes: Int, keptWhole: Int) {
        let order = ObjectMover.levels(infos).flatMap { $0 }
        guard !order.isEmpty else { return (0, 0) }
        let position = Dictionary(order.enumerated().map { ($1.id, $0) }, uniquingKeysWith: { a, _ in a })
        var levelLeft: [Int: Int] = [:]
        for info in order { levelLeft[info.depth, default: 0] += 1 }
        let gate = BatchGate()
        let incoming = IncomingFiles(references: Dictionary(order.map { ($0.id, $0.reference) }, uniquingKeysWith: { a, _ in a }))
        let store = repository.objects
        var open: [ReceivedObject] = []
        var openBytes = 0
        let clock = ContinuousClock()
        var openedAt = clock.now
        var lastInstall: Task<Void, any Error>?
        /// Objects of closed batches that may still hold their files (none once `lastInstall` is done).
        var queued = 0
        let heldFiles = ObjectMover.heldFiles()
        var total = 0, keptWhole = 0

        /// Hands the open batch to the install queue (after the batch before it). Its objects'
        /// deltas may be verified from now on, from the incoming files: they join later batches.
        func close() {
            guard !open.isEmpty else { return }
            let batch = open
            open = []
            openBytes = 0
            queued += batch.count
            for o in batch { if let p = o.path { incoming.add(o.id, path: p) } }
            gate.open(batch.map(\.id))
            let previous = lastInstall
            lastInstall = Task {
                do {
                    try await previous?.value
                    try await ObjectMover.offPool { try store.installVerified(batch) }
                } catch {
                    for o in batch {
                        if let p = o.path { unlink(p) }
                        o.holder?.release()
                    }
                    gate.fail(error)
                    throw error
                }
                for o in batch { o.holder?.release() }
                for _ in batch { CrashPoint.reach("transfer.object-received") }
            }
        }

        do {
            // A nil result is a tick of the batch timer: without it, a batch whose last object came
            // in just before a large one started would stay open (and the deltas coded on its
            // objects would wait) until that large object arrived.
            try await withThrowingTaskGroup(of: ReceivedObject?.self) { group in
                var next = 0, inFlight = 0
                func start() {
                    let info = order[next]
                    // Wait only for a reference that comes earlier in this download and from a lower level.
                    let waitFor = info.reference.flatMap { r in
                        position[r].flatMap { order[$0].depth < info.depth && $0 < next ? r : nil }
                    }
                    next += 1
                    inFlight += 1
                    group.addTask { try await receive(info, after: waitFor, gate: gate, incoming: incoming) }
                }
                func tick() {
                    // Not once cancelled: a cancelled sleep returns at once, and the ticks would spin.
                    _ = group.addTaskUnlessCancelled {
                        try? await Task.sleep(for: ObjectMover.timerTick)
                        return nil
                    }
                }
                do {
                    while next < order.count && next < RemoteTransportLimits.parallelStreams { start() }
                    tick()
                    while let event = try await group.next() {
                        guard let r = event else {
                            if !open.isEmpty && clock.now - openedAt >= ObjectMover.batchSeconds { close() }
                            if inFlight > 0 { tick() }
                            continue
                        }
                        inFlight -= 1
                        total += r.byteCount
                        if r.keptWhole { keptWhole += 1 }
                        if open.isEmpty { openedAt = clock.now }
                        open.append(r)
                        openBytes += r.byteCount
                        levelLeft[r.depth, default: 1] -= 1
                        if ObjectMover.closesBatch(objects: open.count, bytes: openBytes, levelLeft: levelLeft[r.depth] ?? 0,
                                                   openFor: clock.now - openedAt, heldFiles: heldFiles) {
                            close()
                        }
                        // Keep the held files within the open-file limit: wait for the queued installs.
                        if queued + open.count >= heldFiles, let lastInstall {
                            try await lastInstall.value
                            queued = 0
                        }
                        if next < order.count { start() }
                        // The last object is in: end the timer's sleep, so the group empties.
                        if inFlight == 0 { group.cancelAll() }
                    }
                } catch {
                    // Wake the deltas waiting for a reference that will not come, then let the rest end:
                    // what verifies meanwhile joins the open batch, kept below.
                    gate.fail(error)
                    group.cancelAll()
                    while let result = await group.nextResult() {
                        if case let .success(r?) = result { open.append(r) }
                    }
                    throw error
                }
            }
            close()
            try await lastInstall?.value
        } catch {
            // A failed install removes its incoming files, and a delta reading its reference from
            // one then fails too: the install's error is the one to report.
            if let lastInstall, case let .failure(installError) = await lastInstall.result {
                for o in open {
                    if let p = o.path { unlink(p) }
                    o.holder?.release()
                }
                throw installError
            }
            // Else what was verified waits under its partial name: a failed fetch stores nothing,
            // and the next one verifies it there without downloading it again.
            for o in open {
                if let holder = o.holder {
                    holder.keep()
                } else if let p = o.path {
                    PartialDownload.park(p, as: o.id, in: store)
                }
            }
            throw error
        }
        return (total, keptWhole)
    }

    /// Downloads one object and verifies it (once its reference's batch is closed, when that comes
    /// in this download), writing the decoded bytes to the clone's prepared files.
    ///
    /// The bytes go to the object's ``PartialDownload`` file, held until its batch renames it to the
    /// object's name: an interruption before then leaves the file, whole or not, for the next try,
    /// which asks only for what it lacks. A download that starts from the
    /// bytes of an earlier one and fails its verification is made again from the start; one that
    /// fails from the start drops the file.
    private func receive(_ info: ObjectInfo, after reference: ObjectID?, gate: BatchGate, incoming files: IncomingFiles) async throws -> ReceivedObject {
        let store = repository.objects
        let partial = PartialDownload.claim(info.id, in: store)
        // More than the object holds cannot be its beginning.
        if let partial, info.storedByteCount > 0, partial.byteCount > info.storedByteCount { partial.reset() }
        let path = partial?.path ?? store.incomingPath()
        do {
            let resumed = (partial?.byteCount ?? 0) > 0
            var n = resumed && partial?.byteCount == info.storedByteCount ? 0 : try await transport.getObject(info.id, to: path)
            CrashPoint.reach("transfer.object-downloaded")
            if let reference { try await gate.wait(reference) }
            if store.exists(info.id) {
                if let partial { partial.drop() } else { unlink(path) }
                return ReceivedObject(id: info.id, path: nil, byteCount: n, depth: info.depth)
            }
            do {
                try await verify(info, at: path, reference: reference, incoming: files)
            } catch where resumed && RepoError.refusesReceivedObject(error) {
                guard let partial else { throw error }
                partial.reset()
                n += try await transport.getObject(info.id, to: path)
                try await verify(info, at: path, reference: reference, incoming: files)
            }
            CrashPoint.reach("transfer.object-verified")
            // Kept bytes count as done (the bar reaches its total on a resumed fetch).
            progress.add(max(n, info.storedByteCount))
            // A partial file joins its batch under its own name, still held: until the batch renames
            // it, a kill leaves it there, whole and verified, for the next try.
            return ReceivedObject(id: info.id, path: path, byteCount: n, depth: info.depth, holder: partial, keptWhole: n == 0 && resumed)
        } catch {
            if let partial {
                // Bytes that do not make the object are of no use to a later try.
                if RepoError.refusesReceivedObject(error) { partial.drop() } else { partial.keep() }
            } else {
                unlink(path)
            }
            throw error
        }
    }

    /// Verifies the object at `incoming` (after its reference, read from its incoming file when
    /// its batch is not installed yet), handing the decoded bytes to the clone's prepared files.
    private func verify(_ info: ObjectInfo, at incoming: String, reference: ObjectID?, incoming files: IncomingFiles) async throws {
        let store = repository.objects
        let (prefill, references, rows) = (prefill, references, verifiedRows)
        try await ObjectMover.offPool {
            var decoded = 0
            let pending = reference.map { files.chain(from: $0) } ?? [:]
            let row = try store.verifyIncoming(info.id, path: incoming, references: references, pending: pending) { bytes in
                guard let prefill, prefill.wants(info.id) else { return }
                prefill.write(info.id, bytes, at: decoded)
                decoded += bytes.count
            }
            rows.add(row)
            prefill?.verified(info.id, byteCount: decoded)
        }
    }

    /// Runs blocking work (decoding, `syncfs`) on a Dispatch worker, not on one of the few threads
    /// that run the tasks driving the transfers.
    static func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
        }
    }
}

/// An object that arrived and verified, waiting in its incoming file (nil: it was stored meanwhile).
struct ReceivedObject: Sendable {
    var id: ObjectID
    var path: String?
    var byteCount: Int
    /// Its depth as the download was told (which level it closes).
    var depth = 0
    /// The partial download `path` is, held until the batch renames it (nil for a temporary file).
    var holder: PartialDownload? = nil
    /// Verified from the bytes an earlier try kept, none received.
    var keptWhole = false
}

/// The object rows of the objects a download verified, from their files (as ``ObjectStore/inspect(_:)``
/// would read them again), for recording the commits that name them.
final class VerifiedRows: Sendable {
    private let rows = Mutex<[ObjectID: ObjectInfo]>([:])

    func add(_ row: ObjectInfo) { rows.withLock { $0[row.id] = row } }

    var all: [ObjectID: ObjectInfo] { rows.withLock { $0 } }
}

/// The incoming files of the objects of a download whose batch is closed, not necessarily
/// installed yet: what a delta verified after them reads its reference from.
final class IncomingFiles: Sendable {
    private let paths = Mutex<[ObjectID: String]>([:])
    /// Each object's delta reference, as the download was told.
    private let references: [ObjectID: ObjectID?]

    init(references: [ObjectID: ObjectID?]) { self.references = references }

    func add(_ id: ObjectID, path: String) { paths.withLock { $0[id] = path } }

    /// The incoming files of `id` and of the references below it, for
    /// ``ObjectStore/chunkSource(for:depth:pending:)`` (which falls back to the final name of an
    /// object whose batch was installed meanwhile).
    func chain(from id: ObjectID) -> [ObjectID: String] {
        paths.withLock { known in
            var out: [ObjectID: String] = [:]
            var next: ObjectID? = id
            // A remote may claim a cycle: stop at an object already in the chain.
            while let current = next, out[current] == nil, out.count <= ObjectStore.readableDepth, let p = known[current] {
                out[current] = p
                next = references[current] ?? nil
            }
            return out
        }
    }
}

/// Which objects of a download are in a closed batch (or were stored before); deltas wait here for
/// their reference.
final class BatchGate: Sendable {
    private struct State {
        var stored: Set<ObjectID> = []
        var waiters: [ObjectID: [CheckedContinuation<Void, any Error>]] = [:]
        var failure: (any Error)?
    }

    private let state = Mutex(State())

    /// Marks `ids` ready and wakes whoever waits for them.
    func open(_ ids: [ObjectID]) {
        let woken = state.withLock { s in
            ids.flatMap { id in
                s.stored.insert(id)
                return s.waiters.removeValue(forKey: id) ?? []
            }
        }
        for w in woken { w.resume() }
    }

    /// Fails every wait, now and later (the download is ending).
    func fail(_ error: any Error) {
        let woken = state.withLock { s in
            if s.failure == nil { s.failure = error }
            defer { s.waiters = [:] }
            return s.waiters.values.flatMap { $0 }
        }
        for w in woken { w.resume(throwing: error) }
    }

    /// Returns once `id` is ready; throws when the download failed first.
    func wait(_ id: ObjectID) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            let now: Result<Void, any Error>? = state.withLock { s in
                if s.stored.contains(id) { return .success(()) }
                if let f = s.failure { return .failure(f) }
                s.waiters[id, default: []].append(c)
                return nil
            }
            if let now { c.resume(with: now) }
        }
    }
}
