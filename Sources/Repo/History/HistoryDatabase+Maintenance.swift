import Delta
import Foundation
import GRDB

// What fsck asks SQLite, and what gc deletes.
extension HistoryDatabase {
    /// SQLite's own checks: page integrity and foreign keys, as fsck errors (empty when clean).
    func integrityProblems() throws -> [String] {
        try read { db in
            var problems: [String] = []
            let integrity = try String.fetchAll(db, sql: "PRAGMA integrity_check")
            if integrity != ["ok"] { problems.append("history database: integrity check: \(integrity.prefix(3).joined(separator: "; "))") }
            let fk = try Row.fetchAll(db, sql: "PRAGMA foreign_key_check")
            if !fk.isEmpty { problems.append("history database: \(fk.count) broken references (foreign key check)") }
            return problems
        }
    }

    /// Forgets every commit and tree not kept, the given objects, the stat cache (and the reflog
    /// when asked), in one transaction.
    /// - Returns: how many commits were forgotten.
    func forget(keepingCommits commits: Set<ObjectID>, trees: Set<ObjectID>, deleting objects: [ObjectID], pruneReflog: Bool,
                reflogExpiry: Double? = nil) throws -> Int {
        try write { db in
            // Dead commits name each other (parents, bases) and are deleted in no particular order:
            // the references are checked when the transaction commits, when the whole dead set is
            // gone. A live row that still names a dead commit fails the commit, and nothing changes.
            try db.execute(sql: "PRAGMA defer_foreign_keys = ON")
            let allCommits = try String.fetchAll(db, sql: #"SELECT id FROM "commit""#).compactMap(ObjectID.init(hex:))
            let deadCommits = allCommits.filter { !commits.contains($0) }
            for id in deadCommits {
                try db.execute(sql: #"DELETE FROM "commit" WHERE id = ?"#, arguments: [id.hex])
            }
            let allTrees = try String.fetchAll(db, sql: "SELECT id FROM tree").compactMap(ObjectID.init(hex:))
            for id in allTrees where !trees.contains(id) {
                try db.execute(sql: "DELETE FROM tree WHERE id = ?", arguments: [id.hex])
            }
            for id in objects {
                try db.execute(sql: "DELETE FROM object WHERE id = ?", arguments: [id.hex])
            }
            if pruneReflog, let reflogExpiry {
                // gc --prune-reflog=AGE: only entries older than the expiry.
                try db.execute(sql: "DELETE FROM reflog WHERE timestamp < ?", arguments: [reflogExpiry])
            } else if pruneReflog {
                try db.execute(sql: "DELETE FROM reflog")
            }
            try db.execute(sql: "DELETE FROM statCache")
            return deadCommits.count
        }
    }
}
