import Delta
import Foundation
import GRDB

/// A note added to a commit after the fact (`mrepo notes add`).
public struct CommitNote: Sendable, Equatable {
    public var commit: ObjectID
    public var text: String
    public var author: String
    public var timestamp: Double
}

/// A metric added to a commit after the fact (`mrepo metric add`); it overrides a metric of the
/// same name recorded with the commit.
public struct AddedMetric: Sendable, Equatable {
    public var commit: ObjectID
    public var metric: Commit.Metric
    public var timestamp: Double
}

/// A stashed working tree: a commit whose parent is the HEAD it was taken on, referenced by no branch.
public struct StashEntry: Sendable, Equatable {
    /// Position in `stash list`: 0 is the newest.
    public var index: Int
    public var commit: ObjectID
    public var message: String
    public var branch: String?
    public var timestamp: Double
}

/// Annotations recorded beside the history, never in it: notes and metrics added to commits,
/// stashes, ORIG_HEAD (docs/format.md §6.4).
extension HistoryDatabase {
    /// Migration `v7-annotations` (docs/format.md §6.6).
    static let annotationsSchema = """
        CREATE TABLE commitNote (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            commitID TEXT NOT NULL REFERENCES "commit"(id) ON DELETE CASCADE,
            text TEXT NOT NULL,
            author TEXT NOT NULL,
            timestamp REAL NOT NULL
        );
        CREATE INDEX commitNoteCommit ON commitNote(commitID);
        CREATE TABLE commitMetric (
            commitID TEXT NOT NULL REFERENCES "commit"(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            value REAL NOT NULL,
            timestamp REAL NOT NULL,
            PRIMARY KEY (commitID, name)
        );
        CREATE TABLE stash (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            commitID TEXT NOT NULL REFERENCES "commit"(id),
            message TEXT NOT NULL,
            branch TEXT,
            timestamp REAL NOT NULL
        );
        """

    // MARK: - Notes and metrics

    public func notes(of commit: ObjectID) throws -> [CommitNote] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM commitNote WHERE commitID = ? ORDER BY id", arguments: [commit.hex]).map {
                CommitNote(commit: commit, text: $0["text"], author: $0["author"], timestamp: $0["timestamp"])
            }
        }
    }

    public func addedMetrics(of commit: ObjectID) throws -> [AddedMetric] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM commitMetric WHERE commitID = ? ORDER BY timestamp, name", arguments: [commit.hex]).map {
                AddedMetric(commit: commit, metric: Commit.Metric(name: $0["name"], value: $0["value"]), timestamp: $0["timestamp"])
            }
        }
    }

    func addNote(_ text: String, to commit: ObjectID, author: String) throws {
        try write { db in
            try db.execute(sql: "INSERT INTO commitNote(commitID, text, author, timestamp) VALUES (?, ?, ?, ?)",
                           arguments: [commit.hex, text, author, Date().timeIntervalSince1970])
        }
    }

    /// Adds or replaces metrics of a commit, all in one transaction.
    func addMetrics(_ metrics: [Commit.Metric], to commit: ObjectID) throws {
        try write { db in
            for m in metrics {
                try db.execute(sql: "INSERT OR REPLACE INTO commitMetric(commitID, name, value, timestamp) VALUES (?, ?, ?, ?)",
                               arguments: [commit.hex, m.name, m.value, Date().timeIntervalSince1970])
            }
        }
    }

    /// Removes every note of a commit; returns how many there were.
    func removeNotes(of commit: ObjectID) throws -> Int {
        try write { db in
            try db.execute(sql: "DELETE FROM commitNote WHERE commitID = ?", arguments: [commit.hex])
            return db.changesCount
        }
    }

    /// Removes added metrics of a commit by name, all or none: every name must be one added.
    func removeAddedMetrics(_ names: [String], of commit: ObjectID) throws {
        try write { db in
            for name in names {
                try db.execute(sql: "DELETE FROM commitMetric WHERE commitID = ? AND name = ?", arguments: [commit.hex, name])
                guard db.changesCount == 1 else {
                    throw RepoError.invalidArgument("\(commit.short) has no metric '\(name)' added with 'metric add' (metrics recorded with the commit are part of it and stay)")
                }
            }
        }
    }

    // MARK: - ORIG_HEAD

    /// The `meta` key of this working tree's ORIG_HEAD: `ORIG_HEAD`, or `ORIG_HEAD:<id>` for a
    /// linked working tree (each has its own, as in git).
    var origHeadKey: String { worktree.isEmpty ? "ORIG_HEAD" : "ORIG_HEAD:\(worktree)" }

    /// The commit HEAD pointed at before the last command that rewrote it (reset, amend, revert,
    /// cherry-pick, stash), as git's ORIG_HEAD.
    public func origHead() throws -> ObjectID? {
        try read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [origHeadKey]).flatMap(ObjectID.init(hex:)) }
    }

    /// Every working tree's ORIG_HEAD (gc keeps them).
    func allOrigHeads() throws -> [ObjectID] {
        try read { db in
            try String.fetchAll(db, sql: "SELECT value FROM meta WHERE key = 'ORIG_HEAD' OR key LIKE 'ORIG_HEAD:%'").compactMap(ObjectID.init(hex:))
        }
    }

    func setOrigHead(_ db: Database, _ id: ObjectID?) throws {
        guard let id else { return }
        try db.execute(sql: "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", arguments: [origHeadKey, id.hex])
    }

    // MARK: - Refs

    /// Moves HEAD (its branch, or a detached HEAD) to a recorded commit and logs the move; sets
    /// ORIG_HEAD to where it was, in one transaction with `alsoDo` (stat-cache rows, say).
    func moveHead(to target: ObjectID, expected: Head, message: String, statEntries: [StatCacheEntry] = [],
                  alsoDo: ((Database) throws -> Void)? = nil) throws {
        try write { db in
            let head = try self.head(db)
            guard head == expected else { throw RepoError.concurrentUpdate(ref: head.branchName ?? "HEAD") }
            switch head {
            case let .branch(name, old):
                try HistoryDatabase.setRef(db, name: name, kind: .branch, target: target, old: old, message: message)
            case .detached:
                try detachHead(db, at: target)
            }
            try HistoryDatabase.logRef(db, headLogName, old: head.commit, new: target, message: message)
            try setOrigHead(db, head.commit)
            try clearView(db)
            for entry in statEntries { try entry.save(db, worktree: worktree) }
            try alsoDo?(db)
        }
    }

    /// Makes `name` free for a renamed or copied branch: a branch there goes (with its reflog)
    /// only with `force` and when no working tree has it checked out; anything else there refuses.
    private static func clearBranchName(_ db: Database, _ name: String, force: Bool) throws {
        guard let existing = try HistoryDatabase.ref(db, name) else {
            try HistoryDatabase.refuseTakenName(db, name)
            return
        }
        guard force, existing.kind == .branch else { throw RepoError.refExists(name) }
        if try Bool.fetchOne(db, sql: "SELECT 1 FROM head WHERE branch = ?", arguments: [name]) == true {
            throw RepoError.invalidArgument("cannot overwrite branch '\(name)': it is checked out")
        }
        try db.execute(sql: "DELETE FROM ref WHERE name = ?", arguments: [name])
        try db.execute(sql: "DELETE FROM reflog WHERE ref = ?", arguments: [name])
    }

    /// Renames a branch, keeping its reflog (its rows are renamed too); HEAD follows when it is on it.
    func renameBranch(_ old: String, to new: String, force: Bool) throws {
        try write { db in
            guard let ref = try HistoryDatabase.ref(db, old), ref.kind == .branch else { throw RepoError.unknownRef(old) }
            if old == new { return }
            try HistoryDatabase.clearBranchName(db, new, force: force)
            try db.execute(sql: "UPDATE ref SET name = ? WHERE name = ?", arguments: [new, old])
            try db.execute(sql: "UPDATE reflog SET ref = ? WHERE ref = ?", arguments: [new, old])
            // The upstream goes with the branch (as git moves its config section); a replaced
            // branch's, or a stale row left by a deleted branch of the new name, goes.
            try db.execute(sql: "DELETE FROM upstream WHERE branch = ?", arguments: [new])
            try db.execute(sql: "UPDATE upstream SET branch = ? WHERE branch = ?", arguments: [new, old])
            try HistoryDatabase.logRef(db, new, old: ref.target, new: ref.target, message: "branch: renamed \(old) to \(new)")
            // Every working tree on the branch follows it.
            try db.execute(sql: "UPDATE head SET branch = ? WHERE branch = ?", arguments: [new, old])
        }
    }

    /// Copies a branch (`branch -c/-C`), as git does: the new branch starts at the same commit
    /// with a copy of the reflog and the upstream. `force` replaces a branch of the new name
    /// that is checked out nowhere.
    func copyBranch(_ old: String, to new: String, force: Bool) throws -> ObjectID {
        try write { db in
            guard let ref = try HistoryDatabase.ref(db, old), ref.kind == .branch else { throw RepoError.unknownRef(old) }
            guard old != new else { throw RepoError.invalidArgument("cannot copy branch '\(old)' onto itself") }
            try HistoryDatabase.clearBranchName(db, new, force: force)
            try db.execute(sql: "INSERT INTO ref (name, kind, commitID, message, timestamp) SELECT ?, kind, commitID, message, timestamp FROM ref WHERE name = ?",
                           arguments: [new, old])
            try db.execute(sql: "INSERT INTO reflog (ref, oldID, newID, timestamp, message) SELECT ?, oldID, newID, timestamp, message FROM reflog WHERE ref = ? ORDER BY id",
                           arguments: [new, old])
            try db.execute(sql: "DELETE FROM upstream WHERE branch = ?", arguments: [new])
            try db.execute(sql: "INSERT INTO upstream (branch, remote, remoteBranch) SELECT ?, remote, remoteBranch FROM upstream WHERE branch = ?",
                           arguments: [new, old])
            try HistoryDatabase.logRef(db, new, old: ref.target, new: ref.target, message: "branch: copied \(old) to \(new)")
            return ref.target
        }
    }

    /// Points an existing branch or tag at another commit (`branch -f`, `tag -f`), or creates it.
    /// - Parameter upstream: for a branch, the remote branch it tracks from now on (nil: a moved
    ///   branch keeps its upstream, a new one has none).
    func forceRef(name: String, kind: Ref.Kind, target: ObjectID, message: String, tagMessage: String?, upstream: Upstream? = nil) throws {
        try write { db in
            let current = try HistoryDatabase.ref(db, name)
            if current == nil { try HistoryDatabase.refuseTakenName(db, name) }
            if let current, current.kind != kind {
                throw RepoError.invalidArgument("'\(name)' is a \(current.kind.rawValue), not a \(kind.rawValue)")
            }
            if kind == .branch, current != nil, try Bool.fetchOne(db, sql: "SELECT 1 FROM head WHERE branch = ?", arguments: [name]) == true {
                throw RepoError.invalidArgument("cannot force-move branch '\(name)': it is checked out; use 'mrepo reset' instead")
            }
            try HistoryDatabase.setRef(db, name: name, kind: kind, target: target, old: current?.target, message: message)
            if kind == .branch, current == nil { try db.execute(sql: "DELETE FROM upstream WHERE branch = ?", arguments: [name]) }
            if kind == .branch, let upstream { try HistoryDatabase.setUpstream(db, of: name, to: upstream) }
            if kind == .tag {
                try db.execute(sql: "UPDATE ref SET message = ? WHERE name = ?", arguments: [tagMessage, name])
            }
        }
    }

    // MARK: - Stash

    public func stashes() throws -> [StashEntry] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM stash ORDER BY id DESC").enumerated().map { i, row in
                StashEntry(index: i, commit: ObjectID(hex: row["commitID"])!, message: row["message"], branch: row["branch"],
                           timestamp: row["timestamp"])
            }
        }
    }

    /// Records a stash commit (objects, tree, commit) without moving any ref.
    func recordStash(objects: [ObjectInfo], tree: Tree, commit: Commit, branch: String?) throws {
        try write { db in
            try HistoryDatabase.insert(db, objects: objects)
            try HistoryDatabase.insert(db, tree: tree)
            try HistoryDatabase.insert(db, commit: commit)
            try db.execute(sql: "INSERT INTO stash(commitID, message, branch, timestamp) VALUES (?, ?, ?, ?)",
                           arguments: [commit.id.hex, commit.message, branch, Date().timeIntervalSince1970])
            try HistoryDatabase.logRef(db, "stash", old: nil, new: commit.id, message: "stash: \(commit.subject)")
        }
    }

    /// Drops the stash entry at `index` (0 is the newest).
    static func dropStash(_ db: Database, index: Int) throws {
        let ids = try Int64.fetchAll(db, sql: "SELECT id FROM stash ORDER BY id DESC")
        guard index >= 0, index < ids.count else { throw RepoError.invalidArgument("no stash entry stash@{\(index)}") }
        try db.execute(sql: "DELETE FROM stash WHERE id = ?", arguments: [ids[index]])
    }

    func dropStash(index: Int) throws {
        try write { db in try HistoryDatabase.dropStash(db, index: index) }
    }
}
