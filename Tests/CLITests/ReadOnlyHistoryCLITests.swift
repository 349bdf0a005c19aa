import Foundation
import Testing

/// Commands that record no history open the database read-only (HistoryDatabase+Access.swift):
/// they leave `mrepo.db` byte for byte as they found it and put no frame into its WAL, and the
/// writers after them work as before.
@Suite struct ReadOnlyHistoryCLITests {
    @Test func readersLeaveTheDatabaseAsTheyFoundIt() throws {
        let s = try CLISandbox()
        try s.synth("fam", ["--size", "tiny", "--fine-tunes", "chat"])
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", s.path("fam/base"), "-m", "base"], in: "repo")
        try s.ok(["switch", "-q", "-c", "chat"], in: "repo")
        try s.ok(["commit", "-q", "--from", s.path("fam/chat"), "-m", "chat"], in: "repo")
        let before = try #require(s.read("repo/.mrepo/mrepo.db"))

        // With syncs on: the export's files are synced side by side (AtomicFileWriter.syncFiles).
        try s.ok(["export", "-q", "main", s.path("new/out")], in: "repo", environment: ["MREPO_FSYNC": "1"])
        #expect(s.sameFiles("new/out", "fam/base"))
        try s.ok(["export", "-q", "main", s.path("out")], in: "repo")
        #expect(s.sameFiles("out", "fam/base"))
        #expect(try s.ok(["log", "--oneline"], in: "repo").stdout.split(separator: "\n").count == 2)
        try s.ok(["show", "HEAD"], in: "repo")
        try s.ok(["diff", "main", "chat"], in: "repo")
        try s.ok(["fsck"], in: "repo")
        try s.ok(["reflog"], in: "repo")
        try s.ok(["du"], in: "repo")
        try s.ok(["rev-parse", "HEAD"], in: "repo")
        #expect(s.read("repo/.mrepo/mrepo.db") == before)
        #expect((s.read("repo/.mrepo/mrepo.db-wal")?.count ?? 0) == 0)
        // status may record the stat cache (entries written within a second of the commit are
        // not trusted): through a connection of its own.
        #expect(try s.ok(["status"], in: "repo").stdout.contains("working tree clean"))
        #expect(try s.ok(["status"], in: "repo").stdout.contains("working tree clean"))

        // A writer after them records, and the readers see it.
        try s.ok(["branch", "later"], in: "repo")
        #expect(s.read("repo/.mrepo/mrepo.db") != before)
        #expect(try s.ok(["branch"], in: "repo").stdout.contains("later"))
        #expect(try s.ok(["log", "--oneline", "later"], in: "repo").stdout.split(separator: "\n").count == 2)
        #expect(try s.ok(["fsck"], in: "repo").stdout.hasPrefix("ok: 2 commits"))
    }
}
