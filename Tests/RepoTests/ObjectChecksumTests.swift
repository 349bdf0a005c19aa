import Delta
import Foundation
import GRDB
import Merge
import MrepoTestSupport
@testable import Repo
import Testing

/// Each object row records the CRC-32C of its file (docs/format.md §5.7): a merge checks an input's
/// file against it instead of hashing the decoded bytes. A file that does not match is hashed, so
/// damage is still refused before anything is written and a stale checksum costs only the hash;
/// rows without one (older repositories) are verified by hash as before; fsck compares the recorded
/// checksum with the file.
@Suite final class ObjectChecksumTests {
    let fixture: TemporaryRepository
    var repo: Repository { fixture.repo }

    init() throws {
        fixture = try TemporaryRepository()
        fixture.repo.codecOptions = streamingChunks
    }

    /// A base of one 2.05-chunk tensor and a small one, and two fine-tunes; HEAD on main.
    func commitFamily() throws {
        let n = 2 * 65536 + 3000
        var rng = SeededRandom(seed: 9)
        let base = (0..<n).map { _ in Float(rng.uniform() * 2 - 1) }
        let small = (0..<100).map { Float($0) / 100 }
        try writeFloats([("big.weight", base), ("small.weight", small)], to: repo.root + "/model.safetensors")
        try repo.commitAll("base")
        for name in ["a", "b"] {
            _ = try repo.switchBranch(name, create: true, startPoint: "main")
            let tuned = base.map { $0 + Float(rng.uniform() - 0.5) * 0.01 }
            try writeFloats([("big.weight", tuned), ("small.weight", small.map { $0 + 0.5 })], to: repo.root + "/model.safetensors")
            try repo.commitAll(name)
        }
        _ = try repo.switchBranch("main")
    }

    func recordedChecksums() throws -> [String: Int64?] {
        try repo.history.read { db in
            Dictionary(uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT id, crc32c FROM object").map { ($0["id"] as String, $0["crc32c"] as Int64?) })
        }
    }

    /// Merges a and b on a new branch from main; whether the merge committed (an issue if not).
    @discardableResult
    func merge(on branch: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> Bool {
        _ = try repo.switchBranch(branch, create: true, startPoint: "main")
        let outcome = try repo.merge(MergeOptions(branches: ["a", "b"], recipe: MergeRecipe(method: "task_arithmetic", experts: [])))
        guard case .committed = outcome.status else {
            Issue.record("merge did not commit: \(outcome.status)", sourceLocation: sourceLocation)
            return false
        }
        return true
    }

    /// Merges on `branch`, then forgets that merge (branch deleted, gc'd), so that the next merge of
    /// the same inputs is a first merge again; the merge's tensors, or nil when it did not commit.
    func mergeAndForget(on branch: String) throws -> [String: TreeTensor]? {
        guard try merge(on: branch) else { return nil }
        let tensors = try repo.tensors(of: branch)
        _ = try repo.switchBranch("main")
        _ = try repo.deleteBranch(branch, force: true)
        _ = try repo.gc(pruneReflog: true)
        return tensors
    }

    @Test func everyNewObjectRecordsItsFilesChecksum() throws {
        try commitFamily()
        guard try merge(on: "m") else { return }
        let rows = try recordedChecksums()
        #expect(!rows.isEmpty)
        for (hex, crc) in rows {
            let id = try #require(ObjectID(hex: hex))
            #expect(crc.map { UInt32($0) } == (try repo.objects.storedChecksum(of: id)), "object \(id.short)")
        }
        #expect(try repo.fsck().isClean)
    }

    /// A damaged input does not match its checksum, so it is hashed (or fails to decode): refused
    /// before anything is written, naming the object.
    @Test func aDamagedInputIsRefusedAndNothingIsWritten() throws {
        try commitFamily()
        let big = try #require(try repo.tensors(of: "a")["big.weight"])
        let path = repo.objects.path(for: big.objectID)
        // A byte of a coded chunk's payload, far from the headers.
        try flipByte(at: try #require(FileStat.of(path)).size / 2, of: path)
        _ = try repo.switchBranch("m", create: true, startPoint: "main")
        let head = try repo.history.head()
        let objects = repo.objectFiles
        let worktree = try fullListing(repo.root)
        let options = MergeOptions(branches: ["a", "b"], recipe: MergeRecipe(method: "task_arithmetic", experts: []))
        let error = thrownError { _ = try repo.merge(options) }
        guard case let .corruptObject(object, problem)? = error as? RepoError else {
            Issue.record("expected corruptObject, got \(String(describing: error))")
            return
        }
        #expect(object == big.objectID.short, "\(problem)")
        #expect(try repo.history.head() == head)
        #expect(repo.objectFiles == objects)
        #expect(try fullListing(repo.root) == worktree)
        #expect(try repo.history.mergeState() == nil)
    }

    /// Rows recorded before checksums existed (NULL) are verified by hash, as before: the merge
    /// stores the very same objects, and a damaged input without a checksum is still refused.
    @Test func rowsWithoutAChecksumAreVerifiedByHash() throws {
        try commitFamily()
        guard let withChecksums = try mergeAndForget(on: "checked") else { return }
        try repo.history.write { db in try db.execute(sql: "UPDATE object SET crc32c = NULL") }
        guard try merge(on: "hashed") else { return }
        #expect(try repo.tensors(of: "hashed")["big.weight"]?.objectID == withChecksums["big.weight"]?.objectID)

        _ = try repo.switchBranch("main")
        let big = try #require(try repo.tensors(of: "b")["big.weight"])
        let path = repo.objects.path(for: big.objectID)
        try flipByte(at: try #require(FileStat.of(path)).size / 2, of: path)
        _ = try repo.switchBranch("again", create: true, startPoint: "main")
        let options = MergeOptions(branches: ["a", "b"], recipe: MergeRecipe(method: "ties", parameters: ["density": .number(0.5)], experts: []))
        let error = thrownError { _ = try repo.merge(options) }
        guard case .corruptObject? = error as? RepoError else {
            Issue.record("expected corruptObject, got \(String(describing: error))")
            return
        }
    }

    /// A checksum that is not its file's (recorded for another file of that id: a push or fetch
    /// that found the object in place after an interrupted gc) costs a hash, never a refusal: the
    /// merge stores the same result, and fsck warns.
    @Test func aStaleChecksumIsHashedAndFsckWarns() throws {
        try commitFamily()
        guard let expected = try mergeAndForget(on: "fresh") else { return }
        let big = try #require(try repo.tensors(of: "a")["big.weight"])
        try repo.history.write { db in
            try db.execute(sql: "UPDATE object SET crc32c = (crc32c + 1) % 4294967296 WHERE id = ?", arguments: [big.objectID.hex])
        }
        guard try merge(on: "stale") else { return }
        #expect(try repo.tensors(of: "stale").mapValues(\.objectID) == expected.mapValues(\.objectID))
        let report = try repo.fsck()
        #expect(report.errors.isEmpty, "\(report.errors)")
        #expect(report.warnings.contains { $0.contains(big.objectID.short) && $0.contains("CRC-32C") }, "\(report.warnings)")
    }

    /// Facts that come with a checksum describe a file just written or received: they replace a row
    /// left by an earlier file of that id (a gc interrupted between deleting the file and its row);
    /// facts without one never replace a row.
    @Test func aRowIsReplacedOnlyByFactsWithAChecksum() throws {
        try commitFamily()
        let big = try #require(try repo.tensors(of: "a")["big.weight"])
        let row = try #require(try repo.history.objectInfo(big.objectID))
        var stale = row
        stale.checksum = 7
        stale.storedByteCount += 1
        try repo.history.write { db in try db.execute(sql: "UPDATE object SET crc32c = 7, storedBytes = storedBytes + 1 WHERE id = ?", arguments: [big.objectID.hex]) }
        var unknown = row
        unknown.checksum = nil
        try repo.history.write { db in try HistoryDatabase.insert(db, objects: [unknown]) }
        #expect(try repo.history.objectInfo(big.objectID) == stale)
        try repo.history.write { db in try HistoryDatabase.insert(db, objects: [row]) }
        #expect(try repo.history.objectInfo(big.objectID) == row)
        #expect(try repo.fsck().isClean)
    }

    /// Facts read from a file in place (a push that finds the object stored) replace the row, its
    /// delta reference included, and clear the checksum, which they do not know.
    @Test func factsReadFromAFileInPlaceReplaceTheRow() throws {
        try commitFamily()
        let big = try #require(try repo.tensors(of: "a")["big.weight"])
        let row = try #require(try repo.history.objectInfo(big.objectID))
        try repo.history.write { db in
            try db.execute(sql: "UPDATE object SET crc32c = 7, storedBytes = storedBytes + 1 WHERE id = ?", arguments: [big.objectID.hex])
        }
        let read = try repo.objects.inspect(big.objectID)
        try repo.history.write { db in try HistoryDatabase.insert(db, objects: [read], readFromFiles: [big.objectID]) }
        var expected = row
        expected.checksum = nil
        #expect(try repo.history.objectInfo(big.objectID) == expected)
        #expect(try repo.fsck().isClean)
        // Facts that agree with the row keep its checksum (every push and fetch reads the files of
        // the objects it finds in place).
        let small = try #require(try repo.tensors(of: "a")["small.weight"])
        let smallRow = try #require(try repo.history.objectInfo(small.objectID))
        #expect(smallRow.checksum != nil)
        let smallRead = try repo.objects.inspect(small.objectID)
        try repo.history.write { db in try HistoryDatabase.insert(db, objects: [smallRead], readFromFiles: [small.objectID]) }
        #expect(try repo.history.objectInfo(small.objectID) == smallRow)
    }

    /// Uploads through the Hub API reuse stored content by its SHA-256 only when every object of the
    /// file is stored: a tree whose objects a gc removed does not count.
    @Test func contentCountsAsStoredForUploadsOnlyWithItsObjectFiles() throws {
        try commitFamily()
        let file = try #require(try repo.tree(of: try repo.resolve("a")).file(at: "model.safetensors"))
        let digest = try #require(file.sha256)
        #expect(try repo.file(withSHA256: digest) != nil)
        let mainIDs = Set(try repo.tensors(of: "main").values.map(\.objectID))
        for t in file.tensors where !mainIDs.contains(t.objectID) { unlink(repo.objects.path(for: t.objectID)) }
        #expect(try repo.file(withSHA256: digest) == nil)
    }

    /// A gc interrupted between deleting dead objects' files and their rows (docs/format.md §8)
    /// leaves rows without files. Committing the same checkpoint again writes the files anew (and
    /// their facts replace the rows); before, the commit said "nothing new to store" and its tree
    /// named missing files.
    @Test func aCommitWritesTheFilesOfObjectsWhoseRowsOutlivedThem() throws {
        try commitFamily()
        let a = try repo.tensors(of: "a")
        _ = try repo.export("a", to: fixture.dir + "/a")
        let bytes = try readFile(fixture.dir + "/a/model.safetensors")
        let mainIDs = Set(try repo.tensors(of: "main").values.map(\.objectID))
        _ = try repo.deleteBranch("a", force: true)
        let dead = Set(a.values.map(\.objectID)).subtracting(mainIDs)
        #expect(!dead.isEmpty)
        for id in dead { unlink(repo.objects.path(for: id)) }
        _ = try repo.switchBranch("again", create: true, startPoint: "main")
        try FileManager.default.removeItem(atPath: repo.root + "/model.safetensors")
        try FileManager.default.copyItem(atPath: fixture.dir + "/a/model.safetensors", toPath: repo.root + "/model.safetensors")
        try repo.commitAll("a again")
        #expect(Set(try repo.tensors(of: "again").values.map(\.objectID)) == Set(a.values.map(\.objectID)))
        for id in dead {
            #expect(repo.objects.exists(id))
            #expect(try repo.history.objectInfo(id)?.checksum == (try repo.objects.storedChecksum(of: id)))
        }
        let report = try repo.fsck()
        #expect(report.errors.isEmpty, "\(report.errors)")
        _ = try repo.export("again", to: fixture.dir + "/out")
        #expect(try readFile(fixture.dir + "/out/model.safetensors") == bytes)
    }
}
