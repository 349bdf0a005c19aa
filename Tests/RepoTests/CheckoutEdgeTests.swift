import Delta
import Foundation
@testable import Repo
import Testing

/// Checkouts over links and local changes (what bisect's and switch's reruns rely on).
@Suite struct CheckoutEdgeTests {
    /// Writes a small text file of the working tree.
    func write(_ text: String, _ name: String, in repo: Repository) throws {
        try text.write(toFile: repo.root + "/" + name, atomically: true, encoding: .utf8)
    }

    /// Replaces a working-tree file by a symbolic link to `target`.
    func relink(_ name: String, to target: String, in repo: Repository) throws {
        try FileManager.default.removeItem(atPath: repo.root + "/" + name)
        try FileManager.default.createSymbolicLink(atPath: repo.root + "/" + name, withDestinationPath: target)
    }

    /// A tracked file replaced by a link to a file that holds the target's bytes is still a local
    /// change: the checkout refuses it rather than leave a link where the target has a file.
    @Test func aLinkIsNotTheFileItPointsTo() throws {
        try withRepository { repo, _ in
            try write("X\n", "a", in: repo)
            try write("Y\n", "b", in: repo)
            let c1 = try repo.commitAll("c1").commit.id
            try FileManager.default.removeItem(atPath: repo.root + "/a")
            try write("X\n", "b", in: repo)
            _ = try repo.commitAll("c2")
            _ = try repo.checkout(c1.hex)
            try relink("b", to: "a", in: repo)
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
            try write("X\n", "a", in: repo)
            try write("X\n", "b", in: repo)
            let c1 = try repo.commitAll("c1").commit.id
            try FileManager.default.removeItem(atPath: repo.root + "/a")
            _ = try repo.commitAll("c2")
            _ = try repo.checkout(c1.hex)
            try relink("b", to: "a", in: repo)
            #expect(try repo.status().isClean, "read through, b holds what c1 records")
            expectThrows(RepoError.unsafePath("b", reason: "is a symbolic link to a file this checkout rewrites or removes, so it would read other "
                + "bytes after it; replace the link by a copy of the file, or use --force to put the recorded file there")) { _ = try repo.checkout("main") }
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: repo.root + "/b") == "a")
            _ = try repo.reset(to: "main", mode: .hard)
            #expect(try String(contentsOfFile: repo.root + "/b", encoding: .utf8) == "X\n")
            #expect((try? FileManager.default.destinationOfSymbolicLink(atPath: repo.root + "/b")) == nil)
        }
    }

    /// A "latest" link to a checkpoint whose own path the checkout rewrites is replaced as before
    /// (it used to be refused), and a link through another link or a folder link is resolved on disk.
    @Test func linksTheCheckoutReplacesAnywayAndLinksThroughLinks() throws {
        try withRepository { repo, _ in
            try write("1\n", "step", in: repo)
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/latest", withDestinationPath: "step")
            _ = try repo.commit(CommitOptions(message: "c1", author: testAuthor, followSymlinks: true))
            _ = try repo.switchBranch("feat", create: true)
            try FileManager.default.removeItem(atPath: repo.root + "/step")
            try write("2\n", "step", in: repo)
            _ = try repo.commit(CommitOptions(message: "c2", author: testAuthor, followSymlinks: true))
            #expect(try repo.status().isClean)
            _ = try repo.switchBranch("main")
            #expect(try String(contentsOfFile: repo.root + "/latest", encoding: .utf8) == "1\n")
            #expect(try repo.status().isClean)

            // L → M → a (a link to a link), and K → here/a through a link to the folder: both read
            // a, which feat rewrites, at paths both trees record alike.
            _ = try repo.switchBranch("links", create: true)
            try write("1\n", "L", in: repo)
            try write("1\n", "K", in: repo)
            _ = try repo.commitAll("L and K")
            _ = try repo.switchBranch("feat2", create: true)
            try write("2\n", "step", in: repo)
            _ = try repo.commitAll("step 2")
            _ = try repo.switchBranch("links")
            for name in ["L", "K"] { try FileManager.default.removeItem(atPath: repo.root + "/" + name) }
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/M", withDestinationPath: "step")
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/L", withDestinationPath: "M")
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/here", withDestinationPath: ".")
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/K", withDestinationPath: "here/step")
            let first = try refusal(repo, switchingTo: "feat2")
            #expect(first.hasPrefix("K: is a symbolic link to a file this checkout rewrites"), "\(first)")
            #expect(try repo.history.head().branchName == "links")
            // Without K, L alone (a link to a link) is refused too.
            try FileManager.default.removeItem(atPath: repo.root + "/K")
            try write("1\n", "K", in: repo)
            #expect(try refusal(repo, switchingTo: "feat2").hasPrefix("L: is a symbolic link"))
        }
    }

    /// A repository made inside a Hugging Face cache snapshot (its files are links into
    /// ../../blobs): a switch replaces a changed file's link by the recorded file (it had been
    /// refused as "a symbolic link in the working tree", even with --force).
    @Test func aRepositoryInsideAHuggingFaceSnapshotSwitches() throws {
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.path + "/mrepo-hf-\(UUID().uuidString.prefix(8))"
        defer { try? fm.removeItem(atPath: dir) }
        let snapshot = dir + "/models--org--tiny/snapshots/abc123"
        try fm.createDirectory(atPath: dir + "/models--org--tiny/blobs", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: snapshot, withIntermediateDirectories: true)
        try "one\n".write(toFile: dir + "/models--org--tiny/blobs/h1", atomically: true, encoding: .utf8)
        try "two\n".write(toFile: dir + "/models--org--tiny/blobs/h2", atomically: true, encoding: .utf8)
        try fm.createSymbolicLink(atPath: snapshot + "/config.json", withDestinationPath: "../../blobs/h1")
        let repo = try Repository.initialize(at: snapshot)
        let first = try repo.commitAll("one").commit.id
        try fm.removeItem(atPath: snapshot + "/config.json")
        try fm.createSymbolicLink(atPath: snapshot + "/config.json", withDestinationPath: "../../blobs/h2")
        _ = try repo.commitAll("two")
        #expect(try repo.status().isClean)
        _ = try repo.checkout(first.hex)
        #expect(try String(contentsOfFile: snapshot + "/config.json", encoding: .utf8) == "one\n")
        #expect(try String(contentsOfFile: dir + "/models--org--tiny/blobs/h2", encoding: .utf8) == "two\n", "the blob is never written")
        #expect(try repo.status().isClean)
    }

    /// a → b → c: a checkout that rewrites b (the middle link's path) but records a alike is
    /// refused, though what a finally reads (c) does not change; a restore of a path that is a link
    /// refuses rather than write the file the link points to.
    @Test func aChainOfLinksIsWalkedHopByHop() throws {
        try withRepository { repo, _ in
            for (name, text) in [("a", "1\n"), ("b", "2\n"), ("c", "1\n")] {
                try text.write(toFile: repo.root + "/" + name, atomically: true, encoding: .utf8)
            }
            _ = try repo.commitAll("C-like")
            _ = try repo.switchBranch("C", create: true)
            _ = try repo.switchBranch("main")
            try write("1\n", "b", in: repo)
            _ = try repo.commitAll("main")
            for name in ["a", "b"] { try FileManager.default.removeItem(atPath: repo.root + "/" + name) }
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/b", withDestinationPath: "c")
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/a", withDestinationPath: "b")
            #expect(try repo.status().isClean)
            let message = try refusal(repo, switchingTo: "C")
            #expect(message.hasPrefix("a: is a symbolic link to a file this checkout rewrites"), "\(message)")
            #expect(message.hasSuffix("or use --force to put the recorded file there"))
            // restore names the link, not the file it points to.
            try write("9\n", "c", in: repo)
            expectThrows(RepoError.self) { _ = try repo.restore(paths: ["a"], source: nil) }
            #expect(try String(contentsOfFile: repo.root + "/c", encoding: .utf8) == "9\n", "the file a link points to is not written")
        }
    }

    /// A path typed through a folder link inside the working tree is refused (it named another file
    /// than the one typed, whose local change restore then discarded).
    @Test func aPathBeyondALinkIsRefused() throws {
        try withRepository { repo, _ in
            let fm = FileManager.default
            for folder in ["sub", "sub2"] {
                try fm.createDirectory(atPath: repo.root + "/" + folder, withIntermediateDirectories: true)
                try write("t1\n", "\(folder)/a.txt", in: repo)
            }
            _ = try repo.commitAll("c")
            try write("local\n", "sub2/a.txt", in: repo)
            try fm.moveItem(atPath: repo.root + "/sub", toPath: repo.root + "/sub.bak")
            try fm.createSymbolicLink(atPath: repo.root + "/sub", withDestinationPath: "sub2")
            expectThrows(RepoError.invalidArgument("'sub/a.txt' is beyond a symbolic link inside the working tree; name the path the link leads to")) {
                _ = try repo.rootRelative(["sub/a.txt"], from: repo.root)
            }
            #expect(try repo.rootRelative(["sub2/a.txt"], from: repo.root) == ["sub2/a.txt"])
            #expect(try String(contentsOfFile: repo.root + "/sub2/a.txt", encoding: .utf8) == "local\n")
        }
    }

    @Test func checkoutForceHeadStaysOnTheBranch() throws {
        try withRepository { repo, _ in
            let a = try commitStep(repo, 1)
            try write("{\"step\": 9}\n", "config.json", in: repo)
            _ = try repo.checkout("HEAD", force: true)
            #expect(try repo.history.head() == .branch("main", commit: a))
            #expect(try worktreeStep(repo) == 1)
        }
    }
}

/// The one-line message of the error a switch to `branch` fails with ("" when it succeeds).
private func refusal(_ repo: Repository, switchingTo branch: String) throws -> String {
    do {
        _ = try repo.switchBranch(branch)
        return ""
    } catch let error as RepoError {
        return error.description
    }
}
