import Delta
import Foundation
import GRDB
import Merge

// The bisection in progress of each working tree (table `bisect`, migration `v10-bisect`,
// docs/format.md §6.9): one Codable record per working tree, written in the same transaction as
// the HEAD move it goes with.
extension HistoryDatabase {
    /// Migration `v10-bisect`.
    static let bisectSchema = """
        CREATE TABLE bisect (
            worktree TEXT PRIMARY KEY NOT NULL,
            state TEXT NOT NULL
        );
        """

    /// This working tree's bisection, or nil. A row that cannot be read is an error, never "none".
    func bisectState() throws -> BisectState? {
        try read { db in try bisectState(db) }
    }

    func bisectState(_ db: Database) throws -> BisectState? {
        guard let text = try String.fetchOne(db, sql: "SELECT state FROM bisect WHERE worktree = ?", arguments: [worktree]) else { return nil }
        return try HistoryDatabase.bisectState(from: text)
    }

    /// The bisections of every working tree (gc keeps the commits they name).
    func allBisectStates() throws -> [BisectState] {
        try read { db in try String.fetchAll(db, sql: "SELECT state FROM bisect ORDER BY worktree").map(HistoryDatabase.bisectState(from:)) }
    }

    private static func bisectState(from text: String) throws -> BisectState {
        do {
            return try JSONValueCoding.decode(BisectState.self, text: text)
        } catch {
            throw RepoError.corruptRecord("the bisection in progress (table bisect)",
                                          problem: "\(StoredRecord.problem(error)); 'mrepo bisect reset' discards it")
        }
    }

    func writeBisectState(_ db: Database, _ state: BisectState?) throws {
        if let state {
            try db.execute(sql: "INSERT OR REPLACE INTO bisect(worktree, state) VALUES (?, ?)",
                           arguments: [worktree, try JSONValueCoding.text(state)])
        } else {
            try db.execute(sql: "DELETE FROM bisect WHERE worktree = ?", arguments: [worktree])
        }
    }

    /// Saves (or, with nil, clears) the bisection without moving HEAD.
    func setBisectState(_ state: BisectState?) throws {
        try write { db in try writeBisectState(db, state) }
    }

    /// Moves HEAD (with its reflog entry and stat cache) and saves the bisection, in one transaction.
    func setHead(_ head: Head, expected: Head, message: String, statEntries: [StatCacheEntry], bisect state: BisectState?) throws {
        try write { db in
            try writeHead(db, head, expected: expected, message: message, statEntries: statEntries, removedPaths: [])
            try writeBisectState(db, state)
        }
    }
}
