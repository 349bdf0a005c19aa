import Foundation
import Testing

/// `mrepo worktree`: parallel jobs on different branches, each in its own working tree, commit
/// onto their own branch; a branch is checked out in one working tree at a time; list, remove,
/// prune; and a crash in a linked working tree leaves a repository fsck accepts.
@Suite struct WorktreeCLITests {
    /// base committed on main, and two linked working trees on new branches job-a and job-b.
    func twoJobs() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        try s.ok(["worktree", "add", "-q", "-b", "job-a", "../a"], in: "repo")
        let added = try s.ok(["worktree", "add", "-b", "job-b", "../b", "main"], in: "repo")
        #expect(added.stdout == "Prepared working tree \(s.path("b")) (new branch 'job-b' at \(try head(s, "repo")); 5 files written)\n")
        return s
    }

    /// A branch another working tree is on while it has no commits is not given any by `branch`,
    /// `branch -f` or `branch -m` (its working tree would find them under its feet).
    @Test func aBranchUnbornElsewhereIsNotCreatedUnderIt() throws {
        let s = try twoJobs()
        try s.ok(["switch", "-q", "--orphan", "fresh"], in: "a")
        expectOneLineError(try s.run(["branch", "fresh"], in: "repo"), contains: "already checked out")
        expectOneLineError(try s.run(["branch", "-f", "fresh"], in: "repo"), contains: "already checked out")
        try s.ok(["branch", "-q", "spare"], in: "repo")
        expectOneLineError(try s.run(["branch", "-m", "spare", "fresh"], in: "repo"), contains: "already checked out")
        #expect(try s.ok(["status"], in: "a").stdout.contains("On branch fresh (no commits yet)"))
    }

    /// HEAD's commit (12 digits) in a working tree.
    func head(_ s: CLISandbox, _ tree: String) throws -> String {
        String(try s.ok(["log", "--oneline", "-n", "1"], in: tree).stdout.prefix(12))
    }

    /// The subjects of a branch's commits, newest first.
    func subjects(_ s: CLISandbox, _ branch: String) throws -> [String] {
        try s.ok(["log", "--oneline", branch], in: "repo").stdout.split(separator: "\n").map { String($0.dropFirst(13)) }
            .map { $0.hasPrefix("(") ? String($0[$0.index(after: $0.firstIndex(of: ")")!)...].dropFirst()) : $0 }
    }

    func status(_ s: CLISandbox, _ tree: String) throws -> [String: Any] {
        try #require(try s.json(try s.ok(["status", "--json"], in: tree)) as? [String: Any])
    }

    @Test func parallelJobsCommitOntoTheirOwnBranches() throws {
        let s = try twoJobs()
        // Each job commits 4 times in its own working tree, both at once, queueing on the lock.
        var env = ProcessInfo.processInfo.environment
        for (k, v) in s.environment { env[k] = v }
        let jobs = try ["a", "b"].map { name -> Process in
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", """
                for i in 1 2 3 4; do
                    echo "\(name) $i" > step.txt && "$0" commit -q --wait -m "\(name) $i" || exit 1
                done
                """, CLISandbox.binary]
            p.currentDirectoryURL = URL(fileURLWithPath: s.path(name))
            p.environment = env
            try p.run()
            return p
        }
        for p in jobs {
            p.waitUntilExit()
            #expect(p.terminationStatus == 0)
        }
        #expect(try subjects(s, "job-a") == ["a 4", "a 3", "a 2", "a 1", "base"])
        #expect(try subjects(s, "job-b") == ["b 4", "b 3", "b 2", "b 1", "base"])
        #expect(try subjects(s, "main") == ["base"])
        for (tree, branch) in [("a", "job-a"), ("b", "job-b"), ("repo", "main")] {
            let st = try status(s, tree)
            #expect(st["branch"] as? String == branch)
            #expect(st["clean"] as? Bool == true, "\(tree): \(st)")
            #expect((st["head"] as? String)?.hasPrefix(try head(s, tree)) == true)
        }
        try s.ok(["export", "job-a", "../out-a"], in: "repo")
        #expect(s.read("out-a/step.txt") == Data("a 4\n".utf8))
        try s.ok(["fsck"], in: "b")
    }

    @Test func aCommitWaitsForAnotherTreesCommitAndLandsOnItsOwnBranch() throws {
        let s = try twoJobs()
        let base = try head(s, "repo")
        try Data("a\n".utf8).write(to: URL(fileURLWithPath: s.path("a/step.txt")))
        try Data("b\n".utf8).write(to: URL(fileURLWithPath: s.path("b/step.txt")))
        // a holds the store's write lock, its objects written, its commit not yet recorded.
        let a = try RunningCommand(s, ["commit", "-q", "-m", "a"], in: "a", environment: ["MREPO_PAUSE_AT": "commit.objects-durable"])
        #expect(a.waitUntilPaused(at: "commit.objects-durable"))
        expectOneLineError(try s.run(["commit", "-m", "b"], in: "b"), contains: "repository is locked by pid \(a.process.processIdentifier)")
        let b = try RunningCommand(s, ["commit", "-q", "--wait", "-m", "b"], in: "b", environment: [:])
        a.resume()
        #expect(a.finish().status == 0)
        let rb = b.finish()
        #expect(rb.status == 0, "\(rb.stderr)")
        #expect(try subjects(s, "job-a") == ["a", "base"])
        #expect(try subjects(s, "job-b") == ["b", "base"])
        #expect(try head(s, "repo") == base)
        #expect(try status(s, "a")["clean"] as? Bool == true)
        #expect(try status(s, "b")["clean"] as? Bool == true)
        // Each HEAD's reflog is its own.
        let reflogA = try s.ok(["reflog", "HEAD"], in: "a").stdout
        #expect(reflogA.contains("worktrees/a/HEAD") && reflogA.contains("commit: a") && !reflogA.contains("commit: b"))
        #expect(!(try s.ok(["reflog", "HEAD"], in: "repo").stdout.contains("commit: a")))
    }

    @Test func aBranchCheckedOutElsewhereIsRefused() throws {
        let s = try twoJobs()
        let inUse = "branch 'job-a' is already checked out in the working tree at \(s.path("a"))"
        expectOneLineError(try s.run(["switch", "job-a"], in: "repo"), contains: inUse)
        expectOneLineError(try s.run(["checkout", "job-a"], in: "b"), contains: inUse)
        expectOneLineError(try s.run(["worktree", "add", "../c", "job-a"], in: "repo"), contains: inUse)
        #expect(!FileManager.default.fileExists(atPath: s.path("c")))
        expectOneLineError(try s.run(["switch", "main"], in: "a"), contains: "checked out in the working tree at \(s.path("repo"))")
        expectOneLineError(try s.run(["branch", "-D", "job-a"], in: "repo"), contains: "it is checked out in the working tree at \(s.path("a"))")
        expectOneLineError(try s.run(["worktree", "add", "-b", "x", "--detach", "../c"], in: "repo"), status: 64, contains: "give one of them")
        expectOneLineError(try s.run(["worktree", "add", "../family"], in: "repo"), contains: "is not empty")
        #expect(try s.ok(["branch"], in: "repo").stdout.contains("+ job-a"))
        // As in git, --force checks it out a second time, and a detached HEAD never conflicts.
        try s.ok(["worktree", "add", "-q", "--force", "../c", "job-a"], in: "repo")
        try s.ok(["worktree", "add", "-q", "--detach", "../d", "job-a"], in: "repo")
        #expect(try status(s, "d")["branch"] is NSNull)
    }

    @Test func listRemoveAndPrune() throws {
        let s = try twoJobs()
        let list = try #require(try s.json(try s.ok(["worktree", "list", "--json"], in: "a")) as? [[String: Any]])
        #expect(list.map { $0["path"] as? String } == [s.path("repo"), s.path("a"), s.path("b")])
        #expect(list.map { $0["branch"] as? String } == ["main", "job-a", "job-b"])
        #expect(list.map { $0["current"] as? Bool } == [false, true, false])
        #expect(try s.ok(["worktree", "list"], in: "repo").stdout.split(separator: "\n").count == 3)

        try Data("notes\n".utf8).write(to: URL(fileURLWithPath: s.path("a/notes.txt")))
        expectOneLineError(try s.run(["worktree", "remove", "../a"], in: "repo"), contains: "has uncommitted changes in notes.txt")
        expectOneLineError(try s.run(["worktree", "remove", "."], in: "repo"), contains: "is the main working tree")
        expectOneLineError(try s.run(["worktree", "remove", "../family"], in: "repo"), contains: "is not a working tree of this repository")
        #expect(s.read("a/notes.txt") != nil)
        #expect(try s.ok(["worktree", "remove", "--force", "../a"], in: "repo").stdout == "Removed working tree \(s.path("a"))\n")
        #expect(!FileManager.default.fileExists(atPath: s.path("a")))
        try s.ok(["switch", "-q", "job-a"], in: "b")

        // A working tree deleted by hand keeps its branch until it is pruned.
        try FileManager.default.removeItem(atPath: s.path("b"))
        #expect(try s.ok(["worktree", "list"], in: "repo").stdout.contains("prunable"))
        expectOneLineError(try s.run(["switch", "job-a"], in: "repo"), contains: "its folder is gone: 'mrepo worktree prune' forgets it")
        #expect(try s.ok(["fsck"], in: "repo").stdout.contains("warning: working tree 'b'"))
        #expect(try s.ok(["worktree", "prune"], in: "repo").stdout == "Forgot working tree \(s.path("b")) ('b')\n")
        try s.ok(["switch", "-q", "job-a"], in: "repo")
        #expect(try s.ok(["worktree", "list"], in: "repo").stdout.split(separator: "\n").count == 1)
        let fsck = try s.ok(["fsck"], in: "repo")
        #expect(!fsck.stdout.contains("warning"), "\(fsck.stdout)")
    }

    @Test func gcKeepsALinkedTreesDetachedHead() throws {
        let s = try twoJobs()
        try s.ok(["commit", "-q", "--from", "../family/math", "-m", "math"], in: "a")
        let math = try head(s, "a")
        try s.ok(["checkout", "-q", math], in: "a")
        try s.ok(["branch", "-q", "-D", "job-a"], in: "repo")
        let gc = try s.ok(["gc", "--prune-reflog"], in: "repo")
        #expect(gc.stdout.hasPrefix("removed 0 commits"), "\(gc.stdout)")
        try s.ok(["export", math, "../out"], in: "b")
        #expect(s.sameFiles("out", "family/math"))
        try s.ok(["fsck"], in: "repo")
    }

    /// A SIGKILL during a commit in a linked working tree: fsck accepts the repository from every
    /// working tree, nothing else moved, and the commit run again lands on the right branch.
    @Test(arguments: ["object.written:2", "commit.objects-durable", "commit.recorded", "checkout.staged"])
    func commitKilledInALinkedTree(point: String) throws {
        let s = try twoJobs()
        s.environment["MREPO_FSYNC"] = "1"
        let base = try head(s, "repo")
        let fromFolder = point == "checkout.staged"
        if !fromFolder {
            for name in s.files(under: "family/math") {
                try? FileManager.default.removeItem(atPath: s.path("a/\(name)"))
                try FileManager.default.copyItem(atPath: s.path("family/math/\(name)"), toPath: s.path("a/\(name)"))
            }
        }
        let args = fromFolder ? ["commit", "--from", "../family/math", "-m", "math"] : ["commit", "-m", "math"]
        let r = try s.run(args, in: "a", environment: ["MREPO_KILL_AT": point])
        #expect(r.status == -9, "the kill point \(point) was not reached (status \(r.status))")
        for tree in ["repo", "a", "b"] {
            let fsck = try s.run(["fsck"], in: tree)
            #expect(fsck.status == 0 && !fsck.stdout.contains("error:"), "fsck in \(tree): \(fsck.stdout)\(fsck.stderr)")
        }
        #expect(try subjects(s, "main") == ["base"] && subjects(s, "job-b") == ["base"])
        #expect(try head(s, "repo") == base && head(s, "b") == base)
        let leftovers = FileManager.default.enumerator(atPath: s.path("a"))?.compactMap { $0 as? String }
            .filter { $0.split(separator: "/").last?.hasPrefix(".mrepo-tmp-") == true } ?? []
        #expect(leftovers.isEmpty, "the commands after the crash delete its temporary files: \(leftovers)")
        if point == "commit.recorded" || fromFolder {
            #expect(try subjects(s, "job-a") == ["math", "base"])
            try s.ok(["checkout", "-q", "--force", "job-a"], in: "a")
        } else {
            #expect(try subjects(s, "job-a") == ["base"])
            try s.ok(["commit", "-q", "-m", "math"], in: "a")
        }
        #expect(try subjects(s, "job-a") == ["math", "base"])
        #expect(try status(s, "a")["clean"] as? Bool == true)
        #expect(s.sameFiles("a", "family/math"))
        try s.ok(["gc", "-q"], in: "b")
        let fsck = try s.ok(["fsck"], in: "repo")
        #expect(!fsck.stdout.contains("warning:"), "gc leaves nothing behind: \(fsck.stdout)")
    }

    /// A SIGKILL during `worktree add` or `remove`: the next commands clean up, fsck accepts the
    /// repository, and running the command again (after `prune` for remove) succeeds. A kill never
    /// leaves a folder of files that no working tree records (before, one after the files were
    /// written and before the registration did): before the registration nothing is left, after
    /// it the working tree is registered and `checkout --force HEAD` in it writes what is missing.
    @Test(arguments: ["worktree.staged", "worktree.linked", "checkout.staged", "checkout.file", "worktree.files-written", "worktree.moved-away"])
    func worktreeCommandKilled(point: String) throws {
        let s = try twoJobs()
        s.environment["MREPO_FSYNC"] = "1"
        let removing = point == "worktree.moved-away"
        let args = removing ? ["worktree", "remove", "../b"] : ["worktree", "add", "-b", "job-c", "../c"]
        let r = try s.run(args, in: "repo", environment: ["MREPO_KILL_AT": point])
        #expect(r.status == -9, "the kill point \(point) was not reached (status \(r.status))")
        let fsck = try s.run(["fsck"], in: "repo")
        #expect(fsck.status == 0 && !fsck.stdout.contains("error:"), "\(fsck.stdout)\(fsck.stderr)")
        let around = try FileManager.default.contentsOfDirectory(atPath: s.root).filter { $0.hasPrefix(".mrepo-tmp-") }
        #expect(around.isEmpty, "the next command deletes the renamed folder: \(around)")
        switch point {
        case "worktree.staged":
            // Nothing under a final name: the folder the add made is gone with its temporary files.
            #expect(!FileManager.default.fileExists(atPath: s.path("c")))
            #expect(try s.run(["rev-parse", "--verify", "-q", "job-c"], in: "repo").status != 0, "no branch was created")
        case "worktree.linked", "checkout.staged", "checkout.file", "worktree.files-written":
            // Registered: listed, and complete once checked out again.
            #expect(try s.ok(["worktree", "list"], in: "repo").stdout.contains(s.path("c")))
            try s.ok(["checkout", "-q", "--force", "HEAD"], in: "c")
            #expect(try status(s, "c")["clean"] as? Bool == true)
            #expect(s.sameFiles("c", "a"), "the same commit as job-a's working tree")
            #expect(try s.ok(["worktree", "list"], in: "repo").stdout.split(separator: "\n").count == 4)
            try s.ok(["fsck"], in: "repo")
            return
        default:
            #expect(!FileManager.default.fileExists(atPath: s.path("b")))
            #expect(try s.ok(["worktree", "list"], in: "repo").stdout.contains("prunable"))
            try s.ok(["worktree", "prune", "-q"], in: "repo")
        }
        try s.ok(removing ? ["worktree", "list"] : ["worktree", "add", "-q", "-b", "job-c", "../c"], in: "repo")
        #expect(try s.ok(["worktree", "list"], in: "repo").stdout.split(separator: "\n").count == (removing ? 2 : 4))
        try s.ok(["fsck"], in: "repo")
    }
}
