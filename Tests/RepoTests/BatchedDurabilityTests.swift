import Delta
import Foundation
import GRDB
@testable import Repo
import Testing

/// Staged files are synced side by side, then renamed, then their folders synced (FileStaging);
/// commands that record no history open the database read-only and sync nothing for it
/// (HistoryDatabase+Access.swift).
@Suite struct BatchedDurabilityTests {
    /// Every file under `dir` (relative paths), temporary files included.
    func everything(under dir: String) -> [String] {
        (FileManager.default.enumerator(atPath: dir)?.allObjects as? [String] ?? []).sorted()
    }

    @Test func aStagingOfManyFilesInNewFoldersRenamesEveryFile() throws {
        let folder = try TemporaryDirectory()
        let out = folder.path + "/out"
        let staging = FileStaging(journal: nil)
        var expected: [String: [UInt8]] = [:]
        for i in 0..<(AtomicFileWriter.concurrentSyncLimit * 2 + 5) {
            let path = "d\(i % 3)/sub\(i % 2)/f\(i).bin"
            let bytes = [UInt8](repeating: UInt8(i), count: i * 1000 + 1)
            try staging.write(to: out + "/" + path) { try $0.write(bytes) }
            expected[path] = bytes
        }
        try staging.commit()
        let files = everything(under: out).filter { $0.hasSuffix(".bin") }
        #expect(files == expected.keys.sorted())
        for (path, bytes) in expected { #expect(try readFile(out + "/" + path) == bytes) }
        #expect(!everything(under: out).contains { $0.contains(AtomicFileWriter.temporaryPrefix) })
    }

    /// A repository with two commits whose database connections are all closed (the last close
    /// checkpoints the WAL into `mrepo.db` and deletes it).
    func closedRepository(_ dir: String) throws -> String {
        let root = dir + "/repo"
        do {
            let repo = try Repository.initialize(at: root)
            repo.codecOptions = smallChunks
            try repo.writeModel()
            try repo.commitAll("base")
            try repo.writeModel(.light("math", seed: 3))
            try repo.commitAll("math")
        }
        return root
    }

    /// Read-only: the database file is byte for byte as it was, and its WAL holds no frame.
    /// Opened as a writer, the same reads change it (GRDB's write at open, checkpointed at close).
    @Test func aReadOnlyOpenLeavesTheDatabaseAsItWas() throws {
        let folder = try TemporaryDirectory()
        let root = try closedRepository(folder.path)
        let db = root + "/.mrepo/mrepo.db"
        let before = try readFile(db)
        do {
            let repo = try Repository.open(at: root, access: .readOnly)
            #expect(repo.history.isReadOnly)
            #expect(try repo.log(from: [try repo.resolve("HEAD")]).count == 2)
            _ = try repo.export("HEAD~1", to: folder.path + "/out")
            #expect(try repo.history.statCache().count == 5)
        }
        #expect(try readFile(db) == before)
        #expect((FileStat.of(db + "-wal")?.size ?? 0) == 0)

        do {
            let repo = try Repository.open(at: root)
            #expect(!repo.history.isReadOnly)
            #expect(try repo.log(from: [try repo.resolve("HEAD")]).count == 2)
        }
        #expect(try readFile(db) != before)
    }

    /// Every connection that writes commits durably (`synchronous = FULL`, 2): the pool's writer
    /// (GRDB sets NORMAL, 1, when it sets up WAL mode), and the late writer of a read-only open.
    /// Readers never write, so theirs does not matter.
    @Test func writingConnectionsSyncEachCommit() throws {
        let folder = try TemporaryDirectory()
        let root = try closedRepository(folder.path)
        func level(_ writer: any DatabaseWriter) throws -> Int? {
            try writer.writeWithoutTransaction { try Int.fetchOne($0, sql: "PRAGMA synchronous") }
        }
        do {
            let repo = try Repository.open(at: root)
            #expect(try level(repo.history.writer()) == 2)
        }
        do {
            let repo = try Repository.open(at: root, access: .readOnly)
            #expect(repo.history.isReadOnly)
            #expect(try level(repo.history.writer()) == 2)
        }
    }

    /// A write made through a database opened read-only (the stat cache `status` records, or any
    /// other) goes through a connection of its own and is there for the next command.
    @Test func aReadOnlyOpenStillWritesWhatItMust() throws {
        let folder = try TemporaryDirectory()
        let root = try closedRepository(folder.path)
        // Touching the model makes its stat-cache entry stale: status hashes it and records it anew.
        let model = root + "/model.safetensors"
        var times = [timespec(tv_sec: 1_000_000, tv_nsec: 0), timespec(tv_sec: 1_000_000, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, model, &times, 0) == 0)
        do {
            let repo = try Repository.open(at: root, access: .readOnly)
            #expect(try repo.status().isClean)
            try repo.history.setMeta("probe", "1")
        }
        let repo = try Repository.open(at: root, access: .readOnly)
        #expect(try repo.history.meta("probe") == "1")
        let entry = try #require(try repo.history.statCache()["model.safetensors"])
        #expect(entry.mtimeNs == 1_000_000 * 1_000_000_000)
    }

    /// A writer that closes while a reader has the database open cannot checkpoint; the reader,
    /// read-only, does not either (it syncs the WAL instead): the writer's transaction stays in
    /// the WAL, readers see it, and the next writer's close checkpoints it into `mrepo.db`.
    @Test func aWritersTransactionLeftInTheWALByAReaderIsKeptAndCheckpointedLater() throws {
        let folder = try TemporaryDirectory()
        let root = try closedRepository(folder.path)
        let db = root + "/.mrepo/mrepo.db"
        do {
            let reader = try Repository.open(at: root, access: .readOnly)
            do {
                let writer = try Repository.open(at: root)
                try writer.history.setMeta("probe", "written")
            }
            #expect(try reader.history.meta("probe") == "written")
        }
        #expect((FileStat.of(db + "-wal")?.size ?? 0) > 0)
        do {
            let reader = try Repository.open(at: root, access: .readOnly)
            #expect(try reader.history.meta("probe") == "written")
        }
        do {
            let writer = try Repository.open(at: root)
            #expect(try writer.history.meta("probe") == "written")
        }
        #expect((FileStat.of(db + "-wal")?.size ?? 0) == 0)
        let repo = try Repository.open(at: root, access: .readOnly)
        #expect(try repo.history.meta("probe") == "written")
    }
}
