import Foundation
import Glibc
import Synchronization

extension AtomicFileWriter {
    /// At most this many files are synced at the same time.
    public static let concurrentSyncLimit = 16

    /// Makes closed files durable (``syncFile(_:shownAs:)`` for each), syncing them side by side
    /// instead of one after the other: the file system commits its journal and flushes the disk
    /// once for all the syncs that wait together, instead of once per file (ext4 here: 4–8 ms
    /// each). Unlike one `syncfs`, it waits for these files only, not for what other processes
    /// wrote to the same file system.
    /// - Parameter shown: the name each file's error gives (default: the file).
    /// - Throws: the first error, once every other file has been synced.
    public static func syncFiles(_ paths: [String], shownAs shown: [String]? = nil) throws {
        guard syncEnabled, !paths.isEmpty else { return }
        let names = shown ?? paths
        try concurrently(paths.count) { i in try syncFile(paths[i], shownAs: names[i]) }
    }

    /// Makes the entries of several directories durable (``syncDirectory(_:)`` for each), side by side.
    public static func syncDirectories(_ dirs: [String]) throws {
        guard syncEnabled, !dirs.isEmpty else { return }
        try concurrently(dirs.count) { i in try syncDirectory(dirs[i]) }
    }

    /// Runs `body(0..<count)` on up to ``concurrentSyncLimit`` threads (the calling thread one of
    /// them): each call mostly waits for the disk, so the threads are not bound by the cores.
    /// Rethrows the first error once every call has returned.
    static func concurrently(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) throws {
        if count == 1 {
            try body(0)
            return
        }
        let state = SyncState()
        let work: @Sendable () -> Void = {
            while true {
                let i = state.next.add(1, ordering: .relaxed).oldValue
                guard i < count else { return }
                do {
                    try body(i)
                } catch {
                    state.firstError.withLock { if $0 == nil { $0 = error } }
                }
            }
        }
        let threads = DispatchGroup()
        for _ in 1..<min(count, concurrentSyncLimit) {
            threads.enter()
            Thread {
                defer { threads.leave() }
                work()
            }.start()
        }
        work()
        threads.wait()
        if let error = state.firstError.withLock({ $0 }) { throw error }
    }
}

/// The next call to claim and the first error of ``AtomicFileWriter/concurrently(_:_:)``.
private final class SyncState: Sendable {
    let next = Atomic<Int>(0)
    let firstError = Mutex<(any Error)?>(nil)
}
