import Delta
import Foundation
import GRDB

/// The SQLite database of a repository: commits, trees, refs, HEAD, reflog, object index and the
/// working tree's stat cache (docs/format.md §6).
///
/// WAL mode: readers never wait for the writer. Every write method is one transaction that keeps
/// the invariants (an object row only for a durable object file; a ref only to a recorded commit).
public final class HistoryDatabase: @unchecked Sendable {
    /// A pool of connections (WAL: readers never wait), or on a full disk one connection in
    /// exclusive locking mode (see ``init(path:create:)``).
    let pool: any DatabaseWriter
    public let path: String
    /// The working tree whose HEAD, stat cache, merge state and view this object reads and
    /// writes: '' for the main working tree, else the id of a linked one (docs/format.md §6.4).
    /// Everything else is shared by every working tree.
    public let worktree: String

    /// The repository format this build writes, and the newest it reads.
    public static let formatVersion = 1

    /// Opens (or creates) the database and applies pending migrations.
    ///
    /// On a full disk a connection pool cannot open: SQLite must create and size the WAL index
    /// (`mrepo.db-shm`, 32 KiB) and GRDB writes to the WAL on open; a read-only connection needs
    /// the same WAL index. The database is then opened with a single connection in exclusive
    /// locking mode, which keeps the WAL index in memory: every read works (`log`, `status`,
    /// `fsck`, ...), a write fails with ``RepoError/diskFull(path:)`` unless space was freed, and
    /// other processes wait while the command runs.
    public init(path: String, create: Bool, worktree: String = "") throws {
        self.path = path
        self.worktree = worktree
        var config = Configuration()
        config.busyMode = .timeout(30)
        config.foreignKeysEnabled = true
        config.label = "mrepo"
        do {
            pool = try DatabasePool(path: path, configuration: config)
        } catch {
            guard !create, HistoryDatabase.isDiskFull(error, path: path) else {
                throw HistoryDatabase.failure(error, path: path, context: "cannot open the history database")
            }
            config.prepareDatabase { db in try db.execute(sql: "PRAGMA locking_mode = EXCLUSIVE") }
            do {
                pool = try DatabaseQueue(path: path, configuration: config)
            } catch {
                throw HistoryDatabase.failure(error, path: path, context: "cannot open the history database")
            }
        }
        let migrator = HistoryDatabase.migrator
        do {
            if try pool.read({ try migrator.hasBeenSuperseded($0) }) {
                throw RepoError.unsupportedFormat(path: path, problem: "the history database was written by a newer mrepo; upgrade mrepo to use this repository")
            }
            // Migrating takes the write lock even when there is nothing to do: look first.
            if try !pool.read({ try migrator.hasCompletedMigrations($0) }) {
                try migrator.migrate(pool)
            }
            if create {
                try pool.write { db in
                    try db.execute(sql: "INSERT OR REPLACE INTO meta(key, value) VALUES ('formatVersion', ?)", arguments: ["\(HistoryDatabase.formatVersion)"])
                    try db.execute(sql: "INSERT OR IGNORE INTO head(worktree, branch, commitID) VALUES ('', 'main', NULL)")
                }
            }
            let version = try pool.read { try String.fetchOne($0, sql: "SELECT value FROM meta WHERE key = 'formatVersion'") }
            guard let version, let v = Int(version) else {
                throw RepoError.unsupportedFormat(path: path, problem: "the history database has no format version")
            }
            guard v <= HistoryDatabase.formatVersion else {
                throw RepoError.unsupportedFormat(path: path, problem: "repository format \(v) is newer than this mrepo understands (\(HistoryDatabase.formatVersion))")
            }
        } catch {
            throw HistoryDatabase.failure(error, path: path, context: "history database")
        }
    }

    /// The same database as another working tree sees it: the connections are shared, the
    /// per-working-tree rows are `worktree`'s.
    init(sharing other: HistoryDatabase, worktree: String) {
        pool = other.pool
        path = other.path
        self.worktree = worktree
    }

    /// Whether an SQLite error comes from a full disk: SQLITE_FULL, or an I/O error (SQLite's
    /// word for a WAL index it cannot size) while the file system has almost no room left.
    static func isDiskFull(_ error: any Error, path: String) -> Bool {
        if case RepoError.diskFull = error { return true }
        guard let e = error as? DatabaseError else { return false }
        switch e.resultCode {
        case .SQLITE_FULL: return true
        case .SQLITE_IOERR, .SQLITE_CANTOPEN: return DiskSpace.isLow(near: path)
        default: return false
        }
    }

    /// The one-line error for a database failure.
    static func failure(_ error: any Error, path: String, context: String) -> RepoError {
        if let e = error as? RepoError { return e }
        if isDiskFull(error, path: path) { return .diskFull(path: path) }
        return .io(path: path, reason: "\(context): \(error)")
    }

    // MARK: - Reading

    /// Runs a read transaction.
    func read<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.read(body)
        } catch {
            throw HistoryDatabase.failure(error, path: path, context: "history database")
        }
    }

    /// Runs a write transaction (IMMEDIATE, so a busy database fails before any work).
    func write<T>(_ body: (Database) throws -> T) throws -> T {
        do {
            return try pool.writeWithoutTransaction { db in
                var result: T?
                try db.inTransaction(.immediate) {
                    result = try body(db)
                    return .commit
                }
                return result!
            }
        } catch let error as RepoError {
            throw error
        } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY {
            throw RepoError.repositoryLocked(path: path, pid: nil)
        } catch {
            throw HistoryDatabase.failure(error, path: path, context: "history database")
        }
    }

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
        if let branch: String = row["branch"] {
            let target = try String.fetchOne(db, sql: "SELECT commitID FROM ref WHERE name = ? AND kind = 'branch'", arguments: [branch])
            return .branch(branch, commit: target.flatMap { ObjectID(hex: $0) })
        }
        let id: String = row["commitID"]
        guard let commit = ObjectID(hex: id) else { throw RepoError.failed("HEAD holds an invalid commit id '\(id)'") }
        return .detached(commit)
    }

    public func commit(_ id: ObjectID) throws -> Commit? {
        try read { try HistoryDatabase.commit($0, id) }
    }

    static func commit(_ db: Database, _ id: ObjectID) throws -> Commit? {
        guard let row = try Row.fetchOne(db, sql: #"SELECT * FROM "commit" WHERE id = ?"#, arguments: [id.hex]) else { return nil }
        let parents = try String.fetchAll(db, sql: "SELECT parentID FROM commitParent WHERE commitID = ? ORDER BY position", arguments: [id.hex])
        return try HistoryDatabase.commit(from: row, parents: parents.compactMap(ObjectID.init(hex:)))
    }

    static func commit(from row: Row, parents: [ObjectID]) throws -> Commit {
        let metricsText: String = row["metrics"]
        let extraText: String = row["extra"]
        let metrics = (try? JSONValue.parse(Array(metricsText.utf8)))?.objectValue?.compactMap { m -> Commit.Metric? in
            m.value.doubleValue.map { Commit.Metric(name: m.key, value: $0) }
        } ?? []
        let extra = (try? JSONValue.parse(Array(extraText.utf8))) ?? .object([])
        return Commit(id: ObjectID(hex: row["id"])!, treeID: ObjectID(hex: row["treeID"])!, parents: parents,
                      base: (row["baseID"] as String?).flatMap(ObjectID.init(hex:)), author: row["author"],
                      timestamp: row["timestamp"], message: row["message"], metrics: metrics, extra: extra,
                      generation: row["generation"])
    }

    /// Commits whose id starts with `prefix` (lower-case hex).
    public func commitIDs(withPrefix prefix: String) throws -> [ObjectID] {
        try read { db in
            try String.fetchAll(db, sql: #"SELECT id FROM "commit" WHERE id >= ? AND id < ? ORDER BY id LIMIT 20"#,
                                arguments: [prefix, prefix + "g"]).compactMap(ObjectID.init(hex:))
        }
    }

    /// Parents of many commits at once (for graph walks).
    public func parents(of id: ObjectID) throws -> [ObjectID] {
        try read { db in
            try String.fetchAll(db, sql: "SELECT parentID FROM commitParent WHERE commitID = ? ORDER BY position", arguments: [id.hex])
                .compactMap(ObjectID.init(hex:))
        }
    }

    public func ref(named name: String) throws -> Ref? {
        try read { db in try HistoryDatabase.ref(db, name) }
    }

    static func ref(_ db: Database, _ name: String) throws -> Ref? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM ref WHERE name = ?", arguments: [name]) else { return nil }
        return refFrom(row)
    }

    static func refFrom(_ row: Row) -> Ref {
        Ref(name: row["name"], kind: Ref.Kind(rawValue: row["kind"]) ?? .branch, target: ObjectID(hex: row["commitID"])!,
            message: row["message"], timestamp: row["timestamp"])
    }

    public func refs(kind: Ref.Kind? = nil) throws -> [Ref] {
        try read { db in
            if let kind {
                return try Row.fetchAll(db, sql: "SELECT * FROM ref WHERE kind = ? ORDER BY name", arguments: [kind.rawValue]).map(HistoryDatabase.refFrom)
            }
            return try Row.fetchAll(db, sql: "SELECT * FROM ref ORDER BY name").map(HistoryDatabase.refFrom)
        }
    }

    public func tree(_ id: ObjectID) throws -> Tree {
        try read { db in try HistoryDatabase.tree(db, id) }
    }

    static func tree(_ db: Database, _ id: ObjectID) throws -> Tree {
        let fileRows = try Row.fetchAll(db, sql: "SELECT * FROM treeFile WHERE treeID = ? ORDER BY path", arguments: [id.hex])
        let tensorRows = try Row.fetchAll(db, sql: "SELECT * FROM treeTensor WHERE treeID = ? ORDER BY path, position", arguments: [id.hex])
        var tensorsByPath: [String: [TreeTensor]] = [:]
        for row in tensorRows {
            let shapeText: String = row["shape"]
            let shape = shapeText.isEmpty ? [] : shapeText.split(separator: ",").compactMap { Int($0) }
            let t = TreeTensor(name: row["name"], dtype: DType(rawValue: row["dtype"]) ?? .u8, shape: shape,
                               dataOffsets: (row["beginOffset"] as Int)..<(row["endOffset"] as Int),
                               objectID: ObjectID(hex: row["objectID"])!)
            tensorsByPath[row["path"], default: []].append(t)
        }
        return Tree(files: fileRows.map { row in
            TreeFile(path: row["path"], kind: TreeFile.Kind(rawValue: row["kind"]) ?? .blob, objectID: ObjectID(hex: row["objectID"])!,
                     byteCount: row["byteCount"], executable: (row["executable"] as Int) != 0,
                     tensors: tensorsByPath[row["path"]] ?? [],
                     sha256: (row["sha256"] as String?).flatMap(ObjectID.init(hex:)))
        })
    }

    public func objectInfo(_ id: ObjectID) throws -> ObjectInfo? {
        try read { db in try HistoryDatabase.objectInfo(db, id) }
    }

    static func objectInfo(_ db: Database, _ id: ObjectID) throws -> ObjectInfo? {
        guard let row = try Row.fetchOne(db, sql: "SELECT * FROM object WHERE id = ?", arguments: [id.hex]) else { return nil }
        return objectInfoFrom(row)
    }

    static func objectInfoFrom(_ row: Row) -> ObjectInfo {
        ObjectInfo(id: ObjectID(hex: row["id"])!, kind: ObjectKind(rawValue: UInt8(row["kind"] as Int)) ?? .blob,
                   encoding: TensorEncoding(rawValue: UInt8(row["encoding"] as Int)) ?? .whole,
                   reference: (row["referenceID"] as String?).flatMap(ObjectID.init(hex:)),
                   logicalByteCount: row["logicalBytes"], storedByteCount: row["storedBytes"], depth: row["depth"])
    }

    /// Every recorded object.
    public func allObjects() throws -> [ObjectInfo] {
        try read { db in try Row.fetchAll(db, sql: "SELECT * FROM object").map(HistoryDatabase.objectInfoFrom) }
    }

    /// Every recorded commit, oldest generation first.
    public func allCommits() throws -> [Commit] {
        try read { db in
            var parents: [String: [ObjectID]] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT commitID, parentID FROM commitParent ORDER BY commitID, position") {
                parents[row["commitID"], default: []].append(ObjectID(hex: row["parentID"])!)
            }
            return try Row.fetchAll(db, sql: #"SELECT * FROM "commit" ORDER BY generation, timestamp"#).map {
                try HistoryDatabase.commit(from: $0, parents: parents[$0["id"]] ?? [])
            }
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
            return rows.map {
                ReflogEntry(ref: $0["ref"], old: ($0["oldID"] as String?).flatMap(ObjectID.init(hex:)),
                            new: ($0["newID"] as String?).flatMap(ObjectID.init(hex:)), timestamp: $0["timestamp"], message: $0["message"])
            }
        }
    }

    // MARK: - Writing

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

    static func insert(_ db: Database, objects: [ObjectInfo]) throws {
        // References first, so the foreign key holds at every insert.
        let sorted = objects.sorted { $0.depth < $1.depth }
        for o in sorted {
            try db.execute(sql: """
                INSERT OR IGNORE INTO object(id, kind, encoding, referenceID, logicalBytes, storedBytes, depth)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                """, arguments: [o.id.hex, Int(o.kind.rawValue), Int(o.encoding.rawValue), o.reference?.hex,
                                 o.logicalByteCount, o.storedByteCount, o.depth])
        }
    }

    static func insert(_ db: Database, tree: Tree) throws {
        let id = tree.id.hex
        var digests: [String: Digest] = [:]
        for f in tree.files {
            if let d = try f.sha256 ?? knownDigest(db, of: f) { digests[f.path] = d }
        }
        if try Bool.fetchOne(db, sql: "SELECT 1 FROM tree WHERE id = ?", arguments: [id]) == true {
            // The same tree recorded before, perhaps by an older mrepo: add the digests it lacks.
            for (path, d) in digests {
                try db.execute(sql: "UPDATE treeFile SET sha256 = ? WHERE treeID = ? AND path = ? AND sha256 IS NULL", arguments: [d.hex, id, path])
            }
            return
        }
        try db.execute(sql: "INSERT INTO tree(id, fileCount, tensorCount, logicalBytes) VALUES (?, ?, ?, ?)",
                       arguments: [id, tree.files.count, tree.tensorCount, tree.logicalByteCount])
        let fileStatement = try db.makeStatement(sql: "INSERT INTO treeFile(treeID, path, kind, objectID, byteCount, executable, sha256) VALUES (?, ?, ?, ?, ?, ?, ?)")
        let tensorStatement = try db.makeStatement(sql: """
            INSERT INTO treeTensor(treeID, path, position, name, dtype, shape, beginOffset, endOffset, objectID)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        for f in tree.files {
            try fileStatement.execute(arguments: [id, f.path, f.kind.rawValue, f.objectID.hex, f.byteCount, f.executable ? 1 : 0, digests[f.path]?.hex])
            for (i, t) in f.tensors.enumerated() {
                try tensorStatement.execute(arguments: [id, f.path, i, t.name, t.dtype.rawValue, t.shape.map(String.init).joined(separator: ","),
                                                        t.dataOffsets.lowerBound, t.dataOffsets.upperBound, t.objectID.hex])
            }
        }
    }

    static func insert(_ db: Database, commit: Commit) throws {
        let metrics = JSONValue.object(commit.metrics.map { JSONMember($0.name, .double($0.value)) }).serialized()
        try db.execute(sql: """
            INSERT OR IGNORE INTO "commit"(id, treeID, baseID, author, timestamp, message, metrics, extra, generation)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [commit.id.hex, commit.treeID.hex, commit.base?.hex, commit.author, commit.timestamp,
                             commit.message, metrics, commit.extra.serialized(), commit.generation])
        for (i, p) in commit.parents.enumerated() {
            try db.execute(sql: "INSERT OR IGNORE INTO commitParent(commitID, position, parentID) VALUES (?, ?, ?)",
                           arguments: [commit.id.hex, i, p.hex])
        }
    }

    /// Creates or moves a ref, with a compare-and-swap on its old value, and logs it.
    static func setRef(_ db: Database, name: String, kind: Ref.Kind, target: ObjectID, old: ObjectID?,
                       message: String, tagMessage: String? = nil) throws {
        let current = try ref(db, name)
        guard current?.target == old else { throw RepoError.concurrentUpdate(ref: name) }
        if current == nil {
            try db.execute(sql: "INSERT INTO ref(name, kind, commitID, message, timestamp) VALUES (?, ?, ?, ?, ?)",
                           arguments: [name, kind.rawValue, target.hex, tagMessage, Date().timeIntervalSince1970])
        } else {
            try db.execute(sql: "UPDATE ref SET commitID = ?, timestamp = ? WHERE name = ?",
                           arguments: [target.hex, Date().timeIntervalSince1970, name])
        }
        try logRef(db, name, old: old, new: target, message: message)
    }

    static func logRef(_ db: Database, _ ref: String, old: ObjectID?, new: ObjectID?, message: String) throws {
        try db.execute(sql: "INSERT INTO reflog(ref, oldID, newID, timestamp, message) VALUES (?, ?, ?, ?, ?)",
                       arguments: [ref, old?.hex, new?.hex, Date().timeIntervalSince1970, message])
    }

    /// Creates a branch or tag (fails if it exists).
    func createRef(name: String, kind: Ref.Kind, target: ObjectID, message: String, tagMessage: String? = nil) throws {
        try write { db in
            if try HistoryDatabase.ref(db, name) != nil { throw RepoError.refExists(name) }
            try HistoryDatabase.setRef(db, name: name, kind: kind, target: target, old: nil, message: message, tagMessage: tagMessage)
        }
    }

    /// Deletes a branch or tag.
    func deleteRef(name: String, kind: Ref.Kind) throws {
        try write { db in
            guard let r = try HistoryDatabase.ref(db, name), r.kind == kind else { throw RepoError.unknownRef(name) }
            try db.execute(sql: "DELETE FROM ref WHERE name = ?", arguments: [name])
            try HistoryDatabase.logRef(db, name, old: r.target, new: nil, message: "delete \(kind.rawValue)")
        }
    }

    /// Detaches this working tree's HEAD at a commit (no reflog entry: the caller writes it).
    func detachHead(_ db: Database, at id: ObjectID) throws {
        try db.execute(sql: "UPDATE head SET branch = NULL, commitID = ? WHERE worktree = ?", arguments: [id.hex, worktree])
    }

    /// Points HEAD at a branch (which may not exist yet) or detaches it at a commit.
    func setHead(_ head: Head, expected: Head?, message: String, statEntries: [StatCacheEntry] = [], removedPaths: [String] = []) throws {
        try write { db in
            let current = try self.head(db)
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
    }

    // MARK: - Stat cache

    public func statCache() throws -> [String: StatCacheEntry] {
        try read { db in
            var out: [String: StatCacheEntry] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT * FROM statCache WHERE worktree = ?", arguments: [worktree]) {
                let e = StatCacheEntry(row: row)
                out[e.path] = e
            }
            return out
        }
    }

    /// Saves stat-cache entries if the database is free right now; skips silently otherwise
    /// (the cache is an optimisation, and readers must never wait).
    func saveStatCacheOpportunistically(_ entries: [StatCacheEntry], removing: [String]) {
        guard !entries.isEmpty || !removing.isEmpty else { return }
        _ = try? pool.writeWithoutTransaction { db in
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

/// One reflog line.
public struct ReflogEntry: Sendable, Equatable {
    public var ref: String
    public var old: ObjectID?
    public var new: ObjectID?
    public var timestamp: Double
    public var message: String
}
