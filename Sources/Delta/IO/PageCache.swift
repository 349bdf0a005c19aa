import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The kernel's page cache of files that are about to be replaced.
public enum PageCache {
    /// Files smaller than this are left alone: their pages cost little to free.
    public static let dropThreshold = 8 << 20

    /// Asks the kernel, on a thread of its own, to drop the cached pages of each existing regular
    /// file of at least `minimumByteCount` bytes at `paths` that has no other link
    /// (`posix_fadvise(DONTNEED)`), and returns at once.
    ///
    /// For files a command will replace or remove: the unlink that replaces a file frees its
    /// cached pages on the command's own thread (12–23 ms for a cached 91 MB checkpoint on the
    /// benchmark machine, a quarter of a second for 1.2 GB), while a file dropped earlier, when a
    /// core is idle, has few left; and the pages freed early can hold the new files' bytes. Only
    /// caching changes: no file's contents, dirty pages included, are touched, and a command that
    /// fails leaves the files as they were (read from disk when next read). Links are not
    /// followed. Renames and unlinks of the files wait for the drop first
    /// (``waitForPendingDrops()``).
    @discardableResult
    public static func dropInBackground(_ paths: [String], minimumByteCount: Int = dropThreshold) -> Dropping {
        let dropping = Dropping()
        guard !paths.isEmpty else {
            dropping.done.signal()
            return dropping
        }
        pending.withLock { $0.append(dropping) }
        Thread {
            for path in paths { drop(path, minimumByteCount: minimumByteCount) }
            dropping.done.signal()
        }.start()
        return dropping
    }

    /// Drops still running in the background.
    private static let pending = Mutex<[Dropping]>([])

    /// Waits for every drop started so far. Called before files are renamed over or unlinked: a
    /// drop that still holds a file open when its last link goes would free the file's pages on
    /// its own thread, racing the command (and a command's exit waits for that thread). A drop
    /// takes a fraction of the time of the work it overlaps (60 ms for a cached 1.2 GB file), so
    /// the wait is usually none.
    public static func waitForPendingDrops() {
        for d in pending.withLock({ p -> [Dropping] in defer { p.removeAll() }; return p }) { d.wait() }
    }

    /// Drops one file's cached pages now (see ``dropInBackground(_:minimumByteCount:)``).
    public static func drop(_ path: String, minimumByteCount: Int = dropThreshold) {
        let fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var st = stat()
        // A file with other links outlives the unlink (its pages are not freed then), and its
        // pages may be what another path is about to read.
        guard fstat(fd, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG, st.st_nlink == 1, Int(st.st_size) >= minimumByteCount else { return }
        _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
    }

    /// A drop running in the background.
    public final class Dropping: Sendable {
        fileprivate let done = DispatchSemaphore(value: 0)

        /// Waits until every file was handled.
        public func wait() {
            done.wait()
            done.signal()
        }
    }
}
