import Foundation
import Testing

/// A branch started from a remote-tracking branch tracks it, as git's default
/// (`branch.autoSetupMerge=true`) has it: `switch -c`, `checkout -b`, `branch` and `worktree add`;
/// `--track`/`--no-track` decide otherwise, `branch -u`/`--unset-upstream` set and forget an
/// upstream, and an upstream moves with its branch and goes with it.
@Suite struct UpstreamCLITests {
    /// `repo` (main, math) cloned as `copy`.
    func cloned() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math"])
        try s.ok(["clone", "-q", s.path("repo"), "copy"])
        return s
    }

    func upstreamLine(_ s: CLISandbox, _ branch: String) throws -> String {
        let lines = try s.ok(["branch", "-vv"], in: "copy").stdout.split(separator: "\n").map(String.init)
        return try #require(lines.first { $0.dropFirst(2).hasPrefix(branch + " ") }, "no line for \(branch) in \(lines)")
    }

    @Test func switchAndCheckoutFromARemoteBranchTrackIt() throws {
        let s = try cloned()
        let made = try s.ok(["switch", "-c", "m", "origin/math"], in: "copy").stdout
        #expect(made.hasPrefix("branch 'm' set up to track 'origin/math'.\n"), "got: \(made)")
        #expect(try upstreamLine(s, "m").contains("[origin/math]"))
        #expect(try s.ok(["status"], in: "copy").stdout.contains("up to date with 'origin/math'"))
        // git's @{u} / BRANCH@{upstream}: the remote-tracking branch a branch tracks.
        let tracked = try s.ok(["rev-parse", "origin/math"], in: "copy").stdout
        #expect(try s.ok(["rev-parse", "@{u}"], in: "copy").stdout == tracked)
        #expect(try s.ok(["rev-parse", "m@{upstream}"], in: "copy").stdout == tracked)
        try s.ok(["branch", "-q", "plain", "main"], in: "copy")
        expectOneLineError(try s.run(["rev-parse", "plain@{u}"], in: "copy"), contains: "branch 'plain' has no upstream")
        // The spellings git takes for a remote-tracking branch.
        try s.ok(["switch", "-q", "-c", "m2", "remotes/origin/math"], in: "copy")
        #expect(try upstreamLine(s, "m2").contains("[origin/math]"))

        let doc = try #require(try s.json(try s.ok(["checkout", "-b", "m3", "--json", "refs/remotes/origin/main"], in: "copy")) as? [String: Any])
        #expect(doc["upstream"] as? String == "origin/main" && doc["branch"] as? String == "m3")
        let plain = try #require(try s.json(try s.ok(["switch", "-c", "m4", "--json", "main"], in: "copy")) as? [String: Any])
        #expect(plain["upstream"] is NSNull)

        // --no-track, a local start point and a commit below a remote branch: no upstream.
        try s.ok(["checkout", "-q", "-b", "n", "--no-track", "origin/math"], in: "copy")
        try s.ok(["switch", "-q", "-c", "local", "main"], in: "copy")
        try s.ok(["switch", "-q", "-c", "below", "origin/math~1"], in: "copy")
        for b in ["n", "local", "below"] { #expect(!(try upstreamLine(s, b).contains("[")), "\(b) tracks nothing") }

        // --track needs a remote-tracking start point: refused before anything is written.
        let head = try s.ok(["rev-parse", "HEAD"], in: "copy").stdout
        expectOneLineError(try s.run(["switch", "-c", "t", "--track", "main"], in: "copy"), contains: "'main' is not a remote-tracking branch")
        expectOneLineError(try s.run(["checkout", "-b", "t", "-t"], in: "copy"), contains: "HEAD is not a remote-tracking branch")
        #expect(try s.run(["rev-parse", "t"], in: "copy").status != 0)
        #expect(try s.ok(["rev-parse", "HEAD"], in: "copy").stdout == head)
        expectOneLineError(try s.run(["switch", "--no-track", "main"], in: "copy"), status: 64, contains: "goes with -c")
        expectOneLineError(try s.run(["switch", "--track", "main"], in: "copy"), status: 64, contains: "is not one")
        // `switch --track origin/X` and `checkout -t origin/X` name the branch after the remote one.
        let derived = try s.ok(["switch", "--track", "origin/math"], in: "copy").stdout
        #expect(derived.contains("branch 'math' set up to track 'origin/math'.") && derived.contains("Switched to a new branch 'math'"), "got: \(derived)")
        try s.ok(["branch", "-q", "-D", "m2"], in: "copy")
        try s.ok(["switch", "-q", "main"], in: "copy")
        expectOneLineError(try s.run(["switch", "-c", "u", "--track", "--no-track", "origin/math"], in: "copy"), status: 64, contains: "give one of them")
    }

    @Test func branchSetsForgetsAndKeepsUpstreams() throws {
        let s = try cloned()
        let made = try s.ok(["branch", "q", "origin/math"], in: "copy").stdout
        #expect(made.contains("branch 'q' set up to track 'origin/math'."), "got: \(made)")
        let doc = try #require(try s.json(try s.ok(["branch", "q2", "origin/main", "--json"], in: "copy")) as? [String: Any])
        #expect(doc["upstream"] as? String == "origin/main")

        let set = try s.ok(["branch", "-u", "origin/main", "q"], in: "copy").stdout
        #expect(set.contains("branch 'q' set up to track 'origin/main'."))
        #expect(try upstreamLine(s, "q").contains("[origin/main: ahead 1]"))
        // The current branch by default; `--set-upstream-to` is the long form.
        try s.ok(["branch", "-q", "--unset-upstream"], in: "copy")
        #expect(!(try upstreamLine(s, "main").contains("[")))
        try s.ok(["branch", "-q", "--set-upstream-to", "origin/main"], in: "copy")
        #expect(try upstreamLine(s, "main").contains("[origin/main]"))

        try s.ok(["branch", "-q", "--unset-upstream", "q"], in: "copy")
        #expect(!(try upstreamLine(s, "q").contains("[")))
        expectOneLineError(try s.run(["branch", "--unset-upstream", "q"], in: "copy"), contains: "no upstream information")
        expectOneLineError(try s.run(["branch", "-u", "origin/nope", "q"], in: "copy"), contains: "'origin/nope' does not exist")
        expectOneLineError(try s.run(["branch", "-u", "origin/main", "nope"], in: "copy"), contains: "nope")
        expectOneLineError(try s.run(["branch", "-u", "origin/main", "-d", "q"], in: "copy"), status: 64, contains: "no other mode")
        expectOneLineError(try s.run(["branch", "-u", "main", "q"], in: "copy"), contains: "'main' is a local branch")
        let listed = try #require(try s.json(try s.ok(["branch", "--json"], in: "copy")) as? [[String: Any]])
        #expect(listed.first { $0["name"] as? String == "q2" }?["upstream"] as? String == "origin/main")
        #expect(listed.first { $0["name"] as? String == "q" }?["upstream"] is NSNull)

        // An upstream follows a rename, and goes with a deleted branch: a new branch of that name
        // does not inherit it.
        try s.ok(["branch", "-q", "-m", "q2", "renamed"], in: "copy")
        #expect(try upstreamLine(s, "renamed").contains("[origin/main]"))
        try s.ok(["branch", "-q", "-D", "renamed"], in: "copy")
        try s.ok(["branch", "-q", "renamed", "main"], in: "copy")
        #expect(!(try upstreamLine(s, "renamed").contains("[")))
        // -f to a remote-tracking branch tracks it; -f elsewhere keeps what the branch tracks.
        try s.ok(["branch", "-q", "-f", "renamed", "origin/math"], in: "copy")
        #expect(try upstreamLine(s, "renamed").contains("[origin/math]"))
        #expect(!(try s.ok(["branch", "-f", "renamed", "main"], in: "copy").stdout.contains("set up to track")), "a kept upstream is not announced")
        #expect(try upstreamLine(s, "renamed").contains("[origin/math"))
        #expect(try s.ok(["fsck"], in: "copy").status == 0)
    }

    /// `checkout B` for a branch only a remote has creates it tracking the remote one, and says so.
    @Test func checkoutOfABranchOnlyARemoteHasSaysItTracksIt() throws {
        let s = try cloned()
        let out = try s.ok(["checkout", "math"], in: "copy").stdout
        #expect(out.hasPrefix("branch 'math' set up to track 'origin/math'.\nSwitched to a new branch 'math'"), "got: \(out)")
        try s.ok(["switch", "-q", "main"], in: "copy")
        try s.ok(["branch", "-q", "-D", "math"], in: "copy")
        let doc = try #require(try s.json(try s.ok(["checkout", "--json", "math"], in: "copy")) as? [String: Any])
        #expect(doc["upstream"] as? String == "origin/math" && doc["branch"] as? String == "math")
        // An existing branch: no upstream in the document.
        let again = try #require(try s.json(try s.ok(["checkout", "--json", "main"], in: "copy")) as? [String: Any])
        #expect(again["upstream"] is NSNull)
    }

    @Test func worktreeAddOfABranchOnlyARemoteHasTracksIt() throws {
        let s = try cloned()
        let out = try s.ok(["worktree", "add", "../side", "math"], in: "copy").stdout
        #expect(out.contains("branch 'math' set up to track 'origin/math'."), "got: \(out)")
        #expect(try s.ok(["branch", "--show-current"], in: "side").stdout == "math\n")
        #expect(try s.ok(["status"], in: "side").stdout.contains("up to date with 'origin/math'"))
        #expect(try s.ok(["rev-parse", "math"], in: "copy").stdout == (try s.ok(["rev-parse", "origin/math"], in: "copy").stdout))
        // -b NEW from a remote-tracking branch tracks it too; a plain revision still detaches.
        try s.ok(["worktree", "add", "-q", "-b", "other", "../other", "origin/math"], in: "copy")
        #expect(try upstreamLine(s, "other").contains("[origin/math]"))
        try s.ok(["worktree", "add", "-q", "../detached", "origin/main"], in: "copy")
        #expect(try s.ok(["branch", "--show-current"], in: "detached").stdout.isEmpty)
        // --no-track and --track, as for switch -c.
        try s.ok(["worktree", "add", "-q", "--no-track", "-b", "plain", "../plain", "origin/math"], in: "copy")
        #expect(!(try upstreamLine(s, "plain").contains("[")))
        expectOneLineError(try s.run(["worktree", "add", "--track", "-b", "bad", "../bad", "main"], in: "copy"), contains: "not a remote-tracking branch")
        #expect(!FileManager.default.fileExists(atPath: s.path("bad")))
        #expect(try s.run(["rev-parse", "bad"], in: "copy").status != 0)
    }

    /// git's default push (push.default=simple): a branch started from origin/main does not push
    /// over origin/main unasked; an upstream whose remote branch was deleted and pruned is "gone".
    @Test func pushRefusesAnUpstreamOfAnotherNameAndGoneUpstreamsAreShown() throws {
        let s = try cloned()
        try s.ok(["init", "-q", "--bare", "shared"])
        try s.ok(["remote", "add", "shared", s.path("shared")], in: "copy")
        try s.ok(["branch", "-q", "math", "origin/math"], in: "copy")
        try s.ok(["push", "-q", "shared", "main", "math"], in: "copy")
        try s.ok(["fetch", "-q", "shared"], in: "copy")
        try s.ok(["switch", "-q", "-c", "feature", "shared/main"], in: "copy")
        try s.ok(["commit", "-q", "--from", "../family/code", "-m", "code"], in: "copy")
        let before = try s.ok(["rev-parse", "main"], in: "shared").stdout
        expectOneLineError(try s.run(["push", "shared"], in: "copy"), contains: "mrepo push shared feature:main")
        #expect(try s.ok(["rev-parse", "main"], in: "shared").stdout == before)
        try s.ok(["push", "-q", "shared", "feature"], in: "copy")
        #expect(try s.ok(["rev-parse", "feature"], in: "shared").stdout == (try s.ok(["rev-parse", "feature"], in: "copy").stdout))

        try s.ok(["switch", "-q", "-c", "m", "shared/math"], in: "copy")
        try s.ok(["push", "-q", "shared", "--delete", "math"], in: "copy")
        try s.ok(["fetch", "-q", "--prune", "shared"], in: "copy")
        #expect(try upstreamLine(s, "m").contains("[shared/math: gone]"))
        #expect(try s.ok(["status"], in: "copy").stdout.contains("the upstream is gone"))
        let doc = try #require(try s.json(try s.ok(["status", "--json"], in: "copy")) as? [String: Any])
        #expect((doc["upstream"] as? [String: Any])?["gone"] as? Bool == true)
    }

    /// A clone of an empty repository tracks its branch from the start, as git records it.
    @Test func aCloneOfAnEmptyRepositoryTracksItsBranch() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "--bare", "empty"])
        try s.ok(["clone", "-q", s.path("empty"), "first"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "first")
        try s.ok(["push", "-q"], in: "first")
        #expect(try s.ok(["status"], in: "first").stdout.contains("up to date with 'origin/main'"))
    }
}
