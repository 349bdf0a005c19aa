import Foundation
import Testing

/// A push into a repository holds that repository's read lock from its first question to its last
/// ref update, so a `gc` run there meanwhile waits instead of removing what the push sent (objects
/// without a row, commits no ref reaches yet) or what the remote said it had. Each test holds the
/// push at a named point, starts `gc` on the receiving side, and sees it wait.
@Suite struct PushGCTests {
    /// A sandbox with `repo` (base on main) pushed to a bare `hub`, and math committed on top.
    func published() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "--bare", "hub"])
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        try s.ok(["remote", "add", "origin", "../hub"], in: "repo")
        try s.ok(["push", "-q", "-u", "origin", "main"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../family/math", "-m", "math"], in: "repo")
        return s
    }

    /// Runs `gc` in `directory` and requires that it finds a reader holding the lock and waits
    /// (it pauses there; the caller lets it go on).
    func gcWaits(_ s: CLISandbox, in directory: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> RunningCommand {
        let gc = try RunningCommand(s, ["gc", "--prune-reflog"], in: directory, environment: ["MREPO_PAUSE_AT": "gc.wait-readers"])
        #expect(gc.waitUntilPaused(at: "gc.wait-readers"), "gc did not wait for the push", sourceLocation: sourceLocation)
        return gc
    }

    /// Objects arrived and verified, no row names them yet: gc would delete them as unrecorded.
    @Test func gcWaitsForAPushBetweenItsObjects() throws {
        let s = try published()
        let push = try RunningCommand(s, ["push", "-q"], in: "repo", environment: ["MREPO_PAUSE_AT": "transfer.object-sent"])
        #expect(push.waitUntilPaused(at: "transfer.object-sent"))
        let gc = try gcWaits(s, in: "hub")
        gc.resume()
        push.resume()
        let pushed = push.finish()
        #expect(pushed.status == 0, "the push failed: \(pushed.stderr)")
        let collected = gc.finish()
        #expect(collected.status == 0, "gc failed: \(collected.stderr)")
        #expect(collected.stdout.contains("removed 0 commits"), "gc ran after the push and kept it: \(collected.stdout)")
        try s.ok(["fsck"], in: "hub")
        try s.ok(["export", "main", s.path("out")], in: "hub")
        #expect(s.sameFiles("out", "family/math"))
    }

    /// The hub holds math's commit and objects, but no ref reaches them (a branch deleted there):
    /// the push asks, learns that nothing is missing, sends nothing and moves the ref. A gc between
    /// the question and the ref update would delete what the answer counted on.
    @Test func gcWaitsForAPushThatCountsOnWhatTheRemoteHas() throws {
        let s = try published()
        try s.ok(["push", "-q", "origin", "main:math"], in: "repo")
        try s.ok(["branch", "-q", "-D", "math"], in: "hub")
        let push = try RunningCommand(s, ["push", "-q", "origin", "main:math"], in: "repo", environment: ["MREPO_PAUSE_AT": "push.refs"])
        #expect(push.waitUntilPaused(at: "push.refs"))
        let gc = try gcWaits(s, in: "hub")
        gc.resume()
        push.resume()
        let pushed = push.finish()
        #expect(pushed.status == 0, "the push failed: \(pushed.stderr)")
        #expect(gc.finish().status == 0)
        try s.ok(["fsck"], in: "hub")
        try s.ok(["export", "math", s.path("out")], in: "hub")
        #expect(s.sameFiles("out", "family/math"))
    }

    /// A fetch from a folder holds the other repository's read lock too, until its objects are here.
    @Test func gcWaitsForAFetchFromAFolder() throws {
        let s = try published()
        try s.ok(["clone", "-q", "hub", "copy"])
        try s.ok(["push", "-q"], in: "repo")
        let fetch = try RunningCommand(s, ["fetch", "-q"], in: "copy", environment: ["MREPO_PAUSE_AT": "transfer.object-received"])
        #expect(fetch.waitUntilPaused(at: "transfer.object-received"))
        // Now nothing but the fetch reaches the commit it is fetching.
        try s.ok(["push", "-q", "--force", "origin", "main~1:main"], in: "repo")
        let gc = try gcWaits(s, in: "hub")
        gc.resume()
        fetch.resume()
        let fetched = fetch.finish()
        #expect(fetched.status == 0, "the fetch failed: \(fetched.stderr)")
        #expect(gc.finish().status == 0)
        try s.ok(["fsck"], in: "copy")
    }
}
