import Delta
import Foundation
import ModelFactory
import Testing

@testable import Repo

/// One entry point writes a commit or a model generated from it (`Repository.export(_:as:to:)`,
/// `checkout(_:as:)`); batched object reads agree with single ones; post-hooks return warnings.
@Suite struct MaterializationTests {

    @Test func flagsNameOneMaterialization() {
        #expect(Materialization(expert: nil, view: nil, fold: false) == .tree)
        #expect(Materialization(expert: nil, view: nil, fold: true) == .folded)
        #expect(Materialization(expert: "math", view: .mean, fold: true) == .expert("math", fold: true))
        #expect(Materialization(expert: nil, view: .taFull, fold: false) == .view(.taFull, fold: false))
    }

    @Test func exportAsDecidesBetweenTheTreeAndAFoldedAdapter() throws {
        let fixture = try AdapterRepository([LoRASpec(name: "lora-math", seed: 101, rank: 4, alpha: 8)])
        let (repo, dir) = (fixture.repo, fixture.dir)
        do {
            let folded = try repo.export("lora-math", as: .folded, to: dir + "/a")
            _ = try repo.exportFolded("lora-math", to: dir + "/b")
            #expect(try folded.lossy == nil && folded.commit == repo.resolve("lora-math"))
            #expect(try readFile(dir + "/a/model.safetensors") == readFile(dir + "/b/model.safetensors"))
            let tree = try repo.export("lora-math", as: .tree, to: dir + "/c")
            #expect(tree.fileCount == (try repo.tree(of: tree.commit)).files.count)
            #expect(FileManager.default.fileExists(atPath: dir + "/c/adapter_model.safetensors"))
            #expect(!FileManager.default.fileExists(atPath: dir + "/c/model.safetensors"))
        }
    }

    @Test func checkoutAsFoldedDescribesWhatTheWorkingTreeHolds() throws {
        let fixture = try AdapterRepository([LoRASpec(name: "lora-math", seed: 101, rank: 4, alpha: 8)])
        let repo = fixture.repo
        do {
            let (result, description) = try repo.checkout("lora-math", as: .folded, force: true)
            #expect(try description != nil && result.head.commit == repo.resolve("lora-math"))
            let (plain, none) = try repo.checkout("main", as: .tree, force: true)
            #expect(none == nil && plain.head.branchName == "main")
        }
    }

    @Test func batchedObjectReadsAgreeWithSingleOnes() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            let tree = try repo.tree(of: try repo.commitAll("base").commit.id)
            let missing = SHA256.hash(Array("not stored".utf8))
            let batched = try repo.history.objectInfos(Array(tree.objectIDs) + [missing])
            #expect(batched[missing] == nil)
            #expect(batched.count == tree.objectIDs.count)
            for id in tree.objectIDs { #expect(batched[id] == (try repo.history.objectInfo(id))) }
        }
    }

    @Test func aFailingPostCommitHookIsAWarningInTheResult() throws {
        try withRepository { repo, _ in
            try writeFile("#!/bin/sh\nexit 3\n", to: repo.metaDirectory + "/hooks/post-commit", executable: true)
            try writeFile("one", to: repo.root + "/a.txt")
            let result = try repo.commitAll("kept")
            #expect(result.warnings == ["post-commit hook failed (exit status 3)"])
            #expect(try repo.headCommit() == result.commit.id)
        }
    }
}
