import Foundation
import Testing

/// The `--json` documents of the transfer commands, the error object and the search, decoded
/// strictly: every key a script reads must be there under its name, with its type, and no other key
/// may appear unannounced. A renamed key fails here.
@Suite struct JSONDocumentCLITests {
    /// What fetch, clone, push and pull print, with the direction's byte count.
    struct Transfer: Decodable {
        struct Change: Decodable {
            var name: String
            var kind: String
            var old: String?
            var new: String?
            var forced: Bool
        }

        var remote: String
        var commits: Int
        var objects: Int
        var objectsSkipped: Int
        var bytesSent: Int?
        var bytesReceived: Int?
        var refs: [Change]
    }

    static let transferKeys: Set<String> = ["remote", "commits", "objects", "objects_skipped", "refs"]
    static let changeKeys: Set<String> = ["name", "source", "created_local_tag", "kind", "old", "new", "forced"]

    func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(T.self, from: Data(text.utf8))
    }

    /// The keys of a JSON object (the first of a list).
    func keys(_ text: String) throws -> Set<String> {
        let any = try JSONSerialization.jsonObject(with: Data(text.utf8))
        let object = try #require((any as? [String: Any]) ?? (any as? [[String: Any]])?.first, "\(text)")
        return Set(object.keys)
    }

    /// The keys of each ref change of a transfer document.
    func changeKeys(_ text: String) throws -> [Set<String>] {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        return (object["refs"] as? [[String: Any]] ?? []).map { Set($0.keys) }
    }

    @Test func transferDocumentsKeepTheirKeys() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "--bare", "hub"])
        try s.repository(branches: [])
        try s.ok(["remote", "add", "origin", "../hub"], in: "repo")
        try s.ok(["push", "-q", "-u", "origin", "main"], in: "repo")

        let cloneText = try s.ok(["clone", "--json", "hub", "copy"]).stdout
        #expect(try keys(cloneText) == Self.transferKeys.union(["bytes_received", "directory", "lazy", "shallow", "branch", "head"]))
        let clone = try decode(Transfer.self, cloneText)
        #expect((clone.bytesReceived ?? 0) > 0 && clone.bytesSent == nil && clone.objects > 0)
        struct CloneMembers: Decodable { var directory: String; var lazy: Bool; var shallow: Bool; var branch: String? }
        let members = try decode(CloneMembers.self, cloneText)
        #expect(members.branch == "main" && !members.lazy && !members.shallow && members.directory.hasSuffix("/copy"))

        try s.ok(["commit", "-q", "--from", "../family/math", "-m", "math"], in: "copy")
        let pushText = try s.ok(["push", "--json"], in: "copy").stdout
        #expect(try keys(pushText) == Self.transferKeys.union(["bytes_sent"]))
        #expect(try changeKeys(pushText) == [Self.changeKeys])
        let push = try decode(Transfer.self, pushText)
        #expect((push.bytesSent ?? 0) > 0 && push.bytesReceived == nil && push.commits == 1)
        #expect(push.refs.first?.name == "main" && push.refs.first?.kind == "branch" && push.refs.first?.old != nil && push.refs.first?.forced == false)

        let fetchText = try s.ok(["fetch", "--json"], in: "repo").stdout
        #expect(try keys(fetchText) == Self.transferKeys.union(["bytes_received"]))
        #expect(try changeKeys(fetchText) == [Self.changeKeys])
        let fetch = try decode(Transfer.self, fetchText)
        #expect(fetch.commits == 1 && fetch.refs.first?.new == push.refs.first?.new)

        let all = try decode([Transfer].self, try s.ok(["fetch", "--all", "--json"], in: "repo").stdout)
        #expect(all.count == 1 && all.first?.remote == "origin" && all.first?.commits == 0)

        let pullText = try s.ok(["pull", "--json"], in: "repo").stdout
        #expect(try keys(pullText) == Self.transferKeys.union(["bytes_received", "status", "head"]))
        struct PullMembers: Decodable { var status: String; var head: String? }
        let pull = try decode(PullMembers.self, pullText)
        #expect(pull.status == "fast_forward" && pull.head == push.refs.first?.new)
        let again = try decode(PullMembers.self, try s.ok(["pull", "--json"], in: "repo").stdout)
        #expect(again.status == "up_to_date" && again.head == nil)
    }

    @Test func theErrorObjectKeepsItsKeys() throws {
        struct ErrorObject: Decodable { var error: String; var code: Int }
        let s = try CLISandbox()
        for (arguments, status) in [(["log", "--json"], Int32(2)), (["merge", "--json", "--balance", "max"], Int32(64))] {
            let r = try s.run(arguments)
            #expect(r.status == status, "\(r.stderr)")
            #expect(r.stdout.isEmpty && r.stderrLines.count == 1, "\(r.stderr)")
            #expect(try keys(r.stderr) == ["error", "code"])
            let e = try decode(ErrorObject.self, r.stderr)
            #expect(e.code == Int(status) && !e.error.isEmpty && !e.error.contains("\n"))
        }
    }

    @Test func searchDocumentsKeepTheirKeys() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math", "code"])
        try Data("methods: task_arithmetic\nparameters:\n  weight: {min: 0, max: 1}\n".utf8).write(to: URL(fileURLWithPath: s.path("space.yml")))
        // Every candidate scores the same: the documents' shape is under test here, not the search.
        let eval = #"python3 -c 'print("{\"t\": 0.5}")'"#
        let text = try s.ok(["merge", "math", "code", "--search", "--eval", eval, "--space", "../space.yml", "--trials", "2", "--json"], in: "repo").stdout
        #expect(try keys(text) == ["status", "commit", "search", "objective", "winner", "winner_recipe", "front", "resumed", "trials"])
        struct Trial: Decodable {
            var number: Int
            var status: String
            var objective: Double?
            var scores: [String: Double]?
            var seconds: Double
        }
        struct Result: Decodable {
            var status: String
            var commit: String?
            var search: String
            var objective: String
            var winner: Int
            var front: [Int]
            var resumed: Int
            var trials: [Trial]
        }
        let result = try decode(Result.self, text)
        #expect(result.status == "committed" && result.commit != nil && result.objective == "mean" && result.trials.count == 2)
        #expect(result.trials.first?.scores == ["t": 0.5] && result.trials.first?.objective == nil)
        let commit = try #require(result.commit)

        let shownText = try s.ok(["show", "--trials", "--json", commit], in: "repo").stdout
        #expect(try keys(shownText) == ["commit", "search", "objective", "seed", "budget", "eval", "space", "winner", "front", "trials"])
        struct Shown: Decodable {
            var commit: String
            var search: String?
            var objective: String
            var seed: UInt64?
            var budget: Int?
            var eval: String?
            var winner: Int?
            var front: [Int]
            var trials: [Trial]
        }
        let shown = try decode(Shown.self, shownText)
        #expect(shown.commit == commit && shown.search == result.search && shown.seed == 0 && shown.budget == 2 && shown.eval == eval)
        #expect(shown.winner == result.winner && shown.front == result.front && shown.trials.map(\.number) == result.trials.map(\.number))
        #expect(shown.trials.first?.objective == 0.5)
        let rows = try #require((try JSONSerialization.jsonObject(with: Data(shownText.utf8)) as? [String: Any])?["trials"] as? [[String: Any]])
        #expect(rows.first.map { Set($0.keys) } == ["number", "status", "objective", "recipe", "scores", "seconds"])
    }

    /// With --json, `-C` to a missing folder fails with the JSON error object, and `config KEY` of an
    /// unset key prints a document with a null value (it printed nothing; both exit as before).
    @Test func jsonAlsoWhereNothingWasPrinted() throws {
        let s = try CLISandbox()
        s.environment["MREPO_AUTHOR"] = nil
        let missing = try s.run(["-C", s.path("nowhere"), "status", "--json"])
        #expect(missing.status == 2 && missing.stdout.isEmpty)
        let error = try #require(try JSONSerialization.jsonObject(with: Data(missing.stderr.utf8)) as? [String: Any], "\(missing.stderr)")
        #expect((error["error"] as? String)?.contains("cannot change to") == true && error["code"] as? Int == 2)
        try s.ok(["init", "-q", "repo"])
        let unset = try s.run(["config", "core.threads", "--json"], in: "repo", environment: ["MREPO_THREADS": ""])
        #expect(unset.status == 1)
        let document = try #require(try JSONSerialization.jsonObject(with: Data(unset.stdout.utf8)) as? [String: Any], "\(unset.stdout)")
        #expect(document["key"] as? String == "core.threads" && document["value"] is NSNull)
    }
}
