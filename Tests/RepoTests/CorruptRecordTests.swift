import Delta
import Foundation
import GRDB
import Testing

@testable import Repo

/// Typed records: what they encode is the format's JSON, member for member (commit ids depend on
/// it), and a record or row that does not decode is a named error, never "absent" or a crash.
@Suite struct CorruptRecordTests {
    let someID = SHA256.hash(Array("some id".utf8))

    func commit(extra: [JSONMember]) -> Commit {
        Commit(id: someID, treeID: someID, parents: [], base: nil, author: "a <a@b>", timestamp: 0, message: "m",
               metrics: [], extra: .object(extra), generation: 0)
    }

    /// The problem of a ``RepoError/corruptRecord(_:problem:)``, or nil for any other outcome.
    func corruptRecordProblem(_ body: () throws -> Void) -> String? {
        guard case let .corruptRecord(_, problem)? = thrownError(body) as? RepoError else { return nil }
        return problem
    }

    @Test func adapterRecordEncodesTheFormatsMembersInOrder() throws {
        let record = AdapterRecord(base: someID, rank: 8, alpha: 16, useRSLoRA: false, targets: ["query", "value"], moduleCount: 4)
        // The members as mrepo 0.2 wrote them by hand (docs/format.md §3.7).
        let expected = JSONValue.object([
            JSONMember("format", .string("peft-lora")), JSONMember("base", .string(someID.hex)), JSONMember("r", .int(8)),
            JSONMember("alpha", .double(16)), JSONMember("rslora", .bool(false)),
            JSONMember("targets", .array([.string("query"), .string("value")])), JSONMember("modules", .int(4)),
        ])
        let member = try record.jsonMember()
        #expect(member.key == "adapter")
        #expect(member.value.serialized() == expected.serialized())
        #expect(try commit(extra: [member]).record(AdapterRecord.self) == record)
    }

    @Test func reversibleMergeRecordWritesAbsentMembersAsNull() throws {
        let record = ReversibleMergeRecord(expertKind: .adapter, variant: .position, basis: 2, center: true, base: someID,
                                           experts: [("math", someID)], reportObject: nil, rank: nil)
        let expected = JSONValue.object([
            JSONMember("kind", .string("adapter")), JSONMember("variant", .string("position")), JSONMember("basis", .int(2)),
            JSONMember("center", .bool(true)), JSONMember("base", .string(someID.hex)),
            JSONMember("experts", .array([.object([JSONMember("name", .string("math")), JSONMember("commit", .string(someID.hex))])])),
            JSONMember("rank", .null), JSONMember("report_object", .null),
        ])
        #expect(try record.jsonMember().value.serialized() == expected.serialized())
    }

    @Test func lossyRecordKeepsTensorOrderAndTheSetting() throws {
        let text = #"{"method":"lowrank","energy":0.9,"tensor_count":2,"max_relative_error":0.25,"mean_relative_error":0.125,"#
            + #""stored_bytes":10,"dense_bytes":40,"tensors":{"w.b":{"rank":2,"relative_error":0.25},"w.a":{"rank":1,"relative_error":0}}}"#
        let json = try JSONValue.parse(Array(text.utf8))
        let record = try #require(try commit(extra: [JSONMember("lossy", json)]).record(LossyRecord.self))
        #expect(record.setting == .energy(0.9) && record.settingDescription == "energy 0.9")
        #expect(record.tensors.map(\.name) == ["w.b", "w.a"] && record.tensors.map(\.rank) == [2, 1])
        #expect(record.savedFraction == 0.75)
        #expect(try record.jsonMember().value.serialized() == json.serialized())
    }

    @Test func aDamagedRecordIsAnErrorNotAbsent() throws {
        let bad = commit(extra: [JSONMember("adapter", .object([JSONMember("base", .string("not an id"))]))])
        let problem = corruptRecordProblem { _ = try bad.record(AdapterRecord.self) }
        #expect(problem != nil)
        let badKind = commit(extra: [JSONMember("rmm", .object([JSONMember("kind", .string("hologram")), JSONMember("base", .string(someID.hex))]))])
        #expect(corruptRecordProblem { _ = try badKind.record(ReversibleMergeRecord.self) } != nil)
        // A commit without the member has no record.
        #expect(try commit(extra: []).record(AdapterRecord.self) == nil)
    }

    @Test func aDamagedCommitRowThrowsInsteadOfCrashing() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            let id = try repo.commitAll("base").commit.id
            try repo.history.write { db in
                try db.execute(sql: #"UPDATE "commit" SET extra = ? WHERE id = ?"#, arguments: ["{not json", id.hex])
            }
            #expect(corruptRecordProblem { _ = try repo.commit(id) } != nil)
            #expect(corruptRecordProblem { _ = try repo.history.allCommits() } != nil)
            // fsck reports or throws, one line, and does not stop the process.
            let error = thrownError { _ = try repo.fsck() }
            #expect(error == nil || error is RepoError)
        }
    }

    @Test func aDamagedIdInARowIsNamed() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            let id = try repo.commitAll("base").commit.id
            let tree = try repo.tree(of: id)
            // Outside a transaction, with foreign keys off for the damage.
            try repo.history.pool.writeWithoutTransaction { db in
                try db.execute(sql: "PRAGMA foreign_keys = OFF")
                try db.execute(sql: "UPDATE treeFile SET objectID = 'zz' WHERE treeID = ?", arguments: [tree.id.hex])
                try db.execute(sql: "UPDATE ref SET commitID = 'zz' WHERE name = 'main'")
                try db.execute(sql: "PRAGMA foreign_keys = ON")
            }
            let problem = corruptRecordProblem { _ = try repo.tree(of: id) }
            #expect(problem?.contains("objectID") == true, "\(problem ?? "no corruptRecord")")
            #expect(corruptRecordProblem { _ = try repo.history.refs() } != nil)
        }
    }
}
