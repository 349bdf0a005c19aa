import Delta
import Foundation
import GRDB

// Commits and their parents; recording a commit (objects, tree, commit, ref) in one transaction.
extension HistoryDatabase {
    public func commit(_ id: ObjectID) throws -> Commit? {
        try read { try HistoryDatabase.commit($0, id) }
    }

    static func commit(_ db: Database, _ id: ObjectID) throws -> Commit? {
        guard let row = try Row.fetchOne(db, sql: #"SELECT * FROM "commit" WHERE id = ?"#, arguments: [id.hex]) else { return nil }
        let parents = try CommitParentRow.fetchAll(db, sql: "SELECT * FROM commitParent WHERE commitID = ? ORDER BY position", arguments: [id.hex])
        var commit = try CommitRow(row: row, parents: parents.map(\.parent)).commit
        commit.graft = try HistoryDatabase.graft(db, id)
        return commit
    }

    /// Commits whose id starts with `prefix` (lower-case hex).
    public func commitIDs(withPrefix prefix: String) throws -> [ObjectID] {
        try read { db in
            try String.fetchAll(db, sql: #"SELECT id FROM "commit" WHERE id >= ? AND id < ? ORDER BY id LIMIT 20"#,
                                arguments: [prefix, prefix + "g"]).map { text in
                guard let id = ObjectID(hex: text) else { throw RepoError.corruptRecord("commit row \(text.prefix(16))", problem: "its id is not 64 hex digits") }
                return id
            }
        }
    }

    /// Parents of many commits at once (for graph walks).
    public func parents(of id: ObjectID) throws -> [ObjectID] {
        try read { db in
            try CommitParentRow.fetchAll(db, sql: "SELECT * FROM commitParent WHERE commitID = ? ORDER BY position", arguments: [id.hex])
                .map(\.parent)
        }
    }

    /// Every recorded commit, oldest generation first.
    public func allCommits() throws -> [Commit] {
        try read { db in
            var parents: [ObjectID: [ObjectID]] = [:]
            for row in try CommitParentRow.fetchAll(db, sql: "SELECT commitID, parentID FROM commitParent ORDER BY commitID, position") {
                parents[row.commit, default: []].append(row.parent)
            }
            let grafts = try HistoryDatabase.allGrafts(db)
            return try Row.fetchAll(db, sql: #"SELECT * FROM "commit" ORDER BY generation, timestamp"#).map { row in
                var commit = try CommitRow(row: row).commit
                commit.parents = parents[commit.id] ?? []
                commit.graft = grafts[commit.id]
                return commit
            }
        }
    }

    /// Records objects (durable on disk already), a tree and a commit, and moves a branch or HEAD,
    /// in one transaction.
    ///
    /// - Parameters:
    ///   - expectedHead: the commit HEAD pointed at when the command started; if HEAD moved since,
    ///     nothing is written and ``RepoError/concurrentUpdate(ref:)`` is thrown.
    func recordCommit(objects: [ObjectInfo], tree: Tree, commit: Commit, expectedHead: ObjectID?,
                      reflogMessage: String, statEntries: [StatCacheEntry] = [], clearMergeState: Bool = false,
                      origHead: ObjectID? = nil) throws {
        try write { db in
            let head = try self.head(db)
            guard head.commit == expectedHead else {
                throw RepoError.concurrentUpdate(ref: head.branchName ?? "HEAD")
            }
            try HistoryDatabase.insert(db, objects: objects)
            try HistoryDatabase.insert(db, tree: tree)
            try HistoryDatabase.insert(db, commit: commit)
            switch head {
            case let .branch(name, old):
                try HistoryDatabase.setRef(db, name: name, kind: .branch, target: commit.id, old: old, message: reflogMessage)
            case .detached:
                try detachHead(db, at: commit.id)
            }
            try HistoryDatabase.logRef(db, headLogName, old: head.commit, new: commit.id, message: reflogMessage)
            try clearView(db)
            for entry in statEntries { try entry.save(db, worktree: worktree) }
            if clearMergeState { try db.execute(sql: "DELETE FROM mergeState WHERE worktree = ?", arguments: [worktree]) }
            try setOrigHead(db, origHead)
        }
    }

    static func insert(_ db: Database, commit: Commit) throws {
        try CommitRow(commit).insert(db, onConflict: .ignore)
        for (i, p) in commit.parents.enumerated() {
            try CommitParentRow(commit: commit.id, position: i, parent: p).insert(db, onConflict: .ignore)
        }
        if let graft = commit.graft { try insertGraft(db, commit.id, graft) }
    }
}
