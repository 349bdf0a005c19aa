import Foundation
import HTTPTypes
import Repo
import Synchronization

/// The push sessions of `mrepo serve`: each holds its repository's read lock (`.mrepo/gc.lock`,
/// shared) from the push's first request to its last, so a `gc` run on the server meanwhile waits
/// instead of removing what the push sent but no ref reaches yet (docs/serving.md, "Push sessions").
///
/// A session is opened by `POST …/mrepo/v1/push-sessions/ID`, named by every request of the push
/// (`X-Mrepo-Push-Session: ID`) and closed by `DELETE …/push-sessions/ID`. One that has had no
/// request for ``idleTimeout`` (a client that died) is closed by the next sweep: at every request
/// and from a periodic task. A session with a request in progress is never idle.
///
/// Taking the lock never waits: while `gc` runs, opening a session is answered 503 at once (the
/// client retries), so no server thread waits for a `gc`.
final class PushSessions: Sendable {
    struct Key: Hashable, Sendable {
        /// The repository's id (`namespace/name`).
        var repository: String
        var id: String
    }

    private struct Session {
        var repo: Repository
        /// The store, as a real path: one repository may be served under several ids (a link
        /// below the root), and claims are the store's.
        var store: String
        var lease: ReaderLease
        var lastActivity: ContinuousClock.Instant
        var requestsInProgress = 0
        /// Objects this push's requests installed: those still unrecorded when it closes (a push
        /// that failed, or whose client died) are removed, as a folder remote's push removes them.
        var installed: [ObjectID] = []
        /// Objects this push counts on: asked about (`objects/missing`) or sent (installed, or
        /// found there). Another session closing never removes them.
        var claimed: Set<ObjectID> = []

        /// Removes what the push installed and left unrecorded, then releases the lock (the
        /// server's gc waited). When another open session of the store (in `others`) claims any of
        /// those objects, all are left for gc: a kept object may be a delta against another one
        /// this push installed, whose removal would leave it without its reference.
        func end(others: some Collection<Session>) {
            let claimedElsewhere = installed.contains { id in others.contains { $0.store == store && $0.claimed.contains(id) } }
            if !claimedElsewhere { repo.discardReceivedUnrecorded(installed, wait: false) }
            lease.release()
        }
    }

    private let sessions = Mutex<[Key: Session]>([:])
    let idleTimeout: Duration
    let limit: Int
    /// The time now (a test advances its own clock).
    private let now: @Sendable () -> ContinuousClock.Instant

    init(idleTimeout: Duration, limit: Int, now: @escaping @Sendable () -> ContinuousClock.Instant = { ContinuousClock.now }) {
        self.idleTimeout = idleTimeout
        self.limit = limit
        self.now = now
    }

    /// The sessions open now.
    var count: Int { sessions.withLock { $0.count } }

    /// Opens a session holding `repo`'s read lock (again: an open session is kept, as a retried
    /// request finds it).
    /// - Throws: 503 `GCRunning` while gc runs there, 503 `TooManyPushSessions` beyond ``limit``.
    func open(_ key: Key, repo: Repository) throws(HubError) {
        expireIdle()
        try sessions.withLock { (table) throws(HubError) in
            let time = now()
            if table[key] != nil {
                table[key]!.lastActivity = time
                return
            }
            guard table.count < limit else {
                throw HubError(status: .serviceUnavailable, code: "TooManyPushSessions",
                               message: "too many pushes in progress on this server (at most \(limit)); retry later")
            }
            let lease: ReaderLease
            do throws(GCRunning) {
                lease = try repo.readerLeaseWithoutWaiting()
            } catch {
                throw HubError.gcRunning(error, retry: "the push")
            }
            table[key] = Session(repo: repo, store: Repository.resolvingLinks(repo.metaDirectory), lease: lease, lastActivity: time)
        }
    }

    /// Marks a request of session `key` in progress; call ``leave(_:)`` when it is answered.
    /// - Throws: 410 `PushSessionExpired` for a session that is not open (closed, timed out, or
    ///   opened on a server that has restarted since): the push may not go on without it.
    func enter(_ key: Key) throws(HubError) {
        expireIdle()
        try sessions.withLock { (table) throws(HubError) in
            guard table[key] != nil else {
                throw HubError(status: .gone, code: "PushSessionExpired",
                               message: "push session \(key.id) is not open on this server (it was idle for more than \(Int(idleTimeout.components.seconds)) s, or the server restarted); run the push again")
            }
            table[key]!.requestsInProgress += 1
            table[key]!.lastActivity = now()
        }
    }

    /// The request ``enter(_:)`` marked has been answered.
    func leave(_ key: Key) {
        sessions.withLock { table in
            guard table[key] != nil else { return }
            table[key]!.requestsInProgress -= 1
            table[key]!.lastActivity = now()
        }
    }

    /// Session `key` counts on objects `ids` (before it is told whether they are here, or stores
    /// one): a session that closes meanwhile leaves them.
    func claim(_ key: Key, _ ids: some Sequence<ObjectID>) {
        sessions.withLock { table in table[key]?.claimed.formUnion(ids) }
    }

    /// A request of session `key` installed object `id`.
    func noteInstalled(_ key: Key, _ id: ObjectID) {
        sessions.withLock { table in table[key]?.installed.append(id) }
    }

    /// Closes a session and releases its lock; closing one that is not open does nothing. Its
    /// cleanup runs under the table's lock, so no session claims an object between the check of
    /// the claims and the removal (the removal does not wait for the repository's write lock).
    func close(_ key: Key) {
        sessions.withLock { table in
            guard let session = table.removeValue(forKey: key) else { return }
            session.end(others: table.values)
        }
    }

    /// Closes every session idle for longer than ``idleTimeout``; returns how many.
    @discardableResult
    func expireIdle() -> Int {
        let time = now()
        return sessions.withLock { table in
            let idle = table.filter { $0.value.requestsInProgress == 0 && time - $0.value.lastActivity > idleTimeout }
            for key in idle.keys { table.removeValue(forKey: key) }
            for (_, s) in idle { s.end(others: table.values) }
            return idle.count
        }
    }

    /// Closes every session (the server stops).
    func closeAll() {
        sessions.withLock { table in
            let all = table
            table.removeAll()
            for (_, s) in all { s.end(others: [Session]()) }
        }
    }

    /// A session id as clients make them: 8 to 64 letters, digits and `-` (a UUID).
    static func isValidID(_ id: String) -> Bool {
        (8...64).contains(id.utf8.count) && id.utf8.allSatisfy { c in
            (0x30...0x39).contains(c) || (0x41...0x5A).contains(c) || (0x61...0x7A).contains(c) || c == 0x2D
        }
    }
}

extension HTTPField.Name {
    static let xMrepoPushSession = HTTPField.Name("X-Mrepo-Push-Session")!
}
