import Delta
import Foundation
import GRDB
import Merge
import Testing

@testable import Repo

/// The merge's records as `Codable` types: the merge state (with its recipe), the merge commit's
/// `extra.merge` and `extra.storage`. What a merge writes reads back and writes the same bytes
/// (commit ids depend on them); a record that does not decode is a named error, never "no merge"
/// or a default.
extension CorruptRecordTests {
    /// A base and two light fine-tunes, `code` and `chat`, with HEAD on main.
    func commitFamily(_ repo: Repository) throws {
        try repo.writeModel()
        try repo.commitAll("base")
        for (name, seed) in [("code", UInt64(12)), ("chat", UInt64(13))] {
            _ = try repo.switchBranch(name, create: true, startPoint: "main")
            try repo.writeModel(.light(name, seed: seed))
            try repo.commitAll(name)
        }
        _ = try repo.switchBranch("main")
    }

    func taskArithmetic(noCommit: Bool = false) -> MergeOptions {
        MergeOptions(branches: ["code", "chat"], recipe: MergeRecipe(method: "task_arithmetic", parameters: ["lambda": .number(0.5)], experts: []),
                     noCommit: noCommit)
    }

    @Test func aMergeStateWhoseRecipeDoesNotDecodeIsNamedAndAbortDiscardsIt() throws {
        try withRepository { repo, _ in
            try commitFamily(repo)
            _ = try repo.merge(taskArithmetic(noCommit: true))
            #expect(try repo.mergeInProgress()?.method == "task_arithmetic")
            let text = try #require(try repo.history.read { db in try String.fetchOne(db, sql: "SELECT state FROM mergeState") })
            guard case var .object(members) = try JSONValue.parse(Array(text.utf8)),
                  let i = members.firstIndex(where: { $0.key == "recipe" }) else {
                Issue.record("the state is not an object with a recipe: \(text.prefix(80))")
                return
            }
            members[i] = JSONMember("recipe", .object([JSONMember("method", .int(5)), JSONMember("experts", .array([]))]))
            try repo.history.write { db in try db.execute(sql: "UPDATE mergeState SET state = ?", arguments: [JSONValue.object(members).serialized()]) }
            let problem = corruptRecordProblem { _ = try repo.mergeInProgress() }
            #expect(problem?.contains("recipe.method") == true, "\(problem ?? "no corruptRecord")")
            // gc cannot tell what the state keeps alive, so it refuses rather than guess.
            #expect(corruptRecordProblem { _ = try repo.gc(pruneReflog: true) } != nil)
            try repo.abortMerge()
            #expect(try repo.mergeInProgress() == nil)
        }
    }

    @Test func aMergeCommitsRecordsReadBackAndWriteTheSameBytes() throws {
        try withRepository { repo, _ in
            try commitFamily(repo)
            let merged = try repo.merge(taskArithmetic())
            guard case .committed = merged.status else {
                Issue.record("merge did not commit: \(merged.status)")
                return
            }
            let commit = try repo.commit(try repo.resolve("HEAD"))
            let record = try #require(try commit.record(MergeRecord.self))
            #expect(record.recipe.method == "task_arithmetic" && record.recipe.experts == ["code", "chat"])
            #expect(record.recipe.parameters["lambda"] == .number(0.5))
            #expect(try record.jsonMember().value.serialized() == commit.extra["merge"]?.serialized())
            #expect(try commit.record(CommitStorage.self) == .lossless)
            #expect(try repo.mergeSummary(of: commit.id)?.method == "task_arithmetic")
            guard case let .tensors(report)? = try repo.mergeReport(of: commit.id) else {
                Issue.record("no per-tensor report")
                return
            }
            #expect(report.method == "task_arithmetic" && report.tensors.count == merged.report.tensors.count)
            #expect(report.json.serialized() == merged.report.json.serialized())
        }
    }

    @Test func aDamagedMergeOrStorageMemberIsNamed() throws {
        let record = MergeRecord(recipe: MergeRecipe(method: "linear", experts: ["a"]), base: someID,
                                 inputs: [MergeInput(name: "HEAD", commit: someID)], experts: nil, summary: [:], reportObject: nil,
                                 options: nil, resolutions: nil)
        guard case var .object(members) = try record.jsonMember().value,
              let i = members.firstIndex(where: { $0.key == "recipe" }) else {
            Issue.record("the record is not an object with a recipe")
            return
        }
        members[i] = JSONMember("recipe", .object([JSONMember("experts", .array([]))]))
        let problem = corruptRecordProblem { _ = try commit(extra: [JSONMember("merge", .object(members))]).record(MergeRecord.self) }
        #expect(problem?.contains("recipe.method") == true, "\(problem ?? "no corruptRecord")")
        #expect(try commit(extra: [JSONMember("storage", .string("lossy"))]).record(CommitStorage.self) == .lossy)
        #expect(corruptRecordProblem { _ = try commit(extra: [JSONMember("storage", .string("sideways"))]).record(CommitStorage.self) } != nil)
        #expect(try commit(extra: []).record(CommitStorage.self) == nil)
    }

    /// A merge commit's id over a record holding every recipe shape: a change to any record's
    /// encoding that would change recorded ids fails here.
    @Test func aMergeCommitsIdIsStable() throws {
        var recipe = MergeRecipe(
            method: "ties",
            parameters: ["lambda": .number(0.8), "normalize": .flag(false),
                         "density": .conditional([ParameterCondition(filter: "mlp", value: .gradient([0.2, 0.6])),
                                                  ParameterCondition(filter: nil, value: .number(0.5))])],
            expertParameters: [["weight": .number(0.7)], ["weight": .number(0.3)]],
            experts: ["math", "code"], seed: 7, lines: (alpha: 0.3, beta: 0.7), consensus: (k: 2, lambda: 0.5))
        recipe.balance = .norm
        var record = MergeRecord(recipe: recipe, base: someID,
                                 inputs: [MergeInput(name: "HEAD", commit: someID), MergeInput(name: "code", commit: someID)],
                                 experts: [MergeInput(name: "math", commit: someID), MergeInput(name: "code", commit: someID)],
                                 summary: ["merged": 3, "unchanged": 1], reportObject: someID, options: nil, resolutions: nil)
        record.tool = "mrepo 0.2"
        let extra = JSONValue.object([try CommitStorage.lossless.jsonMember(), try record.jsonMember()])
        #expect(extra.serialized().hasPrefix(#"{"storage":"lossless","merge":{"recipe":{"method":"ties","parameters":{"density":[{"filter":"mlp","#))
        let id = Commit.computeID(treeID: someID, parents: [someID, someID], base: someID, author: "a <a@b>", timestamp: 1_700_000_000,
                                  message: "merge", metrics: [], extra: extra)
        #expect(id.hex == "2bbf5500abe380757b6e32f0eaa8a70159d946fff2cce9ac58cf3fdeea7b8676")
    }
}
