import Foundation
import Testing

/// How a merge in progress ends besides `merge --continue` and `--abort`, as git users end one:
/// `commit` concludes it, `reset --hard` abandons it.
@Suite struct MergeEndingCLITests {
    /// The tiny family: base on main, math and chat on branches (their TIES merge conflicts at the
    /// default thresholds of `--max-sign-conflict 0.3`).
    func family() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math", "code", "chat"])
        return s
    }

    func show(_ s: CLISandbox, _ rev: String = "HEAD") throws -> [String: Any] {
        try #require(try s.json(try s.ok(["show", "--json", rev], in: "repo")) as? [String: Any])
    }

    /// `commit` after `merge --no-commit` records the merge (both parents, the message of -m),
    /// as git's does; no merge is left in progress.
    @Test(arguments: [["-m", "merged by hand"], []])
    func commitConcludesAMergeInProgress(message: [String]) throws {
        let s = try family()
        let main = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let math = try s.ok(["rev-parse", "math"], in: "repo").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        try s.ok(["merge", "-q", "math", "--method", "linear", "--no-commit"], in: "repo")
        let merged = try s.ok(["status", "--porcelain"], in: "repo").stdout
        #expect(!merged.isEmpty, "the merge wrote its candidate")
        let done = try #require(try s.json(try s.ok(["commit", "--json"] + message, in: "repo")) as? [String: Any])
        let head = try show(s)
        #expect(done["commit"] as? String == head["id"] as? String)
        #expect(head["parents"] as? [String] == [main, math], "a merge commit: \(head)")
        if message.isEmpty {
            #expect((head["message"] as? String)?.isEmpty == false, "the prepared message")
        } else {
            #expect(head["message"] as? String == "merged by hand")
        }
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        expectOneLineError(try s.run(["merge", "--continue"], in: "repo"), contains: "no merge in progress")
        try s.ok(["export", "-q", "HEAD", "../out"], in: "repo")
        #expect(s.sameFiles("out", "repo"))
        try s.ok(["fsck"], in: "repo")
    }

    /// Options that make no sense for a merge commit are refused, and the merge stays as it was.
    @Test func commitDuringAMergeRefusesOtherOptions() throws {
        let s = try family()
        try s.ok(["merge", "-q", "math", "--method", "linear", "--no-commit"], in: "repo")
        let head = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        expectOneLineError(try s.run(["commit", "--amend", "-m", "x"], in: "repo"), status: 64, contains: "--amend does not apply while a merge is in progress")
        expectOneLineError(try s.run(["commit", "-m", "x", "--metric", "acc=1"], in: "repo"), status: 64, contains: "--metric does not apply")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == head)
        try s.ok(["merge", "-q", "--continue"], in: "repo")
        #expect(try show(s)["parents"] as? [String] != nil)
    }

    /// A merge stopped on conflicts is not committed by `commit` until they are settled.
    @Test func commitRefusesUnresolvedConflicts() throws {
        let s = try family()
        let r = try s.run(["merge", "math", "chat", "--method", "ties", "--max-sign-conflict", "0.3"], in: "repo")
        #expect(r.status == 1, "the merge stops: \(r.stderr)")
        let head = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        expectOneLineError(try s.run(["commit", "-m", "x"], in: "repo"), contains: "still unresolved")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == head)
        try s.ok(["resolve", "-q", "*", "--ours"], in: "repo")
        try s.ok(["commit", "-q", "-m", "settled"], in: "repo")
        #expect((try show(s)["parents"] as? [String])?.count == 3)
        try s.ok(["fsck"], in: "repo")
    }

    /// `reset --hard` during a merge abandons it, as git's does: the working tree holds the target,
    /// the files the merge wrote included, and no merge is in progress. A soft reset is refused.
    @Test(arguments: [("HEAD", "family/base"), ("math", "family/math")])
    func hardResetAbandonsAMerge(target: String, holds folder: String) throws {
        let s = try family()
        try s.ok(["merge", "-q", "math", "code", "--method", "ties", "--set", "density=0.5", "--no-commit"], in: "repo")
        #expect(!s.sameFiles("repo", "family/base"))
        expectOneLineError(try s.run(["reset", "--soft", "HEAD"], in: "repo"), contains: "reset --hard")
        try s.ok(["reset", "-q", "--hard", target], in: "repo")
        #expect(s.sameFiles("repo", folder))
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        expectOneLineError(try s.run(["merge", "--abort"], in: "repo"), contains: "no merge in progress")
        try s.ok(["merge", "-q", "math", "--method", "linear"], in: "repo")
        try s.ok(["fsck"], in: "repo")
    }

    /// `reset --hard HEAD` killed after noting its checkout and before its record: HEAD is already
    /// at the target, but the merge is still in progress, so the note does not count as recorded.
    /// The next command leaves the merge and its candidate as they were (it wrote HEAD's files over
    /// the candidate, and a `commit` then recorded the merge without the merge's files).
    @Test func aKilledHardResetLeavesTheMergeAsItWas() throws {
        let s = try family()
        try s.ok(["merge", "-q", "math", "code", "--method", "ties", "--set", "density=0.5", "--no-commit"], in: "repo")
        let candidate = try s.ok(["status", "--porcelain"], in: "repo").stdout
        let r = try s.run(["reset", "--hard", "HEAD"], in: "repo", environment: ["MREPO_KILL_AT": "reset.noted"])
        #expect(r.status == -9, "the kill point was not reached: \(r.stderr)")
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout == candidate, "the candidate is still in the working tree")
        try s.ok(["commit", "-q", "-m", "merged"], in: "repo")
        #expect((try show(s)["parents"] as? [String])?.count == 3)
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        try s.ok(["export", "-q", "HEAD", "../out"], in: "repo")
        #expect(s.sameFiles("out", "repo"))
        try s.ok(["fsck"], in: "repo")
    }

    /// An edit made after `merge --no-commit` is not left out of a commit silently: `commit`
    /// refuses, naming the file, and changes nothing; `merge --continue` commits the merge and
    /// keeps the edit as a local change.
    @Test func commitDuringAMergeRefusesEditsMadeSince() throws {
        let s = try family()
        try s.ok(["merge", "-q", "math", "--method", "linear", "--no-commit"], in: "repo")
        try Data("{\"tweak\": 1}\n".utf8).write(to: URL(fileURLWithPath: s.path("repo/config.json")))
        let head = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        expectOneLineError(try s.run(["commit", "-m", "x"], in: "repo"), contains: "config.json differs from it")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == head)
        let done = try #require(try s.json(try s.ok(["merge", "--continue", "--json"], in: "repo")) as? [String: Any])
        #expect(done["kept_local_changes"] as? [String] == ["config.json"])
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout == "M config.json\n")
    }
}
