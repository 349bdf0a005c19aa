import Delta
import Foundation
import GRDB
import Merge

// The merge in progress of each working tree (`mergeState`, docs/format.md §6): one Codable record,
// written with the objects it references in one transaction.
extension HistoryDatabase {
    /// The merge in progress, or nil. A row that cannot be read is an error, never "no merge".
    func mergeState() throws -> MergeState? {
        try read { db in
            guard let text = try String.fetchOne(db, sql: "SELECT state FROM mergeState WHERE worktree = ?", arguments: [worktree]) else {
                return nil
            }
            return try HistoryDatabase.mergeState(from: text)
        }
    }

    /// The merges in progress of every working tree (what gc and fsck must keep).
    func allMergeStates() throws -> [MergeState] {
        try read { db in try String.fetchAll(db, sql: "SELECT state FROM mergeState ORDER BY worktree").map(HistoryDatabase.mergeState(from:)) }
    }

    private static func mergeState(from text: String) throws -> MergeState {
        do {
            return try JSONValueCoding.decode(MergeState.self, text: text)
        } catch {
            throw RepoError.corruptRecord("the merge in progress (table mergeState)",
                                          problem: "\(StoredRecord.problem(error)); 'mrepo merge --abort' discards it")
        }
    }

    /// Saves (or, with nil, clears) the merge state, with the objects it references recorded in the same transaction.
    func setMergeState(_ state: MergeState?, objects: [ObjectInfo] = []) throws {
        let text = try state.map { try JSONValueCoding.text($0) }
        try write { db in
            try HistoryDatabase.insert(db, objects: objects)
            if let text {
                try db.execute(sql: "INSERT OR REPLACE INTO mergeState(worktree, state) VALUES (?, ?)", arguments: [worktree, text])
            } else {
                try db.execute(sql: "DELETE FROM mergeState WHERE worktree = ?", arguments: [worktree])
            }
        }
    }

    /// Clears the merge state of `worktree` inside a caller's transaction.
    static func clearMergeState(_ db: Database, worktree: String) throws {
        try db.execute(sql: "DELETE FROM mergeState WHERE worktree = ?", arguments: [worktree])
    }

    /// Records a `--no-commit` merge's candidate tree (and the objects it needs) and the merge
    /// state that points at it, in one transaction.
    func insertTree(_ tree: Tree, objects: [ObjectInfo], mergeState state: MergeState) throws {
        let text = try JSONValueCoding.text(state)
        try write { db in
            try HistoryDatabase.insert(db, objects: objects)
            try HistoryDatabase.insert(db, tree: tree)
            try db.execute(sql: "INSERT OR REPLACE INTO mergeState(worktree, state) VALUES (?, ?)", arguments: [worktree, text])
        }
    }
}
