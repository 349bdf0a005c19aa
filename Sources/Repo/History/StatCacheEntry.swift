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
        try StatCacheRow(worktree: worktree, entry: self).insert(db, onConflict: .replace)
    }

    /// Whether the file on disk is still the one this entry describes.
    func matches(_ stat: FileStat) -> Bool {
        stat.size == size && stat.mtimeNs == mtimeNs && stat.ctimeNs == ctimeNs && stat.inode == inode
            && stat.device == device && stat.mtimeNs < recordedNs - 1_000_000_000
    }
}
