import Foundation
import Testing

/// `clone --depth`, `fetch --deepen/--unshallow/--depth` end to end: over a folder and over
/// `mrepo serve`, what the commands say at the boundary, and a killed shallow clone.
@Suite struct ShallowCLITests {
    /// `hub` (bare) with main: base, math, code; and the branch side: chat on base.
    func published() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "--bare", "hub"])
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "--from", "../family/base", "-m", "base"], in: "repo")
        try s.ok(["branch", "side"], in: "repo")
        try s.ok(["commit", "--from", "../family/math", "-m", "math"], in: "repo")
        try s.ok(["commit", "--from", "../family/code", "-m", "code"], in: "repo")
        try s.ok(["commit", "--from", "../family/chat", "-m", "chat", "--branch", "side"], in: "repo")
        try s.ok(["remote", "add", "origin", "../hub"], in: "repo")
        try s.ok(["push", "-q", "origin", "main", "side"], in: "repo")
        return s
    }

    func lines(_ text: String) -> Int { text.split(separator: "\n").count }

    @Test func shallowCloneOverAFolderStopsAtItsBoundaryAndDeepens() throws {
        let s = try published()
        let clone = try #require(try s.json(try s.ok(["clone", "--depth", "1", "--json", "hub", "copy"])) as? [String: Any])
        #expect(clone["shallow"] as? Bool == true)
        #expect(clone["commits"] as? Int == 2, "the tip of main and the tip of side")
        #expect(s.sameFiles("copy", "family/code"))
        let log = try s.ok(["log", "--oneline"], in: "copy").stdout
        #expect(lines(log) == 1)
        #expect(log.contains("(grafted, HEAD -> main"), "the boundary is marked as git marks it: \(log)")
        try s.ok(["fsck"], in: "copy")
        #expect(try s.ok(["status"], in: "copy").stdout.contains("up to date with 'origin/main'"))
        expectOneLineError(try s.run(["rev-parse", "HEAD~1"], in: "copy"), contains: "fetch --deepen")
        // The merge base of main and side (base) lies beyond the boundary: one line says so.
        let merge = try s.run(["merge", "origin/side", "--method", "ties", "--set", "density=0.5"], in: "copy")
        expectOneLineError(merge, contains: "beyond its boundary")
        #expect(merge.stderr.contains("fetch --unshallow"))
        #expect(lines(try s.ok(["log", "--oneline"], in: "copy").stdout) == 1, "the failed merge changed nothing")

        // One more commit below each boundary: math below code, base below chat, which is math's
        // parent too, so the history is then complete.
        try s.ok(["fetch", "-q", "--deepen", "1"], in: "copy")
        #expect(lines(try s.ok(["log", "--oneline"], in: "copy").stdout) == 3)
        try s.ok(["rev-parse", "HEAD~2"], in: "copy")
        try s.ok(["fsck"], in: "copy")
        try s.ok(["gc"], in: "copy")
        try s.ok(["fsck"], in: "copy")
        // Now the merge finds its base.
        try s.ok(["merge", "origin/side", "--method", "ties", "--set", "density=0.5"], in: "copy")
        expectOneLineError(try s.run(["fetch", "--unshallow"], in: "copy"), contains: "not a shallow clone")
        expectOneLineError(try s.run(["clone", "--depth", "0", "hub", "zero"]), status: 64, contains: "--depth")
    }

    @Test func killedShallowCloneLeavesNothingBehind() throws {
        let s = try published()
        let before = try FileManager.default.contentsOfDirectory(atPath: s.root).filter { !$0.hasPrefix(".") }.sorted()
        let killed = try s.run(["clone", "--depth", "2", "hub", "copy"], environment: ["MREPO_KILL_AT": "transfer.object-received:2"])
        #expect(killed.status == -9, "the kill point was not reached: \(killed.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.path("copy")))
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root).filter { !$0.hasPrefix(".") }.sorted() == before)
        // Killed after everything but the final rename: still no repository at the destination.
        let late = try s.run(["clone", "--depth", "2", "hub", "copy"], environment: ["MREPO_KILL_AT": "clone.before-rename:1"])
        #expect(late.status == -9, "the kill point was not reached: \(late.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.path("copy")))
        // The next clone succeeds and removes what the killed ones left.
        try s.ok(["clone", "-q", "--depth", "1", "hub", "copy"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.root).filter { $0.contains("mrepo-clone") }.isEmpty)
        #expect(lines(try s.ok(["log", "--oneline"], in: "copy").stdout) == 1)
        try s.ok(["fsck"], in: "copy")
    }

    @Test func shallowCloneOverHTTPThenUnshallowAndPush() throws {
        let s = try published()
        try FileManager.default.createDirectory(atPath: s.path("served/team"), withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: s.path("hub"), toPath: s.path("served/team/hub"))
        try "writer-0123456789 write\n".write(toFile: s.path("tokens"), atomically: true, encoding: .utf8)
        let server = try ServerProcess(s, ["served", "--tokens", "tokens"])
        defer { _ = server.stop() }
        let env = ["MREPO_TOKEN": "writer-0123456789"]
        try s.ok(["clone", "-q", "--depth", "1", server.url + "/team/hub", "copy"], environment: env)
        #expect(lines(try s.ok(["log", "--oneline"], in: "copy").stdout) == 1)
        #expect(s.sameFiles("copy", "family/code"))
        try s.ok(["fsck"], in: "copy")
        // Push a commit from the shallow clone: the server holds its parents.
        try s.ok(["commit", "--from", "../family/chat", "-m", "chat on code"], in: "copy")
        try s.ok(["push", "-q", "origin", "main:shallow-work"], in: "copy", environment: env)
        #expect(lines(try s.ok(["log", "--oneline", "shallow-work"], in: "served/team/hub").stdout) == 4)
        try s.ok(["fsck"], in: "served/team/hub")
        try s.ok(["fetch", "-q", "--unshallow"], in: "copy", environment: env)
        #expect(lines(try s.ok(["log", "--oneline"], in: "copy").stdout) == 4)
        try s.ok(["fsck"], in: "copy")
    }

    @Test func cloneOfAShallowCloneIsShallowAtTheSameBoundary() throws {
        let s = try published()
        try s.ok(["push", "-q", "origin", "--delete", "side"], in: "repo")
        // main: base ← math ← code; the source holds code and math, math its boundary.
        try s.ok(["clone", "-q", "--depth", "2", "hub", "shallow"])

        // Over a folder: all the source has, with its boundary.
        let clone = try #require(try s.json(try s.ok(["clone", "--json", "shallow", "copy"])) as? [String: Any])
        #expect(clone["commits"] as? Int == 2)
        #expect(clone["shallow"] as? Bool == true)
        let log = try s.ok(["log", "--oneline"], in: "copy").stdout
        #expect(lines(log) == 2)
        #expect(log.contains("(grafted) math"), "the boundary is the source's: \(log)")
        #expect(s.sameFiles("copy", "family/code"))
        try s.ok(["rev-parse", "HEAD~1"], in: "copy")
        expectOneLineError(try s.run(["rev-parse", "HEAD~2"], in: "copy"), contains: "fetch --deepen")
        try s.ok(["fsck"], in: "copy")
        // A smaller depth moves the boundary up; a larger one stops at the source's.
        try s.ok(["clone", "-q", "--depth", "1", "shallow", "top"])
        #expect(lines(try s.ok(["log", "--oneline"], in: "top").stdout) == 1)
        try s.ok(["clone", "-q", "--depth", "5", "shallow", "deep"])
        #expect(lines(try s.ok(["log", "--oneline"], in: "deep").stdout) == 2)
        try s.ok(["fsck"], in: "top")
        // Pushing shallow history to a remote without what lies below the boundary is refused
        // before anything is sent.
        try s.ok(["init", "-q", "--bare", "empty"])
        try s.ok(["remote", "add", "empty", "../empty"], in: "copy")
        expectOneLineError(try s.run(["push", "empty", "main"], in: "copy"), contains: "fetch --unshallow")
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.path("empty/.mrepo/objects")).filter { $0.count == 2 }.isEmpty)
        // Fetching from the shallow source into a clone of it, after the source grew.
        try s.ok(["commit", "-q", "--from", "../family/chat", "-m", "chat"], in: "shallow")
        try s.ok(["fetch", "-q"], in: "copy")
        #expect(lines(try s.ok(["log", "--oneline", "origin/main"], in: "copy").stdout) == 3)
        try s.ok(["fsck"], in: "copy")
        // Unshallowing from a shallow source cannot reach below its boundary, and says so.
        let unshallow = try s.ok(["fetch", "--unshallow"], in: "copy")
        #expect(unshallow.stderr.contains("is itself a shallow repository") && unshallow.stderr.contains("stays shallow"), "\(unshallow.stderr)")
        #expect(lines(try s.ok(["log", "--oneline", "origin/main"], in: "copy").stdout) == 3)
        // Cloning a repository without branches works, and says the clone is empty.
        let empty = try s.ok(["clone", "empty", "empty-clone"])
        #expect(empty.stderr.contains("holds no branches: the clone is an empty repository"), "\(empty.stderr)")
        try s.ok(["fsck"], in: "empty-clone")

        // Over HTTP (mrepo serve): the same.
        try FileManager.default.createDirectory(atPath: s.path("served/team"), withIntermediateDirectories: true)
        try FileManager.default.moveItem(atPath: s.path("shallow"), toPath: s.path("served/team/shallow"))
        let server = try ServerProcess(s, ["served"])
        defer { _ = server.stop() }
        try s.ok(["clone", "-q", server.url + "/team/shallow", "web"])
        let webLog = try s.ok(["log", "--oneline"], in: "web").stdout
        #expect(lines(webLog) == 3)
        #expect(webLog.contains("(grafted) math"), "the boundary is the source's: \(webLog)")
        #expect(s.sameFiles("web", "family/chat"))
        try s.ok(["fsck"], in: "web")
        try s.ok(["clone", "-q", "--depth", "2", server.url + "/team/shallow", "web2"])
        let web2Log = try s.ok(["log", "--oneline"], in: "web2").stdout
        #expect(lines(web2Log) == 2)
        #expect(web2Log.contains("(grafted) code"), "\(web2Log)")
        try s.ok(["fsck"], in: "web2")
    }
}
