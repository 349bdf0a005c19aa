import Delta
import Foundation
import GRDB
import Merge

/// How one evaluation of a search ended.
public enum TrialStatus: String, Sendable, CaseIterable {
    /// The command exited 0 and its last line was a JSON object of finite task scores.
    case ok
    /// The command exited non-zero (or could not start).
    case failed
    /// The command ran longer than `--eval-timeout` and was killed.
    case timeout
    /// The command exited 0 but its last line was not a JSON object of numbers.
    case garbled
}

/// One evaluated candidate of a search, as the trial store keeps it.
public struct Trial: Sendable {
    public var number: Int
    /// The candidate's recipe (nil for a trial read from a merge commit's record, which does not
    /// keep it).
    public var mergeRecipe: MergeRecipe?
    /// The optimiser's coordinates in [0, 1]ⁿ.
    public var point: [Double]
    public var scores: [String: Double]?
    public var status: TrialStatus
    /// Why it failed (the command's status and the end of its standard error), or, for a recipe
    /// proposed again, the trial whose scores it took.
    public var message: String?
    public var seconds: Double

    /// The recipe's JSON, or null (what `show --trials --json` prints).
    public var recipe: JSONValue { mergeRecipe?.json ?? .null }
}

/// A search as the trial store keeps it.
public struct SearchRow: Sendable {
    public var id: String
    /// Everything that defines the search (experts, base, space, seed, objective, budget, command).
    public var spec: SearchSpec
    public var created: Double
    public var finished: Bool
    /// The merge commit of the winner, once recorded.
    public var commit: ObjectID?
}

/// The trial store of `merge --search` (migration `v9-trials`, docs/format.md §6.8): each trial is
/// one row written in its own transaction as soon as its evaluation ends, so a search killed at any
/// point resumes (`merge --search --continue`) without running a recorded trial again.
extension HistoryDatabase {
    static let trialsSchema = """
        CREATE TABLE search (
            id TEXT PRIMARY KEY NOT NULL,
            spec TEXT NOT NULL,
            specDigest TEXT NOT NULL,
            created REAL NOT NULL,
            finished INTEGER NOT NULL DEFAULT 0,
            commitID TEXT
        );
        CREATE INDEX searchSpec ON search(specDigest);
        CREATE TABLE trial (
            searchID TEXT NOT NULL REFERENCES search(id) ON DELETE CASCADE,
            number INTEGER NOT NULL,
            recipe TEXT NOT NULL,
            point TEXT NOT NULL,
            scores TEXT,
            status TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'timeout', 'garbled')),
            message TEXT,
            seconds REAL NOT NULL,
            PRIMARY KEY (searchID, number)
        );
        """

    func insertSearch(id: String, spec: String, digest: String) throws {
        try write { db in
            try db.execute(sql: "INSERT INTO search(id, spec, specDigest, created) VALUES (?, ?, ?, ?)",
                           arguments: [id, spec, digest, Date().timeIntervalSince1970])
        }
    }

    /// The newest unfinished search with this definition.
    func unfinishedSearch(digest: String) throws -> String? {
        try read { db in
            try String.fetchOne(db, sql: "SELECT id FROM search WHERE specDigest = ? AND finished = 0 ORDER BY created DESC, rowid DESC LIMIT 1",
                                arguments: [digest])
        }
    }

    func finishSearch(id: String, commit: ObjectID?) throws {
        try write { db in
            try db.execute(sql: "UPDATE search SET finished = 1, commitID = ? WHERE id = ?", arguments: [commit?.hex, id])
        }
    }

    /// A trial's scores as the store keeps them: a JSON object by task name, or nil.
    private static func scoresText(_ t: Trial) -> String? {
        t.scores.map { s in JSONValue.object(s.sorted { $0.key < $1.key }.map { JSONMember($0.key, .double($0.value)) }).serialized() }
    }

    func insertTrial(_ t: Trial, search: String) throws {
        let scores = HistoryDatabase.scoresText(t)
        try write { db in
            try db.execute(sql: """
                INSERT INTO trial(searchID, number, recipe, point, scores, status, message, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                """, arguments: [search, t.number, t.recipe.serialized(), try JSONValueCoding.text(t.point),
                                 scores, t.status.rawValue, t.message, t.seconds])
        }
    }

    /// Records a trial's outcome again (a trial found, once its batch ended, to report other tasks
    /// than the first trial that scored).
    func updateTrialOutcome(_ t: Trial, search: String) throws {
        let scores = HistoryDatabase.scoresText(t)
        try write { db in
            try db.execute(sql: "UPDATE trial SET scores = ?, status = ?, message = ? WHERE searchID = ? AND number = ?",
                           arguments: [scores, t.status.rawValue, t.message, search, t.number])
        }
    }

    public func search(id: String) throws -> SearchRow? {
        try read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM search WHERE id = ?", arguments: [id]).map(Self.searchRow)
        }
    }

    /// The search whose winner is this merge commit.
    public func search(committedAs commit: ObjectID) throws -> SearchRow? {
        try read { db in
            try Row.fetchOne(db, sql: "SELECT * FROM search WHERE commitID = ? ORDER BY created DESC LIMIT 1", arguments: [commit.hex]).map(Self.searchRow)
        }
    }

    public func trials(search: String) throws -> [Trial] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM trial WHERE searchID = ? ORDER BY number", arguments: [search]).map { row in
                let r = RowReader(row: row, table: "trial", key: "\(search) #\(row["number"] as Int? ?? -1)")
                let recipeText: String = try r.value("recipe"), pointText: String = try r.value("point")
                let scoresText: String? = try r.value("scores", String?.self)
                let recipe = try r.json(JSONValue.self, column: "recipe", text: recipeText)
                return Trial(number: try r.value("number"),
                             mergeRecipe: recipe == .null ? nil : try r.json(MergeRecipe.self, column: "recipe", text: recipeText),
                             point: try r.json([Double].self, column: "point", text: pointText),
                             scores: try scoresText.map { try r.json([String: Double].self, column: "scores", text: $0) },
                             status: try r.raw("status", as: TrialStatus.self), message: try r.value("message", String?.self), seconds: try r.value("seconds"))
            }
        }
    }

    private static func searchRow(_ row: Row) throws -> SearchRow {
        let r = RowReader(row: row, table: "search", key: row.keyText("id"))
        return SearchRow(id: try r.value("id"), spec: try r.json(SearchSpec.self, column: "spec", text: try r.value("spec")),
                         created: try r.value("created"), finished: try r.value("finished", Int.self) != 0, commit: try r.optionalID("commitID"))
    }
}
