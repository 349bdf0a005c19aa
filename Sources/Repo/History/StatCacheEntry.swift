import Delta
import Foundation
import GRDB

/// What the stat cache remembers of a working-tree file.
public struct StatCacheEntry: Sendable, Equatable {
    public var path: String
    public var size: Int
    public var mtimeNs: Int64
    public var ctimeNs: Int64
    public var inode: UInt64
    public var device: UInt64
    /// When the entry was recorded; an entry whose mtime is within a second of it is not trusted
    /// (the file may change again within the file system's timestamp granularity). An entry shown
    /// not to be racy (``init(path:stat:identity:clock:)``) records at least mtime + 1 s instead.
    public var recordedNs: Int64
    /// The file's content, as a ``TreeFile`` serialised by ``FileIdentityCoding``.
    public var identity: String

    init(row: Row) throws {
        let r = RowReader(row: row, table: "statCache", key: row.keyText("path"))
        path = try r.value("path")
        size = try r.value("size")
        mtimeNs = try r.value("mtimeNs")
        ctimeNs = try r.value("ctimeNs")
        inode = UInt64(bitPattern: try r.value("inode", Int64.self))
        device = UInt64(bitPattern: try r.value("device", Int64.self))
        recordedNs = try r.value("recordedNs")
        identity = try r.value("identity")
    }

    /// - Parameter clock: the file system's clock, read before `stat` was taken. When the file was
    ///   last changed before that reading, no later write can keep its facts (``FileSystemClock``),
    ///   so the entry is recorded as trusted at once: `recordedNs` is at least mtime + 1 s, which
    ///   every reader's one-second rule accepts.
    init(path: String, stat: FileStat, identity: String, clock: FileSystemClock? = nil) {
        self.path = path
        size = stat.size
        mtimeNs = stat.mtimeNs
        ctimeNs = stat.ctimeNs
        inode = stat.inode
        device = stat.device
        let now = FileStat.nowNs()
        recordedNs = clock?.precedes(stat) == true ? max(now, stat.mtimeNs + 1_000_000_001) : now
        self.identity = identity
    }

    /// An entry that no stat can vouch for (`recordedNs` is the file's own mtime, so the one-second
    /// rule never trusts it): only a hash of the file can, which `status` and `restore` do.
    static func untrusted(path: String, stat: FileStat, identity: String) -> StatCacheEntry {
        var entry = StatCacheEntry(path: path, stat: stat, identity: identity)
        entry.recordedNs = stat.mtimeNs
        return entry
    }

    /// Saves the entry as the given working tree's.
    func save(_ db: Database, worktree: String) throws {
        try StatCacheRow(worktree: worktree, entry: self).insert(db, onConflict: .replace)
    }

    /// Whether the file on disk is still the one this entry describes, and the entry is trusted.
    func matches(_ stat: FileStat) -> Bool {
        describes(stat) && stat.mtimeNs < recordedNs - 1_000_000_000
    }

    /// Whether `stat` is the one recorded (trusted or not: an entry recorded too soon after the
    /// file changed is confirmed by a hash, ``matches(_:)`` by the one-second rule).
    func describes(_ stat: FileStat) -> Bool {
        stat.size == size && stat.mtimeNs == mtimeNs && stat.ctimeNs == ctimeNs && stat.inode == inode && stat.device == device
    }
}
