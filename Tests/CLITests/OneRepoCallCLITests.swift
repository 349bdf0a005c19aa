import Foundation
import Testing

/// Commands that create and move refs do it in one Repo call and one transaction: a refusal leaves
/// no half (a branch created without the switch to it).
@Suite struct OneRepoCallCLITests {
    /// `repo` with `base` committed on main, and a linked working tree `wt` on an unborn branch `x`.
    func sandbox() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: [])
        try s.ok(["worktree", "add", "-q", "../wt"], in: "repo")
        try s.ok(["switch", "-q", "--orphan", "x"], in: "wt")
        return s
    }

    @Test(arguments: [["switch", "-c", "x"], ["checkout", "-b", "x"], ["switch", "-c", "x", "main"]])
    func aRefusedNewBranchSwitchCreatesNoBranch(_ arguments: [String]) throws {
        let s = try sandbox()
        let before = try s.ok(["reflog", "--json"], in: "repo").stdout
        expectOneLineError(try s.run(arguments, in: "repo"), contains: "already checked out")
        #expect(try s.ok(["branch", "--json"], in: "repo").stdout.contains("\"x\"") == false)
        #expect(try s.run(["rev-parse", "x"], in: "repo").status != 0)
        #expect(try s.ok(["reflog", "--json"], in: "repo").stdout == before, "nothing was logged")
        #expect(try s.ok(["rev-parse", "--abbrev-ref", "HEAD"], in: "repo").stdout.hasPrefix("main"))
        // Once the other working tree leaves it, the same command creates and switches in one step.
        try s.ok(["switch", "-q", "wt"], in: "wt")
        try s.ok(arguments + ["-q"], in: "repo")
        #expect(try s.ok(["rev-parse", "--abbrev-ref", "HEAD"], in: "repo").stdout.hasPrefix("x"))
    }

    @Test func tagDeleteReportsTheCommitItNamed() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: [])
        try s.ok(["tag", "-q", "v1"], in: "repo")
        let head = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let deleted = try #require(try s.json(try s.ok(["tag", "-d", "v1", "--json"], in: "repo")) as? [String: Any])
        #expect(deleted["deleted"] as? String == "v1" && deleted["commit"] as? String == head)
        expectOneLineError(try s.run(["tag", "-d", "v1"], in: "repo"), contains: "v1")
    }
}
