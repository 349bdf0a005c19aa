import Delta
import Foundation
import ModelFactory
@testable import Repo
import Testing

@Suite struct RepositoryWorktreeTests {
    // MARK: - status

    @Test func statusIsCleanAfterACommit() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            let changes = try repo.status().changes
            #expect(changes.count == 5)
            let allAdded = changes.allSatisfy { $0.kind == .added }
            #expect(allAdded, "\(changes)")
            let result = try repo.commitAll("base")
            let status = try repo.status()
            #expect(status.isClean)
            #expect(status.head == .branch("main", commit: result.commit.id))
        }
    }

    @Test func statusReportsAddedModifiedAndDeletedFiles() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            try repo.commitAll("base")
            try repo.writeModel(.light("math", seed: 11))  // rewrites model.safetensors and README.md
            try FileManager.default.removeItem(atPath: repo.root + "/tokenizer.json")
            try writeFile("new", to: repo.root + "/notes/new.txt")
            try writeFloats([("a", [1]), ("b", [2])], to: repo.root + "/adapter.safetensors")

            let changes = try repo.status().changes
            #expect(changes.map(\.path) == ["README.md", "adapter.safetensors", "model.safetensors", "notes/new.txt", "tokenizer.json"])
            #expect(changes.map(\.kind) == [.modified, .added, .modified, .added, .deleted])
            let model = changes[2]
            let tensorCount = Architecture.tiny.tensors.count
            #expect(model.tensorCount == tensorCount)
            // Every tensor but the four a fine-tune never touches.
            #expect(model.changedTensors == tensorCount - 4)
            #expect(changes[0].changedTensors == nil)
            #expect(changes[1].changedTensors == 2)
            #expect(changes[1].tensorCount == 2)
            #expect(changes[3].changedTensors == nil)
            #expect(changes[4].tensorCount == nil)
        }
    }

    @Test func changedTensorCountCountsRemovedAndAddedTensors() throws {
        try withRepository { repo, _ in
            try writeFloats([("a", [1, 2]), ("b", [3, 4]), ("c", [5, 6])], to: repo.root + "/m.safetensors")
            try repo.commitAll("v1")
            try writeFloats([("a", [1, 2]), ("b", [3, 9]), ("d", [7, 8])], to: repo.root + "/m.safetensors")
            let change = try #require(try repo.status().changes.first)
            #expect(change.kind == .modified)
            #expect(change.changedTensors == 3)  // b changed, c removed, d added
            #expect(change.tensorCount == 3)
        }
    }

    @Test func executableBitIsAChange() throws {
        try withRepository { repo, _ in
            try writeFile("#!/bin/sh\n", to: repo.root + "/run.sh")
            try repo.commitAll("script")
            try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: repo.root + "/run.sh")
            #expect(try repo.status().changes.map(\.kind) == [.modified])
        }
    }

    @Test func statCacheSparesReadingUnchangedFiles() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            for name in try FileManager.default.contentsOfDirectory(atPath: repo.root) where !name.hasPrefix(".") {
                try ageFile(repo.root + "/" + name)
            }
            let first = try repo.commitAll("base")
            #expect(first.unchangedFileCount == 0)
            // One file changes; the four others are taken from the stat cache without being read.
            try writeFile("changed\n", to: repo.root + "/README.md")
            let second = try repo.commitAll("readme")
            #expect(second.unchangedFileCount == 4)
            #expect(second.fileCount == 5)
            #expect(try repo.status().isClean)
        }
    }

    @Test func statCacheIsTrustedUntilTheStatChanges() throws {
        try withRepository { repo, _ in
            let path = repo.root + "/config.json"
            try writeFile(#"{"a": 1}"#, to: path)
            try ageFile(path)
            try repo.commitAll("v1")
            #expect(try repo.status().isClean)

            // New bytes of the same size and an old modification time: the stat differs from the
            // cached one, so the file is read again and the change is seen.
            try writeFile(#"{"a": 2}"#, to: path)
            try ageFile(path, seconds: 1800)
            #expect(try repo.status().changes.map(\.kind) == [.modified])

            // Now make the cache describe the file as it is on disk, but with the committed
            // content: status believes the cache and does not read the file...
            let committed = try #require(try repo.tree(of: repo.resolve("HEAD")).file(at: "config.json"))
            try ageFile(path, seconds: 7200)  // an entry recorded now trusts files modified over a second before
            let stat = try #require(FileStat.of(path))
            repo.history.saveStatCacheOpportunistically(
                [StatCacheEntry(path: "config.json", stat: stat, identity: FileIdentityCoding.encode(committed))], removing: [])
            #expect(try repo.history.statCache()["config.json"]?.identity == FileIdentityCoding.encode(committed))
            #expect(try repo.status().isClean, "a matching stat entry is trusted without reading the file")

            // ...until the file's stat changes again, when the content is read and the change found.
            try ageFile(path, seconds: 5000)
            #expect(try repo.status().changes.map(\.kind) == [.modified])
        }
    }

    @Test func statCacheEntryMatchesOnlyAnUnchangedOldEnoughStat() throws {
        try withTemporaryDirectory { dir in
            try writeFile("content", to: dir + "/f")
            let stat = try #require(FileStat.of(dir + "/f"))
            var entry = StatCacheEntry(path: "f", stat: stat, identity: "x")
            entry.recordedNs = stat.mtimeNs + 2_000_000_000
            #expect(entry.matches(stat))
            // Modified within a second of being recorded: the file may change again unseen.
            entry.recordedNs = stat.mtimeNs + 500_000_000
            #expect(!entry.matches(stat))
            entry.recordedNs = stat.mtimeNs + 2_000_000_000
            var other = stat
            other.size += 1
            #expect(!entry.matches(other))
            for change in [\FileStat.mtimeNs, \FileStat.ctimeNs] {
                other = stat
                other[keyPath: change] -= 1
                #expect(!entry.matches(other))
            }
            for change in [\FileStat.inode, \FileStat.device] {
                other = stat
                other[keyPath: change] += 1
                #expect(!entry.matches(other))
            }
        }
    }

    // MARK: - switch and checkout

    /// main: the base model; side: the math fine-tune, plus `extra.json`.
    func makeTwoBranches(_ repo: Repository) throws -> (main: ObjectID, side: ObjectID) {
        try repo.writeModel()
        let main = try repo.commitAll("base").commit.id
        _ = try repo.switchBranch("side", create: true)
        try repo.writeModel(.light("math", seed: 11))
        try writeFile(#"{"extra": true}"#, to: repo.root + "/extra.json")
        let side = try repo.commitAll("math").commit.id
        _ = try repo.switchBranch("main")
        return (main, side)
    }

    @Test func switchUpdatesTheWorkingTreeAndWritesOnlyFilesThatDiffer() throws {
        try withRepository { repo, dir in
            let (main, side) = try makeTwoBranches(repo)
            #expect(!FileManager.default.fileExists(atPath: repo.root + "/extra.json"))
            let configInode = try #require(FileStat.of(repo.root + "/config.json")).inode
            let modelInode = try #require(FileStat.of(repo.root + "/model.safetensors")).inode

            let result = try repo.switchBranch("side")
            #expect(result.head == .branch("side", commit: side))
            // model.safetensors, README.md and extra.json differ; config and both tokenizer files do not.
            #expect(result.writtenFiles == 3)
            #expect(result.unchangedFiles == 3)
            #expect(result.removedFiles == 0)
            #expect(try #require(FileStat.of(repo.root + "/config.json")).inode == configInode)
            #expect(try #require(FileStat.of(repo.root + "/model.safetensors")).inode != modelInode)
            try tinyFactory.writeCheckpoint(to: dir + "/expected", fineTune: .light("math", seed: 11))
            try writeFile(#"{"extra": true}"#, to: dir + "/expected/extra.json")
            #expect(sameFiles(try snapshot(repo.root), try snapshot(dir + "/expected")))
            #expect(try repo.status().isClean)

            let back = try repo.switchBranch("main")
            #expect(back.head == .branch("main", commit: main))
            #expect(back.removedFiles == 1)
            #expect(!FileManager.default.fileExists(atPath: repo.root + "/extra.json"))
            #expect(try repo.status().isClean)
            // Switching to the branch already checked out writes nothing.
            #expect(try repo.switchBranch("main").writtenFiles == 0)
            expectThrows(RepoError.unknownRef("nope")) { _ = try repo.switchBranch("nope") }
        }
    }

    @Test func switchRefusesOverUncommittedChangesAndForceDiscardsThem() throws {
        try withRepository { repo, _ in
            _ = try makeTwoBranches(repo)
            let modelBefore = try readFile(repo.root + "/model.safetensors")
            try writeFile("my local notes\n", to: repo.root + "/README.md")

            let error = thrownError { _ = try repo.switchBranch("side") }
            #expect(error as? RepoError == .dirtyWorktree(operation: "switching", paths: ["README.md"]))
            #expect((error as? RepoError)?.description
                == "switching would overwrite uncommitted changes in README.md; commit them, or pass --force to discard them")
            // Nothing was written and HEAD did not move.
            #expect(try readFile(repo.root + "/README.md") == Array("my local notes\n".utf8))
            #expect(try readFile(repo.root + "/model.safetensors") == modelBefore)
            #expect(try repo.history.head().branchName == "main")

            let forced = try repo.switchBranch("side", force: true)
            #expect(forced.head.branchName == "side")
            #expect(try repo.status().isClean)
            #expect(try readFile(repo.root + "/README.md") != Array("my local notes\n".utf8))
        }
    }

    @Test func switchRefusesToOverwriteAnUntrackedFile() throws {
        try withRepository { repo, _ in
            _ = try makeTwoBranches(repo)
            try writeFile("mine", to: repo.root + "/extra.json")
            expectThrows(RepoError.dirtyWorktree(operation: "switching", paths: ["extra.json"])) {
                _ = try repo.switchBranch("side")
            }
            #expect(try readFile(repo.root + "/extra.json") == Array("mine".utf8))
            // An untracked file that already holds the branch's content is not in the way.
            try writeFile(#"{"extra": true}"#, to: repo.root + "/extra.json")
            #expect(try repo.switchBranch("side").head.branchName == "side")
        }
    }

    @Test func switchKeepsLocalChangesToFilesTheBranchesShare() throws {
        try withRepository { repo, _ in
            _ = try makeTwoBranches(repo)
            // config.json is the same on both branches: a local edit is carried over, as git does.
            try writeFile(#"{"edited": true}"#, to: repo.root + "/config.json")
            let result = try repo.switchBranch("side")
            #expect(result.head.branchName == "side")
            #expect(try readFile(repo.root + "/config.json") == Array(#"{"edited": true}"#.utf8))
            #expect(try repo.status().changes.map(\.path) == ["config.json"])
        }
    }

    @Test func switchCreateStartsABranch() throws {
        try withRepository { repo, _ in
            // On an unborn branch, -c renames it.
            let unborn = try repo.switchBranch("trunk", create: true)
            #expect(unborn.head == .branch("trunk", commit: nil))
            try writeFile("1", to: repo.root + "/f.txt")
            let c1 = try repo.commitAll("first").commit.id
            #expect(try repo.history.head() == .branch("trunk", commit: c1))
            try writeFile("2", to: repo.root + "/f.txt")
            try repo.commitAll("second")
            let created = try repo.switchBranch("old", create: true, startPoint: "HEAD~1")
            #expect(created.head == .branch("old", commit: c1))
            #expect(try readFile(repo.root + "/f.txt") == Array("1".utf8))
            expectThrows(RepoError.refExists("trunk")) { _ = try repo.switchBranch("trunk", create: true) }
        }
    }

    @Test func checkoutOfATagDetachesHead() throws {
        try withRepository { repo, _ in
            try writeFile("1", to: repo.root + "/f.txt")
            let c1 = try repo.commitAll("first").commit.id
            try repo.createTag("v1")
            try writeFile("2", to: repo.root + "/f.txt")
            let c2 = try repo.commitAll("second").commit.id

            let result = try repo.checkout("v1")
            #expect(result.head == .detached(c1))
            #expect(try repo.history.head() == .detached(c1))
            #expect(try readFile(repo.root + "/f.txt") == Array("1".utf8))
            #expect(try repo.history.ref(named: "main")?.target == c2)

            // A commit on a detached HEAD moves HEAD only.
            try writeFile("3", to: repo.root + "/f.txt")
            let c3 = try repo.commitAll("detached work").commit.id
            #expect(try repo.history.head() == .detached(c3))
            #expect(try repo.history.ref(named: "main")?.target == c2)

            // Checking out a branch name switches to the branch.
            let back = try repo.checkout("main")
            #expect(back.head == .branch("main", commit: c2))
            #expect(try readFile(repo.root + "/f.txt") == Array("2".utf8))
            // Any revision works.
            #expect(try repo.checkout("HEAD~1").head == .detached(c1))
        }
    }

    // MARK: - Writing through links

    @Test func checkoutRefusesToWriteThroughASymlinkedDirectory() throws {
        try withRepository { repo, dir in
            try writeFile("payload", to: repo.root + "/sub/a.txt")
            let c1 = try repo.commitAll("with sub").commit.id
            try FileManager.default.removeItem(atPath: repo.root + "/sub")
            try writeFile("sub\n", to: repo.root + "/.mrepoignore")
            try repo.commitAll("without sub")
            // `sub` becomes a link to a folder outside the working tree (ignored, so scans pass).
            try FileManager.default.createDirectory(atPath: dir + "/outside", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/sub", withDestinationPath: dir + "/outside")

            let error = thrownError { _ = try repo.checkout(c1.hex) }
            guard case let .unsafePath(path, reason)? = error as? RepoError else {
                Issue.record("expected unsafePath, got \(String(describing: error))")
                return
            }
            #expect(path == "sub/a.txt")
            #expect(reason == "'\(repo.root)/sub' is a symbolic link; refusing to write through it")
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/outside").isEmpty)
            #expect(try repo.history.head().branchName == "main")
        }
    }

    @Test func exportRefusesToWriteThroughASymlinkedDirectory() throws {
        try withRepository { repo, dir in
            try writeFile("payload", to: repo.root + "/sub/a.txt")
            try repo.commitAll("with sub")
            try FileManager.default.createDirectory(atPath: dir + "/outside", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: dir + "/export", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: dir + "/export/sub", withDestinationPath: dir + "/outside")
            expectThrows(RepoError.unsafePath("sub/a.txt", reason: "'\(dir)/export/sub' is a symbolic link; refusing to write through it")) {
                _ = try repo.export("HEAD", to: dir + "/export")
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir + "/outside").isEmpty)
        }
    }
}
