import Delta
import Foundation
import GRDB

/// The SQLite database of a repository: commits, trees, refs, HEAD, reflog, object index and the
/// working tree's stat cache (docs/format.md §6).
///
/// WAL mode: readers never wait for the writer. Every write method is one transaction that keeps
/// the invariants (an object row only for a durable object file; a ref only to a recorded commit).
public struct HistoryDatabase: Sendable {
    /// A pool of connections (WAL: readers never wait), or on a full disk one connection in
    /// exclusive locking mode (see ``init(path:create:)``).
    let pool: any DatabaseWriter
    /// Opened for reading only (``HistoryAccess/readOnly``): the connection that writes, opened at
    /// the first write, if any. Nil when `pool` writes.
    let lateWriter: LateWriter?
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
    ///
    /// With `access` ``HistoryAccess/readOnly`` the connections are opened read-only: opening
    /// writes nothing (GRDB otherwise writes to an empty WAL at every open, a sync), and closing
    /// neither checkpoints the WAL nor deletes it (two more syncs and an unlink). A write, should
    /// the command make one, goes through a connection of its own, opened then, whose commit
    /// syncs (`synchronous = FULL`), since its close does not checkpoint while the read-only
    /// connections are open.
    public init(path: String, create: Bool, worktree: String = "", access: HistoryAccess = .readWrite) throws {
        self.path = path
        self.worktree = worktree
        // SQLite would create an empty database in its place (even for `status`), and the error
        // would then be that it has no format version.
        if !create, FileStat.of(path, followLinks: true) == nil {
            throw RepoError.unsupportedFormat(path: path, problem: "the history database is missing; nothing was created in its place "
                + "(restore it from a backup, or clone the repository again)")
        }
        var config = Configuration()
        config.busyMode = .timeout(30)
        config.foreignKeysEnabled = true
        config.label = "mrepo"
        if access == .readOnly, !create, let readOnly = HistoryDatabase.openReadOnly(path: path, configuration: config) {
            pool = readOnly
            lateWriter = LateWriter(path: path, configuration: config)
        } else {
            pool = try HistoryDatabase.openWritable(path: path, create: create, configuration: config)
            lateWriter = nil
        }
        let migrator = HistoryDatabase.migrator
        do {
            if try pool.read({ try migrator.hasBeenSuperseded($0) }) {
                throw RepoError.unsupportedFormat(path: path, problem: "the history database was written by a newer mrepo; upgrade mrepo to use this repository")
            }
            // Migrating takes the write lock even when there is nothing to do: look first.
            if try !pool.read({ try migrator.hasCompletedMigrations($0) }) {
                try migrator.migrate(try writer())
            }
            if create {
                try writer().write { db in
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
        lateWriter = other.lateWriter
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
            return try writer().writeWithoutTransaction { db in
                var result: Result<T, any Error> = .failure(RepoError.failed("the transaction did not run"))
                try db.inTransaction(.immediate) {
                    result = .success(try body(db))
                    return .commit
                }
                return try result.get()
            }
        } catch let error as RepoError {
            throw error
        } catch let error as DatabaseError where error.resultCode == .SQLITE_BUSY {
            throw RepoError.repositoryLocked(path: path, pid: nil)
        } catch {
            throw HistoryDatabase.failure(error, path: path, context: "history database")
        }
    }
}
