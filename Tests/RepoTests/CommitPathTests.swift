import Delta
import Foundation
import ModelFactory
@testable import Repo
import Testing

/// The paths a commit takes through its input: hashing first and encoding only what is missing,
/// copying the input into the working tree, tensors laid out in another order than the base's,
/// and `commit --branch`.
@Suite final class CommitPathTests {
    let fixture: TemporaryRepository
    var repo: Repository { fixture.repo }
    var dir: String { fixture.dir }

    init() throws { fixture = try TemporaryRepository() }

    /// Leftover copy folders (`.mrepo/.mrepo-tmp-*-copies`).
    func copyFolders(_ repo: Repository) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: repo.metaDirectory).filter { $0.hasSuffix("-copies") }
    }

    /// A base in `state_dict()` order and fine-tunes as `save_file` writes them (every tensor
    /// elsewhere), in F32 and BF16, in one and in two shards: each commit comes back bit for bit,
    /// and the fine-tunes' tensors are deltas against the base's.
    @Test(arguments: [DType.f32, .bf16])
    func reorderedFineTunesComeBackBitForBit(dtype: DType) throws {
        let factory = ModelFactory(architecture: .tiny, dtype: dtype, seed: 42)
        for shards in [1, 2] {
            let family = dir + "/family-\(shards)"
            try factory.writeFamily(to: family, layout: .reordered, shards: shards)
            var opts = CommitOptions(message: "base \(shards)", sourceDirectory: family + "/base", author: testAuthor)
            opts.force = true
            let base = try repo.commit(opts)
            for ft in FineTune.standardFamily {
                let result = try repo.commit(CommitOptions(message: ft.name, sourceDirectory: family + "/" + ft.name,
                                                             base: base.commit.id.hex, author: testAuthor))
                #expect(result.commit.base == base.commit.id)
                #expect(sameFiles(try snapshot(repo.root), try snapshot(family + "/" + ft.name)))
                let out = dir + "/export-\(shards)-\(ft.name)"
                _ = try repo.export(result.commit.id.hex, to: out)
                #expect(sameFiles(try snapshot(out), try snapshot(family + "/" + ft.name)), "\(dtype) \(shards) \(ft.name)")
                // Changed float tensors are stored against the base's tensor of the same name.
                let baseTensors = try repo.tensors(of: base.commit.id.hex)
                var deltas = 0
                for (name, t) in try repo.tensors(of: result.commit.id.hex) where t.objectID != baseTensors[name]?.objectID && t.dtype == dtype {
                    let info = try #require(try repo.history.objectInfo(t.objectID))
                    #expect(info.reference == baseTensors[name]?.objectID, "\(name)")
                    deltas += 1
                }
                #expect(deltas > 0)
            }
        }
        #expect(try repo.fsck().errors.isEmpty)
    }

    /// Content whose tensors are all stored (here: the base written in another order) adds only
    /// the header blobs, and its tree names the stored tensor objects.
    @Test func storedTensorsAreNotStoredAgain() throws {
        try tinyFactory.writeCheckpoint(to: dir + "/a", order: .stateDict)
        try tinyFactory.writeCheckpoint(to: dir + "/b", order: .saveFile)
        let first = try repo.commit(CommitOptions(message: "a", sourceDirectory: dir + "/a", author: testAuthor))
        let before = repo.objectFiles
        let second = try repo.commit(CommitOptions(message: "b", sourceDirectory: dir + "/b", author: testAuthor))
        let headers = try repo.tree(of: second.commit.id).files.filter { $0.kind == .safetensors }.map(\.objectID)
        #expect(second.newObjectCount == headers.count)
        #expect(repo.objectFiles.subtracting(before) == Set(headers))
        #expect(try repo.tensors(of: second.commit.id.hex).mapValues(\.objectID) == repo.tensors(of: first.commit.id.hex).mapValues(\.objectID))
        #expect(sameFiles(try snapshot(repo.root), try snapshot(dir + "/b")))

        // The same folder once more, as another commit's content: nothing new at all.
        try FileManager.default.copyItem(atPath: dir + "/a", toPath: dir + "/a2")
        try writeFile("another file", to: dir + "/a2/notes.txt")
        let third = try repo.commit(CommitOptions(message: "a2", sourceDirectory: dir + "/a2", author: testAuthor))
        #expect(third.newObjectCount == 1)
    }

    /// An object file left by an interrupted commit (no row) is recorded, not rewritten.
    @Test func anUnrecordedObjectFileIsRecorded() throws {
        try tinyFactory.writeCheckpoint(to: dir + "/a")
        let first = try repo.commit(CommitOptions(message: "a", sourceDirectory: dir + "/a", author: testAuthor))
        let tensors = try repo.tensors(of: first.commit.id.hex)
        // A second repository holding the same objects as files only.
        let other = try Repository.initialize(at: dir + "/other")
        other.codecOptions = smallChunks
        try FileManager.default.removeItem(atPath: other.metaDirectory + "/objects")
        try FileManager.default.copyItem(atPath: repo.metaDirectory + "/objects", toPath: other.metaDirectory + "/objects")
        let result = try other.commit(CommitOptions(message: "a", sourceDirectory: dir + "/a", author: testAuthor))
        #expect(result.newObjectCount == repo.objectFiles.count)
        for t in tensors.values { #expect(try other.history.objectInfo(t.objectID) != nil) }
        #expect(try other.fsck().errors.isEmpty)
    }

    /// `commit --from` writes the working tree from the copies it made while hashing: every
    /// written file is a copy, the copies' folder is gone afterwards, and the files match.
    @Test func commitFromCopiesTheInputIntoTheWorkingTree() throws {
        try tinyFactory.writeCheckpoint(to: dir + "/base", shards: 2)
        try writeFile("#!/bin/sh\n", to: dir + "/base/run.sh", executable: true)
        let base = try repo.commit(CommitOptions(message: "base", sourceDirectory: dir + "/base", author: testAuthor))
        #expect(base.copiedFileCount == base.fileCount)
        #expect(sameFiles(try snapshot(repo.root), try snapshot(dir + "/base")))
        try tinyFactory.writeCheckpoint(to: dir + "/ft", fineTune: .light("math", seed: 11), shards: 2)
        let ft = try repo.commit(CommitOptions(message: "ft", sourceDirectory: dir + "/ft", author: testAuthor))
        // Only the files that differ from the working tree are written (the config files are equal).
        #expect(ft.copiedFileCount > 0 && ft.copiedFileCount < ft.fileCount)
        #expect(sameFiles(try snapshot(repo.root), try snapshot(dir + "/ft")))
        #expect(try repo.status().isClean)
        #expect(try copyFolders(repo).isEmpty)
        // A commit that fails leaves no copies either.
        try writeFile("#!/bin/sh\nexit 1\n", to: repo.metaDirectory + "/hooks/pre-commit", executable: true)
        _ = thrownError { _ = try repo.commit(CommitOptions(message: "refused", sourceDirectory: dir + "/base", author: testAuthor)) }
        #expect(try copyFolders(repo).isEmpty)
        #expect(try repo.headCommit() == ft.commit.id)
    }

    /// A copy whose bytes are not what the tree records is not taken: the file is decoded instead.
    @Test func aCopyWithAnotherDigestIsNotTaken() throws {
        try writeFile("v1", to: repo.root + "/a.txt")
        try repo.commitAll("v1")
        let tree = try repo.tree(of: try #require(try repo.headCommit()))
        try writeFile("v2", to: repo.root + "/a.txt")
        let wrong = repo.metaDirectory + "/.mrepo-tmp-\(getpid())-x-wrong"
        try writeFile("not v1", to: wrong)
        var stats = Repository.MaterializeStats()
        _ = try repo.materialize(tree, over: tree, force: true, stats: &stats,
                                 prepared: ["a.txt": PreparedFile(temporary: wrong, sha256: Digest.zero)])
        #expect(stats.moved == 0)
        #expect(try readFile(repo.root + "/a.txt") == Array("v1".utf8))
    }

    @Test func commitOntoABranchLeavesHeadAndTheWorkingTree() throws {
        try repo.writeModel()
        let base = try repo.commitAll("base")
        let worktree = try snapshot(repo.root)
        try tinyFactory.writeCheckpoint(to: dir + "/gpu0", fineTune: .light("math", seed: 11))
        try tinyFactory.writeCheckpoint(to: dir + "/gpu0b", fineTune: .light("math", seed: 12))
        var opts = CommitOptions(message: "gpu0 step 1", sourceDirectory: dir + "/gpu0", author: testAuthor)
        opts.branch = "gpu0"
        let first = try repo.commit(opts)
        #expect(first.branch == "gpu0")
        #expect(first.commit.parents == [base.commit.id])
        #expect(first.commit.base == base.commit.id)
        #expect(first.copiedFileCount == 0)
        #expect(first.notes.contains { $0.hasPrefix("created branch 'gpu0'") })
        #expect(try repo.resolve("gpu0") == first.commit.id)
        #expect(try repo.headCommit() == base.commit.id)
        #expect(try repo.history.head().branchName == "main")
        #expect(sameFiles(try snapshot(repo.root), worktree))
        #expect(try repo.status().isClean)
        #expect(try copyFolders(repo).isEmpty)

        // The next commit onto the branch follows its tip, and stores its tensors against the base.
        opts.sourceDirectory = dir + "/gpu0b"
        opts.message = "gpu0 step 2"
        let second = try repo.commit(opts)
        #expect(second.commit.parents == [first.commit.id])
        #expect(second.commit.base == base.commit.id)
        #expect(try repo.resolve("gpu0") == second.commit.id)
        #expect(try repo.headCommit() == base.commit.id)
        _ = try repo.export("gpu0", to: dir + "/out")
        #expect(sameFiles(try snapshot(dir + "/out"), try snapshot(dir + "/gpu0b")))
    }

    @Test func commitOntoABranchRefusesWhatItCannotDo() throws {
        try repo.writeModel()
        try repo.commitAll("base")
        _ = try repo.createTag("v1", at: "HEAD")
        try tinyFactory.writeCheckpoint(to: dir + "/ft", fineTune: .light("math", seed: 11))
        let objectsBefore = repo.objectFiles
        for (branch, message) in [
            ("main", "--branch main: 'main' is the current branch; commit --from DIR without --branch updates it and the working tree"),
            ("v1", "--branch v1: 'v1' is a tag, not a branch"),
        ] {
            var opts = CommitOptions(message: "x", sourceDirectory: dir + "/ft", author: testAuthor)
            opts.branch = branch
            let error = thrownError { _ = try repo.commit(opts) }
            #expect(error as? RepoError == .invalidArgument(message))
        }
        // A branch another working tree has checked out moves only there.
        try repo.createBranch("linked")
        try repo.addWorktree(at: dir + "/wt", revision: "linked")
        var linked = CommitOptions(message: "x", sourceDirectory: dir + "/ft", author: testAuthor)
        linked.branch = "linked"
        let inUse = thrownError { _ = try repo.commit(linked) }
        #expect((inUse as? RepoError)?.description.contains("branch 'linked' is already checked out in the working tree at") == true)
        var fromWorktree = CommitOptions(message: "x", author: testAuthor)
        fromWorktree.branch = "elsewhere"
        #expect(thrownError { _ = try repo.commit(fromWorktree) } != nil)
        #expect(repo.objectFiles == objectsBefore)
        #expect(try repo.branches().map(\.name) == ["linked", "main"])
    }
}
