import Delta
import Foundation
import GRDB
import Merge
import ModelFactory
@testable import Repo
import Testing

/// Several working trees over one store (`mrepo worktree`): what is shared, what is per working
/// tree, the refusals, gc and fsck roots, remove and prune, and the migration.
@Suite final class LinkedWorktreeTests {
    /// The fixture (one per test): the tiny base committed on main and a branch `math` at it.
    let fixture: TemporaryRepository
    var repo: Repository { fixture.repo }
    var dir: String { fixture.dir }
    let base: ObjectID

    init() throws {
        fixture = try TemporaryRepository()
        try fixture.repo.writeModel()
        base = try fixture.repo.commitAll("base").commit.id
        try fixture.repo.createBranch("math")
    }

    func real(_ path: String) -> String { URL(fileURLWithPath: path).resolvingSymlinksInPath().path }

    @Test func aLinkedTreeCommitsOntoItsOwnBranch() throws {
        let added = try repo.addWorktree(at: dir + "/wt", revision: "math")
        #expect(added.head == .branch("math", commit: base))
        #expect(added.checkout.writtenFiles == 5)
        // The link file names the store and the working tree's key.
        let link = try WorktreeLink.read(dir + "/wt/.mrepo")
        #expect(link == WorktreeLink(store: real(repo.metaDirectory), id: added.record.id))
        #expect(sameFiles(try snapshot(dir + "/wt"), try snapshot(repo.root)))

        let linked = try Repository.open(at: dir + "/wt/")
        linked.codecOptions = smallChunks
        #expect(linked.isLinkedWorktree && linked.worktreeID == added.record.id)
        #expect(real(linked.metaDirectory) == real(repo.metaDirectory))
        #expect(try linked.status().isClean)
        try linked.writeModel(.light("math", seed: 11))
        let math = try linked.commitAll("math").commit.id

        // The commit moved math and the linked HEAD, not main nor the main HEAD.
        #expect(try repo.history.ref(named: "math")?.target == math)
        #expect(try repo.history.ref(named: "main")?.target == base)
        #expect(try linked.history.head() == .branch("math", commit: math))
        #expect(try repo.history.head() == .branch("main", commit: base))
        #expect(try linked.status().isClean)
        #expect(try repo.status().isClean)
        // Each HEAD has its own reflog; the branch's is shared.
        #expect(try linked.history.reflog(ref: "HEAD").map(\.new) == [math, base])
        #expect(try repo.history.reflog(ref: "HEAD").map(\.new) == [base])
        #expect(try repo.history.reflog(ref: "math").first?.new == math)
        // Every working tree is listed.
        let trees = try repo.worktrees()
        #expect(trees.map(\.head) == [.branch("main", commit: base), .branch("math", commit: math)])
        #expect(trees.map(\.isCurrent) == [true, false])
        let prunable = trees.filter(\.isPrunable)
        #expect(prunable.isEmpty)
    }

    @Test func aBranchIsCheckedOutInOneWorkingTreeAtATime() throws {
        try repo.addWorktree(at: dir + "/wt", revision: "math")
        let linked = try Repository.open(at: dir + "/wt")
        let inUse = RepoError.worktree(.branchCheckedOut(branch: "math", worktree: real(dir + "/wt"), folderGone: false))
        expectThrows(inUse) { _ = try repo.switchBranch("math") }
        expectThrows(inUse) { _ = try repo.checkout("math") }
        expectThrows(inUse) { try repo.addWorktree(at: dir + "/wt2", revision: "math") }
        #expect(FileStat.of(dir + "/wt2") == nil, "a refused add leaves no folder")
        expectThrows(RepoError.worktree(.branchCheckedOut(branch: "main", worktree: real(repo.root), folderGone: false))) {
            _ = try linked.switchBranch("main")
        }
        expectThrows(RepoError.worktree(.deletingCheckedOutBranch(branch: "math", worktree: real(dir + "/wt")))) {
            _ = try repo.deleteBranch("math", force: true)
        }
        #expect(try repo.branches().first { $0.name == "math" }?.worktree == real(dir + "/wt"))
        // Nothing moved.
        #expect(try repo.history.head() == .branch("main", commit: base))
        #expect(try linked.history.head() == .branch("math", commit: base))
        // As in git, --force checks a branch out a second time; detached HEADs never conflict.
        try repo.addWorktree(at: dir + "/wt2", revision: "math", force: true)
        try repo.addWorktree(at: dir + "/wt3", revision: "math", detach: true)
        #expect(try Repository.open(at: dir + "/wt3").history.head() == .detached(base))
        _ = try linked.checkout("HEAD")
        _ = try linked.switchBranch("x", create: true)
    }

    @Test func addRefusesABusyFolderAndTheStore() throws {
        try writeFile("x", to: dir + "/busy/file.txt")
        let refusals: [(String, WorktreeError)] = [
            (dir + "/busy", .folderNotEmpty(dir + "/busy")), (repo.metaDirectory + "/wt", .folderInStore(repo.metaDirectory + "/wt")),
            (dir, .folderNotEmpty(dir)), (dir + "/busy/file.txt", .notAFolder(dir + "/busy/file.txt")),
        ]
        for (path, refusal) in refusals {
            expectThrows(RepoError.worktree(refusal)) { _ = try repo.addWorktree(at: path, revision: "math") }
        }
        #expect(try repo.worktrees().count == 1)
        // With no revision: the branch named after the folder, created at HEAD.
        let added = try repo.addWorktree(at: dir + "/feature")
        #expect(added.createdBranch == "feature" && added.head.branchName == "feature")
    }

    @Test func gcKeepsWhatOnlyALinkedTreeNeeds() throws {
        try repo.addWorktree(at: dir + "/wt", newBranch: "tmp")
        let linked = try Repository.open(at: dir + "/wt")
        linked.codecOptions = smallChunks
        try linked.writeModel(.light("math", seed: 11))
        let detached = try linked.commitAll("math").commit.id
        _ = try linked.checkout(detached.hex)
        // Only the linked HEAD reaches `detached` now.
        _ = try repo.deleteBranch("tmp", force: true)
        // A merge stopped in another linked tree: its result is named by its merge state only.
        for (name, seed) in [("code", UInt64(12)), ("chat", UInt64(13))] {
            _ = try repo.switchBranch(name, create: true, startPoint: "main")
            try repo.writeModel(.light(name, seed: seed))
            try repo.commitAll(name)
        }
        _ = try repo.switchBranch("main")
        try repo.addWorktree(at: dir + "/merging", newBranch: "merged")
        let merging = try Repository.open(at: dir + "/merging")
        _ = try merging.merge(MergeOptions(branches: ["code", "chat"], recipe: MergeRecipe(method: "task_arithmetic", experts: []),
                                           noCommit: true))
        let state = try #require(try merging.history.mergeState())
        #expect(try repo.history.mergeState() == nil)
        let ready = try #require(state.readyTree)

        _ = try repo.gc(pruneReflog: true)
        #expect(try repo.history.commit(detached) != nil)
        let fsck = try repo.fsck()
        #expect(fsck.isClean && fsck.warnings.isEmpty, "\(fsck.errors) \(fsck.warnings)")
        _ = try linked.export("HEAD", to: dir + "/out")
        #expect(sameFiles(try snapshot(dir + "/out"), try snapshot(dir + "/wt")))
        for id in try repo.history.tree(ready).objectIDs { #expect(repo.objects.exists(id)) }
        let merged = try merging.continueMerge().commit
        #expect(try merging.history.head() == .branch("merged", commit: merged.id))
        #expect(try merging.status().isClean)
        #expect(try repo.history.head().branchName == "main")
    }

    @Test func removeRefusesWhatWouldBeLostAndDeletesTheRest() throws {
        try repo.addWorktree(at: dir + "/wt", revision: "math")
        let wt = dir + "/wt"
        let folder = real(wt)
        func expectRemoveRefused(force: Bool = false, _ refusal: WorktreeError, sourceLocation: SourceLocation = #_sourceLocation) {
            expectThrows(RepoError.worktree(refusal), sourceLocation: sourceLocation) { _ = try repo.removeWorktree(wt, force: force) }
        }
        try writeFile("edited", to: wt + "/README.md")
        expectRemoveRefused(.uncommittedChanges(folder, paths: ["README.md"]))
        try writeFile(try readFile(repo.root + "/README.md"), to: wt + "/README.md")
        try writeFile("*.tmp\n", to: wt + "/.mrepoignore")
        let linked = try Repository.open(at: wt)
        try linked.commitAll("ignore tmp")
        try writeFile("optimizer state", to: wt + "/optimizer.tmp")
        expectRemoveRefused(.untrackedFiles(folder, paths: ["optimizer.tmp"]))
        try FileManager.default.createDirectory(atPath: wt + "/nested", withIntermediateDirectories: true)
        try Repository.initialize(at: wt + "/nested")
        expectRemoveRefused(force: true, .holdsNestedRepository(folder, nested: "nested/"))
        try FileManager.default.removeItem(atPath: wt + "/nested")
        #expect(FileStat.of(wt + "/optimizer.tmp") != nil, "a refused remove deletes nothing")

        let removed = try repo.removeWorktree(wt, force: true)
        #expect(FileStat.of(wt) == nil)
        #expect(try repo.worktrees().count == 1)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix(".mrepo-tmp-") }
        #expect(leftovers.isEmpty)
        // Its rows are gone, its commit and branch stay, and the branch is free again.
        let rows = try repo.history.read { db in
            try Int.fetchOne(db, sql: "SELECT (SELECT count(*) FROM head WHERE worktree = ?) + (SELECT count(*) FROM statCache WHERE worktree = ?)",
                             arguments: [removed.id, removed.id])
        }
        #expect(rows == 0)
        #expect(try repo.history.ref(named: "math")?.target != base)
        _ = try repo.switchBranch("math")
        // A working tree opened after it was removed says so in one line.
        expectThrows(RepoError.worktree(.unregistered(removed.id))) { _ = try linked.status() }
    }

    @Test func pruneForgetsTreesWhoseFolderIsGone() throws {
        try repo.addWorktree(at: dir + "/wt", revision: "math")
        try repo.addWorktree(at: dir + "/kept", newBranch: "kept")
        try FileManager.default.removeItem(atPath: dir + "/wt")
        #expect(try repo.worktrees().map(\.isPrunable) == [false, true, false])
        let warnings = try repo.fsck().warnings
        #expect(warnings.count == 1 && warnings[0].contains("'mrepo worktree prune' forgets it"), "\(warnings)")
        expectThrows(RepoError.worktree(.branchCheckedOut(branch: "math", worktree: real(dir) + "/wt", folderGone: true))) {
            _ = try repo.switchBranch("math")
        }
        expectThrows(RepoError.worktree(.folderOfUnprunedWorktree(dir + "/wt"))) { try repo.addWorktree(at: dir + "/wt", newBranch: "other") }
        #expect(try repo.pruneWorktrees(dryRun: true).map(\.id) == ["wt"])
        #expect(try repo.worktrees().count == 3)
        #expect(try repo.pruneWorktrees().map(\.id) == ["wt"])
        #expect(try repo.worktrees().map(\.path) == [repo.mainRoot, real(dir + "/kept")])
        _ = try repo.switchBranch("math")
        // A new tree of the same name gets a new key: it never inherits the old HEAD's reflog.
        let readded = try repo.addWorktree(at: dir + "/wt", newBranch: "other")
        #expect(readded.record.id == "wt2")
    }

    @Test func aLinkFileOfAnUnknownTreeIsRefused() throws {
        try writeFile("mrepodir: \(repo.metaDirectory)\nworktree: ghost\n", to: dir + "/ghost/.mrepo")
        expectThrows(RepoError.worktree(.unknownLink(linkFile: dir + "/ghost/.mrepo", id: "ghost", store: repo.metaDirectory))) {
            _ = try Repository.open(at: dir + "/ghost")
        }
        try writeFile("gitdir: /elsewhere\n", to: dir + "/odd/.mrepo")
        expectThrows(RepoError.self) { _ = try Repository.open(at: dir + "/odd") } matching: {
            if case .unsupportedFormat(dir + "/odd/.mrepo", _) = $0 { true } else { false }
        }
    }

    @Test func gcSweepsLeftoversInLinkedTrees() throws {
        try repo.addWorktree(at: dir + "/wt", revision: "math")
        let leftover = dir + "/wt/sub/.mrepo-tmp-\(try deadPid())-abc-model.safetensors"
        try writeFile("partial", to: leftover)
        #expect(try repo.gc().removedTemporaryFiles == 1)
        #expect(FileStat.of(leftover) == nil)
    }

    @Test func upgradingKeepsTheMainWorkingTreesRows() throws {
        try withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir + "/repo/.mrepo/objects", withIntermediateDirectories: true)
            // A database as mrepo 0.2.0 left it: every migration before v5, and a row in each per-tree table.
            let queue = try DatabaseQueue(path: dir + "/repo/.mrepo/mrepo.db")
            try HistoryDatabase.migrator.migrate(queue, upTo: "v4-file-sha256")
            try queue.write { db in
                try db.execute(sql: """
                    INSERT INTO meta(key, value) VALUES ('formatVersion', '1');
                    INSERT INTO head(id, branch, commitID) VALUES (1, 'dev', NULL);
                    INSERT INTO statCache VALUES ('a.txt', 1, 2, 3, 4, 5, 6, '{}');
                    INSERT INTO mergeState(id, state) VALUES (1, '{"x":1}');
                    INSERT INTO worktreeView(id, commitID, description, files) VALUES (1, 'c', 'expert e', '[]');
                    """)
            }
            try queue.close()
            let repo = try Repository.open(at: dir + "/repo")
            #expect(try repo.history.head() == .branch("dev", commit: nil))
            let rows = try repo.history.read { db in
                [try Row.fetchOne(db, sql: "SELECT * FROM statCache"), try Row.fetchOne(db, sql: "SELECT * FROM mergeState"),
                 try Row.fetchOne(db, sql: "SELECT * FROM worktreeView")]
            }
            #expect(rows[0] == ["worktree": "", "path": "a.txt", "size": 1, "mtimeNs": 2, "ctimeNs": 3, "inode": 4, "device": 5,
                                "recordedNs": 6, "identity": "{}"])
            #expect(rows[1] == ["worktree": "", "state": #"{"x":1}"#])
            #expect(rows[2] == ["worktree": "", "commitID": "c", "description": "expert e", "files": "[]"])
            #expect(try repo.history.statCache().keys.sorted() == ["a.txt"])
        }
    }
}
