import Foundation
import Testing

/// Kills the real binary with SIGKILL at chosen instants (`MREPO_KILL_AT`, see `CrashPoint`) and
/// checks that the repository stays intact: `fsck` passes, the previous state exports byte for
/// byte, and the interrupted command succeeds when run again.
@Suite struct CrashSafetyTests {
    /// A repository with the base committed on main and the math fine-tune in the working tree.
    func prepared() throws -> CLISandbox {
        let s = try CLISandbox()
        s.environment["MREPO_FSYNC"] = "1"
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        try s.ok(["switch", "-q", "-c", "math"], in: "repo")
        for name in s.files(under: "family/math") {
            try? FileManager.default.removeItem(atPath: s.path("repo/\(name)"))
            try FileManager.default.copyItem(atPath: s.path("family/math/\(name)"), toPath: s.path("repo/\(name)"))
        }
        return s
    }

    func expectIntact(_ s: CLISandbox, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let fsck = try s.run(["fsck"], in: "repo")
        #expect(fsck.status == 0, "fsck after a crash: \(fsck.stdout)\(fsck.stderr)", sourceLocation: sourceLocation)
        #expect(!fsck.stdout.contains("error:"), sourceLocation: sourceLocation)
    }

    func exportMatches(_ s: CLISandbox, _ rev: String, _ folder: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let out = "out-\(UUID().uuidString.prefix(6))"
        try s.ok(["export", rev, "../\(out)"], in: "repo", sourceLocation: sourceLocation)
        #expect(s.sameFiles(out, folder), "export of \(rev) differs from \(folder)", sourceLocation: sourceLocation)
    }

    @Test(arguments: ["write:1", "write:4", "object.written:1", "object.written:5", "object.renamed:1", "object.renamed:3",
                      "commit.objects-durable"])
    func commitKilledBeforeRecording(point: String) throws {
        let s = try prepared()
        let r = try s.run(["commit", "-m", "math"], in: "repo", environment: ["MREPO_KILL_AT": point])
        #expect(r.status == -9, "the kill point \(point) was not reached (status \(r.status))")
        try expectIntact(s)
        // The previous state is intact: one commit, and it exports as the base.
        #expect(try s.ok(["log", "--oneline"], in: "repo").stdout.split(separator: "\n").count == 1)
        try exportMatches(s, "HEAD", "family/base")
        // Running the command again succeeds; gc then removes what the crash left.
        try s.ok(["commit", "-q", "-m", "math"], in: "repo")
        try exportMatches(s, "HEAD", "family/math")
        try s.ok(["gc", "-q"], in: "repo")
        let fsck = try s.ok(["fsck"], in: "repo")
        #expect(!fsck.stdout.contains("warning:"), "gc leaves nothing behind: \(fsck.stdout)")
    }

    @Test func commitKilledAfterRecording() throws {
        let s = try prepared()
        let r = try s.run(["commit", "-m", "math"], in: "repo", environment: ["MREPO_KILL_AT": "commit.recorded"])
        #expect(r.status == -9)
        try expectIntact(s)
        #expect(try s.ok(["log", "--oneline"], in: "repo").stdout.split(separator: "\n").count == 2)
        try exportMatches(s, "HEAD", "family/math")
        try exportMatches(s, "HEAD~1", "family/base")
    }

    @Test(arguments: ["write:2", "checkout.staged", "checkout.file:1", "checkout.file:2", "checkout.files-written"])
    func switchKilled(point: String) throws {
        let s = try prepared()
        try s.ok(["commit", "-q", "-m", "math"], in: "repo")
        let r = try s.run(["switch", "main"], in: "repo", environment: ["MREPO_KILL_AT": point])
        #expect(r.status == -9, "the kill point \(point) was not reached (status \(r.status))")
        try expectIntact(s)
        if point == "checkout.staged" || point.hasPrefix("write") {
            // Killed while staging: the new files are temporary files only; the working tree is as it was.
            #expect(s.sameFiles("repo", "family/math"))
        }
        // HEAD did not move.
        let status = try s.ok(["status"], in: "repo").stdout
        #expect(status.hasPrefix("On branch math"))
        if point.hasPrefix("checkout.file") || point == "checkout.files-written" {
            // Some of main's files are in place: status says so, and the next writer puts math's
            // back first, so a commit cannot record main's files on math.
            #expect(!s.sameFiles("repo", "family/math"), "the kill left main's files (else this case tests nothing)")
            #expect(status.contains("An interrupted switch left some of its files in the working tree: HEAD did not move"), "\(status)")
            let next = try s.run(["commit", "-m", "after the kill"], in: "repo")
            #expect(next.stderr.contains("put back HEAD's files over those an interrupted switch had begun to write"), "\(next.stderr)")
            #expect(try s.ok(["log", "--oneline"], in: "repo").stdout.split(separator: "\n").count == 2, "nothing committed")
            #expect(s.sameFiles("repo", "family/math"))
            #expect(!FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
            try s.ok(["switch", "-q", "main"], in: "repo")
        } else {
            // Forcing the switch again finishes the job.
            try s.ok(["switch", "--force", "main"], in: "repo")
        }
        #expect(s.sameFiles("repo", "family/base"))
        try exportMatches(s, "math", "family/math")
        #expect(!FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
    }

    /// A switch (not forced) killed during its renames, then an edit to a file it had written: the
    /// edit holds the target's content, so the next command stops instead of putting HEAD's file
    /// back over it or letting a commit record it; `checkout --force HEAD` settles it. `bisect run`
    /// after a killed bisect step settles the step first instead of refusing to test.
    @Test func anEditAfterAnInterruptedSwitchStopsTheNextCommand() throws {
        let s = try prepared()
        try s.ok(["commit", "-q", "-m", "math"], in: "repo")
        #expect(try s.run(["switch", "main"], in: "repo", environment: ["MREPO_KILL_AT": "checkout.file:1"]).status == -9)
        let readme = s.path("repo/README.md")
        #expect(s.read("repo/README.md") == s.read("family/base/README.md"), "README.md is renamed first")
        try Data("edited after the kill".utf8).write(to: URL(fileURLWithPath: readme))
        let refused = try s.run(["commit", "-m", "edit"], in: "repo")
        expectOneLineError(refused, contains: "an interrupted switch left some of its files in the working tree (HEAD did not move), and putting HEAD's back failed")
        #expect(refused.stderr.contains("mrepo checkout --force HEAD"))
        #expect(refused.stderr.contains("would overwrite changes made since in README.md"))
        #expect(!refused.stderr.contains("commit them first"), "the commit is what was refused")
        #expect(try s.ok(["log", "--oneline"], in: "repo").stdout.split(separator: "\n").count == 2, "nothing committed")
        try s.ok(["checkout", "-q", "--force", "HEAD"], in: "repo")
        #expect(s.sameFiles("repo", "family/math"))
        #expect(!FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))

        // bisect run: five commits above main on branch math; the first test (good) moves to the
        // next candidate, and that checkout is killed.
        let b = try family()
        try b.ok(["switch", "-q", "math"], in: "repo")
        for model in ["code", "chat", "math", "code"] {
            try b.ok(["commit", "-q", "--from", "../family/\(model)", "-m", model], in: "repo")
        }
        try b.ok(["bisect", "start", "-q", "HEAD", "main"], in: "repo")
        try "#!/bin/sh\nexit 0\n".write(toFile: b.path("ok.sh"), atomically: true, encoding: .utf8)
        chmod(b.path("ok.sh"), 0o755)
        let killed = try b.run(["bisect", "run", "../ok.sh"], in: "repo", environment: ["MREPO_KILL_AT": "checkout.file:1"])
        #expect(killed.status == -9, "\(killed.stderr)")
        let run = try b.run(["bisect", "run", "../ok.sh"], in: "repo")
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stderr.contains("put back HEAD's files"), "\(run.stderr)")
    }

    /// `switch --force` killed during its renames, over a local edit it had not reached yet: the
    /// next command puts back only what the switch wrote, so the edit (which a forced switch that
    /// finished would have discarded) survives and a commit records it.
    @Test func anInterruptedForcedSwitchKeepsTheEditsItHadNotReached() throws {
        let s = try prepared()
        try s.ok(["commit", "-q", "-m", "math"], in: "repo")
        try FileManager.default.removeItem(atPath: s.path("repo/model.safetensors"))
        try FileManager.default.copyItem(atPath: s.path("family/chat/model.safetensors"), toPath: s.path("repo/model.safetensors"))
        #expect(try s.run(["switch", "--force", "main"], in: "repo", environment: ["MREPO_KILL_AT": "checkout.file:1"]).status == -9)
        #expect(s.read("repo/model.safetensors") == s.read("family/chat/model.safetensors"), "renamed in order: the model comes after README.md")
        try s.ok(["commit", "-q", "-m", "save"], in: "repo")
        try s.ok(["export", "HEAD", "../saved"], in: "repo")
        #expect(s.read("saved/model.safetensors") == s.read("family/chat/model.safetensors"), "the edit is kept and committed")
        #expect(s.read("saved/README.md") == s.read("family/math/README.md"), "the switch's own file went back")
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
    }

    /// A switch killed after its renames, then `switch --force` elsewhere: the forced command puts
    /// HEAD's files back first (with force), then switches; a kill after HEAD moved leaves a stale
    /// note that the next command just deletes.
    @Test func aForcedSwitchAfterAKilledOneAndAStaleNote() throws {
        let s = try prepared()
        try s.ok(["commit", "-q", "-m", "math"], in: "repo")
        #expect(try s.run(["switch", "main"], in: "repo", environment: ["MREPO_KILL_AT": "checkout.file:1"]).status == -9)
        try s.ok(["switch", "-q", "--force", "main"], in: "repo")
        #expect(s.sameFiles("repo", "family/base"))
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        // Killed after HEAD moved: the renames were all done; the note is stale.
        try s.ok(["switch", "-q", "math"], in: "repo")
        let note = #"{"force":false,"from":"\#(String(repeating: "0", count: 64))","operation":"switch","proof":{"headMovesTo":{"_0":"\#(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout.trimmingCharacters(in: .whitespacesAndNewlines))"}},"to":"\#(String(repeating: "2", count: 64))"}"#
        try Data(note.utf8).write(to: URL(fileURLWithPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
        #expect(!(try s.ok(["status"], in: "repo").stdout.contains("interrupted")))
        let next = try s.ok(["branch", "other"], in: "repo")
        #expect(next.stderr.isEmpty, "\(next.stderr)")
        #expect(!FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
        #expect(s.sameFiles("repo", "family/math"))
    }

    @Test(arguments: ["gc.recorded", "gc.remove:2"])
    func gcKilled(point: String) throws {
        let s = try prepared()
        try s.ok(["commit", "-q", "-m", "math"], in: "repo")
        try s.ok(["switch", "-q", "main"], in: "repo")
        try s.ok(["branch", "-q", "-D", "math"], in: "repo")
        let r = try s.run(["gc", "--prune-reflog"], in: "repo", environment: ["MREPO_KILL_AT": point])
        #expect(r.status == -9)
        try expectIntact(s)
        try exportMatches(s, "main", "family/base")
        try s.ok(["gc", "-q"], in: "repo")
        let fsck = try s.ok(["fsck"], in: "repo")
        #expect(!fsck.stdout.contains("warning:"))
    }

    @Test(arguments: ["write:3", "export.staged", "export.file:1"])
    func exportKilled(point: String) throws {
        let s = try prepared()
        try s.ok(["commit", "-q", "-m", "math"], in: "repo")
        let r = try s.run(["export", "HEAD", "../partial"], in: "repo", environment: ["MREPO_KILL_AT": point])
        #expect(r.status == -9)
        try expectIntact(s)
        if point != "export.file:1" {
            // Killed before the renames: nothing under a final name.
            #expect(s.files(under: "partial").allSatisfy { $0.hasPrefix(".mrepo-tmp-") })
        }
        // Every file under its final name is complete; only temporary files can be partial.
        for name in s.files(under: "partial") where !name.hasPrefix(".mrepo-tmp-") {
            #expect(s.read("partial/\(name)") == s.read("family/math/\(name)"), "\(name) is not the committed file")
        }
        try exportMatches(s, "HEAD", "family/math")
    }

    // MARK: - Leftovers: the next command cleans up

    /// Every `.mrepo-tmp-*` entry under the repository (`.mrepo` included), and the fixed-name
    /// temporary folders of older versions.
    func leftovers(_ s: CLISandbox) -> [String] {
        let all = FileManager.default.enumerator(atPath: s.path("repo"))?.compactMap { $0 as? String } ?? []
        return all.filter { p in
            let name = p.split(separator: "/").last.map(String.init) ?? p
            return name.hasPrefix(".mrepo-tmp-") || [".mrepo/prepared", ".mrepo/merge-candidate", ".mrepo/merge-report.json"].contains(p)
        }.sorted()
    }

    /// base on main; math and code committed on their branches; HEAD on main.
    func family() throws -> CLISandbox {
        let s = try CLISandbox()
        s.environment["MREPO_FSYNC"] = "1"
        try s.makeFamily()
        try s.repository(branches: ["math", "code"])
        return s
    }

    /// The state each writing command starts from, its arguments, and the commits (revision →
    /// folder) that exist before it runs.
    func scenario(_ command: String, point: String) throws -> (CLISandbox, [String], [String: String]) {
        switch command {
        case "commit":
            return (try prepared(), ["commit", "-m", "math"], ["main": "family/base"])
        case "commit-from":
            let s = try prepared()
            try s.ok(["checkout", "-q", "--force", "HEAD"], in: "repo")
            return (s, ["commit", "--from", "../family/math", "-m", "math"], ["main": "family/base"])
        case "switch", "checkout":
            let s = try prepared()
            try s.ok(["commit", "-q", "-m", "math"], in: "repo")
            return (s, command == "switch" ? ["switch", "main"] : ["checkout", "HEAD~1"], ["main": "family/base", "math": "family/math"])
        case "merge":
            let s = try family()
            if point == "merge.candidate" {
                // A gate hook makes the merge write its candidate and report for it first.
                let hook = s.path("repo/.mrepo/hooks/pre-merge-commit")
                try Data("#!/bin/sh\nexit 0\n".utf8).write(to: URL(fileURLWithPath: hook))
                #expect(chmod(hook, 0o755) == 0)
            }
            return (s, ["merge", "math", "code", "--method", "ties", "--set", "density=0.5"],
                    ["main": "family/base", "math": "family/math", "code": "family/code"])
        case "resolve":
            let s = try family()
            let stopped = try s.run(["merge", "math", "code", "--method", "ties", "--max-sign-conflict", "0.3"], in: "repo")
            #expect(stopped.status == 1, "the merge stops on conflicts: \(stopped.stderr)")
            return (s, ["resolve", "*", "--method", "task_arithmetic", "--set", "lambda=0.5"],
                    ["main": "family/base", "math": "family/math", "code": "family/code"])
        case "revert":
            // Nothing after math touched its tensors: an exact revert, which writes base's files back.
            let s = try family()
            try s.ok(["switch", "-q", "math"], in: "repo")
            return (s, ["revert", "HEAD"], ["main": "family/base", "math": "family/math", "code": "family/code"])
        case "revert-arithmetic", "cherry-pick":
            // code committed on top of math changed every tensor math changed: reverting math, or
            // picking math onto code's branch, is task arithmetic through the merge machinery.
            let s = try family()
            try s.ok(["switch", "-q", "-c", "stack", "math"], in: "repo")
            try s.ok(["commit", "-q", "--from", "../family/code", "-m", "code on math"], in: "repo")
            if command == "cherry-pick" {
                try s.ok(["switch", "-q", "code"], in: "repo")
                return (s, ["cherry-pick", "math"], ["main": "family/base", "math": "family/math", "code": "family/code", "stack": "family/code"])
            }
            return (s, ["revert", "HEAD~1"], ["main": "family/base", "math": "family/math", "code": "family/code", "stack": "family/code"])
        case "bisect":
            // main: base; math: base ← math ← code (committed from the code folder). Bisecting from
            // its tip with main good checks out the math commit.
            let s = try family()
            try s.ok(["switch", "-q", "math"], in: "repo")
            try s.ok(["commit", "-q", "--from", "../family/code", "-m", "code on math"], in: "repo")
            return (s, ["bisect", "start", "HEAD", "main"], ["main": "family/base", "math~1": "family/math", "math": "family/code"])
        default:
            let s = try prepared()
            try s.ok(["commit", "-q", "-m", "math"], in: "repo")
            try s.ok(["switch", "-q", "main"], in: "repo")
            try s.ok(["branch", "-q", "-D", "math"], in: "repo")
            return (s, ["gc", "--prune-reflog"], ["main": "family/base"])
        }
    }

    /// A writing command killed at one of its crash points leaves temporary files and folders;
    /// the next command, even a reader, deletes them (their process is gone), and the repository
    /// is intact.
    @Test(arguments: [
        "commit@write:1", "commit@object.written:2", "commit@object.renamed:2", "commit@commit.objects-durable", "commit@commit.recorded",
        "commit-from@object.written:2", "commit-from@commit.recorded", "commit-from@checkout.staged", "commit-from@checkout.file:1",
        "switch@write:2", "switch@checkout.staged", "switch@checkout.file:1",
        "checkout@checkout.staged", "checkout@checkout.file:1",
        "merge@object.written:3", "merge@merge.candidate", "merge@merge.staged", "merge@checkout.file:1",
        "resolve@object.written:1",
        "bisect@checkout.staged", "bisect@checkout.file:1", "bisect@checkout.files-written",
        "revert@write:1", "revert@checkout.staged", "revert@checkout.file:1",
        "revert-arithmetic@object.written:2", "revert-arithmetic@merge.staged", "revert-arithmetic@checkout.file:1",
        "cherry-pick@object.written:2", "cherry-pick@checkout.file:1",
        "gc@gc.recorded", "gc@gc.remove:2",
    ])
    func killedWriterLeavesNothingAfterTheNextCommand(_ killCase: String) throws {
        let parts = killCase.split(separator: "@").map(String.init)
        let (command, point) = (parts[0], parts[1])
        let (s, args, named) = try scenario(command, point: point)
        // The commits as they are before the command (which may move the branches).
        var earlier: [String: String] = [:]
        for (rev, folder) in named {
            earlier[String(try s.ok(["log", "--oneline", "-n", "1", rev], in: "repo").stdout.prefix(12))] = folder
        }
        #expect(earlier.count == named.count)
        let r = try s.run(args, in: "repo", environment: ["MREPO_KILL_AT": point])
        #expect(r.status == -9, "the kill point \(point) was not reached (status \(r.status)): \(r.stderr)")
        if !["gc.remove:2", "gc.recorded", "checkout.files-written"].contains(point) {
            #expect(!leftovers(s).isEmpty, "a kill at \(point) leaves temporary files (else this case tests nothing)")
        }
        // One read-only command.
        try s.ok(["merge", "resolve", "revert-arithmetic", "cherry-pick"].contains(command) ? ["log", "--oneline"] : ["status"], in: "repo")
        #expect(leftovers(s).isEmpty, "left after a kill at \(point) and one more command: \(leftovers(s))")
        try expectIntact(s)
        for (rev, folder) in earlier.sorted(by: { $0.key < $1.key }) {
            try exportMatches(s, rev, folder)
        }
    }

    /// A bisect step killed after some or all of its renames, before HEAD and the mark are
    /// recorded: the working tree holds (part of) the next commit under the old HEAD, a test of it
    /// is refused, and the same command run again finds the files in place and finishes.
    @Test(arguments: ["checkout.file:1", "checkout.files-written"])
    func bisectKilledAfterItsRenamesFinishesWhenRunAgain(point: String) throws {
        let (s, args, _) = try scenario("bisect", point: point)
        let tip = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        let r = try s.run(args, in: "repo", environment: ["MREPO_KILL_AT": point])
        #expect(r.status == -9, "the kill point \(point) was not reached (status \(r.status))")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == tip, "HEAD did not move")
        // Noted as a switch is: status says so, and the next writer puts HEAD's files back first.
        #expect(try s.ok(["status"], in: "repo").stdout.contains("An interrupted bisect left some of its files in the working tree"))
        let good = try s.run(["bisect", "good"], in: "repo")
        #expect(good.status != 0 && good.stderr.contains("not bisecting"), "\(good.stderr)")
        #expect(good.stderr.contains("put back HEAD's files"), "\(good.stderr)")
        try s.ok(args + ["-q"], in: "repo")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == (try s.ok(["rev-parse", "math~1"], in: "repo").stdout))
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        #expect(s.sameFiles("repo", "family/math"))
        try expectIntact(s)
    }

    /// A command that records before it renames (merge, revert, cherry-pick, reset --hard, stash,
    /// stash pop), killed after its record: the working tree holds old files under the new state.
    /// The next writing command finishes the checkout first, so a `commit` then finds nothing to
    /// commit instead of recording the old files (undoing the merge or the revert).
    @Test(arguments: [
        "merge@checkout.staged", "merge@checkout.file:1", "revert@checkout.staged", "revert@checkout.file:1",
        "revert-arithmetic@checkout.staged", "cherry-pick@checkout.staged",
        "reset@checkout.staged", "reset@checkout.file:1", "stash@commit.recorded", "stash@checkout.file:1",
        "commit-from@commit.recorded", "commit-from@checkout.file:1", "merge-no-commit@checkout.staged",
    ])
    func killedAfterItsRecordTheCheckoutIsFinishedByTheNextWriter(_ killCase: String) throws {
        let parts = killCase.split(separator: "@").map(String.init)
        let (command, point) = (parts[0], parts[1])
        let s: CLISandbox
        var args: [String]
        /// The folder the working tree must hold once the checkout is finished (nil: HEAD's export).
        var expected: String?
        switch command {
        case "reset":
            s = try family()
            args = ["reset", "--hard", "math"]
            expected = "family/math"
        case "commit-from":
            (s, args, _) = try scenario(command, point: point)
            expected = "family/math"
        case "merge-no-commit":
            (s, args, _) = try scenario("merge", point: point)
            args += ["--no-commit"]
        case "stash":
            s = try prepared()
            args = ["stash"]
            expected = "family/base"
        default:
            (s, args, _) = try scenario(command, point: point)
        }
        let r = try s.run(args, in: "repo", environment: ["MREPO_KILL_AT": point])
        #expect(r.status == -9, "the kill point \(point) was not reached (status \(r.status)): \(r.stderr)")
        let head = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        if command != "merge-no-commit" {  // whose status compares with HEAD, whose files these are
            #expect(!(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty), "the kill left old files (else this case tests nothing)")
        }
        #expect(FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))

        // A merge --no-commit is continued, committing the candidate the working tree now holds.
        let next = try s.run(command == "merge-no-commit" ? ["merge", "--continue"] : ["commit", "-m", "after the kill"], in: "repo")
        #expect(next.stderr.contains("finished updating the working tree for an interrupted"), "\(next.stderr)")
        if command != "merge-no-commit" {
            #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == head, "no commit of the old files: \(next.stdout)\(next.stderr)")
        } else {
            #expect(next.status == 0, "\(next.stderr)")
        }
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
        if expected == nil {
            try s.ok(["export", "HEAD", "../head"], in: "repo")
            expected = "head"
        }
        #expect(s.sameFiles("repo", expected!), "the working tree holds \(expected!)")
        if command == "stash" { #expect(try s.ok(["stash", "list"], in: "repo").stdout.split(separator: "\n").count == 1) }
        #expect(leftovers(s).isEmpty)
        try expectIntact(s)
    }

    /// A merge killed after its record, then an edit to a file its checkout still has to replace:
    /// the next command is refused (it could commit the old file over the merge), the note stays,
    /// and `checkout --force HEAD` finishes the job, as the message says.
    @Test func anEditInTheWayStopsTheNextCommandUntilCheckoutForce() throws {
        let (s, args, _) = try scenario("merge", point: "checkout.staged")
        let r = try s.run(args, in: "repo", environment: ["MREPO_KILL_AT": "checkout.staged"])
        #expect(r.status == -9)
        let merged = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        let model = s.path("repo/model.safetensors")
        #expect(FileManager.default.fileExists(atPath: model))
        try Data("edited after the kill".utf8).write(to: URL(fileURLWithPath: model))
        let refused = try s.run(["commit", "-m", "edit"], in: "repo")
        expectOneLineError(refused, contains: "an interrupted merge left the working tree partly updated")
        #expect(refused.stderr.contains("mrepo checkout --force HEAD"))
        #expect(!refused.stderr.contains("commit them first"), "the commit is what was refused")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == merged, "nothing committed")
        // Forced commands that fail their own checks touch nothing either.
        expectOneLineError(try s.run(["checkout", "--force", "no-such-rev"], in: "repo"), contains: "no-such-rev")
        expectOneLineError(try s.run(["merge", "--abort"], in: "repo"), contains: "no merge in progress")
        #expect(FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
        #expect(try String(contentsOfFile: model, encoding: .utf8) == "edited after the kill", "the edit is kept")
        try s.ok(["checkout", "-q", "--force", "HEAD"], in: "repo")
        #expect(!FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        try expectIntact(s)
    }

    /// `reset --hard` to a commit without a file, killed after its record: the file is still
    /// there. `checkout --force HEAD` finishes the interrupted checkout (deleting it) before its own,
    /// which compares with HEAD only and would keep it as an untracked file that a commit adds back.
    @Test func checkoutForceFinishesTheDeletionsOfTheInterruptedCommand() throws {
        let s = try prepared()
        try s.ok(["commit", "-q", "-m", "math"], in: "repo")
        try Data("notes".utf8).write(to: URL(fileURLWithPath: s.path("repo/extra.txt")))
        try s.ok(["commit", "-q", "-m", "extra"], in: "repo")
        let r = try s.run(["reset", "--hard", "HEAD~1"], in: "repo", environment: ["MREPO_KILL_AT": "checkout.staged"])
        #expect(r.status == -9)
        #expect(FileManager.default.fileExists(atPath: s.path("repo/extra.txt")))
        try s.ok(["checkout", "-q", "--force", "HEAD"], in: "repo")
        #expect(!FileManager.default.fileExists(atPath: s.path("repo/extra.txt")), "the reset's deletion was finished")
        #expect(!FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        #expect(s.sameFiles("repo", "family/math"))
    }

    /// A forced command whose roll-forward cannot be done now (an untracked folder where the merge
    /// puts its recipe) warns and goes ahead, keeping the note; here its own checkout fails
    /// the same way, so the note survives it, and the next command finishes once the way is clear.
    @Test func aForcedCommandThatCannotFinishKeepsTheNote() throws {
        let (s, args, _) = try scenario("merge", point: "checkout.staged")
        let r = try s.run(args, in: "repo", environment: ["MREPO_KILL_AT": "checkout.staged"])
        #expect(r.status == -9)
        let card = "merge_recipe.yml"
        #expect(!FileManager.default.fileExists(atPath: s.path("repo/\(card)")), "the merge's recipe file is not in place yet")
        try FileManager.default.createDirectory(atPath: s.path("repo/\(card)"), withIntermediateDirectories: true)
        try Data("mine".utf8).write(to: URL(fileURLWithPath: s.path("repo/\(card)/notes.txt")))
        let reset = try s.run(["reset", "--hard"], in: "repo")
        #expect(reset.status != 0)
        #expect(reset.stderr.contains("stays until a checkout succeeds"), "\(reset.stderr)")
        #expect(FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
        #expect(FileManager.default.fileExists(atPath: s.path("repo/\(card)/notes.txt")), "the untracked file is kept")
        try FileManager.default.removeItem(atPath: s.path("repo/\(card)"))
        let next = try s.run(["tag", "after"], in: "repo")
        #expect(next.status == 0 && next.stderr.contains("finished updating the working tree for an interrupted merge"), "\(next.stderr)")
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        try expectIntact(s)
    }

    /// A push into a repository whose merge was killed after its record leaves that repository's
    /// working tree alone: its own next command finishes the checkout.
    @Test func aReceivedPushLeavesTheCheckoutToTheRepository() throws {
        let (s, args, _) = try scenario("merge", point: "checkout.staged")
        try s.ok(["clone", "-q", "repo", "other"])
        let r = try s.run(args, in: "repo", environment: ["MREPO_KILL_AT": "checkout.staged"])
        #expect(r.status == -9)
        let before = try s.ok(["status", "--porcelain"], in: "repo").stdout
        try s.ok(["switch", "-q", "-c", "pushed"], in: "other")
        try s.ok(["push", "-q", "origin", "pushed"], in: "other")
        #expect(FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout == before)
        let next = try s.run(["tag", "after"], in: "repo")
        #expect(next.status == 0 && next.stderr.contains("finished updating the working tree for an interrupted merge"), "\(next.stderr)")
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
    }

    /// `stash pop` applies before it drops: killed during its renames, the entry stays.
    @Test func stashPopKilledDuringItsRenamesKeepsTheEntry() throws {
        let s = try prepared()
        try s.ok(["stash", "-q"], in: "repo")
        let r = try s.run(["stash", "pop"], in: "repo", environment: ["MREPO_KILL_AT": "checkout.file:1"])
        #expect(r.status == -9)
        #expect(try s.ok(["stash", "list"], in: "repo").stdout.split(separator: "\n").count == 1)
        #expect(!FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
        try s.ok(["checkout", "-q", "--force", "HEAD"], in: "repo")
        try s.ok(["stash", "pop", "-q"], in: "repo")
        #expect(s.sameFiles("repo", "family/math"))
        #expect(try s.ok(["stash", "list"], in: "repo").stdout.isEmpty)
        try expectIntact(s)
    }

    /// Killed before its record, a command leaves its note, which the next writer drops without
    /// touching the working tree.
    @Test func killedBeforeItsRecordTheNoteIsDropped() throws {
        let s = try family()
        let before = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        let r = try s.run(["merge", "math", "code", "--method", "ties", "--set", "density=0.5"], in: "repo",
                          environment: ["MREPO_KILL_AT": "merge.staged"])
        #expect(r.status == -9)
        #expect(FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")) == false,
                "merge.staged comes before the note")
        // A note whose record was never made (HEAD is not at its commit).
        let note = #"{"force":false,"from":"\#(String(repeating: "0", count: 64))","operation":"merge","proof":{"head":{"_0":"\#(String(repeating: "1", count: 64))"}},"to":"\#(String(repeating: "2", count: 64))"}"#
        try Data(note.utf8).write(to: URL(fileURLWithPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
        let next = try s.ok(["branch", "other"], in: "repo")
        #expect(!next.stderr.contains("interrupted"))
        #expect(!FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == before)
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        #expect(s.sameFiles("repo", "family/base"))
        // A note that is not one stops writers, naming the file and the way out, which deletes it.
        try Data("{\"bad\": 1}".utf8).write(to: URL(fileURLWithPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
        expectOneLineError(try s.run(["tag", "t1"], in: "repo"), contains: "CHECKOUT_PENDING: not a checkout left by an interrupted command")
        try s.ok(["checkout", "-q", "--force", "HEAD"], in: "repo")
        #expect(!FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
        try s.ok(["tag", "t1"], in: "repo")
    }

    /// `status` says that an interrupted command's checkout is pending (its changes are files the
    /// next writer still has to write), in text and JSON, and leaves the note alone; a note whose
    /// record was never made is not mentioned, and one that cannot be read is.
    @Test func statusMentionsAnInterruptedCheckout() throws {
        let (s, args, _) = try scenario("revert", point: "checkout.staged")
        #expect(try s.run(args, in: "repo", environment: ["MREPO_KILL_AT": "checkout.staged"]).status == -9)
        let text = try s.ok(["status"], in: "repo").stdout
        #expect(text.contains("An interrupted revert left the working tree partly updated: HEAD holds its result; the next command that writes finishes"), "\(text)")
        let json = try s.ok(["status", "--json"], in: "repo").stdout
        let document = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        let interrupted = try #require(document["interrupted_checkout"] as? [String: Any], "\(json)")
        #expect(interrupted["operation"] as? String == "revert")
        #expect(interrupted["recorded"] as? Bool == true)
        #expect(FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")), "status only reads")
        try s.ok(["checkout", "-q", "--force", "HEAD"], in: "repo")
        let clean = try s.ok(["status", "--json"], in: "repo").stdout
        let cleanDocument = try #require(try JSONSerialization.jsonObject(with: Data(clean.utf8)) as? [String: Any])
        #expect(cleanDocument["interrupted_checkout"] is NSNull, "\(clean)")

        let never = #"{"force":false,"from":"\#(String(repeating: "0", count: 64))","operation":"merge","proof":{"head":{"_0":"\#(String(repeating: "1", count: 64))"}},"to":"\#(String(repeating: "2", count: 64))"}"#
        try Data(never.utf8).write(to: URL(fileURLWithPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
        #expect(!(try s.ok(["status"], in: "repo").stdout.contains("interrupted")), "killed before its record: nothing to finish")
        try Data("{\"bad\": 1}".utf8).write(to: URL(fileURLWithPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
        let unreadable = try s.ok(["status"], in: "repo").stdout
        #expect(unreadable.contains("CHECKOUT_PENDING (left by an interrupted command) cannot be read"), "\(unreadable)")
        #expect(unreadable.contains("mrepo checkout --force HEAD"))
    }

    /// `stash` killed during its renames, then the entry dropped in another working tree (the stash
    /// list is shared): the record is still proved by the stash's reflog, so the next command
    /// finishes putting the working tree back to HEAD instead of dropping the note.
    @Test func aStashDroppedElsewhereStillFinishesItsCheckout() throws {
        let s = try prepared()
        try s.ok(["worktree", "add", "-q", "../wt", "main"], in: "repo")
        let r = try s.run(["stash"], in: "repo", environment: ["MREPO_KILL_AT": "checkout.file:1"])
        #expect(r.status == -9)
        #expect(FileManager.default.fileExists(atPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))
        try s.ok(["stash", "drop", "-q"], in: "wt")
        #expect(try s.ok(["stash", "list"], in: "repo").stdout.isEmpty)
        #expect(try s.ok(["status"], in: "repo").stdout.contains("An interrupted stash left the working tree partly updated"))
        let next = try s.ok(["branch", "other"], in: "repo")
        #expect(next.stderr.contains("finished updating the working tree for an interrupted stash"), "\(next.stderr)")
        #expect(s.sameFiles("repo", "family/base"), "the working tree is HEAD's, as after a stash")
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
    }

    /// While a writer holds the lock (its pid alive in `.mrepo/lock`), a note written since it took
    /// the lock is its own, not an interrupted command's: `status` does not call it interrupted.
    @Test func statusLeavesARunningWritersNoteAlone() throws {
        let (s, args, _) = try scenario("revert", point: "checkout.staged")
        #expect(try s.run(args, in: "repo", environment: ["MREPO_KILL_AT": "checkout.staged"]).status == -9)
        #expect(try s.ok(["status"], in: "repo").stdout.contains("An interrupted revert"))
        try Data("\(getpid())\n".utf8).write(to: URL(fileURLWithPath: s.path("repo/.mrepo/lock")))
        #expect(try s.ok(["status"], in: "repo").stdout.contains("An interrupted revert"),
                "a note older than the running writer's lock (one from another working tree, say) is not its own")
        let note = try #require(s.read("repo/.mrepo/CHECKOUT_PENDING"))
        try note.write(to: URL(fileURLWithPath: s.path("repo/.mrepo/CHECKOUT_PENDING")))  // now the running writer's
        #expect(!(try s.ok(["status"], in: "repo").stdout.contains("interrupted")), "a live process holds the lock")
        try Data().write(to: URL(fileURLWithPath: s.path("repo/.mrepo/lock")))
        #expect(try s.ok(["status"], in: "repo").stdout.contains("An interrupted revert"))
    }

    /// A second writer gets "locked by pid N"; readers are not blocked.
    @Test func secondWriterIsRefusedWhileTheFirstHoldsTheLock() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        // A pre-commit hook that announces itself and waits for a go, while its commit holds the lock.
        let ready = s.path("ready"), go = s.path("go")
        #expect(mkfifo(ready, 0o600) == 0 && mkfifo(go, 0o600) == 0)
        let hook = s.path("repo/.mrepo/hooks/pre-commit")
        try Data("#!/bin/sh\necho started > '\(ready)'\nread line < '\(go)'\n".utf8).write(to: URL(fileURLWithPath: hook))
        #expect(chmod(hook, 0o755) == 0)
        try Data("x".utf8).write(to: URL(fileURLWithPath: s.path("repo/notes.txt")))

        let first = Process()
        first.executableURL = URL(fileURLWithPath: CLISandbox.binary)
        first.arguments = ["commit", "-q", "-m", "first"]
        first.currentDirectoryURL = URL(fileURLWithPath: s.path("repo"))
        first.environment = ProcessInfo.processInfo.environment.merging(s.environment) { _, b in b }
        try first.run()
        // Blocks until the hook (inside the first commit, lock held) writes.
        let fd = open(ready, O_RDONLY)
        var buffer = [UInt8](repeating: 0, count: 16)
        let n = read(fd, &buffer, buffer.count)
        close(fd)
        #expect(n > 0 && String(decoding: buffer[0..<max(n, 0)], as: UTF8.self) == "started\n")

        let second = try s.run(["commit", "-m", "second"], in: "repo")
        expectOneLineError(second, contains: "repository is locked by pid \(first.processIdentifier)")
        #expect(try s.run(["log", "--oneline"], in: "repo").status == 0, "readers are not blocked")

        let wfd = open(go, O_WRONLY)
        _ = write(wfd, "go\n", 3)
        close(wfd)
        first.waitUntilExit()
        #expect(first.terminationStatus == 0)
        #expect(try s.ok(["log", "--oneline"], in: "repo").stdout.split(separator: "\n").count == 2)
    }
}
