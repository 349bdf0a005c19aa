import Foundation
import Testing

/// A truncated or damaged safetensors file in the working tree is a change, as git lists a
/// changed file: `status` names it with the codec's reason, commands that would rewrite it refuse
/// with the usual message instead of failing on the file, and those that would not keep it.
@Suite struct UnreadableFileTests {
    func truncatedModel() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        // A trainer killed while writing: the file stops in the middle of its data.
        let path = s.path("repo/model.safetensors")
        let bytes = try #require(s.read("repo/model.safetensors"))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))
        return s
    }

    @Test func statusListsATruncatedFileAsModifiedWithTheReason() throws {
        let s = try truncatedModel()
        let r = try s.ok(["status"], in: "repo")
        let line = r.stdout.split(separator: "\n").first { $0.contains("model.safetensors") }.map(String.init) ?? ""
        // The codec's own words: the header promises more data than the file holds.
        #expect(line.hasPrefix("  modified:  model.safetensors  (unreadable: model.safetensors: tensor '"), "\(r.stdout)")
        #expect(line.contains("data section has"), "\(line)")
        #expect(try s.ok(["status", "--short"], in: "repo").stdout == "M model.safetensors\n")
        let json = try #require(try s.json(try s.ok(["status", "--json"], in: "repo")) as? [String: Any])
        let changes = try #require(json["changes"] as? [[String: Any]])
        #expect(changes.count == 1 && changes.first?["status"] as? String == "modified")
        #expect((changes.first?["reason"] as? String)?.isEmpty == false)
        #expect(json["clean"] as? Bool == false)
        // Asked again, it gives the reason again (an unreadable file is not cached).
        #expect(try s.ok(["status"], in: "repo").stdout.contains("(unreadable: "))
    }

    @Test func commandsThatNeedACleanTreeRefuseWithTheDirtyTreeMessage() throws {
        let s = try truncatedModel()
        // A new branch at HEAD writes nothing: the broken file is kept, as git keeps any change.
        try s.ok(["switch", "-q", "-c", "next"], in: "repo")
        #expect(try s.ok(["status", "--short"], in: "repo").stdout == "M model.safetensors\n")
        // A switch that would rewrite it refuses, creating no branch.
        try s.ok(["commit", "-q", "--branch", "math", "--from", "../family/math", "-m", "math"], in: "repo")
        expectOneLineError(try s.run(["switch", "math"], in: "repo"),
                           contains: "switching would overwrite uncommitted changes in model.safetensors")
        expectOneLineError(try s.run(["switch", "-c", "other", "math"], in: "repo"),
                           contains: "switching would overwrite uncommitted changes in model.safetensors")
        #expect(!(try s.ok(["branch"], in: "repo").stdout.contains("other")), "the refused switch created no branch")
        expectOneLineError(try s.run(["commit", "--from", "../family/math", "-m", "math"], in: "repo"),
                           contains: "would overwrite uncommitted changes in model.safetensors")
        // Committing or diffing the file itself needs its tensors: the codec's error, in one line.
        expectOneLineError(try s.run(["commit", "-m", "broken"], in: "repo"), contains: "model.safetensors")
        expectOneLineError(try s.run(["diff"], in: "repo"), contains: "model.safetensors")
        #expect(try s.ok(["log", "--oneline"], in: "repo").stdout.split(separator: "\n").count == 1)
        // --force discards the broken file, as it discards any change.
        try s.ok(["switch", "-q", "--force", "-c", "last"], in: "repo")
        #expect(s.sameFiles("repo", "family/base"))
        #expect(try s.ok(["status", "--short"], in: "repo").stdout.isEmpty)
    }

    /// A checkpoint rewritten in place while it is committed, its mtime put back (same size, same
    /// inode): refused, nothing recorded. Only size, mtime and inode were compared, so the commit
    /// stored bytes other than those it hashed under their ids, exit 0, and fsck failed after.
    @Test func aFileRewrittenInPlaceWithItsTimePutBackIsRefused() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: [])
        let target = s.path("repo/model.safetensors")
        try FileManager.default.removeItem(atPath: target)
        try FileManager.default.copyItem(atPath: s.path("family/math/model.safetensors"), toPath: target)
        let chat = try #require(s.read("family/chat/model.safetensors"))
        #expect(chat.count == s.read("repo/model.safetensors")?.count, "the rewrite keeps the size")
        let head = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        let commit = try RunningCommand(s, ["commit", "-q", "-m", "math"], in: "repo", environment: ["MREPO_PAUSE_AT": "commit.segment-hashed"])
        #expect(commit.waitUntilPaused(at: "commit.segment-hashed"))
        // In place, then the times put back, as `touch -r` or os.utime would.
        var before = stat()
        #expect(stat(target, &before) == 0)
        let handle = try #require(FileHandle(forWritingAtPath: target))
        try handle.write(contentsOf: chat)
        try handle.close()
        var times = [before.st_atim, before.st_mtim]
        #expect(utimensat(AT_FDCWD, target, &times, 0) == 0)
        commit.resume()
        let r = commit.finish()
        // The pause's own line first, then the error.
        #expect(r.status == 2 && r.stderrLines.last?.contains("changed while it was being committed") == true, "\(r.stderr)")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == head)
        try s.ok(["fsck"], in: "repo")
    }
}
