import Delta
import Foundation
import GRDB

// The stat cache of this working tree: an optimisation, written when the database is free.
extension HistoryDatabase {
    public func statCache() throws -> [String: StatCacheEntry] {
        try read { db in
            var out: [String: StatCacheEntry] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT * FROM statCache WHERE worktree = ?", arguments: [worktree]) {
                let e = try StatCacheEntry(row: row)
                out[e.path] = e
            }
            return out
        }
    }

    /// Saves stat-cache entries if the database is free right now; skips silently otherwise
    /// (the cache is an optimisation, and readers must never wait).
    func saveStatCacheOpportunistically(_ entries: [StatCacheEntry], removing: [String]) {
        guard !entries.isEmpty || !removing.isEmpty else { return }
        _ = try? writer().writeWithoutTransaction { db in
            try db.inTransaction(.immediate) {
                for path in removing {
                    try db.execute(sql: "DELETE FROM statCache WHERE worktree = ? AND path = ?", arguments: [worktree, path])
                }
                for e in entries { try e.save(db, worktree: worktree) }
                return .commit
            }
        }
    }
}
