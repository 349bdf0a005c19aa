import Delta
import Foundation
import GRDB
import Merge

/// What to do with vocabulary matrices (embeddings, LM heads) whose row counts differ.
public enum VocabularyPolicy: String, Sendable, CaseIterable {
    /// Keep the base's rows: rows beyond them are dropped (and listed in the report).
    case base
    /// Keep every row of the largest input: rows only some inputs have are averaged over those.
    case union
    /// Keep the rows all inputs share.
    case common
}

/// How a non-tensor file changed on several sides is settled.
public enum FileConflictRule: String, Sendable, CaseIterable {
    /// Take the current branch's version (the first expert's when HEAD is the merge base).
    case ours
    /// Take the last merged branch's version.
    case theirs
    /// Keep the merge base's version.
    case base
}

/// Everything about a merge that is not the recipe: inputs and policies.
public struct MergeOptions: Sendable {
    /// Revisions to merge into HEAD.
    public var branches: [String]
    public var recipe: MergeRecipe
    /// Use this revision as the merge base instead of the common ancestor.
    public var base: String?
    public var message: String?
    /// Write merged tensors in this dtype (default: the inputs' dtype).
    public var outputDType: DType?
    public var vocabulary: VocabularyPolicy?
    public var thresholds: ConflictThresholds
    public var fileRule: FileConflictRule
    /// Stop before committing; the merged model is written to the working tree for inspection.
    public var noCommit: Bool
    /// Plan only: classify, estimate memory, write nothing.
    public var dryRun: Bool

    public init(branches: [String], recipe: MergeRecipe, base: String? = nil, message: String? = nil, outputDType: DType? = nil,
                vocabulary: VocabularyPolicy? = nil, thresholds: ConflictThresholds = ConflictThresholds(),
                fileRule: FileConflictRule = .ours, noCommit: Bool = false, dryRun: Bool = false) {
        self.branches = branches
        self.recipe = recipe
        self.base = base
        self.message = message
        self.outputDType = outputDType
        self.vocabulary = vocabulary
        self.thresholds = thresholds
        self.fileRule = fileRule
        self.noCommit = noCommit
        self.dryRun = dryRun
    }
}

/// A merge that stopped before its commit (conflicts, or `--no-commit`), kept in the database
/// until `merge --continue` or `merge --abort`.
struct MergeState: Sendable {
    /// HEAD when the merge started.
    var head: ObjectID
    /// The other parents, in order, with the names they were given.
    var branches: [(name: String, commit: ObjectID)]
    var base: ObjectID
    var recipe: JSONValue
    var message: String
    /// The merged tree so far: tensor name → object (resolved tensors).
    var decided: [String: ObjectID]
    /// Unresolved tensors: name → why.
    var unresolved: [String: String]
    /// The full conflict report (a blob object).
    var reportObject: ObjectID?
    /// Set when the merge finished but waits for `--continue` (`--no-commit`); the working tree then holds it.
    var readyTree: ObjectID?
    /// Everything needed to rebuild the tree: the options as JSON.
    var options: JSONValue

    var json: JSONValue {
        .object([
            JSONMember("head", .string(head.hex)),
            JSONMember("branches", .array(branches.map { .object([JSONMember("name", .string($0.name)), JSONMember("commit", .string($0.commit.hex))]) })),
            JSONMember("base", .string(base.hex)),
            JSONMember("recipe", recipe),
            JSONMember("message", .string(message)),
            JSONMember("decided", .object(decided.keys.sorted().map { JSONMember($0, .string(decided[$0]!.hex)) })),
            JSONMember("unresolved", .object(unresolved.keys.sorted().map { JSONMember($0, .string(unresolved[$0]!)) })),
            JSONMember("report_object", reportObject.map { .string($0.hex) } ?? .null),
            JSONMember("ready_tree", readyTree.map { .string($0.hex) } ?? .null),
            JSONMember("options", options),
        ])
    }

    init(head: ObjectID, branches: [(name: String, commit: ObjectID)], base: ObjectID, recipe: JSONValue, message: String,
         decided: [String: ObjectID], unresolved: [String: String], reportObject: ObjectID?, readyTree: ObjectID?, options: JSONValue) {
        self.head = head
        self.branches = branches
        self.base = base
        self.recipe = recipe
        self.message = message
        self.decided = decided
        self.unresolved = unresolved
        self.reportObject = reportObject
        self.readyTree = readyTree
        self.options = options
    }

    init?(json v: JSONValue) {
        guard let head = v["head"]?.stringValue.flatMap(ObjectID.init(hex:)),
              let base = v["base"]?.stringValue.flatMap(ObjectID.init(hex:)),
              let branches = v["branches"]?.arrayValue, let recipe = v["recipe"], let message = v["message"]?.stringValue
        else { return nil }
        self.head = head
        self.base = base
        self.branches = branches.compactMap { b in
            guard let n = b["name"]?.stringValue, let c = b["commit"]?.stringValue.flatMap(ObjectID.init(hex:)) else { return nil }
            return (n, c)
        }
        self.recipe = recipe
        self.message = message
        decided = [:]
        for m in v["decided"]?.objectValue ?? [] { decided[m.key] = m.value.stringValue.flatMap(ObjectID.init(hex:)) }
        unresolved = [:]
        for m in v["unresolved"]?.objectValue ?? [] { unresolved[m.key] = m.value.stringValue ?? "" }
        reportObject = v["report_object"]?.stringValue.flatMap(ObjectID.init(hex:))
        readyTree = v["ready_tree"]?.stringValue.flatMap(ObjectID.init(hex:))
        options = v["options"] ?? .object([])
    }

    /// Objects the state keeps alive (gc must not remove them).
    var objects: Set<ObjectID> {
        Set(decided.values).union([reportObject].compactMap { $0 })
    }

    var commits: [ObjectID] { [head, base] + branches.map(\.commit) }
}

extension HistoryDatabase {
    static func registerMergeMigration(_ m: inout DatabaseMigrator) {
        m.registerMigration("v2-merge-state") { db in
            try db.execute(sql: """
                CREATE TABLE mergeState (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    state TEXT NOT NULL
                );
                """)
        }
    }

    func mergeState() throws -> MergeState? {
        try read { db in
            guard let text = try String.fetchOne(db, sql: "SELECT state FROM mergeState WHERE id = 1"),
                  let v = try? JSONValue.parse(Array(text.utf8))
            else { return nil }
            return MergeState(json: v)
        }
    }

    /// Saves (or, with nil, clears) the merge state, with the objects it references recorded in the same transaction.
    func setMergeState(_ state: MergeState?, objects: [ObjectInfo] = []) throws {
        try write { db in
            try HistoryDatabase.insert(db, objects: objects)
            if let state {
                try db.execute(sql: "INSERT OR REPLACE INTO mergeState(id, state) VALUES (1, ?)", arguments: [state.json.serialized()])
            } else {
                try db.execute(sql: "DELETE FROM mergeState")
            }
        }
    }
}
