import Delta
import Foundation
import GRDB

// HEAD, branches and tags, and the reflog: every ref moves by compare-and-swap inside a
// transaction (docs/format.md §6).
extension HistoryDatabase {
    /// HEAD of this working tree.
    public func head() throws -> Head {
        try read { db in try head(db) }
    }

    /// HEAD of this working tree, inside a transaction.
    func head(_ db: Database) throws -> Head {
        try HistoryDatabase.head(db, worktree: worktree)
    }

    static func head(_ db: Database, worktree: String) throws -> Head {
        guard let row = try Row.fetchOne(db, sql: "SELECT branch, commitID FROM head WHERE worktree = ?", arguments: [worktree]) else {
            // init writes the main working tree's row; a linked one without a row was removed meanwhile.
            guard worktree.isEmpty else { throw HistoryDatabase.unregistered(worktree) }
            return .branch("main", commit: nil)
        }
        let r = RowReader(row: row, table: "head", key: worktree.isEmpty ? "(main)" : worktree)
        if let branch = try r.value("branch", String?.self) {
            guard let refRow = try Row.fetchOne(db, sql: "SELECT commitID FROM ref WHERE name = ? AND kind = 'branch'", arguments: [branch]) else {
                return .branch(branch, commit: nil)
            }
            return .branch(branch, commit: try RowReader(row: refRow, table: "ref", key: branch).id("commitID"))
        }
        return .detached(try r.id("commitID"))
    }

    public func ref(named name: String) throws -> Ref? {
        try read { db in try HistoryDatabase.ref(db, name) }
    }

    static func ref(_ db: Database, _ name: String) throws -> Ref? {
        try RefRow.fetchOne(db, sql: "SELECT * FROM ref WHERE name = ?", arguments: [name])?.ref
    }

    /// Refuses a name for a new branch or tag when a ref has it, or has a name that differs from it
    /// only in Unicode normalisation (`café` typed precomposed or with a combining accent): Swift
    /// compares such names as equal, so commands could no longer tell the two refs apart.
    static func refuseTakenName(_ db: Database, _ name: String) throws {
        if try ref(db, name) != nil { throw RepoError.refExists(name) }
        let names = try String.fetchAll(db, sql: "SELECT name FROM ref")
        if let other = names.first(where: { $0 == name && !$0.utf8.elementsEqual(name.utf8) }) {
            throw RepoError.invalidArgument("a branch or tag named '\(other)' exists: '\(name)' differs from it only in Unicode normalisation (the same letters encoded differently); choose another name")
        }
    }

    /// ``refuseTakenName(_:_:)`` in a read of its own.
    func refuseTakenName(_ name: String) throws {
        try read { db in try HistoryDatabase.refuseTakenName(db, name) }
    }

    public func refs(kind: Ref.Kind? = nil) throws -> [Ref] {
        try read { db in
            if let kind {
                return try RefRow.fetchAll(db, sql: "SELECT * FROM ref WHERE kind = ? ORDER BY name", arguments: [kind.rawValue]).map(\.ref)
            }
            return try RefRow.fetchAll(db, sql: "SELECT * FROM ref ORDER BY name").map(\.ref)
        }
    }

    /// The reflog, newest first; `HEAD` means this working tree's HEAD.
    public func reflog(ref: String? = nil, limit: Int = 100) throws -> [ReflogEntry] {
        let ref = ref == "HEAD" ? headLogName : ref
        return try read { db in
            let rows: [Row]
            if let ref {
                rows = try Row.fetchAll(db, sql: "SELECT * FROM reflog WHERE ref = ? ORDER BY id DESC LIMIT ?", arguments: [ref, limit])
            } else {
                rows = try Row.fetchAll(db, sql: "SELECT * FROM reflog ORDER BY id DESC LIMIT ?", arguments: [limit])
            }
            return try rows.map { try ReflogRow(row: $0).entry }
        }
    }

    /// Creates or moves a ref, with a compare-and-swap on its old value, and logs it.
    static func setRef(_ db: Database, name: String, kind: Ref.Kind, target: ObjectID, old: ObjectID?,
                       message: String, tagMessage: String? = nil) throws {
        let current = try ref(db, name)
        guard current?.target == old else { throw RepoError.concurrentUpdate(ref: name) }
        if current == nil {
            try RefRow(Ref(name: name, kind: kind, target: target, message: tagMessage, timestamp: Date().timeIntervalSince1970)).insert(db)
        } else {
            try db.execute(sql: "UPDATE ref SET commitID = ?, timestamp = ? WHERE name = ?",
                           arguments: [target.hex, Date().timeIntervalSince1970, name])
        }
        try logRef(db, name, old: old, new: target, message: message)
    }

    static func logRef(_ db: Database, _ ref: String, old: ObjectID?, new: ObjectID?, message: String) throws {
        try ReflogRow(ReflogEntry(ref: ref, old: old, new: new, timestamp: Date().timeIntervalSince1970, message: message)).insert(db)
    }

    /// Creates a branch or tag (fails if it exists); a branch with the upstream it tracks, if any.
    func createRef(name: String, kind: Ref.Kind, target: ObjectID, message: String, tagMessage: String? = nil,
                   upstream: Upstream? = nil) throws {
        try write { db in
            try HistoryDatabase.refuseTakenName(db, name)
            try HistoryDatabase.setRef(db, name: name, kind: kind, target: target, old: nil, message: message, tagMessage: tagMessage)
            if kind == .branch { try HistoryDatabase.startUpstream(db, of: name, upstream) }
        }
    }

    /// A new branch's upstream: the given one, or none. A row left by an earlier branch of that
    /// name (deleted by a version that kept it) is not inherited.
    static func startUpstream(_ db: Database, of branch: String, _ upstream: Upstream?) throws {
        try db.execute(sql: "DELETE FROM upstream WHERE branch = ?", arguments: [branch])
        if let upstream { try setUpstream(db, of: branch, to: upstream) }
    }

    /// Deletes a branch (with its upstream) or tag.
    func deleteRef(name: String, kind: Ref.Kind) throws {
        try deleteRefs([name], kind: kind)
    }

    /// Deletes branches (with their upstreams) or tags, all in one transaction: all or none.
    func deleteRefs(_ names: [String], kind: Ref.Kind) throws {
        try write { db in
            for name in names { try HistoryDatabase.deleteRef(db, name: name, kind: kind) }
        }
    }

    /// Deletes a branch (with its upstream) or tag inside a caller's transaction, and logs it.
    static func deleteRef(_ db: Database, name: String, kind: Ref.Kind) throws {
        guard let r = try HistoryDatabase.ref(db, name), r.kind == kind else { throw RepoError.unknownRef(name) }
        try db.execute(sql: "DELETE FROM ref WHERE name = ?", arguments: [name])
        if kind == .branch { try db.execute(sql: "DELETE FROM upstream WHERE branch = ?", arguments: [name]) }
        try HistoryDatabase.logRef(db, name, old: r.target, new: nil, message: "delete \(kind.rawValue)")
    }

    /// Detaches this working tree's HEAD at a commit (no reflog entry: the caller writes it).
    func detachHead(_ db: Database, at id: ObjectID) throws {
        try db.execute(sql: "UPDATE head SET branch = NULL, commitID = ? WHERE worktree = ?", arguments: [id.hex, worktree])
    }

    /// A branch created by the transaction that moves HEAD onto it (`switch -c`, `checkout -b`, a
    /// branch started from a remote one), so no crash leaves the branch without the switch or the
    /// reverse.
    struct NewBranch {
        var name: String
        var target: ObjectID
        var message: String
        /// The remote branch it tracks, if any.
        var upstream: Upstream? = nil
    }

    /// Points HEAD at a branch (which may not exist yet) or detaches it at a commit.
    func setHead(_ head: Head, expected: Head?, message: String, statEntries: [StatCacheEntry] = [], removedPaths: [String] = []) throws {
        try write { db in try writeHead(db, head, expected: expected, message: message, statEntries: statEntries, removedPaths: removedPaths) }
    }

    /// Creates `branch` and points HEAD at it, in one transaction (it fails if the branch exists).
    func setHead(_ head: Head, expected: Head?, message: String, creating branch: NewBranch, statEntries: [StatCacheEntry] = []) throws {
        try write { db in
            // HEAD as it was, read before the branch exists: on that branch while it had no commits
            // (a new repository switching to a branch only a remote has), creating it changes
            // what HEAD reads.
            let before = try self.head(db)
            if let expected, before != expected { throw RepoError.concurrentUpdate(ref: "HEAD") }
            try HistoryDatabase.refuseTakenName(db, branch.name)
            try HistoryDatabase.setRef(db, name: branch.name, kind: .branch, target: branch.target, old: nil, message: branch.message)
            try HistoryDatabase.startUpstream(db, of: branch.name, branch.upstream)
            try writeHead(db, head, expected: nil, message: message, statEntries: statEntries, removedPaths: [], previous: before)
        }
    }

    /// HEAD's row, its reflog entry, the view cleared and the stat cache updated, inside a transaction.
    /// - Parameter previous: HEAD before the transaction changed anything (default: read now).
    func writeHead(_ db: Database, _ head: Head, expected: Head?, message: String, statEntries: [StatCacheEntry],
                   removedPaths: [String], previous: Head? = nil) throws {
        let current = try previous ?? self.head(db)
        if let expected, current != expected { throw RepoError.concurrentUpdate(ref: "HEAD") }
        switch head {
        case let .branch(name, _):
            // A branch is checked out in one working tree at a time.
            if name != current.branchName { try refuseBranchInUse(db, name) }
            try db.execute(sql: "UPDATE head SET branch = ?, commitID = NULL WHERE worktree = ?", arguments: [name, worktree])
        case let .detached(id):
            try detachHead(db, at: id)
        }
        try HistoryDatabase.logRef(db, headLogName, old: current.commit, new: head.commit, message: message)
        try clearView(db)
        for path in removedPaths {
            try db.execute(sql: "DELETE FROM statCache WHERE worktree = ? AND path = ?", arguments: [worktree, path])
        }
        for entry in statEntries { try entry.save(db, worktree: worktree) }
    }

    /// Moves HEAD, or the branch it is on, forward to `target` (a fast-forward), if HEAD is still
    /// `head`; clears the view and saves the stat cache of the files written, in one transaction.
    func moveHead(_ head: Head, to target: ObjectID, message: String, statEntries: [StatCacheEntry]) throws {
        try write { db in
            let current = try self.head(db)
            guard current == head else { throw RepoError.concurrentUpdate(ref: head.branchName ?? "HEAD") }
            switch head {
            case let .branch(name, old):
                try HistoryDatabase.setRef(db, name: name, kind: .branch, target: target, old: old, message: message)
                // HEAD moved too: HEAD@{n} counts this move.
                try HistoryDatabase.logRef(db, headLogName, old: old, new: target, message: message)
            case let .detached(old):
                try detachHead(db, at: target)
                try HistoryDatabase.logRef(db, headLogName, old: old, new: target, message: message)
            }
            try clearView(db)
            for e in statEntries { try e.save(db, worktree: worktree) }
        }
    }
}

/// One reflog line.
public struct ReflogEntry: Sendable, Equatable {
    public var ref: String
    public var old: ObjectID?
    public var new: ObjectID?
    public var timestamp: Double
    public var message: String
}
