import Delta
import Foundation
import GRDB

/// A linked working tree, as the `worktree` table records it (docs/format.md §6.4).
public struct LinkedWorktreeRecord: Sendable, Equatable {
    /// Its key in the per-working-tree tables (never '', which is the main working tree's).
    public var id: String
    /// The folder, absolute, symbolic links resolved.
    public var path: String
    /// When `worktree add` made it (seconds since 1970).
    public var created: Double
}

extension HistoryDatabase {
    /// The main working tree: the folder holding the `.mrepo` directory of this database.
    var mainRoot: String { splitPath(splitPath(path).dir).dir }

    /// The reflog's name for this working tree's HEAD: `HEAD` for the main working tree,
    /// `worktrees/<id>/HEAD` for a linked one, as git names them.
    var headLogName: String { HistoryDatabase.headLogName(worktree) }

    static func headLogName(_ worktree: String) -> String {
        worktree.isEmpty ? "HEAD" : "worktrees/\(worktree)/HEAD"
    }

    /// The error of a linked working tree that the repository no longer knows.
    static func unregistered(_ worktree: String) -> RepoError {
        .worktree(.unregistered(worktree))
    }

    // MARK: - Reading

    /// Every linked working tree, oldest first.
    public func linkedWorktrees() throws -> [LinkedWorktreeRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT id, path, created FROM worktree ORDER BY created, id").map { row in
                let r = RowReader(row: row, table: "worktree", key: row.keyText("id"))
                return LinkedWorktreeRecord(id: try r.value("id"), path: try r.value("path"), created: try r.value("created"))
            }
        }
    }

    /// The HEAD of every working tree, by worktree key ('' for the main one).
    public func allHeads() throws -> [String: Head] {
        try read { db in try HistoryDatabase.allHeads(db) }
    }

    /// The HEAD of every working tree, inside a transaction.
    static func allHeads(_ db: Database) throws -> [String: Head] {
        var out: [String: Head] = [:]
        for id in try String.fetchAll(db, sql: "SELECT worktree FROM head") {
            out[id] = try HistoryDatabase.head(db, worktree: id)
        }
        return out
    }

    /// The branches checked out in the other working trees, with the folder of each.
    public func branchesCheckedOutElsewhere() throws -> [String: String] {
        try read { db in
            var out: [String: String] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT worktree, branch FROM head WHERE branch IS NOT NULL AND worktree <> ?", arguments: [worktree]) {
                let r = RowReader(row: row, table: "head", key: row.keyText("worktree"))
                out[try r.value("branch", String.self)] = try HistoryDatabase.worktreePath(db, try r.value("worktree"), mainRoot: mainRoot)
            }
            return out
        }
    }

    /// The folder of a working tree ('' is the main one).
    static func worktreePath(_ db: Database, _ id: String, mainRoot: String) throws -> String {
        if id.isEmpty { return mainRoot }
        return try String.fetchOne(db, sql: "SELECT path FROM worktree WHERE id = ?", arguments: [id]) ?? "(working tree '\(id)')"
    }

    /// Refuses, inside a transaction, a branch that another working tree has checked out, as git
    /// does: two working trees on one branch would each find the branch moved under its files.
    func refuseBranchInUse(_ db: Database, _ branch: String) throws {
        guard let other = try String.fetchOne(db, sql: "SELECT worktree FROM head WHERE branch = ? AND worktree <> ? ORDER BY worktree LIMIT 1",
                                              arguments: [branch, worktree]) else { return }
        throw HistoryDatabase.branchInUse(branch, at: try HistoryDatabase.worktreePath(db, other, mainRoot: mainRoot))
    }

    static func branchInUse(_ branch: String, at path: String) -> RepoError {
        .worktree(.branchCheckedOut(branch: branch, worktree: path, folderGone: FileStat.of(path) == nil))
    }

    // MARK: - Writing

    /// A key for a new linked working tree: the folder's name, made safe and unique (also
    /// against reflogs of removed working trees, so a new one never inherits an old HEAD log).
    func newWorktreeID(for folder: String) throws -> String {
        var base = String(splitPath(folder).name.unicodeScalars.map { scalar -> Character in
            let c = Character(scalar)
            return scalar.isASCII && (c.isLetter || c.isNumber || c == "-" || c == "_" || c == ".") ? c : "_"
        })
        while base.hasPrefix(".") { base.removeFirst() }
        if base.isEmpty { base = "worktree" }
        return try read { db in
            var candidate = base
            var n = 1
            while try Bool.fetchOne(db, sql: "SELECT 1 FROM worktree WHERE id = ?", arguments: [candidate]) == true
                || Bool.fetchOne(db, sql: "SELECT 1 FROM reflog WHERE ref = ? LIMIT 1", arguments: [HistoryDatabase.headLogName(candidate)]) == true {
                n += 1
                candidate = "\(base)\(n)"
            }
            return candidate
        }
    }

    /// Records a new linked working tree, its HEAD (after creating `newBranch` when given) and
    /// the stat cache of the files written, in one transaction.
    ///
    /// - Parameter force: allow a branch that another working tree has checked out.
    func registerWorktree(_ record: LinkedWorktreeRecord, head: Head, newBranch: (name: String, start: String, upstream: Upstream?)?,
                          force: Bool, statEntries: [StatCacheEntry], message: String) throws {
        let linked = HistoryDatabase(sharing: self, worktree: record.id)
        try write { db in
            if let (name, start, upstream) = newBranch, let target = head.commit {
                try HistoryDatabase.refuseTakenName(db, name)
                try HistoryDatabase.setRef(db, name: name, kind: .branch, target: target, old: nil, message: "branch: created from \(start)")
                try HistoryDatabase.startUpstream(db, of: name, upstream)
            }
            if case let .branch(name, target) = head {
                if try HistoryDatabase.ref(db, name)?.target != target { throw RepoError.concurrentUpdate(ref: name) }
                if !force { try linked.refuseBranchInUse(db, name) }
            }
            if try Bool.fetchOne(db, sql: "SELECT 1 FROM worktree WHERE id = ? OR path = ?", arguments: [record.id, record.path]) == true {
                throw RepoError.worktree(.alreadyRegistered(record.path))
            }
            try db.execute(sql: "INSERT INTO worktree(id, path, created) VALUES (?, ?, ?)", arguments: [record.id, record.path, record.created])
            try db.execute(sql: "INSERT INTO head(worktree, branch, commitID) VALUES (?, ?, ?)",
                           arguments: [record.id, head.branchName, head.branchName == nil ? head.commit?.hex : nil])
            try HistoryDatabase.logRef(db, linked.headLogName, old: nil, new: head.commit, message: message)
            for entry in statEntries { try entry.save(db, worktree: record.id) }
        }
    }

    /// Takes back ``registerWorktree(_:head:newBranch:force:statEntries:message:)`` after a failure
    /// that followed it: the working tree's rows and the branch it created (with its upstream), in
    /// one transaction.
    func unregisterWorktree(_ id: String, createdBranch: String?) throws {
        try write { db in
            try forgetWorktrees(db, [id])
            if let createdBranch, try HistoryDatabase.ref(db, createdBranch)?.kind == .branch {
                try HistoryDatabase.deleteRef(db, name: createdBranch, kind: .branch)
            }
        }
    }

    /// Forgets linked working trees: their rows in every per-working-tree table, in one
    /// transaction. Their HEAD logs stay in the reflog, as gc roots, until `gc --prune-reflog`.
    func forgetWorktrees(_ ids: [String]) throws {
        guard !ids.isEmpty else { return }
        try write { db in try forgetWorktrees(db, ids) }
    }

    private func forgetWorktrees(_ db: Database, _ ids: [String]) throws {
        for id in ids where !id.isEmpty {
            try db.execute(sql: "DELETE FROM worktree WHERE id = ?", arguments: [id])
            for table in ["head", "statCache", "mergeState", "worktreeView", "bisect"] {
                try db.execute(sql: "DELETE FROM \(table) WHERE worktree = ?", arguments: [id])
            }
        }
    }
}
