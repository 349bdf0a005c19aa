import Foundation
import MrepoTestSupport
import Repo
import Synchronization
import Testing
@testable import Serve

/// A clock a test moves by hand.
final class ManualClock: Sendable {
    private let time = Mutex(ContinuousClock.now)
    var now: ContinuousClock.Instant { time.withLock { $0 } }
    func advance(_ by: Duration) { time.withLock { $0 += by } }
}

/// The push-session table of `mrepo serve`: each session holds its repository's read lock, which
/// `gc` needs exclusively, until it is closed or has been idle for the timeout.
@Suite final class PushSessionUnitTests {
    let folder: TemporaryDirectory
    let repo: Repository
    let clock = ManualClock()
    let sessions: PushSessions
    let key = PushSessions.Key(repository: "team/minilm", id: "0f3c2a8e-5d1b-4c7a-9e6f-2b8d4a1c3e5f")

    init() throws {
        folder = try TemporaryDirectory()
        repo = try Repository.initialize(at: folder.path + "/repo", bare: true)
        let clock = clock
        sessions = PushSessions(idleTimeout: .seconds(600), limit: 2, now: { clock.now })
    }

    /// Whether gc could take `.mrepo/gc.lock` now (exclusively, without waiting), as `gc` does.
    func gcCouldRun() -> Bool {
        let fd = open(repo.metaDirectory + "/gc.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        defer { close(fd) }
        return flock(fd, LOCK_EX | LOCK_NB) == 0
    }

    @Test func anIdleSessionExpiresAndReleasesItsLock() throws {
        try sessions.open(key, repo: repo)
        #expect(!gcCouldRun(), "an open session holds the read lock")
        clock.advance(.seconds(599))
        #expect(sessions.expireIdle() == 0)
        try sessions.enter(key)
        sessions.leave(key)
        // Each request starts the idle time again.
        clock.advance(.seconds(599))
        #expect(sessions.expireIdle() == 0)
        #expect(!gcCouldRun())
        clock.advance(.seconds(2))
        #expect(sessions.expireIdle() == 1)
        #expect(gcCouldRun(), "the expired session still holds the read lock")
        #expect(sessions.count == 0)
        // A request of the expired session is refused: gc may have run meanwhile.
        expectThrows(HubError.self) { try self.sessions.enter(self.key) } matching: { $0.code == "PushSessionExpired" }
    }

    /// A gc that has waited its grace for readers holds `.mrepo/gc.intent`: the server's next
    /// reader is turned away as while gc runs, even when this process holds the read lock already
    /// (a busy server always does, and letting it in would keep gc waiting for ever).
    @Test func aGCPastItsGraceTurnsAwayTheServersNewReaders() throws {
        let held = try repo.readerLeaseWithoutWaiting()
        let intent = open(repo.metaDirectory + "/gc.intent", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        defer { close(intent) }
        #expect(flock(intent, LOCK_EX | LOCK_NB) == 0)
        _ = "4242\n".withCString { pwrite(intent, $0, 5, 0) }
        expectThrows(GCRunning.self) { _ = try self.repo.readerLeaseWithoutWaiting() } matching: { $0.pid == 4242 }
        expectThrows(HubError.self) { try self.sessions.open(self.key, repo: self.repo) } matching: { $0.code == "GCRunning" }
        flock(intent, LOCK_UN)
        let next = try repo.readerLeaseWithoutWaiting()
        next.release()
        held.release()
        #expect(gcCouldRun())
    }

    @Test func aSessionWithARequestInProgressNeverExpires() throws {
        try sessions.open(key, repo: repo)
        try sessions.enter(key)
        clock.advance(.seconds(3600))
        #expect(sessions.expireIdle() == 0)
        #expect(!gcCouldRun())
        sessions.leave(key)
        clock.advance(.seconds(601))
        #expect(sessions.expireIdle() == 1)
        #expect(gcCouldRun())
    }

    @Test func closingReleasesAndTheLimitHolds() throws {
        try sessions.open(key, repo: repo)
        // Opening it again (a retried request) keeps the one session.
        try sessions.open(key, repo: repo)
        try sessions.open(PushSessions.Key(repository: "team/minilm", id: "second-session"), repo: repo)
        expectThrows(HubError.self) {
            try self.sessions.open(PushSessions.Key(repository: "team/minilm", id: "third-session"), repo: self.repo)
        } matching: { $0.code == "TooManyPushSessions" }
        sessions.close(key)
        sessions.close(PushSessions.Key(repository: "team/minilm", id: "second-session"))
        #expect(sessions.count == 0)
        #expect(gcCouldRun())
        #expect(!PushSessions.isValidID("short") && !PushSessions.isValidID("a/b/c/d/e/f") && PushSessions.isValidID(key.id))
    }
}

/// An object download whose body never runs (the client went away before the server wrote it)
/// gives back its file descriptor and its read lock when the response is dropped; each such
/// request had kept a descriptor open for the server's lifetime (170 of 200 aborted requests).
@Suite struct ObjectDownloadUnitTests {
    /// The descriptors of this process open on `path`.
    static func openDescriptors(on path: String) -> Int {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
        return fds.filter { (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/" + $0)) == path }.count
    }

    @Test func aBodyThatNeverRunsClosesItsFileAndReleasesItsLease() throws {
        let folder = try TemporaryDirectory()
        let repo = try Repository.initialize(at: folder.path + "/repo", bare: true)
        let service = try HubService(options: ServeOptions(root: folder.path))
        let id = try #require(ObjectID(hex: String(repeating: "ab", count: 32)))
        let path = repo.objects.path(for: id)
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try Data(repeating: 7, count: 4096).write(to: URL(fileURLWithPath: path))
        let gcLock = repo.metaDirectory + "/gc.lock"
        func gcCouldRun() -> Bool {
            let fd = open(gcLock, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            defer { close(fd) }
            return flock(fd, LOCK_EX | LOCK_NB) == 0
        }
        do {
            let response = try service.objectFile(repo, lease: repo.readerLease(), id)
            #expect(response.status == .ok)
            #expect(Self.openDescriptors(on: path) == 1, "the body holds the file open")
            #expect(!gcCouldRun(), "and the read lock")
        }
        #expect(Self.openDescriptors(on: path) == 0, "dropped without running: the file is closed")
        #expect(gcCouldRun(), "and the lock released")
    }
}
