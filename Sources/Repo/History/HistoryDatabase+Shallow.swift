import Delta
import GRDB

// Shallow clones (`clone --depth N`): the commits at the boundary of the fetched history keep the
// parents and base their ids hash in `shallow` rows (migration `v8-shallow`, docs/format.md §6.7),
// because `commitParent` and `commit.baseID` may only name commits that are here (foreign keys).
extension HistoryDatabase {
    static let shallowSchema = """
        CREATE TABLE shallow (
            commitID TEXT PRIMARY KEY NOT NULL REFERENCES "commit"(id) ON DELETE CASCADE,
            parents TEXT NOT NULL,
            baseID TEXT,
            boundary INTEGER NOT NULL CHECK (boundary IN (0, 1))
        );
        CREATE INDEX treeFileSHA256 ON treeFile(sha256);
        """

    static func graft(_ db: Database, _ id: ObjectID) throws -> Commit.Graft? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM shallow WHERE commitID = ?", arguments: [id.hex]) else { return nil }
        return try graft(row)
    }

    static func allGrafts(_ db: Database) throws -> [ObjectID: Commit.Graft] {
        var out: [ObjectID: Commit.Graft] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT * FROM shallow") {
            let r = RowReader(row: row, table: "shallow", key: row.keyText("commitID"))
            out[try r.id("commitID")] = try graft(row)
        }
        return out
    }

    private static func graft(_ row: Row) throws -> Commit.Graft {
        let r = RowReader(row: row, table: "shallow", key: row.keyText("commitID"))
        let text: String = try r.value("parents")
        let parents = try text.split(separator: " ").map { hex in
            guard let id = ObjectID(hex: String(hex)) else { throw r.corrupt("parents is not a list of 64-hex-digit ids") }
            return id
        }
        let boundary: Int = try r.value("boundary")
        return Commit.Graft(parents: parents, base: try r.optionalID("baseID"), boundary: boundary == 1)
    }

    static func insertGraft(_ db: Database, _ id: ObjectID, _ graft: Commit.Graft) throws {
        try db.execute(sql: "INSERT OR REPLACE INTO shallow(commitID, parents, baseID, boundary) VALUES (?, ?, ?, ?)",
                       arguments: [id.hex, graft.parents.map(\.hex).joined(separator: " "), graft.base?.hex, graft.boundary ? 1 : 0])
    }

    /// The commits where this shallow clone's history stops (empty for a complete repository).
    public func shallowBoundary() throws -> [ObjectID] {
        try read { db in
            try String.fetchAll(db, sql: "SELECT commitID FROM shallow WHERE boundary = 1 ORDER BY commitID").compactMap(ObjectID.init(hex:))
        }
    }

    /// Every graft (boundary or missing base), by commit.
    public func grafts() throws -> [ObjectID: Commit.Graft] {
        try read { try HistoryDatabase.allGrafts($0) }
    }

    /// Gives grafted commits whose parents (or base) have arrived their rows back: the parent rows
    /// and `baseID`, and drops the graft once nothing is missing. Then, if anything changed,
    /// recomputes every generation (a former boundary had generation 0 below its new parents).
    /// Returns how many boundaries were lifted.
    @discardableResult
    static func liftGrafts(_ db: Database) throws -> Int {
        func present(_ id: ObjectID) throws -> Bool {
            try Row.fetchOne(db, sql: #"SELECT 1 FROM "commit" WHERE id = ?"#, arguments: [id.hex]) != nil
        }
        var lifted = 0
        var changed = false
        for (id, graft) in try allGrafts(db) {
            var remaining = graft
            if graft.boundary, try graft.parents.allSatisfy(present) {
                for (i, p) in graft.parents.enumerated() {
                    try CommitParentRow(commit: id, position: i, parent: p).insert(db, onConflict: .ignore)
                }
                remaining.boundary = false
                lifted += 1
            }
            let baseHere = try graft.base.map(present) ?? true
            if baseHere, let b = graft.base {
                try db.execute(sql: #"UPDATE "commit" SET baseID = ? WHERE id = ?"#, arguments: [b.hex, id.hex])
            }
            if !remaining.boundary && baseHere {
                try db.execute(sql: "DELETE FROM shallow WHERE commitID = ?", arguments: [id.hex])
                changed = true
            } else if remaining != graft {
                try insertGraft(db, id, remaining)
                changed = true
            }
        }
        if changed { try recomputeGenerations(db) }
        return lifted
    }

    /// Sets every commit's generation from its parent rows (0 for a root or a shallow boundary).
    static func recomputeGenerations(_ db: Database) throws {
        var parents: [String: [String]] = [:]
        for row in try Row.fetchAll(db, sql: "SELECT commitID, parentID FROM commitParent") {
            parents[row["commitID"], default: []].append(row["parentID"])
        }
        var stored: [String: Int] = [:]
        for row in try Row.fetchAll(db, sql: #"SELECT id, generation FROM "commit""#) { stored[row["id"]] = row["generation"] }
        var generation: [String: Int] = [:]
        for start in stored.keys where generation[start] == nil {
            var stack: [(String, Bool)] = [(start, false)]
            while let (id, expanded) = stack.popLast() {
                if generation[id] != nil { continue }
                let ps = (parents[id] ?? []).filter { stored[$0] != nil }
                if expanded || ps.allSatisfy({ generation[$0] != nil }) {
                    generation[id] = ps.map { generation[$0] ?? 0 }.max().map { $0 + 1 } ?? 0
                    continue
                }
                stack.append((id, true))
                for p in ps where generation[p] == nil { stack.append((p, false)) }
            }
        }
        for (id, g) in generation where stored[id] != g {
            try db.execute(sql: #"UPDATE "commit" SET generation = ? WHERE id = ?"#, arguments: [g, id])
        }
    }
}
