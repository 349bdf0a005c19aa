import Delta
import Foundation
import ModelFactory
@testable import Repo
import Testing

/// Clone, fetch, push and pull between repositories in folders (LocalTransport), and the checks
/// that keep a remote safe: compare-and-swap refs, verified objects, resumable transfers.
@Suite struct RemoteTests {
    /// A temporary folder with an upstream repository `origin` holding two commits on main
    /// (base, then a fine-tune) and a tag.
    final class Fixture: Sendable {
        let dir: String
        let origin: Repository

        init(bare: Bool = false) throws {
            dir = NSTemporaryDirectory() + "mrepo-remote-tests-" + UUID().uuidString
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            origin = try Repository.initialize(at: dir + "/origin", bare: bare)
            origin.codecOptions = smallChunks
            try origin.writeModel()
            try origin.commitAll("base")
            try origin.writeModel(.light("math", seed: 11))
            try origin.commitAll("math")
            try origin.createTag("v1")
        }

        deinit { try? FileManager.default.removeItem(atPath: dir) }

        func clone(_ name: String, lazy: Bool = false) async throws -> Repository {
            let (repo, _) = try await Repository.clone(url: dir + "/origin", into: dir + "/" + name, lazy: lazy)
            repo.codecOptions = smallChunks
            return repo
        }
    }

    @Test func cloneCopiesHistoryRefsAndFiles() async throws {
        let f = try Fixture()
        let (repo, result) = try await Repository.clone(url: f.dir + "/origin", into: f.dir + "/copy")
        #expect(result.commits == 2)
        #expect(result.objects == f.origin.objectFiles.count)
        #expect(repo.objectFiles == f.origin.objectFiles)
        #expect(try repo.resolve("main") == f.origin.resolve("main"))
        #expect(try repo.resolve("origin/main") == f.origin.resolve("main"))
        #expect(try repo.resolve("v1") == f.origin.resolve("v1"))
        #expect(try repo.history.upstream(of: "main") == Upstream(remote: "origin", branch: "main"))
        #expect(sameFiles(try snapshot(repo.root), try snapshot(f.origin.root)))
        #expect(try repo.fsck().isClean)
        #expect(try repo.status().isClean)
    }

    /// A clone's rows carry their files' checksums, and a fetch that finds objects in place keeps
    /// them (it reads those files' facts again).
    @Test func fetchKeepsTheChecksumsOfObjectsAlreadyHere() async throws {
        let f = try Fixture()
        let repo = try await f.clone("copy")
        let before = try repo.history.allObjects()
        #expect(!before.isEmpty && before.allSatisfy { $0.checksum != nil })
        try f.origin.writeModel(.light("code", seed: 12))
        try f.origin.commitAll("code")
        _ = try await repo.fetch(remote: "origin")
        for o in before { #expect(try repo.history.objectInfo(o.id)?.checksum == o.checksum, "object \(o.id.short)") }
        for o in try repo.history.allObjects() where o.checksum != nil {
            #expect(o.checksum == (try repo.objects.storedChecksum(of: o.id)))
        }
        #expect(try repo.fsck().isClean)
    }

    @Test func fetchBringsOnlyWhatIsNewAndPullFastForwards() async throws {
        let f = try Fixture()
        let repo = try await f.clone("copy")
        try f.origin.writeModel(.light("code", seed: 12))
        try f.origin.commitAll("code")
        let before = repo.objectFiles
        let fetched = try await repo.fetch(remote: "origin")
        #expect(fetched.commits == 1)
        #expect(fetched.objects == f.origin.objectFiles.subtracting(before).count)
        #expect(try repo.resolve("origin/main") == f.origin.resolve("main"))
        #expect(try repo.resolve("main") == f.origin.resolve("main~1"))
        #expect(try repo.trackingStatus() == TrackingStatus(upstream: "origin/main", ahead: 0, behind: 1))
        let again = try await repo.fetch(remote: "origin")
        #expect(again.commits == 0 && again.objects == 0)
        let (outcome, _) = try await repo.pull(remote: nil, branch: nil)
        guard case .fastForward = outcome else { Issue.record("expected a fast-forward, got \(outcome)"); return }
        #expect(try repo.resolve("main") == f.origin.resolve("main"))
        #expect(sameFiles(try snapshot(repo.root), try snapshot(f.origin.root)))
    }

    @Test func pushSendsOnlyMissingObjectsAndMovesTheRemoteBranch() async throws {
        let f = try Fixture(bare: true)
        let repo = try await f.clone("copy")
        try repo.writeModel(.light("code", seed: 12))
        let local = try repo.commitAll("code").commit
        let newObjects = repo.objectFiles.subtracting(f.origin.objectFiles)
        let result = try await repo.push(PushOptions(remote: "origin"))
        #expect(result.commits == 1)
        #expect(result.objects == newObjects.count)
        #expect(result.bytes >= newObjects.reduce(0) { $0 + (FileStat.of(repo.objects.path(for: $1))?.size ?? 0) })
        #expect(try f.origin.resolve("main") == local.id)
        #expect(try repo.resolve("origin/main") == local.id)
        #expect(try f.origin.fsck().isClean)
        // Nothing new: nothing sent.
        let again = try await repo.push(PushOptions(remote: "origin"))
        #expect(again.objects == 0 && again.commits == 0 && again.refs.isEmpty)
    }

    @Test func nonFastForwardPushIsRefusedUnlessForced() async throws {
        let f = try Fixture(bare: true)
        let a = try await f.clone("a")
        let b = try await f.clone("b")
        try a.writeModel(.light("code", seed: 12))
        try a.commitAll("code from a")
        _ = try await a.push(PushOptions(remote: "origin"))
        let remoteMain = try f.origin.resolve("main")
        try b.writeModel(.light("chat", seed: 13))
        try b.commitAll("chat from b")
        let objectsBefore = f.origin.objectFiles
        let error = await asyncError { _ = try await b.push(PushOptions(remote: "origin")) }
        #expect(error as? RepoError == .nonFastForward(ref: "main", remote: f.dir + "/origin"))
        #expect(try f.origin.resolve("main") == remoteMain)
        #expect(f.origin.objectFiles == objectsBefore)
        var forced = PushOptions(remote: "origin")
        forced.force = true
        _ = try await b.push(forced)
        #expect(try f.origin.resolve("main") == b.resolve("main"))
    }

    /// A push whose remote takes some refs and refuses others reports both: the refs that moved
    /// (and their remote-tracking refs) and each refusal, and still fails. The refused one here is a
    /// branch an older mrepo made with a commit id's spelling, which a remote does not create.
    @Test func aPartlyRefusedPushSaysWhatMovedAndWhatDidNot() async throws {
        let f = try Fixture(bare: true)
        let repo = try await f.clone("copy")
        try repo.writeModel(.light("code", seed: 12))
        let local = try repo.commitAll("code").commit.id
        let pinned = String(local.hex.prefix(40))
        try repo.history.write { db in
            try HistoryDatabase.setRef(db, name: pinned, kind: .branch, target: local, old: nil, message: "older mrepo")
        }
        var all = PushOptions(remote: "origin")
        all.all = true
        let error = await asyncError { _ = try await repo.push(all) }
        guard let partly = error as? PushPartlyRejected else { Issue.record("expected a partly refused push, got \(String(describing: error))"); return }
        #expect(partly.result.refs.map(\.name) == ["main"])
        #expect(partly.result.rejected.map(\.name) == [pinned])
        #expect(partly.error.description.contains("must not look like a commit id"))
        #expect(try f.origin.resolve("main") == local)
        #expect(try repo.resolve("origin/main") == local)
        #expect(try f.origin.history.ref(named: pinned) == nil)
        // Nothing moved: the refusal alone, as before.
        let again = await asyncError { _ = try await repo.push(all) }
        #expect(again is RepoError)
    }

    /// A transfer with the repository itself (a remote naming its own folder) while this process
    /// holds its write lock takes no reader lease there: its gc, waiting for that write lock while
    /// holding the lease's lock, would have deadlocked with it (`fetch self --wait` beside
    /// `gc --wait`). The write lock is seen through another `Repository` object of the same store.
    @Test func aTransferWithItselfUnderTheWriteLockTakesNoLease() async throws {
        let f = try Fixture(bare: true)
        let other = try Repository(root: f.origin.root)
        #expect(!other.holdsWriteLockHere)
        try f.origin.withWriteLock {
            #expect(other.holdsWriteLockHere)
        }
        #expect(!other.holdsWriteLockHere)
    }

    @Test func concurrentPushersNeverBothWin() async throws {
        let f = try Fixture(bare: true)
        let a = try await f.clone("a")
        let b = try await f.clone("b")
        try a.writeModel(.light("code", seed: 12))
        let ca = try a.commitAll("a").commit.id
        try b.writeModel(.light("chat", seed: 13))
        let cb = try b.commitAll("b").commit.id
        // Both read the remote's main before either moves it; the second compare-and-swap fails.
        let transport = try Transports.open(f.dir + "/origin")
        let old = try f.origin.resolve("main")
        let records = [try a.commitRecord(ca), try b.commitRecord(cb)]
        for r in [ca, cb] {
            let repo = r == ca ? a : b
            for id in try repo.tree(of: r).objectIDs { try await transport.putObject(id, from: repo.objects.path(for: id), byteCount: 0) }
        }
        try await transport.putCommits(records)
        try await transport.updateRef(RefUpdate(name: "main", kind: .branch, expected: old, new: ca, force: false))
        let error = await asyncError { try await transport.updateRef(RefUpdate(name: "main", kind: .branch, expected: old, new: cb, force: true)) }
        #expect(error as? RepoError == .remoteRefMoved(ref: "main", remote: f.dir + "/origin"))
        #expect(try f.origin.resolve("main") == ca)
        #expect(try f.origin.fsck().isClean)
    }

    @Test func corruptObjectIsRejectedAndNothingIsStored() async throws {
        let f = try Fixture(bare: true)
        let repo = try await f.clone("copy")
        try repo.writeModel(.light("code", seed: 12))
        let c = try repo.commitAll("code").commit
        let id = try #require(repo.objectFiles.subtracting(f.origin.objectFiles).first)
        let bad = f.dir + "/bad-object"
        var bytes = try readFile(repo.objects.path(for: id))
        bytes[bytes.count - 1] ^= 0x40
        try Data(bytes).write(to: URL(fileURLWithPath: bad))
        let transport = try Transports.open(f.dir + "/origin")
        let error = await asyncError { try await transport.putObject(id, from: bad, byteCount: bytes.count) }
        #expect(error != nil)
        #expect(!f.origin.objects.exists(id))
        #expect(f.origin.objects.listFiles().temporary.isEmpty)
        // A commit whose objects did not all arrive is not recorded.
        let recordError = await asyncError { try await transport.putCommits([try repo.commitRecord(c.id)]) }
        #expect(recordError != nil)
        #expect(try f.origin.history.commit(c.id) == nil)
    }

    @Test func tamperedCommitRecordIsRejected() throws {
        let f = try Fixture()
        var record = try f.origin.commitRecord(f.origin.resolve("main"))
        record.message = "rewritten"
        #expect(throws: RepoError.self) { try record.validate() }
        var files = try f.origin.commitRecord(f.origin.resolve("main"))
        files.files[0].size += 1
        #expect(throws: RepoError.self) { try files.validate() }
        let good = try f.origin.commitRecord(f.origin.resolve("main"))
        #expect(try CommitRecord.decode(good.encoded(), source: "test") == good)
        #expect(try good.validate().commit.id == f.origin.resolve("main"))
    }

    @Test func interruptedFetchResumesWithoutRefetching() async throws {
        let f = try Fixture()
        let repo = try await f.clone("copy")
        try f.origin.writeModel(.light("code", seed: 12))
        try f.origin.commitAll("code")
        // As if a fetch died after some objects arrived: they are in the store, without rows.
        let new = Array(f.origin.objectFiles.subtracting(repo.objectFiles)).sorted()
        let arrived = new.prefix(new.count / 2).filter { (try? f.origin.objects.header(of: $0).reference) == nil }
        for id in arrived {
            let incoming = repo.objects.incomingPath()
            _ = try FileCopy.copy(from: f.origin.objects.path(for: id), to: incoming)
            try repo.receiveObject(id, file: incoming)
        }
        let result = try await repo.fetch(remote: "origin")
        #expect(result.objects == new.count - arrived.count)
        #expect(repo.objectFiles == f.origin.objectFiles)
        #expect(try repo.fsck().isClean)
    }

    @Test func lazyCloneFetchesTensorsOnFirstRead() async throws {
        let f = try Fixture()
        try f.origin.writeModel(.light("code", seed: 12))
        try f.origin.commitAll("code")
        let repo = try await f.clone("lazy", lazy: true)
        // The checkout read main's tensors (and the base's they are coded against); the math
        // commit's own tensors are not here.
        let baseTree = try repo.tree(of: repo.resolve("main~1"))
        let absent = baseTree.objectIDs.filter { !repo.objects.exists($0) }
        #expect(!absent.isEmpty)
        #expect(try repo.fsck().isClean)
        let out = f.dir + "/export"
        // Lazy reads block their thread on the fetch: keep them off the test pool's threads.
        _ = try await offPool { try repo.export("main~1", to: out) }
        #expect(absent.allSatisfy { repo.objects.exists($0) })
        let result = try await repo.fetchObjects(of: "main~1")
        #expect(result.objects == 0)
        #expect(try repo.fsck().isClean)
    }

    @Test func gcKeepsWhatRemoteTrackingRefsReach() async throws {
        let f = try Fixture()
        let repo = try await f.clone("copy")
        try f.origin.writeModel(.light("code", seed: 12))
        try f.origin.commitAll("code")
        _ = try await repo.fetch(remote: "origin")
        let fetched = try repo.resolve("origin/main")
        _ = try repo.gc(pruneReflog: true)
        #expect(try repo.history.commit(fetched) != nil)
        #expect(try repo.fsck().isClean)
    }

    @Test func switchCreatesATrackingBranchFromARemoteOnlyBranch() async throws {
        let f = try Fixture()
        try f.origin.createBranch("exp", at: "main~1")
        let repo = try await f.clone("copy")
        _ = try repo.switchBranch("exp")
        #expect(try repo.resolve("exp") == f.origin.resolve("exp"))
        #expect(try repo.history.upstream(of: "exp") == Upstream(remote: "origin", branch: "exp"))
    }
}

/// Runs blocking work on a thread of its own, not on one of the (few) threads async tests share.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// The error an async body throws, or nil.
func asyncError(_ body: () async throws -> Void) async -> (any Error)? {
    do {
        try await body()
        return nil
    } catch {
        return error
    }
}
