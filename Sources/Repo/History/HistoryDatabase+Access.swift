import Delta
import Foundation
import GRDB
import Synchronization

/// How a command uses the history database.
public enum HistoryAccess: Sendable {
    /// The command records history (commit, switch, merge, gc, ...).
    case readWrite
    /// The command only reads history (export, log, show, fsck, ...): its connections write
    /// nothing and sync nothing when it opens and closes the database; a write it still makes
    /// (the stat cache of `status`) goes through a connection opened for it.
    case readOnly
}

extension HistoryDatabase {
    /// Opens the database with read-only connections, or nil when that fails (on a full disk the
    /// WAL index cannot be created; the caller then opens the database as a writer would). One
    /// read makes SQLite open the WAL and its index now rather than at the command's first query.
    static func openReadOnly(path: String, configuration: Configuration) -> (any DatabaseWriter)? {
        var config = configuration
        config.readonly = true
        guard let pool = try? DatabasePool(path: path, configuration: config),
              (try? pool.read({ try Int.fetchOne($0, sql: "SELECT count(*) FROM sqlite_master") })) != nil else { return nil }
        return pool
    }

    /// Opens the database with a pool of connections, or, on a full disk, one connection in
    /// exclusive locking mode (see ``init(path:create:worktree:access:)``).
    ///
    /// The writing connection syncs the WAL at every commit (`synchronous = FULL`), so a
    /// transaction is on the disk before the command goes on, and before it reports what it
    /// recorded. GRDB sets `NORMAL` when it opens a pool in WAL mode, which syncs only at a
    /// checkpoint: the last one comes when the command closes the database, after it printed
    /// its result, and a power loss in between would lose a commit the user saw reported. The
    /// price is one `fdatasync` of a few pages per transaction, and every command records its
    /// state in one (docs/format.md §7.3).
    static func openWritable(path: String, create: Bool, configuration: Configuration) throws -> any DatabaseWriter {
        do {
            let pool = try DatabasePool(path: path, configuration: configuration)
            // After the pool's WAL set-up, which sets NORMAL on the writer (a `prepareDatabase`
            // pragma would be overridden).
            try pool.writeWithoutTransaction { try $0.execute(sql: HistoryDatabase.syncEachCommit) }
            return pool
        } catch {
            guard !create, isDiskFull(error, path: path) else {
                throw failure(error, path: path, context: "cannot open the history database")
            }
            var config = configuration
            config.prepareDatabase { db in
                try db.execute(sql: "PRAGMA locking_mode = EXCLUSIVE")
                try db.execute(sql: HistoryDatabase.syncEachCommit)
            }
            do {
                return try DatabaseQueue(path: path, configuration: config)
            } catch {
                throw failure(error, path: path, context: "cannot open the history database")
            }
        }
    }

    /// The connection that writes: the pool's writer, or for a database opened read-only the
    /// connection opened at the first write.
    func writer() throws -> any DatabaseWriter {
        guard let lateWriter else { return pool }
        return try lateWriter.connection()
    }

    /// Whether this database was opened read-only (``HistoryAccess/readOnly``).
    var isReadOnly: Bool { lateWriter != nil }

    /// What every connection that writes runs: each commit syncs the WAL, so a transaction is
    /// durable before the command reports it (docs/format.md §7.3).
    static let syncEachCommit = "PRAGMA synchronous = FULL"
}

/// The writing connection of a database opened read-only, opened at its first use.
///
/// Its commits sync the WAL (``HistoryDatabase/syncEachCommit``), as every writer's do; here it
/// matters twice over, since the read-only connections stay open until the command ends, so its
/// close finds other connections and makes no checkpoint either.
final class LateWriter: Sendable {
    private let path: String
    private let configuration: Configuration
    private let queue = Mutex<DatabaseQueue?>(nil)

    init(path: String, configuration: Configuration) {
        self.path = path
        var config = configuration
        config.prepareDatabase { db in try db.execute(sql: HistoryDatabase.syncEachCommit) }
        self.configuration = config
    }

    /// A writer that closed while this command's read-only connections were open could not
    /// checkpoint. Writers now sync each commit (``HistoryDatabase/openWritable(path:create:configuration:)``),
    /// but one of an older mrepo ran with GRDB's `synchronous = NORMAL`, which syncs only at the
    /// checkpoint, and left its last transactions in the WAL unsynced. The close of a writing
    /// connection here would have checkpointed them; this one, read-only, cannot, so it syncs the
    /// WAL instead, which makes them durable (SQLite replays a synced WAL). Nothing to do when the
    /// WAL is empty.
    deinit {
        let wal = path + "-wal"
        guard (FileStat.of(wal)?.size ?? 0) > 0 else { return }
        let fd = open(wal, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        close(fd)
    }

    func connection() throws -> DatabaseQueue {
        try queue.withLock { queue in
            if let queue { return queue }
            let opened = try DatabaseQueue(path: path, configuration: configuration)
            queue = opened
            return opened
        }
    }
}
