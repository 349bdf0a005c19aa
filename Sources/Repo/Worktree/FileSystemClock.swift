import CLinux
import Foundation

/// The time on a file system's own clock: the times of a file created there just now.
///
/// A stat-cache entry is racy while a later write could leave the file's `lstat` facts as they are:
/// a write in the same tick of the file system's clock as the file's last change keeps its mtime
/// and ctime. Git compares a file's mtime with the index's, Mercurial with a file it creates; mrepo
/// reads this clock before it scans the working tree. A file whose mtime and ctime are both before
/// that reading was last changed before it, and any write after the reading (so after the scan's
/// `lstat`) gives the file a time at or after the reading: a different mtime. Such an entry can be
/// trusted at once, instead of one second after it was recorded (``StatCacheEntry/matches(_:)``).
struct FileSystemClock: Sendable, Equatable {
    /// The file system the reading belongs to: it says nothing of files on another.
    var device: UInt64
    var nowNs: Int64

    /// Reads the clock of `folder`'s file system from an unnamed temporary file (`O_TMPFILE`: no
    /// name in the folder, nothing left behind by a crash). Nil when the file system cannot make
    /// one (NFS, a read-only mount, another platform): entries are then trusted a second after
    /// they are recorded, as before.
    static func read(in folder: String) -> FileSystemClock? {
        let fd = mrepo_open_unnamed(folder)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { return nil }
        let mtime = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        let ctime = Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec)
        return FileSystemClock(device: UInt64(st.st_dev), nowNs: min(mtime, ctime))
    }

    /// Whether a file with these facts, taken after this reading, was last changed before it.
    func precedes(_ stat: FileStat) -> Bool {
        stat.device == device && stat.mtimeNs < nowNs && stat.ctimeNs < nowNs
    }
}
