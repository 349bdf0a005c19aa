import Delta
import Foundation
import MrepoTestSupport
import Repo
import Testing

/// Symbolic links in a working tree: `commit` stores them only with `--dereference`, but the
/// commands that compare the working tree read through them, list what they cannot read, and a
/// checkout replaces a link without ever writing through it.
@Suite struct WorktreeLinkTests {
    /// main and side, each with its own `model.safetensors`; HEAD on side.
    func twoBranches(_ repo: Repository) throws {
        try writeFloats([("w", [1, 2])], to: repo.root + "/model.safetensors")
        _ = try repo.commitAll("one")
        _ = try repo.switchBranch("side", create: true)
        try writeFloats([("w", [3, 4])], to: repo.root + "/model.safetensors")
        _ = try repo.commitAll("two")
    }

    @Test func aTreeCommittedThroughALinkComparesCleanAndSwitchesBothWays() throws {
        try withRepository { repo, dir in
            try writeFloats([("w", [1, 2, 3])], to: dir + "/outside/model.safetensors")
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/model.safetensors", withDestinationPath: dir + "/outside/model.safetensors")
            try writeFile("{}", to: repo.root + "/config.json")
            let first = try repo.commitAll("through the link", followSymlinks: true).commit.id
            // Before, status refused the link even though the commit had stored what it points to.
            #expect(try repo.status().isClean)
            _ = try repo.switchBranch("side", create: true)

            // The file the link points to changes: status says so, through the link, and names it.
            try writeFloats([("w", [1, 2, 4])], to: dir + "/outside/model.safetensors")
            let changed = try repo.status().changes
            #expect(changed.map(\.path) == ["model.safetensors"])
            #expect(changed.first?.kind == .modified)
            #expect(changed.first?.changedTensors == 1)
            #expect(changed.first?.linkTarget == dir + "/outside/model.safetensors")
            #expect(changed.first?.reason == nil)
            let second = try repo.commitAll("side", followSymlinks: true).commit.id
            #expect(try repo.status().isClean)

            // Switching to main replaces the link with main's file; what the link pointed to stays.
            let pointedTo = try readFile(dir + "/outside/model.safetensors")
            let back = try repo.switchBranch("main")
            #expect(back.writtenFiles == 1)
            #expect(FileStat.of(repo.root + "/model.safetensors")?.isSymlink == false)
            #expect(try readFile(dir + "/outside/model.safetensors") == pointedTo)
            #expect(try repo.status().isClean)
            #expect(try repo.tree(of: first).file(at: "model.safetensors") != repo.tree(of: second).file(at: "model.safetensors"))
            #expect(try repo.fsck().isClean)
        }
    }

    @Test func linksThatAreNotFilesAreListedWithTheReasonAndLeftAlone() throws {
        try withRepository { repo, dir in
            try twoBranches(repo)
            try FileManager.default.createDirectory(atPath: dir + "/folder", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/data", withDestinationPath: dir + "/folder")
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/dangling", withDestinationPath: "nowhere")
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/up", withDestinationPath: "..")

            let status = try repo.status()
            #expect(status.changes.map(\.path) == ["dangling", "data", "up"])
            #expect(status.changes.allSatisfy { $0.kind == .added })
            #expect(status.changes.first?.reason == "a symbolic link to nothing (a broken link) (nowhere), which a tree cannot store; list it in .mrepoignore to hide it")
            #expect(status.changes.last?.reason == "a symbolic link to a folder (..), which a tree cannot store; list it in .mrepoignore to hide it")
            #expect(status.changes.map(\.linkTarget) == ["nowhere", dir + "/folder", ".."])

            // Untracked, and in no tree's way: a switch leaves them as they are.
            #expect(try repo.switchBranch("main").writtenFiles == 1)
            #expect(FileStat.of(repo.root + "/data")?.isSymlink == true)
            #expect(FileStat.of(repo.root + "/up")?.isSymlink == true)
            // commit still refuses them, naming the first.
            expectThrows(RepoError.self) { try repo.commitAll("links") } matching: { if case .unsafePath("dangling", _) = $0 { true } else { false } }
            try writeFile("dangling\ndata\nup\n", to: repo.root + "/.mrepoignore")
            #expect(try repo.status().changes.map(\.path) == [".mrepoignore"])
        }
    }

    @Test func aLinkWhereTheCheckoutWritesAFileBlocksUnlessForced() throws {
        try withRepository { repo, dir in
            try twoBranches(repo)
            // The tracked file is replaced by a link to a folder: a change, unreadable as a file.
            try FileManager.default.createDirectory(atPath: dir + "/folder", withIntermediateDirectories: true)
            try writeFile("keep", to: dir + "/folder/x.txt")
            unlink(repo.root + "/model.safetensors")
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/model.safetensors", withDestinationPath: dir + "/folder")
            let change = try #require(try repo.status().changes.first)
            #expect(change.kind == .modified)
            #expect(change.reason?.hasPrefix("a symbolic link to a folder") == true)
            expectThrows(RepoError.dirtyWorktree(operation: "switching", paths: ["model.safetensors"])) { _ = try repo.switchBranch("main") }
            #expect(try repo.history.head().branchName == "side")
            #expect(FileStat.of(repo.root + "/model.safetensors")?.isSymlink == true)

            // --force replaces the link (not the folder it points to) with main's file.
            _ = try repo.switchBranch("main", force: true)
            #expect(FileStat.of(repo.root + "/model.safetensors")?.isRegular == true)
            #expect(try readFile(dir + "/folder/x.txt") == Array("keep".utf8))
            #expect(try repo.status().isClean)
            #expect(try repo.fsck().isClean)
        }
    }
}
