import Delta
import Foundation
import Merge
import ModelFactory
@testable import Repo
import Testing

/// A command that fails writes nothing: checkout, switch, export (plain, `--fold`) and merge stage
/// every file beside its destination before renaming any into place, so a corrupt object leaves the
/// working tree, HEAD and an export folder exactly as they were.
@Suite struct AllOrNothingTests {
    /// main: the base model. side: the math fine-tune (README.md and model.safetensors change) plus
    /// `a-notes/extra.json`, a file in a new folder that sorts before model.safetensors. The tensor
    /// object of side's model.safetensors that main lacks and that comes last in the file gets one
    /// byte of its payload flipped, so README.md and the new folder are staged before the failure.
    func corruptedSide(_ repo: Repository) throws -> (main: ObjectID, side: ObjectID, object: ObjectID) {
        try repo.writeModel()
        let main = try repo.commitAll("base").commit.id
        _ = try repo.switchBranch("side", create: true)
        try repo.writeModel(.light("math", seed: 11))
        try writeFile(#"{"extra": true}"#, to: repo.root + "/a-notes/extra.json")
        let side = try repo.commitAll("math").commit.id
        _ = try repo.switchBranch("main")
        let before = try repo.tensors(of: "main")
        let model = try #require(try repo.tree(of: side).file(at: "model.safetensors"))
        let changed = model.tensors.filter { before[$0.name]?.objectID != $0.objectID }
        let last = try #require(changed.max { $0.dataOffsets.lowerBound < $1.dataOffsets.lowerBound })
        let path = repo.objects.path(for: last.objectID)
        try flipByte(at: try #require(FileStat.of(path)).size - 1, of: path)
        return (main, side, last.objectID)
    }

    /// The error `body` throws must be the corrupt object, for model.safetensors.
    func expectCorrupt(_ object: ObjectID, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) {
        let error = thrownError(body)
        guard case let .corruptObject(short, problem)? = error as? RepoError else {
            Issue.record("expected corruptObject, got \(String(describing: error))", sourceLocation: sourceLocation)
            return
        }
        #expect(short == object.short, sourceLocation: sourceLocation)
        #expect(problem.hasPrefix("model.safetensors: "), "\(problem)", sourceLocation: sourceLocation)
        #expect(problem.hasSuffix("; nothing was written"), "\(problem)", sourceLocation: sourceLocation)
    }

    @Test func failedSwitchAndCheckoutLeaveTheWorkingTreeAndHeadAsTheyWere() throws {
        try withRepository { repo, _ in
            let (main, side, object) = try corruptedSide(repo)
            let before = try fullListing(repo.root)
            #expect(before.count == 5 && before["model.safetensors"] != nil, "\(before.keys.sorted())")
            let head = try repo.history.head()
            #expect(head == .branch("main", commit: main))

            expectCorrupt(object) { _ = try repo.switchBranch("side") }
            expectCorrupt(object) { _ = try repo.checkout("side") }
            expectCorrupt(object) { _ = try repo.checkout(side.hex) }
            expectCorrupt(object) { _ = try repo.checkout(side.hex, force: true) }
            expectCorrupt(object) { _ = try repo.switchBranch("new", create: true, startPoint: "side") }

            // Byte for byte the same files and folders, no temporary file, no `a-notes` folder.
            let after = try fullListing(repo.root)
            #expect(after == before, "\(Set(after.keys).symmetricDifference(before.keys).sorted())")
            #expect(try repo.history.head() == head)
            #expect(try repo.history.ref(named: "new") == nil)
            #expect(try repo.status().isClean)
        }
    }

    @Test func failedExportIntoANewFolderLeavesNoFolder() throws {
        try withRepository { repo, dir in
            let (_, _, object) = try corruptedSide(repo)
            expectCorrupt(object) { _ = try repo.export("side", to: dir + "/out") }
            #expect(!FileManager.default.fileExists(atPath: dir + "/out"))
            // Missing parents the export created go too.
            expectCorrupt(object) { _ = try repo.export("side", to: dir + "/new/deeper/out") }
            #expect(!FileManager.default.fileExists(atPath: dir + "/new"))
        }
    }

    @Test func failedExportIntoAnExistingFolderLeavesItsFilesAndNothingElse() throws {
        try withRepository { repo, dir in
            let (_, _, object) = try corruptedSide(repo)
            let out = dir + "/existing"
            try writeFile("keep me\n", to: out + "/keep.txt")
            try writeFile("not the committed README\n", to: out + "/README.md")
            try writeFile("x", to: out + "/sub/x.txt")
            let before = try fullListing(out)
            #expect(before.keys.sorted() == ["README.md", "keep.txt", "sub", "sub/x.txt"])
            expectCorrupt(object) { _ = try repo.export("side", to: out) }
            let after = try fullListing(out)
            #expect(after == before, "\(Set(after.keys).symmetricDifference(before.keys).sorted())")
            // Exporting a commit that verifies still replaces the files of the same names.
            _ = try repo.export("main", to: out)
            #expect(try readFile(out + "/README.md") == (try readFile(repo.root + "/README.md")))
            #expect(try readFile(out + "/keep.txt") == Array("keep me\n".utf8))
        }
    }

    @Test func successfulCheckoutWritesExactlyTheTargetTree() throws {
        try withRepository { repo, dir in
            try repo.writeModel()
            try repo.commitAll("base")
            _ = try repo.switchBranch("side", create: true)
            try repo.writeModel(.light("math", seed: 11))
            try writeFile(#"{"extra": true}"#, to: repo.root + "/a-notes/deep/extra.json")
            try writeFile("#!/bin/sh\n", to: repo.root + "/run.sh", executable: true)
            try repo.commitAll("math")
            _ = try repo.export("side", to: dir + "/side")
            _ = try repo.export("main", to: dir + "/main")
            _ = try repo.switchBranch("main")
            #expect(try fullListing(repo.root) == (try fullListing(dir + "/main")))

            let result = try repo.checkout("side")
            // model.safetensors, README.md, extra.json and run.sh differ; config and both tokenizer files do not.
            #expect(result.writtenFiles == 4)
            #expect(result.unchangedFiles == 3)
            #expect(result.removedFiles == 0)
            let side = try fullListing(dir + "/side")
            #expect(side["a-notes/deep"] == [2] && side.count == 9, "\(side.keys.sorted())")
            #expect(try fullListing(repo.root) == side)
            #expect(sameFiles(try snapshot(repo.root), try snapshot(dir + "/side")))  // executable bits too
            #expect(try repo.status().isClean)
            #expect(try repo.history.head() == .branch("side", commit: try repo.resolve("side")))

            // Back again: the dropped files and the folders that held them go.
            let back = try repo.switchBranch("main")
            #expect(back.removedFiles == 2)
            #expect(try fullListing(repo.root) == (try fullListing(dir + "/main")))
            #expect(try repo.status().isClean)
        }
    }

    // MARK: - Computed files (export --fold, checkout --fold)

    @Test func failedFoldExportAndCheckoutWriteNothing() throws {
        let fixture = try AdapterRepository([LoRASpec(name: "lora-math", seed: 101, rank: 4, alpha: 8)])
        let (repo, dir) = (fixture.repo, fixture.dir)
        // A base tensor the adapter leaves alone: the fold streams it from the store.
        let tensor = try #require(try repo.tensors(of: "main")["pooler.dense.weight"])
        let path = repo.objects.path(for: tensor.objectID)
        try flipByte(at: try #require(FileStat.of(path)).size - 1, of: path)
        let worktree = try fullListing(repo.root)
        let head = try repo.history.head()

        let exported = thrownError { _ = try repo.exportFolded("lora-math", to: dir + "/folded") }
        guard case let .corruptObject(object, _)? = exported as? RepoError else {
            Issue.record("expected corruptObject, got \(String(describing: exported))")
            return
        }
        #expect(object == tensor.objectID.short)
        #expect(!FileManager.default.fileExists(atPath: dir + "/folded"))

        let checkedOut = thrownError { _ = try repo.checkoutReversible("lora-math", view: nil, expert: nil, fold: true) }
        if case let .corruptObject(object, _)? = checkedOut as? RepoError {
            #expect(object == tensor.objectID.short)
        } else {
            Issue.record("expected corruptObject, got \(String(describing: checkedOut))")
        }
        #expect(try fullListing(repo.root) == worktree)
        #expect(try repo.history.head() == head)
        #expect(try repo.currentView() == nil)
    }

    // MARK: - Merge

    /// A file only one branch adds is taken by the merge as it is; when one of its objects is corrupt,
    /// the merge fails while staging its checkout, before the commit is recorded.
    @Test func mergeThatCannotCheckOutItsResultRecordsNothing() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            let main = try repo.commitAll("base").commit.id
            _ = try repo.switchBranch("math", create: true)
            try repo.writeModel(.light("math", seed: 11))
            try writeFloats([("extra.weight", (0..<64).map { Float($0) / 7 })], to: repo.root + "/extra.safetensors")
            try repo.commitAll("math")
            _ = try repo.switchBranch("code", create: true, startPoint: "main")
            try repo.writeModel(.light("code", seed: 12))
            try repo.commitAll("code")
            _ = try repo.switchBranch("main")
            let extra = try #require(try repo.tensors(of: "math")["extra.weight"])
            let path = repo.objects.path(for: extra.objectID)
            try flipByte(at: try #require(FileStat.of(path)).size - 1, of: path)
            let worktree = try fullListing(repo.root)
            let objectsBefore = repo.objectFiles

            for noCommit in [false, true] {
                let options = MergeOptions(branches: ["math", "code"], recipe: MergeRecipe(method: "task_arithmetic", experts: []),
                                           noCommit: noCommit)
                let error = thrownError { _ = try repo.merge(options) }
                guard case let .corruptObject(object, problem)? = error as? RepoError else {
                    Issue.record("expected corruptObject, got \(String(describing: error))")
                    continue
                }
                #expect(object == extra.objectID.short)
                #expect(problem.hasPrefix("extra.safetensors: "), "\(problem)")
                #expect(try fullListing(repo.root) == worktree)
                #expect(try repo.history.head() == .branch("main", commit: main))
                #expect(try repo.history.mergeState() == nil)
                #expect(repo.objectFiles == objectsBefore)
                #expect(!FileManager.default.fileExists(atPath: repo.metaDirectory + "/prepared"))
            }
        }
    }
}

/// Every entry under `dir` but `.mrepo` and its content, temporary files and empty folders
/// included: a file maps to its bytes followed by its executable bit (0 or 1), a folder to [2].
func fullListing(_ dir: String) throws -> [String: [UInt8]] {
    var out: [String: [UInt8]] = [:]
    let names = FileManager.default.enumerator(atPath: dir)?.compactMap { $0 as? String } ?? []
    for name in names where name != ".mrepo" && !name.hasPrefix(".mrepo/") {
        let path = dir + "/" + name
        guard let st = FileStat.of(path) else { continue }
        out[name] = st.isDirectory ? [2] : try readFile(path) + [st.isExecutable ? 1 : 0]
    }
    return out
}
