import Delta
import Foundation
@testable import Repo
import Testing

/// Checkouts over links and local changes (what bisect's and switch's reruns rely on).
@Suite struct CheckoutEdgeTests {
    /// A tracked file replaced by a link to a file that holds the target's bytes is still a local
    /// change: the checkout refuses it rather than leave a link where the target has a file.
    @Test func aLinkIsNotTheFileItPointsTo() throws {
        try withRepository { repo, _ in
            try "X\n".write(toFile: repo.root + "/a", atomically: true, encoding: .utf8)
            try "Y\n".write(toFile: repo.root + "/b", atomically: true, encoding: .utf8)
            let c1 = try repo.commitAll("c1").commit.id
            try FileManager.default.removeItem(atPath: repo.root + "/a")
            try "X\n".write(toFile: repo.root + "/b", atomically: true, encoding: .utf8)
            _ = try repo.commitAll("c2")
            _ = try repo.checkout(c1.hex)
            try FileManager.default.removeItem(atPath: repo.root + "/b")
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/b", withDestinationPath: "a")
            expectThrows(RepoError.dirtyWorktree(operation: "switching", paths: ["b"])) { _ = try repo.checkout("main") }
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: repo.root + "/b") == "a")
            #expect(try String(contentsOfFile: repo.root + "/a", encoding: .utf8) == "X\n")
            // Forced, the link is replaced by the file main records (it would have been left broken).
            _ = try repo.checkout("main", force: true)
            #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: repo.root + "/b")) == nil)
            #expect(try String(contentsOfFile: repo.root + "/b", encoding: .utf8) == "X\n")
            #expect(try repo.status().isClean)
        }
    }

    /// A link whose content equals the tracked file it replaced (status clean, read through) is
    /// still refused by a checkout that removes or rewrites what it points to.
    @Test func aLinkIntoAFileTheCheckoutRemovesIsRefused() throws {
        try withRepository { repo, _ in
            try "X\n".write(toFile: repo.root + "/a", atomically: true, encoding: .utf8)
            try "X\n".write(toFile: repo.root + "/b", atomically: true, encoding: .utf8)
            let c1 = try repo.commitAll("c1").commit.id
            try FileManager.default.removeItem(atPath: repo.root + "/a")
            _ = try repo.commitAll("c2")
            _ = try repo.checkout(c1.hex)
            try FileManager.default.removeItem(atPath: repo.root + "/b")
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/b", withDestinationPath: "a")
            #expect(try repo.status().isClean, "read through, b holds what c1 records")
            expectThrows(RepoError.dirtyWorktree(operation: "switching", paths: ["b"])) { _ = try repo.checkout("main") }
            _ = try repo.reset(to: "main", mode: .hard)
            #expect(try String(contentsOfFile: repo.root + "/b", encoding: .utf8) == "X\n")
            #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: repo.root + "/b")) == nil)
        }
    }

    @Test func checkoutForceHeadStaysOnTheBranch() throws {
        try withRepository { repo, _ in
            let a = try commitStep(repo, 1)
            try "{\"step\": 9}\n".write(toFile: repo.root + "/config.json", atomically: true, encoding: .utf8)
            _ = try repo.checkout("HEAD", force: true)
            #expect(try repo.history.head() == .branch("main", commit: a))
            #expect(try worktreeStep(repo) == 1)
        }
    }
}
