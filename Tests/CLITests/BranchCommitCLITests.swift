import Dispatch
import Foundation
import Synchronization
import Testing

/// `commit --from DIR --branch B`: parallel jobs, one per branch, each committing its checkpoint
/// without touching HEAD or the working tree.
@Suite struct BranchCommitCLITests {
    @Test func concurrentCommitsLandOnTheirOwnBranches() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        func headID() throws -> String? {
            let log = try #require(try s.json(try s.ok(["log", "--json", "-n", "1"], in: "repo")) as? [[String: Any]])
            return log.first?["id"] as? String
        }
        let base = try #require(try headID())

        // Four jobs at once; the same checkpoint twice (its second commit finds everything stored).
        let jobs = [("math", "math"), ("code", "code"), ("chat", "chat"), ("math-again", "math")]
        let results = Mutex<[String: CLIResult]>([:])
        let failures = Mutex<[String]>([])
        // `run` only reads the sandbox's settings; each call has its own process and output files.
        nonisolated(unsafe) let sandbox = s
        DispatchQueue.concurrentPerform(iterations: jobs.count) { i in
            let (branch, folder) = jobs[i]
            do {
                let r = try sandbox.run(["commit", "--from", "../family/\(folder)", "--branch", branch, "--wait", "-m", "\(branch) run"], in: "repo")
                results.withLock { $0[branch] = r }
            } catch {
                failures.withLock { $0.append("\(branch): \(error)") }
            }
        }
        #expect(failures.withLock { $0 }.isEmpty)
        let byBranch = results.withLock { $0 }
        for (branch, folder) in jobs {
            let r = try #require(byBranch[branch])
            #expect(r.status == 0, "\(branch): \(r.stderr)")
            #expect(r.stdout.hasPrefix("[\(branch) "), "\(branch): \(r.stdout)")
            // Each branch holds one commit on top of the base, with its own message and files.
            let log = try #require(try s.json(try s.ok(["log", "--json", branch], in: "repo")) as? [[String: Any]])
            #expect(log.count == 2)
            #expect(log.first?["message"] as? String == "\(branch) run")
            #expect(log.first?["parents"] as? [String] == [base])
            try s.ok(["export", branch, "../out-\(branch)"], in: "repo")
            #expect(s.sameFiles("out-\(branch)", "family/\(folder)"), "\(branch)")
        }
        // HEAD and the working tree are where they were.
        let status = try #require(try s.json(try s.ok(["status", "--json"], in: "repo")) as? [String: Any])
        #expect(status["branch"] as? String == "main")
        #expect(try headID() == base)
        #expect(s.sameFiles("repo", "family/base"))
        #expect(try s.ok(["status", "--short"], in: "repo").stdout.isEmpty)
        try s.ok(["fsck"], in: "repo")
    }

    @Test func branchCommitsRefuseWhatTheyCannotDo() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        try s.ok(["tag", "v1"], in: "repo")
        expectOneLineError(try s.run(["commit", "--branch", "x", "-m", "m"], in: "repo"), status: 64, contains: "--branch needs --from DIR")
        expectOneLineError(try s.run(["commit", "--from", "../family/math", "--branch", "x", "--force", "-m", "m"], in: "repo"),
                           status: 64, contains: "--force has no effect with --branch")
        expectOneLineError(try s.run(["commit", "--from", "../family/math", "--branch", "main", "-m", "m"], in: "repo"),
                           contains: "'main' is the current branch")
        expectOneLineError(try s.run(["commit", "--from", "../family/math", "--branch", "v1", "-m", "m"], in: "repo"),
                           contains: "'v1' is a tag, not a branch")
        expectOneLineError(try s.run(["commit", "--from", "../family/math", "--branch", "bad..name", "-m", "m"], in: "repo"),
                           contains: "bad..name")
        let branches = try #require(try s.json(try s.ok(["branch", "--json"], in: "repo")) as? [[String: Any]])
        #expect(branches.map { $0["name"] as? String } == ["main"])
        // -q prints nothing, the note about the branch it created included.
        let quiet = try s.ok(["commit", "-q", "--from", "../family/math", "--branch", "math", "-m", "m"], in: "repo")
        #expect(quiet.stdout.isEmpty && quiet.stderr.isEmpty, "\(quiet.stdout)\(quiet.stderr)")
        #expect(try s.ok(["commit", "--from", "../family/code", "--branch", "code", "-m", "m"], in: "repo").stderr.contains("created branch 'code'"))
    }
}
