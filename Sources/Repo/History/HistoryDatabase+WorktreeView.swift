import Delta
import Foundation
import GRDB

/// One file of a view as `worktreeView.files` records it: its path and ``FileIdentityCoding`` text.
struct WorktreeViewFile: Codable {
    var path: String
    var identity: String
}

extension HistoryDatabase {
    /// The view the working tree holds, if any.
    func worktreeView() throws -> WorktreeView? {
        try read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM worktreeView WHERE worktree = ?", arguments: [worktree]) else { return nil }
            let r = RowReader(row: row, table: "worktreeView", key: worktree.isEmpty ? "(main)" : worktree)
            let text: String = try r.value("files")
            let list: [WorktreeViewFile]
            do {
                list = try JSONValueCoding.decode([WorktreeViewFile].self, text: text)
            } catch {
                throw r.corrupt("files: \(String("\(error)".prefix(200)))")
            }
            let files = try list.map { item in
                guard let f = FileIdentityCoding.decode(item.identity, path: item.path) else {
                    throw r.corrupt("the identity of '\(item.path.prefix(200))' does not decode")
                }
                return f
            }
            return WorktreeView(commit: try r.id("commitID"), description: try r.value("description"), files: files)
        }
    }

    /// Detaches HEAD at `view.commit` and records that the working tree holds `view`, in one transaction.
    func setHead(view: WorktreeView, expected: Head, message: String, statEntries: [StatCacheEntry]) throws {
        try write { db in
            let current = try head(db)
            guard current == expected else { throw RepoError.concurrentUpdate(ref: "HEAD") }
            try detachHead(db, at: view.commit)
            try HistoryDatabase.logRef(db, headLogName, old: current.commit, new: view.commit, message: message)
            let files = try JSONValueCoding.text(view.files.map { WorktreeViewFile(path: $0.path, identity: FileIdentityCoding.encode($0)) })
            try db.execute(sql: "INSERT OR REPLACE INTO worktreeView(worktree, commitID, description, files) VALUES (?, ?, ?, ?)",
                           arguments: [worktree, view.commit.hex, view.description, files])
            for entry in statEntries { try entry.save(db, worktree: worktree) }
        }
    }

    /// Forgets this working tree's view, inside a transaction.
    func clearView(_ db: Database) throws {
        try db.execute(sql: "DELETE FROM worktreeView WHERE worktree = ?", arguments: [worktree])
    }

    /// Forgets the view (the working tree was rewritten to something else).
    func clearWorktreeView() throws {
        try write { try clearView($0) }
    }
}
