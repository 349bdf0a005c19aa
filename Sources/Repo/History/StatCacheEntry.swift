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
    /// When the entry was recorded; an entry whose mtime is this close to it is not trusted
    /// (the file may change again within the file system's timestamp granularity).
    public var recordedNs: Int64
    /// The file's content, as a ``TreeFile`` serialised by ``FileIdentityCoding``.
    public var identity: String

    init(row: Row) {
        path = row["path"]
        size = row["size"]
        mtimeNs = row["mtimeNs"]
        ctimeNs = row["ctimeNs"]
        inode = UInt64(bitPattern: row["inode"] as Int64)
        device = UInt64(bitPattern: row["device"] as Int64)
        recordedNs = row["recordedNs"]
        identity = row["identity"]
    }

    init(path: String, stat: FileStat, identity: String) {
        self.path = path
        size = stat.size
        mtimeNs = stat.mtimeNs
        ctimeNs = stat.ctimeNs
        inode = stat.inode
        device = stat.device
        recordedNs = FileStat.nowNs()
        self.identity = identity
    }

    /// Saves the entry as the given working tree's.
    func save(_ db: Database, worktree: String) throws {
        try db.execute(sql: """
            INSERT OR REPLACE INTO statCache(worktree, path, size, mtimeNs, ctimeNs, inode, device, recordedNs, identity)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [worktree, path, size, mtimeNs, ctimeNs, Int64(bitPattern: inode), Int64(bitPattern: device), recordedNs, identity])
    }

    /// Whether the file on disk is still the one this entry describes.
    func matches(_ stat: FileStat) -> Bool {
        stat.size == size && stat.mtimeNs == mtimeNs && stat.ctimeNs == ctimeNs && stat.inode == inode
            && stat.device == device && stat.mtimeNs < recordedNs - 1_000_000_000
    }
}
