import Delta
import Foundation
import GRDB

/// A configured remote (`remote` table).
public struct RemoteConfig: Sendable, Equatable {
    public var name: String
    public var url: String
    /// Whether object files are fetched on first use from this remote (a lazy clone).
    public var lazy: Bool
}

/// A remote-tracking ref: what a branch or tag of a remote pointed at when last fetched or pushed.
public struct RemoteTrackingRef: Sendable, Equatable {
    public var remote: String
    public var name: String
    public var kind: Ref.Kind
    public var target: ObjectID
    /// `origin/main`.
    public var fullName: String { remote + "/" + name }
}

/// Where a branch pushes and pulls by default.
public struct Upstream: Sendable, Equatable {
    public var remote: String
    public var branch: String
}

extension HistoryDatabase {
    public func remotes() throws -> [RemoteConfig] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM remote ORDER BY name").map {
                RemoteConfig(name: $0["name"], url: $0["url"], lazy: ($0["lazy"] as Int) != 0)
            }
        }
    }

    public func remote(named name: String) throws -> RemoteConfig? {
        try remotes().first { $0.name == name }
    }

    func addRemote(_ remote: RemoteConfig) throws {
        try write { db in
            if try Row.fetchOne(db, sql: "SELECT 1 FROM remote WHERE name = ?", arguments: [remote.name]) != nil {
                throw RepoError.invalidArgument("remote '\(remote.name)' already exists")
            }
            try db.execute(sql: "INSERT INTO remote(name, url, lazy) VALUES (?, ?, ?)", arguments: [remote.name, remote.url, remote.lazy ? 1 : 0])
        }
    }

    /// Deletes a remote with its remote-tracking refs and the upstreams that name it.
    func removeRemote(_ name: String) throws {
        try write { db in
            guard try Row.fetchOne(db, sql: "SELECT 1 FROM remote WHERE name = ?", arguments: [name]) != nil else {
                throw RepoError.invalidArgument("no remote named '\(name)'")
            }
            for row in try Row.fetchAll(db, sql: "SELECT name, commitID FROM remoteRef WHERE remote = ?", arguments: [name]) {
                try HistoryDatabase.logRef(db, name + "/" + (row["name"] as String), old: ObjectID(hex: row["commitID"]), new: nil, message: "remote remove")
            }
            try db.execute(sql: "DELETE FROM remote WHERE name = ?", arguments: [name])
        }
    }

    func renameRemote(_ old: String, to new: String) throws {
        try write { db in
            guard try Row.fetchOne(db, sql: "SELECT 1 FROM remote WHERE name = ?", arguments: [old]) != nil else {
                throw RepoError.invalidArgument("no remote named '\(old)'")
            }
            if try Row.fetchOne(db, sql: "SELECT 1 FROM remote WHERE name = ?", arguments: [new]) != nil {
                throw RepoError.invalidArgument("remote '\(new)' already exists")
            }
            // ON UPDATE CASCADE renames the remote-tracking refs and upstreams with it.
            try db.execute(sql: "UPDATE remote SET name = ? WHERE name = ?", arguments: [new, old])
        }
    }

    func setRemote(_ name: String, url: String? = nil, lazy: Bool? = nil) throws {
        try write { db in
            guard try Row.fetchOne(db, sql: "SELECT 1 FROM remote WHERE name = ?", arguments: [name]) != nil else {
                throw RepoError.invalidArgument("no remote named '\(name)'")
            }
            if let url { try db.execute(sql: "UPDATE remote SET url = ? WHERE name = ?", arguments: [url, name]) }
            if let lazy { try db.execute(sql: "UPDATE remote SET lazy = ? WHERE name = ?", arguments: [lazy ? 1 : 0, name]) }
        }
    }

    /// Marks a remote lazy: object files missing here are fetched from it on first use.
    static func setRemoteLazy(_ db: Database, _ name: String) throws {
        try db.execute(sql: "UPDATE remote SET lazy = 1 WHERE name = ?", arguments: [name])
    }

    /// Remote-tracking refs, of one remote or of all.
    public func remoteRefs(remote: String? = nil) throws -> [RemoteTrackingRef] {
        try read { db in try HistoryDatabase.remoteRefs(db, remote: remote) }
    }

    static func remoteRefs(_ db: Database, remote: String?) throws -> [RemoteTrackingRef] {
        let rows = try remote.map {
            try Row.fetchAll(db, sql: "SELECT * FROM remoteRef WHERE remote = ? ORDER BY name", arguments: [$0])
        } ?? Row.fetchAll(db, sql: "SELECT * FROM remoteRef ORDER BY remote, name")
        return rows.map {
            RemoteTrackingRef(remote: $0["remote"], name: $0["name"], kind: Ref.Kind(rawValue: $0["kind"]) ?? .branch,
                              target: ObjectID(hex: $0["commitID"])!)
        }
    }

    /// The remote-tracking ref `remote/name`, if recorded.
    public func remoteRef(remote: String, name: String) throws -> RemoteTrackingRef? {
        try read { db in try HistoryDatabase.remoteRefs(db, remote: remote).first { $0.name == name } }
    }

    public func upstream(of branch: String) throws -> Upstream? {
        try read { db in
            try Row.fetchOne(db, sql: "SELECT remote, remoteBranch FROM upstream WHERE branch = ?", arguments: [branch])
                .map { Upstream(remote: $0["remote"], branch: $0["remoteBranch"]) }
        }
    }

    func setUpstream(of branch: String, to upstream: Upstream) throws {
        try write { db in try HistoryDatabase.setUpstream(db, of: branch, to: upstream) }
    }

    /// Forgets a branch's upstream; false when it had none.
    func unsetUpstream(of branch: String) throws -> Bool {
        try write { db in
            try db.execute(sql: "DELETE FROM upstream WHERE branch = ?", arguments: [branch])
            return db.changesCount > 0
        }
    }

    static func setUpstream(_ db: Database, of branch: String, to upstream: Upstream) throws {
        try db.execute(sql: "INSERT OR REPLACE INTO upstream(branch, remote, remoteBranch) VALUES (?, ?, ?)",
                       arguments: [branch, upstream.remote, upstream.branch])
    }

    /// Sets (or, with a nil target, deletes) remote-tracking refs, logging each change.
    static func updateRemoteRefs(_ db: Database, remote: String, _ updates: [(name: String, kind: Ref.Kind, target: ObjectID?)], message: String) throws {
        for u in updates {
            let old = try String.fetchOne(db, sql: "SELECT commitID FROM remoteRef WHERE remote = ? AND name = ?", arguments: [remote, u.name])
                .flatMap(ObjectID.init(hex:))
            guard old != u.target else { continue }
            if let target = u.target {
                try db.execute(sql: """
                    INSERT OR REPLACE INTO remoteRef(remote, name, kind, commitID, timestamp) VALUES (?, ?, ?, ?, ?)
                    """, arguments: [remote, u.name, u.kind.rawValue, target.hex, Date().timeIntervalSince1970])
            } else {
                try db.execute(sql: "DELETE FROM remoteRef WHERE remote = ? AND name = ?", arguments: [remote, u.name])
            }
            try logRef(db, remote + "/" + u.name, old: old, new: u.target, message: message)
        }
    }

    func updateRemoteRefs(remote: String, _ updates: [(name: String, kind: Ref.Kind, target: ObjectID?)], message: String) throws {
        try write { db in try HistoryDatabase.updateRemoteRefs(db, remote: remote, updates, message: message) }
    }

    /// A meta value (`bare`, ...), or nil.
    public func meta(_ key: String) throws -> String? {
        try read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [key]) }
    }

    func setMeta(_ key: String, _ value: String) throws {
        try write { db in try db.execute(sql: "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", arguments: [key, value]) }
    }

    /// The generation of a recorded commit, or nil.
    static func generation(_ db: Database, _ id: ObjectID) throws -> Int? {
        try Int.fetchOne(db, sql: #"SELECT generation FROM "commit" WHERE id = ?"#, arguments: [id.hex])
    }

    /// Whether `a` is `b` or one of its ancestors (walking parent rows; generations prune the walk).
    static func isAncestor(_ db: Database, _ a: ObjectID, of b: ObjectID) throws -> Bool {
        guard let target = try generation(db, a) else { return false }
        var seen: Set<ObjectID> = [b]
        var stack = [b]
        while let c = stack.popLast() {
            if c == a { return true }
            guard let g = try generation(db, c), g > target else { continue }
            for p in try String.fetchAll(db, sql: "SELECT parentID FROM commitParent WHERE commitID = ?", arguments: [c.hex]).compactMap(ObjectID.init(hex:))
            where seen.insert(p).inserted {
                stack.append(p)
            }
        }
        return false
    }
}
