import Delta
import Foundation
import Merge
@testable import Repo
import Testing

/// Writes `model.safetensors` with float32 tensors of two elements each, and commits it.
private func commitTensors(_ repo: Repository, _ tensors: [String: [Float]], _ message: String) throws -> ObjectID {
    let entries = tensors.sorted { $0.key < $1.key }.map { name, values -> (name: String, dtype: DType, shape: Shape, bytes: [UInt8]) in
        var bytes: [UInt8] = []
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
        return (name, .f32, [values.count], bytes)
    }
    try SafetensorsWriter.write(path: repo.root + "/model.safetensors", tensors: entries, metadata: [])
    return try repo.commitAll(message).commit.id
}

/// Merges `branch` into HEAD, tensors changed on one side taken as they are, and returns the merge
/// commit. `explicit`: by task arithmetic, so a merge commit even where git would fast-forward.
private func mergeCommitted(_ repo: Repository, _ branch: String, explicit: Bool = false) throws -> Commit {
    var options = MergeOptions(branches: [branch], recipe: MergeRecipe(method: "task_arithmetic", experts: [], seed: 0))
    options.isExplicit = explicit
    options.oneSided = .take
    let outcome = try repo.merge(options)
    guard case let .committed(commit) = outcome.status else { throw RepoError.failed("the merge did not commit: \(outcome.status)") }
    return commit
}

/// The float values of a tensor of the working tree's model.safetensors.
private func worktreeValues(_ repo: Repository, _ name: String) throws -> [Float] {
    let f = try SafetensorsFile(path: repo.root + "/model.safetensors")
    let t = try #require(f.tensor(named: name))
    return f.data(of: t).withMemoryRebound(to: Float.self) { Array($0) }
}

@Suite struct GitHabitsRepoTests {
    @Test func reflogRevisionsOrigHeadAndPreviousBranch() throws {
        try withRepository { repo, _ in
            let a = try commitTensors(repo, ["w": [1, 1]], "a")
            let b = try commitTensors(repo, ["w": [2, 2]], "b")
            #expect(try repo.resolve("HEAD@{0}") == b)
            #expect(try repo.resolve("HEAD@{1}") == a)
            #expect(try repo.resolve("main@{1}") == a)
            #expect(try repo.resolve("@{1}") == a)
            #expect(try repo.resolve("HEAD^{}") == b)
            #expect(try repo.resolve("main@{1}^{commit}") == a)
            expectThrows(RepoError.self) { try repo.resolve("HEAD@{9}") }
            expectThrows(RepoError.invalidArgument("ORIG_HEAD is not set (reset, commit --amend, revert, cherry-pick and stash set it)")) {
                try repo.resolve("ORIG_HEAD")
            }
            _ = try repo.switchBranch("side", create: true, startPoint: "HEAD~1")
            #expect(try repo.previousBranch() == "main")
            #expect(try repo.resolve("-") == b)
            #expect(try repo.resolve("@{-1}") == b)
            _ = try repo.switchBranch("main")
            #expect(try repo.previousBranch() == "side")
            #expect(try repo.previousBranch(2) == "main")

            // Ranges: A..B and A...B.
            let (starts, excluded) = try repo.logStarts(["side..main"])
            #expect(starts == [b] && excluded == [a])
            #expect(try repo.resolveRange("main...side")?.exclude == [a])
            #expect(Repository.splitPathRevision("HEAD~1:model.safetensors")! == ("HEAD~1", "model.safetensors"))
            #expect(Repository.splitPathRevision(":config.json")! == ("HEAD", "config.json"))
            #expect(Repository.splitPathRevision("HEAD") == nil)
        }
    }

    @Test func resetMovesTheBranchAndOrigHeadUndoesIt() throws {
        try withRepository { repo, _ in
            let a = try commitTensors(repo, ["w": [1, 1]], "a")
            let b = try commitTensors(repo, ["w": [2, 2]], "b")
            let soft = try repo.reset(to: "HEAD~1", mode: .soft)
            #expect(soft.old == b && soft.new == a && soft.checkout == nil)
            #expect(try repo.headCommit() == a)
            #expect(try repo.history.origHead() == b)
            // --soft leaves b's files: they show as a change.
            #expect(try repo.status().changes.map(\.path) == ["model.safetensors"])
            let hard = try repo.reset(to: "ORIG_HEAD", mode: .hard)
            #expect(hard.new == b && hard.checkout?.writtenFiles == 0)
            _ = try repo.reset(to: a.hex, mode: .hard)
            #expect(try worktreeValues(repo, "w") == [1, 1])
            #expect(try repo.status().isClean)
            #expect(try repo.history.reflog(ref: "HEAD", limit: 1).first?.message == "reset: moving to \(a.hex)")
            _ = try repo.reset(to: "ORIG_HEAD", mode: .hard)
            #expect(try repo.headCommit() == b && worktreeValues(repo, "w") == [2, 2])
        }
    }

    @Test func amendReplacesHeadKeepingParentsMessageAndMetrics() throws {
        try withRepository { repo, _ in
            let a = try commitTensors(repo, ["w": [1, 1]], "a")
            try writeFile("x", to: repo.root + "/notes.txt")
            let b = try repo.commit(CommitOptions(message: "b", metrics: [Commit.Metric(name: "loss", value: 2)], author: testAuthor)).commit.id
            try writeFile("y", to: repo.root + "/notes.txt")
            var options = CommitOptions(message: "", metrics: [Commit.Metric(name: "acc", value: 0.5)], author: testAuthor)
            options.amend = true
            let amended = try repo.commit(options).commit
            #expect(amended.parents == [a] && amended.message == "b")
            #expect(amended.metrics.map(\.name) == ["loss", "acc"])
            #expect(try repo.headCommit() == amended.id && repo.history.origHead() == b)
            #expect(try repo.history.reflog(ref: "main", limit: 1).first?.message == "commit (amend): b")
            // Amending only the message keeps the tree.
            options = CommitOptions(message: "b2", author: testAuthor)
            options.amend = true
            let again = try repo.commit(options).commit
            #expect(again.treeID == amended.treeID && again.parents == [a])
        }
    }

    @Test func revertIsByteExactWhereNothingLaterTouchedTheTensors() throws {
        try withRepository { repo, _ in
            _ = try commitTensors(repo, ["t1": [1, 1], "t2": [1, 1]], "a")
            let aT1 = try repo.tensors(of: "HEAD")["t1"]!.objectID
            let b = try commitTensors(repo, ["t1": [2, 2], "t2": [1, 1]], "b")
            let c = try commitTensors(repo, ["t1": [2, 2], "t2": [3, 3]], "c")
            let r = try repo.revert(b.hex)
            #expect(r.exact && r.merge == nil)
            let reverted = try #require(r.commit)
            #expect(reverted.parents == [c] && reverted.subject == "Revert \"b\"")
            #expect(try repo.tensors(of: "HEAD")["t1"]!.objectID == aT1)
            #expect(try worktreeValues(repo, "t1") == [1, 1] && worktreeValues(repo, "t2") == [3, 3])
            #expect(try repo.status().isClean)
            #expect(try repo.history.origHead() == c)
            expectThrows(RepoError.self) { try repo.revert(b.hex) }
        }
    }

    @Test func revertAndCherryPickUseTaskArithmeticWhereTheTensorsMovedOn() throws {
        try withRepository { repo, _ in
            _ = try commitTensors(repo, ["t1": [1, 1]], "a")
            let b = try commitTensors(repo, ["t1": [2, 2]], "b")
            let c = try commitTensors(repo, ["t1": [5, 5]], "c")
            // HEAD + (REV^ − REV) = 5 + (1 − 2).
            let r = try repo.revert(b.hex)
            #expect(!r.exact && r.commit?.parents == [c])
            #expect(try worktreeValues(repo, "t1") == [4, 4])
            _ = try repo.reset(to: "ORIG_HEAD", mode: .hard)
            #expect(try repo.headCommit() == c)

            _ = try repo.switchBranch("side", create: true, startPoint: b.hex)
            let d = try commitTensors(repo, ["t1": [3, 3]], "d")
            _ = try repo.switchBranch("main")
            // HEAD + (REV − REV^) = 5 + (3 − 2), one parent.
            let p = try repo.cherryPick(d.hex)
            #expect(!p.exact && p.commit?.parents == [c])
            #expect(try worktreeValues(repo, "t1") == [6, 6])
        }
    }

    @Test func cherryPickIsExactWhenHeadHasTheParentsTensors() throws {
        try withRepository { repo, _ in
            _ = try commitTensors(repo, ["t1": [1, 1], "t2": [1, 1]], "a")
            _ = try repo.switchBranch("side", create: true)
            let b = try commitTensors(repo, ["t1": [7, 7], "t2": [1, 1]], "b")
            _ = try repo.switchBranch("main")
            let c = try commitTensors(repo, ["t1": [1, 1], "t2": [9, 9]], "c")
            let p = try repo.cherryPick("side")
            #expect(p.exact && p.commit?.parents == [c])
            #expect(try repo.tensors(of: "HEAD")["t1"]!.objectID == repo.tensors(of: b.hex)["t1"]!.objectID)
            #expect(try worktreeValues(repo, "t2") == [9, 9])
            #expect(p.commit?.message.hasSuffix("(cherry picked from commit \(b.hex))") == true)
        }
    }

    @Test func revertAndCherryPickKeepLocalChangesTheyDoNotWrite() throws {
        try withRepository { repo, _ in
            try "{\"a\": 1}".write(toFile: repo.root + "/config.json", atomically: true, encoding: .utf8)
            try "# my model\n".write(toFile: repo.root + "/README.md", atomically: true, encoding: .utf8)
            try SafetensorsWriter.write(path: repo.root + "/optimizer.safetensors", tensors: [("m", .f32, [2], Array(repeating: 0, count: 8))], metadata: [])
            _ = try commitTensors(repo, ["t1": [1, 1], "t2": [1, 1]], "a")
            let b = try commitTensors(repo, ["t1": [2, 2], "t2": [1, 1]], "b")
            let c = try commitTensors(repo, ["t1": [2, 2], "t2": [3, 3]], "c")
            let committedTree = try repo.tree(of: c)
            // An optimizer state nobody tracks and an edited config the revert does not touch.
            try Data(repeating: 7, count: 64).write(to: URL(fileURLWithPath: repo.root + "/optimizer.pt"))
            try "{\"a\": 2}".write(toFile: repo.root + "/config.json", atomically: true, encoding: .utf8)
            let r = try repo.revert(b.hex)
            #expect(r.exact)
            let reverted = try #require(r.commit)
            #expect(try repo.tree(of: reverted.id).file(at: "config.json")?.identity == committedTree.file(at: "config.json")?.identity)
            #expect(try repo.tree(of: reverted.id).file(at: "optimizer.pt") == nil)
            #expect(try String(contentsOfFile: repo.root + "/config.json", encoding: .utf8) == "{\"a\": 2}")
            #expect(FileManager.default.contents(atPath: repo.root + "/optimizer.pt") == Data(repeating: 7, count: 64))
            #expect(try worktreeValues(repo, "t1") == [1, 1])
            let changes = try repo.status().changes.map { "\($0.kind) \($0.path)" }.sorted()
            #expect(changes == ["added optimizer.pt", "modified config.json"])

            // Task arithmetic (t1 moved on since b) keeps them as well.
            _ = try repo.reset(to: "ORIG_HEAD", mode: .hard)
            #expect(try repo.headCommit() == c)
            try FileManager.default.removeItem(atPath: repo.root + "/optimizer.pt")
            let d = try commitTensors(repo, ["t1": [5, 5], "t2": [3, 3]], "d")
            try "{\"a\": 3}".write(toFile: repo.root + "/config.json", atomically: true, encoding: .utf8)
            try Data(repeating: 9, count: 64).write(to: URL(fileURLWithPath: repo.root + "/optimizer.pt"))
            // Another checkpoint file and the model card, edited; no commit touched either.
            try SafetensorsWriter.write(path: repo.root + "/optimizer.safetensors", tensors: [("m", .f32, [2], Array(repeating: 1, count: 8))], metadata: [])
            let optimizer = FileManager.default.contents(atPath: repo.root + "/optimizer.safetensors")
            try "# my model, being edited\n".write(toFile: repo.root + "/README.md", atomically: true, encoding: .utf8)
            let p = try repo.revert(b.hex)
            #expect(!p.exact && p.commit?.parents == [d])
            #expect(try worktreeValues(repo, "t1") == [4, 4])
            #expect(try String(contentsOfFile: repo.root + "/config.json", encoding: .utf8) == "{\"a\": 3}")
            #expect(FileManager.default.contents(atPath: repo.root + "/optimizer.pt") == Data(repeating: 9, count: 64))
            #expect(FileManager.default.contents(atPath: repo.root + "/optimizer.safetensors") == optimizer)
            #expect(try String(contentsOfFile: repo.root + "/README.md", encoding: .utf8) == "# my model, being edited\n")
            // The revert commit is HEAD with the change: HEAD's own card, no merge card or recipe added.
            let revertTree = try repo.tree(of: try #require(p.commit).id), headTree = try repo.tree(of: d)
            #expect(revertTree.file(at: "README.md")?.identity == headTree.file(at: "README.md")?.identity)
            #expect(revertTree.file(at: "merge_recipe.yml") == nil)
            #expect(revertTree.file(at: "optimizer.safetensors")?.identity == headTree.file(at: "optimizer.safetensors")?.identity)

            // cherry-pick: config.json differs between HEAD and the picked commit, but the pick does
            // not change it (its parent has it as the picked commit does), so an edit of it stays.
            _ = try repo.reset(to: "ORIG_HEAD", mode: .hard)
            _ = try repo.switchBranch("side", create: true, startPoint: b.hex)
            try "{\"a\": 5}".write(toFile: repo.root + "/config.json", atomically: true, encoding: .utf8)
            try FileManager.default.removeItem(atPath: repo.root + "/optimizer.pt")
            _ = try commitTensors(repo, ["t1": [2, 2], "t2": [1, 1]], "config only")
            let e = try commitTensors(repo, ["t1": [3, 3], "t2": [1, 1]], "e")
            #expect(try repo.tree(of: e).file(at: "config.json")?.identity != headTree.file(at: "config.json")?.identity)
            _ = try repo.switchBranch("main")
            try "{\"a\": 4}".write(toFile: repo.root + "/config.json", atomically: true, encoding: .utf8)
            let picked = try repo.cherryPick(e.hex)
            #expect(picked.commit?.parents == [d])
            #expect(try String(contentsOfFile: repo.root + "/config.json", encoding: .utf8) == "{\"a\": 4}")
            #expect(try repo.tree(of: try #require(picked.commit).id).file(at: "config.json")?.identity == headTree.file(at: "config.json")?.identity)
        }
    }

    @Test func revertRefusesAChangedFileItWouldWriteAndChangesNothing() throws {
        try withRepository { repo, _ in
            _ = try commitTensors(repo, ["t1": [1, 1]], "a")
            let b = try commitTensors(repo, ["t1": [2, 2]], "b")
            try SafetensorsWriter.write(path: repo.root + "/model.safetensors", tensors: [("t1", .f32, [2], Array(repeating: 0, count: 8))], metadata: [])
            let edited = FileManager.default.contents(atPath: repo.root + "/model.safetensors")
            expectThrows(RepoError.dirtyWorktree(operation: "revert", paths: ["model.safetensors"])) { _ = try repo.revert(b.hex) }
            #expect(try repo.headCommit() == b)
            #expect(FileManager.default.contents(atPath: repo.root + "/model.safetensors") == edited)
            // Where the change needs arithmetic, the merge's rule stops it, naming the command.
            // (The picked change is off HEAD's history: one in it is refused as already there.)
            _ = try repo.switchBranch("other", create: true, force: true)
            let d = try commitTensors(repo, ["t1": [3, 3]], "d")
            _ = try repo.switchBranch("side", create: true, startPoint: b.hex, force: true)
            let c = try commitTensors(repo, ["t1": [5, 5]], "c")
            try SafetensorsWriter.write(path: repo.root + "/model.safetensors", tensors: [("t1", .f32, [2], Array(repeating: 0, count: 8))], metadata: [])
            expectThrows(RepoError.dirtyWorktree(operation: "cherry-pick", paths: ["model.safetensors"])) { _ = try repo.cherryPick(d.hex) }
            #expect(try repo.headCommit() == c)
        }
    }

    /// Two files of one checkpoint holding a tensor of the same name (a link committed with
    /// --dereference, an optimizer file): a merge cannot match them, and is refused before it
    /// writes anything (it had kept one file and silently dropped the other).
    @Test func aMergeRefusesATensorNameHeldByTwoFiles() throws {
        try withRepository { repo, _ in
            _ = try commitTensors(repo, ["w": [1, 1]], "a")
            try FileManager.default.copyItem(atPath: repo.root + "/model.safetensors", toPath: repo.root + "/copy.safetensors")
            let base = try repo.commitAll("two files").commit.id
            _ = try repo.switchBranch("side", create: true)
            _ = try commitTensors(repo, ["w": [2, 2]], "side")
            _ = try repo.switchBranch("main")
            try SafetensorsWriter.write(path: repo.root + "/copy.safetensors", tensors: [("w", .f32, [2], Array(repeating: 0, count: 8))], metadata: [])
            let head = try repo.commitAll("main").commit.id
            var options = MergeOptions(branches: ["side"], recipe: MergeRecipe(method: "task_arithmetic", experts: [], seed: 0))
            options.isExplicit = false
            expectThrows(RepoError.self) { _ = try repo.merge(options) }
            #expect(try repo.headCommit() == head && base != head)
            #expect(try repo.status().isClean)
        }
    }

    /// revert through the merge machinery keeps HEAD's statistics (mrepo_stats/); a merge's tree
    /// has none, but a revert is HEAD with a change undone (it had deleted them).
    @Test func revertKeepsTheStatisticsFolder() throws {
        try withRepository { repo, _ in
            try FileManager.default.createDirectory(atPath: repo.root + "/mrepo_stats", withIntermediateDirectories: true)
            try SafetensorsWriter.write(path: repo.root + "/mrepo_stats/fisher.safetensors", tensors: [("t1", .f32, [2], Array(repeating: 0, count: 8))], metadata: [])
            _ = try commitTensors(repo, ["t1": [1, 1]], "a")
            let b = try commitTensors(repo, ["t1": [2, 2]], "b")
            let c = try commitTensors(repo, ["t1": [5, 5]], "c")
            let r = try repo.revert(b.hex)
            #expect(!r.exact)
            let stats = try repo.tree(of: try #require(r.commit).id).file(at: "mrepo_stats/fisher.safetensors")
            let headStats = try repo.tree(of: c).file(at: "mrepo_stats/fisher.safetensors")
            #expect(stats != nil && stats?.identity == headStats?.identity)
            #expect(FileManager.default.fileExists(atPath: repo.root + "/mrepo_stats/fisher.safetensors"))
            #expect(try repo.status().isClean)
        }
    }

    /// One side re-sharded the checkpoint (an index and two shards), the merge keeps HEAD's single
    /// file: the index taken from that side no longer describes the files, and is rebuilt.
    @Test func aMergeRebuildsAShardIndexThatNoLongerDescribesTheFiles() throws {
        try withRepository { repo, _ in
            _ = try commitTensors(repo, ["a": [1, 1], "b": [1, 1]], "base")
            _ = try repo.switchBranch("x", create: true)
            try FileManager.default.removeItem(atPath: repo.root + "/model.safetensors")
            let two = Array(repeating: UInt8(0), count: 8)
            try SafetensorsWriter.write(path: repo.root + "/m1.safetensors", tensors: [("a", .f32, [2], two)], metadata: [])
            try SafetensorsWriter.write(path: repo.root + "/m2.safetensors", tensors: [("b", .f32, [2], two)], metadata: [])
            let index = ShardIndex(weightMap: [("a", "m1.safetensors"), ("b", "m2.safetensors")], metadata: nil)
            try Data(index.serialized()).write(to: URL(fileURLWithPath: repo.root + "/model.safetensors.index.json"))
            _ = try repo.commitAll("shard")
            _ = try repo.switchBranch("main")
            let commit = try mergeCommitted(repo, "x", explicit: true)
            let tree = try repo.tree(of: commit.id)
            let indexFile = try #require(tree.file(at: "model.safetensors.index.json"))
            let parsed = try ShardIndex.parse(try repo.objects.read(indexFile.objectID), file: indexFile.path)
            for (tensor, file) in parsed.weightMap {
                #expect(tree.file(at: file)?.tensors.contains { $0.name == tensor } == true, "\(tensor) is not in \(file)")
            }
        }
    }

    /// One side renamed the checkpoint file, the other edited a config: the merge keeps the rename
    /// (it had laid the tensors out in HEAD's old file name, undoing it without a word).
    @Test func aMergeKeepsARenameMadeOnOneSide() throws {
        try withRepository { repo, _ in
            _ = try commitTensors(repo, ["w": [1, 1]], "base")
            _ = try repo.switchBranch("x", create: true)
            try FileManager.default.moveItem(atPath: repo.root + "/model.safetensors", toPath: repo.root + "/renamed.safetensors")
            _ = try repo.commitAll("rename")
            _ = try repo.switchBranch("main")
            try "{}".write(toFile: repo.root + "/config.json", atomically: true, encoding: .utf8)
            _ = try repo.commitAll("config")
            let commit = try mergeCommitted(repo, "x")
            let tree = try repo.tree(of: commit.id)
            #expect(tree.file(at: "renamed.safetensors") != nil && tree.file(at: "model.safetensors") == nil)
            #expect(tree.file(at: "config.json") != nil)
            #expect(FileManager.default.fileExists(atPath: repo.root + "/renamed.safetensors"))
            #expect(!FileManager.default.fileExists(atPath: repo.root + "/model.safetensors"))
        }
    }

    /// A sharded checkpoint in a subfolder: one side moves a tensor between shards (and updates the
    /// index), the other only adds an optimizer file at the top. The move is kept, the optimizer
    /// file too, and the index names its folder's shards by their names in that folder, nothing else.
    @Test func aMergeKeepsAOneSidedReshardAndIndexesOnlyTheShards() throws {
        try withRepository { repo, _ in
            let fm = FileManager.default
            let two = Array(repeating: UInt8(0), count: 8)
            func shards(_ first: [String], _ second: [String]) throws {
                try SafetensorsWriter.write(path: repo.root + "/sub/model-00001-of-00002.safetensors", tensors: first.map { ($0, .f32, [2], two) }, metadata: [])
                try SafetensorsWriter.write(path: repo.root + "/sub/model-00002-of-00002.safetensors", tensors: second.map { ($0, .f32, [2], two) }, metadata: [])
                let map = first.map { ($0, "model-00001-of-00002.safetensors") } + second.map { ($0, "model-00002-of-00002.safetensors") }
                try Data(ShardIndex(weightMap: map, metadata: nil).serialized()).write(to: URL(fileURLWithPath: repo.root + "/sub/model.safetensors.index.json"))
            }
            try fm.createDirectory(atPath: repo.root + "/sub", withIntermediateDirectories: true)
            try shards(["a", "b"], ["c"])
            _ = try repo.commitAll("base")
            _ = try repo.switchBranch("side", create: true)
            try shards(["a"], ["b", "c"])
            _ = try repo.commitAll("move b")
            _ = try repo.switchBranch("main")
            try SafetensorsWriter.write(path: repo.root + "/optimizer.safetensors", tensors: [("o", .f32, [2], two)], metadata: [])
            _ = try repo.commitAll("optimizer")
            let commit = try mergeCommitted(repo, "side")
            let tree = try repo.tree(of: commit.id)
            #expect(tree.file(at: "sub/model-00002-of-00002.safetensors")?.tensors.map(\.name).sorted() == ["b", "c"])
            #expect(tree.file(at: "sub/model-00001-of-00002.safetensors")?.tensors.map(\.name) == ["a"])
            #expect(tree.file(at: "optimizer.safetensors")?.tensors.map(\.name) == ["o"])
            let indexFile = try #require(tree.file(at: "sub/model.safetensors.index.json"))
            let parsed = try ShardIndex.parse(try repo.objects.read(indexFile.objectID), file: indexFile.path)
            let map = Dictionary(uniqueKeysWithValues: parsed.weightMap.map { ($0.tensor, $0.file) })
            #expect(map == ["a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"])
        }
    }

    @Test func stashPutsChangesAsideAndPopBringsThemBack() throws {
        try withRepository { repo, _ in
            let a = try commitTensors(repo, ["t1": [1, 1]], "a")
            expectThrows(RepoError.nothingToStash) { _ = try repo.stash(message: nil) }
            try SafetensorsWriter.write(path: repo.root + "/model.safetensors", tensors: [("t1", .f32, [2], Array(repeating: 0, count: 8))], metadata: [])
            let e = try repo.stash(message: "zeros")
            #expect(e.index == 0 && e.message == "zeros" && e.branch == "main")
            #expect(try repo.status().isClean && worktreeValues(repo, "t1") == [1, 1])
            #expect(try repo.commit(e.commit).parents == [a])
            #expect(try repo.headCommit() == a)
            // gc keeps the stash.
            _ = try repo.gc(pruneReflog: true)
            #expect(try repo.history.commit(e.commit) != nil)
            let popped = try repo.stashPop()
            #expect(try popped.commit == e.commit && repo.history.stashes().isEmpty)
            #expect(try worktreeValues(repo, "t1") == [0, 0])
            expectThrows(RepoError.invalidArgument("no stash entries")) { try repo.stashPop() }
        }
    }

    @Test func restorePutsBackFilesAndSingleTensors() throws {
        try withRepository { repo, _ in
            _ = try commitTensors(repo, ["t1": [1, 1], "t2": [2, 2]], "a")
            try writeFile("cfg", to: repo.root + "/config.json")
            _ = try repo.commitAll("config")
            try writeFile("changed", to: repo.root + "/config.json")
            try SafetensorsWriter.write(path: repo.root + "/model.safetensors",
                                        tensors: [("t1", .f32, [2], Array(repeating: 0, count: 8)), ("t2", .f32, [2], Array(repeating: 0, count: 8))], metadata: [])
            let r = try repo.restore(paths: ["config.json"], source: nil)
            #expect(try r.files == ["config.json"] && String(decoding: readFile(repo.root + "/config.json"), as: UTF8.self) == "cfg")
            let t = try repo.restore(paths: [], source: "HEAD~1", tensors: ["t1"])
            #expect(t.tensors == ["t1"] && t.files == ["model.safetensors"])
            #expect(try worktreeValues(repo, "t1") == [1, 1] && worktreeValues(repo, "t2") == [0, 0])
            expectThrows(RepoError.self) { try repo.restore(paths: ["nothing.txt"], source: nil) }
            expectThrows(RepoError.self) { try repo.restore(paths: [], source: nil, tensors: ["nomatch*"]) }
            #expect(try worktreeValues(repo, "t2") == [0, 0])
        }
    }

    @Test func notesAndMetricsAreAddedWithoutChangingTheCommit() throws {
        try withRepository { repo, _ in
            try writeFile("1", to: repo.root + "/f.txt")
            let c = try repo.commit(CommitOptions(message: "m", metrics: [Commit.Metric(name: "loss", value: 2)], author: testAuthor)).commit
            try repo.addNote("evaluated", to: "HEAD")
            try repo.addMetrics([Commit.Metric(name: "loss", value: 1.5), Commit.Metric(name: "acc", value: 0.9)], to: "HEAD")
            let again = try repo.commit(c.id)
            #expect(again == c)
            #expect(try repo.metrics(of: again) == [Commit.Metric(name: "loss", value: 1.5), Commit.Metric(name: "acc", value: 0.9)])
            #expect(try repo.history.notes(of: c.id).map(\.text) == ["evaluated"])
            try repo.addMetrics([Commit.Metric(name: "acc", value: 0.95)], to: "HEAD")
            #expect(try repo.metrics(of: again).last?.value == 0.95)
        }
    }

    @Test func branchRenameKeepsTheReflogAndForceMovesRefs() throws {
        try withRepository { repo, _ in
            let a = try commitTensors(repo, ["w": [1, 1]], "a")
            let b = try commitTensors(repo, ["w": [2, 2]], "b")
            try repo.renameBranch("main", to: "trunk")
            #expect(try repo.history.head().branchName == "trunk")
            let log = try repo.history.reflog(ref: "trunk")
            #expect(log.first?.message == "branch: renamed main to trunk" && log.count == 3)
            #expect(try repo.history.reflog(ref: "main").isEmpty)
            #expect(try repo.resolve("trunk@{2}") == a)
            try repo.createBranch("side", at: a.hex)
            expectThrows(RepoError.refExists("side")) { try repo.renameBranch("trunk", to: "side") }
            #expect(try repo.forceBranch("side", at: "HEAD") == b)
            expectThrows(RepoError.self) { try repo.forceBranch("trunk", at: a.hex) }
            try repo.createTag("v1", at: a.hex)
            #expect(try repo.forceTag("v1", message: "moved") == b)
            #expect(try repo.history.ref(named: "v1")?.message == "moved")
        }
    }

    @Test func logSupportTopologyPathsAndStats() throws {
        try withRepository { repo, _ in
            let a = try commitTensors(repo, ["t1": [1, 1], "t2": [1, 1]], "a")
            let b = try commitTensors(repo, ["t1": [2, 2], "t2": [1, 1]], "b")
            try writeFile("cfg", to: repo.root + "/config.json")
            let c = try repo.commitAll("c").commit.id
            let commits = try repo.topologicalLog(from: [c])
            #expect(commits.map(\.id) == [c, b, a])
            #expect(try repo.topologicalLog(from: [c], excluded: repo.ancestors(of: a)).map(\.id) == [c, b])
            let touchingT1 = try commits.filter { try repo.touches($0, specs: ["t1"]) }.map(\.id)
            #expect(touchingT1 == [b, a])
            // Closures hoisted out of #expect (a Swift 6.3.1 miscompile inside closures).
            let touchingGlob = try commits.filter { try repo.touches($0, specs: ["t*"]) }.map(\.id)
            let touchingConfig = try commits.filter { try repo.touches($0, specs: ["config.json"]) }.map(\.id)
            #expect(touchingGlob == [b, a])
            #expect(touchingConfig == [c])
            let stats = try repo.fileStats(of: try repo.commit(b))
            #expect(stats.count == 1 && stats[0].tensorsChanged == 1 && stats[0].tensorCount == 2 && stats[0].storedBytes > 0)
            let d = try repo.diff(old: a.hex, new: c.hex, filter: DiffFilter(tensors: ["t2"]))
            #expect(d.tensors.map(\.name) == ["t2"] && d.files.map(\.path) == ["config.json"])
            let p = try repo.diff(old: a.hex, new: c.hex, filter: DiffFilter(paths: ["model.safetensors"]))
            #expect(p.files.isEmpty && p.changedTensors.map(\.name) == ["t1"])
        }
    }
}
