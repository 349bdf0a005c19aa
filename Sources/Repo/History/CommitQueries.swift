import Delta
import GRDB

/// The reads a commit makes in bulk (one transaction each, not one per tensor), and the
/// transaction of `commit --branch`.
extension HistoryDatabase {
    /// Which of `ids` have an `object` row.
    func recordedObjects(_ ids: some Collection<ObjectID>) throws -> Set<ObjectID> {
        guard !ids.isEmpty else { return [] }
        let hex = ids.map(\.hex)
        return try read { db in
            var out = Set<ObjectID>()
            // SQLite limits the parameters of one statement.
            for start in stride(from: 0, to: hex.count, by: 500) {
                let part = Array(hex[start..<min(hex.count, start + 500)])
                let sql = "SELECT id FROM object WHERE id IN (" + Array(repeating: "?", count: part.count).joined(separator: ",") + ")"
                for id in try String.fetchAll(db, sql: sql, arguments: StatementArguments(part)) {
                    if let d = ObjectID(hex: id) { out.insert(d) }
                }
            }
            return out
        }
    }

    /// The tensors of a tree that have an `object` row, with that row, by name: when several files
    /// hold a name, the first file in path order (as ``Tree/tensorsByName``).
    func tensorObjects(ofTree tree: ObjectID) throws -> [String: ReferenceIndex.Entry] {
        try read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT t.path AS tensorPath, t.name AS tensorName, t.dtype AS tensorDType, t.shape AS tensorShape, o.*
                FROM treeTensor t JOIN object o ON o.id = t.objectID
                WHERE t.treeID = ? ORDER BY t.path, t.position
                """, arguments: [tree.hex])
            var byPath: [String: [ReferenceIndex.Entry.Named]] = [:]
            for row in rows {
                let r = RowReader(row: row, table: "treeTensor", key: tree.short)
                let shapeText: String = try r.value("tensorShape")
                let shape = shapeText.isEmpty ? [] : shapeText.split(separator: ",").compactMap { Int($0) }
                let dtype = try r.raw("tensorDType", as: DType.self)
                byPath[try r.value("tensorPath"), default: []].append(
                    .init(name: try r.value("tensorName"), entry: ReferenceIndex.Entry(info: try ObjectRow(row: row).info, dtype: dtype, shape: shape)))
            }
            var out: [String: ReferenceIndex.Entry] = [:]
            for (_, tensors) in byPath.sorted(by: { $0.key < $1.key }) {
                for t in tensors where out[t.name] == nil { out[t.name] = t.entry }
            }
            return out
        }
    }

    /// Records objects, a tree and a commit, and moves `branch` from `expected` (nil: the branch
    /// must not exist yet, and is created) to the commit, in one transaction. HEAD is not moved
    /// (the caller refuses HEAD's own branch, and holds the write lock), nor is any working tree.
    func recordCommit(objects: [ObjectInfo], tree: Tree, commit: Commit, onto branch: String, expected: ObjectID?,
                      reflogMessage: String) throws {
        try write { db in
            let current = try HistoryDatabase.ref(db, branch)
            if let current, current.kind != .branch { throw RepoError.invalidArgument("'\(branch)' is a tag, not a branch") }
            guard current?.target == expected else { throw RepoError.concurrentUpdate(ref: branch) }
            // Another working tree on that branch would find it moved under its files.
            try refuseBranchInUse(db, branch)
            try HistoryDatabase.insert(db, objects: objects)
            try HistoryDatabase.insert(db, tree: tree)
            try HistoryDatabase.insert(db, commit: commit)
            try HistoryDatabase.setRef(db, name: branch, kind: .branch, target: commit.id, old: expected, message: reflogMessage)
        }
    }
}

extension ReferenceIndex.Entry {
    struct Named {
        var name: String
        var entry: ReferenceIndex.Entry
    }
}
