import Glibc

/// Free space on the file system holding a path, to tell a full disk from other I/O errors
/// (SQLite reports a WAL index it cannot size as a plain "disk I/O error").
public enum DiskSpace {
    /// Below this many free bytes a failed write is put down to a full disk: SQLite's WAL index
    /// alone needs 32 KiB, a transaction a few pages more.
    public static let lowThreshold = 1 << 20

    /// Bytes an unprivileged process may still write on the file system holding `path` (a file or
    /// folder; the nearest existing parent is asked), or nil when it cannot be told.
    public static func available(near path: String) -> Int? {
        var candidate = path
        while true {
            var st = statvfs()
            if statvfs(candidate, &st) == 0 { return Int(st.f_bavail) * Int(st.f_frsize) }
            let parent = splitPath(candidate).dir
            if parent == candidate || parent.isEmpty { return nil }
            candidate = parent
        }
    }

    /// Whether the file system holding `path` is (nearly) full.
    public static func isLow(near path: String) -> Bool {
        available(near: path).map { $0 < lowThreshold } ?? false
    }
}
