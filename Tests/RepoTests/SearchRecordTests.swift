import Delta
import Foundation
import GRDB
import Merge
import Testing

@testable import Repo

/// The records of `merge --search` as `Codable` types: the merge commit's `extra.search` (hashed
/// into its id), the trial store's spec (digested to resume a search) and its trial rows.
extension CorruptRecordTests {
    static let space = SearchSpace(methods: ["ties"], balances: [.none],
                                   parameters: ["lambda": .range(min: 0.2, max: 1.5, points: 1), "density": .range(min: 0.1, max: 1, points: 3)],
                                   experts: ["a": ["weight": .fixed(.number(0.5))]])

    @Test func aSearchRecordEncodesTheRecordedBytes() throws {
        let trials = [
            Trial(number: 0, mergeRecipe: MergeRecipe(method: "ties", experts: ["a"]), point: [0.5], scores: ["b": 1, "a": 0.5], status: .ok,
                  message: nil, seconds: 1.2345),
            Trial(number: 1, mergeRecipe: nil, point: [], scores: nil, status: .failed, message: "boom", seconds: 0),
        ]
        let record = SearchRecord(id: "ab12", space: Self.space.json, seed: 3, objective: .mean, budget: 4, eval: "cmd", evaluated: 2, failed: 1,
                                  winner: 0, front: [0], trials: trials)
        // The member as mrepo 0.2 built it by hand: no recipe or point in the trials.
        let expected = #"{"id":"ab12","space":{"methods":["ties"],"balance":["none"],"parameters":{"density":{"min":0.1,"max":1,"points":3},"#
            + #""lambda":{"min":0.2,"max":1.5}},"experts":{"a":{"weight":{"fixed":"0.5"}}}},"seed":3,"objective":"mean","budget":4,"eval":"cmd","#
            + #""evaluated":2,"failed":1,"winner":0,"front":[0],"trials":[{"number":0,"status":"ok","scores":{"a":0.5,"b":1},"seconds":1.235},"#
            + #"{"number":1,"status":"failed","seconds":0,"message":"boom"}]}"#
        let member = try record.jsonMember()
        #expect(member.key == "search" && member.value.serialized() == expected)
        let back = try #require(try commit(extra: [member]).record(SearchRecord.self))
        #expect(back.trials.map(\.number) == [0, 1] && back.trials[0].scores == ["a": 0.5, "b": 1] && back.trials[1].message == "boom")
        #expect(try back.jsonMember().value.serialized() == expected)
        let bad = JSONValue.object([JSONMember("id", .int(5))])
        #expect(corruptRecordProblem { _ = try commit(extra: [JSONMember("search", bad)]).record(SearchRecord.self) } != nil)
    }

    @Test func theSearchSpecKeepsItsDigestedText() throws {
        let spec = SearchSpec(experts: [SearchSpec.Expert(name: "a", commit: someID)], base: someID, head: someID, space: .object([]),
                              seed: 7, objective: .min, trials: 10, eval: "python eval.py")
        let text = try JSONValueCoding.encode(spec).serialized()
        #expect(text == #"{"experts":[{"name":"a","commit":"\#(someID.hex)"}],"base":"\#(someID.hex)","head":"\#(someID.hex)","#
            + #""space":{},"seed":7,"objective":"min","trials":10,"eval":"python eval.py"}"#)
    }

    @Test func anUndecodableTrialOrSearchRowIsNamed() throws {
        try withRepository { repo, _ in
            let spec = SearchSpec(experts: [], base: someID, head: someID, space: .object([]), seed: 1, objective: .mean, trials: 2, eval: "x")
            try repo.history.insertSearch(id: "s1", spec: try JSONValueCoding.encode(spec).serialized(), digest: "d")
            try repo.history.insertTrial(Trial(number: 0, mergeRecipe: MergeRecipe(method: "ties", experts: ["a"]), point: [0.25],
                                               scores: ["t": 0.5], status: .ok, message: nil, seconds: 1), search: "s1")
            let stored = try repo.history.trials(search: "s1")
            #expect(stored.count == 1 && stored[0].mergeRecipe?.method == "ties" && stored[0].point == [0.25] && stored[0].scores == ["t": 0.5])
            #expect(try repo.history.search(id: "s1")?.spec.objective == .mean)

            try repo.history.write { db in try db.execute(sql: #"UPDATE trial SET recipe = '{"method":1,"experts":[]}'"#) }
            let problem = corruptRecordProblem { _ = try repo.history.trials(search: "s1") }
            #expect(problem?.contains("recipe") == true, "\(problem ?? "no corruptRecord")")
            try repo.history.write { db in try db.execute(sql: #"UPDATE trial SET recipe = 'null', point = '["x"]'"#) }
            #expect(corruptRecordProblem { _ = try repo.history.trials(search: "s1") }?.contains("point") == true)
            try repo.history.write { db in try db.execute(sql: "UPDATE search SET spec = '{}'") }
            #expect(corruptRecordProblem { _ = try repo.history.search(id: "s1") } != nil)
        }
    }
}
