import Delta
import Foundation
import Synchronization

/// The repository's write lock: an exclusive `flock` on `.mrepo/lock`, released by the kernel
/// when the process ends, however it ends.
final class WriteLock {
    private var fd: Int32
    /// The lock file's identity (device, inode) while held.
    private var identity: FileIdentityKey?

    /// Lock files this process holds the write lock of (a fetch from the repository itself must
    /// not wait for a reader lease there: its gc would wait for this write lock, and this for it).
    private static let held = Mutex<[FileIdentityKey: Int]>([:])

    struct FileIdentityKey: Hashable, Sendable {
        var device: UInt64
        var inode: UInt64

        init?(path: String) {
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            self.init(st)
        }

        /// The file open at `fd`: the one locked, even if the path names another file by now.
        init?(fd: Int32) {
            var st = stat()
            guard fstat(fd, &st) == 0 else { return nil }
            self.init(st)
        }

        private init(_ st: stat) {
            device = UInt64(st.st_dev)
            inode = UInt64(st.st_ino)
        }
    }

    /// Whether this process holds any repository's write lock.
    static var isAnyHeldHere: Bool { held.withLock { $0.values.contains { $0 > 0 } } }

    /// Whether this process holds the write lock whose file is at `path`.
    static func isHeldHere(path: String) -> Bool {
        guard let key = FileIdentityKey(path: path) else { return false }
        return held.withLock { ($0[key] ?? 0) > 0 }
    }

    init(path: String, wait: Bool) throws {
        fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw RepoError.io(path: path, reason: "cannot open lock file: \(errnoDescription())") }
        if flock(fd, LOCK_EX | (wait ? 0 : LOCK_NB)) != 0 {
            let code = errno
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buffer, buffer.count, 0)
            Glibc.close(fd)
            fd = -1
            if code == EWOULDBLOCK {
                let text = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
                throw RepoError.repositoryLocked(path: splitPath(splitPath(path).dir).dir, pid: Int(text))
            }
            throw RepoError.io(path: path, reason: "cannot lock: \(errnoDescription(code))")
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        identity = FileIdentityKey(fd: fd)
        if let identity { WriteLock.held.withLock { $0[identity, default: 0] += 1 } }
    }

    func release() {
        guard fd >= 0 else { return }
        if let identity {
            WriteLock.held.withLock { $0[identity, default: 1] -= 1 }
            self.identity = nil
        }
        _ = ftruncate(fd, 0)
        flock(fd, LOCK_UN)
        Glibc.close(fd)
        fd = -1
    }

    deinit { release() }

    /// The pid of a live process holding the lock at `path`, as its file names it; nil when none
    /// does (a writer killed leaves its pid, but no process). Reads only: taking the lock to find
    /// out would make a writer starting at that instant fail.
    static func liveHolder(path: String) -> Int32? {
        guard let data = FileManager.default.contents(atPath: path),
              let pid = Int32(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)), pid > 0,
              pid != getpid(), !ProcessLiveness.isGone(pid) else { return nil }
        return pid
    }
}

/// `.mrepo/gc.lock`, which keeps `gc` from deleting objects a reader is using: readers hold it
/// shared for their whole run, `gc` exclusively (and writes its pid into it). Released by the
/// kernel when the process ends, however it ends.
///
/// `flock` grants a shared lock while an exclusive one waits, so readers that overlap without a
/// gap (a busy `mrepo serve`, a loop of exports) would keep `gc` waiting for ever. `gc` therefore
/// lets new readers in for a grace period only (``gcGraceSeconds``); past it, it takes
/// `.mrepo/gc.intent` exclusively, and a reader takes that file shared (for a moment) before
/// `gc.lock`: new readers wait for (or a server refuses, as while gc runs) the gc, which gets its
/// lock once the running readers end. A process that holds any lock already (a write lock, a
/// read lock of any repository) takes no turn: gc, or a reader gc waits for, may be waiting for
/// that lock, and waiting for gc would close a circle.
final class ReaderBarrier: Sendable {
    /// The lock file's descriptor, -1 once released (a lease may be released from any thread).
    private let fd: Mutex<Int32>
    private let exclusive: Bool
    /// The locked file's identity, counted in ``sharedHere`` while a shared lock is held.
    private let identity: WriteLock.FileIdentityKey?

    /// `gc.lock` files this process holds shared, with how many times.
    private static let sharedHere = Mutex<[WriteLock.FileIdentityKey: Int]>([:])

    /// How long gc lets new readers start while it waits for the running ones:
    /// `MREPO_GC_GRACE_SECONDS` (0 or more, checked at start by ``TuningVariables``), default 10.
    static let gcGraceSeconds: Double = {
        guard let text = ProcessInfo.processInfo.environment["MREPO_GC_GRACE_SECONDS"], let s = Double(text), s >= 0, s < 1e6 else { return 10 }
        return s
    }()

    private init(fd: Int32, exclusive: Bool) {
        self.fd = Mutex(fd)
        self.exclusive = exclusive
        identity = exclusive ? nil : WriteLock.FileIdentityKey(fd: fd)
        if let identity { ReaderBarrier.sharedHere.withLock { $0[identity, default: 0] += 1 } }
    }

    /// `.mrepo/gc.intent`, beside `gc.lock`.
    private static func intentPath(_ lockPath: String) -> String { splitPath(lockPath).dir + "/gc.intent" }

    private static func openLockFile(_ path: String) -> Int32 {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        return fd >= 0 ? fd : Glibc.open(path, O_RDONLY | O_CLOEXEC)
    }

    /// `gc.intent`, which only gc creates: without it, no gc has claimed its turn.
    private static func openIntent(_ lockPath: String) -> Int32 {
        Glibc.open(intentPath(lockPath), O_RDONLY | O_CLOEXEC)
    }

    /// The pid a lock file names (gc writes its own), or "".
    private static func pidText(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 32)
        let n = pread(fd, &buffer, buffer.count, 0)
        return n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
    }

    /// Whether this process holds a lock another process may wait for: any repository's write
    /// lock, or any `gc.lock` shared. Such a process takes no turn behind a gc: that gc waits for
    /// this process's read lock, or another reader that the gc waits for may wait for this
    /// process's lock (a fetch holding its write lock and reading from a folder remote that pushes
    /// back), and waiting would close the circle.
    private static var holdsAnyLock: Bool {
        WriteLock.isAnyHeldHere || sharedHere.withLock { $0.values.contains { $0 > 0 } }
    }

    /// A reader's turn behind a gc that claimed priority: `gc.intent` shared, waiting (and saying
    /// so); the descriptor to close once `gc.lock` is held (-1 when there is no such file, no gc
    /// having claimed one, or when this process holds a lock already: ``holdsAnyLock``), and
    /// whether it waited.
    private static func takeTurn(lockPath: String, notice: ((String) -> Void)?) -> (fd: Int32, waited: Bool) {
        if holdsAnyLock { return (-1, false) }
        let fd = openIntent(lockPath)
        guard fd >= 0 else { return (-1, false) }
        while flock(fd, LOCK_SH | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            guard errno == EWOULDBLOCK else { return (fd, false) }
            let pid = pidText(fd)
            notice?("waiting for gc\(pid.isEmpty ? "" : " (pid \(pid))") to finish")
            CrashPoint.reach("read.wait-gc")
            while flock(fd, LOCK_SH) != 0 {
                guard errno == EINTR else { break }
            }
            return (fd, true)
        }
        return (fd, false)
    }

    /// A reader's shared lock, waiting while gc runs (or waits with priority); nil when the file
    /// cannot be opened (a read-only repository, where gc cannot run either).
    static func shared(path: String, notice: ((String) -> Void)?) -> ReaderBarrier? {
        let fd = openLockFile(path)
        guard fd >= 0 else { return nil }
        let turn = takeTurn(lockPath: path, notice: notice)
        defer { if turn.fd >= 0 { Glibc.close(turn.fd) } }
        if flock(fd, LOCK_SH | LOCK_NB) != 0 {
            let pid = pidText(fd)
            // Said once: a reader that waited its turn behind gc said so already.
            if !turn.waited {
                notice?("waiting for gc\(pid.isEmpty ? "" : " (pid \(pid))") to finish")
                CrashPoint.reach("read.wait-gc")
            }
            while flock(fd, LOCK_SH) != 0 {
                guard errno == EINTR else {
                    Glibc.close(fd)
                    return nil
                }
            }
        }
        return ReaderBarrier(fd: fd, exclusive: false)
    }

    /// A reader's shared lock if `gc` does not hold the exclusive one now (nor claims it after its
    /// grace), without waiting: for a server, whose threads must not wait for a `gc` that may run
    /// for minutes. `.success(nil)`: the file cannot be opened (a read-only repository, where gc
    /// cannot run either); `.failure`: gc holds it, with gc's pid when its file names one.
    static func sharedWithoutWaiting(path: String) -> Result<ReaderBarrier?, GCRunning> {
        let fd = openLockFile(path)
        guard fd >= 0 else { return .success(nil) }
        // A server's requests overlap: one holding the lock must not let the next in past a gc
        // that claimed priority (that is the starvation the turn prevents), and refusing cannot
        // deadlock. So the turn is taken even when this process holds the lock already.
        let intent = openIntent(path)
        defer { if intent >= 0 { Glibc.close(intent) } }
        if intent >= 0 {
            while flock(intent, LOCK_SH | LOCK_NB) != 0 {
                if errno == EINTR { continue }
                guard errno == EWOULDBLOCK else { break }
                let pid = pidText(intent)
                Glibc.close(fd)
                return .failure(GCRunning(pid: Int(pid)))
            }
        }
        while flock(fd, LOCK_SH | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            let code = errno
            let text = pidText(fd)
            Glibc.close(fd)
            guard code == EWOULDBLOCK else { return .success(nil) }
            return .failure(GCRunning(pid: Int(text)))
        }
        return .success(ReaderBarrier(fd: fd, exclusive: false))
    }

    /// gc's exclusive lock, waiting until no reader holds the shared one: new readers may start
    /// for ``gcGraceSeconds`` of that wait, and wait for gc after it.
    static func exclusive(path: String, notice: ((String) -> Void)?) throws -> ReaderBarrier {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw RepoError.io(path: path, reason: "cannot open lock file: \(errnoDescription())") }
        func fail(_ reason: String) -> RepoError {
            Glibc.close(fd)
            return RepoError.io(path: path, reason: "cannot lock: \(reason)")
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            notice?("waiting for commands reading the repository (export, diff, status, a push or fetch) to finish; the push session of a client that died, on an mrepo serve, holds it until the server's --push-session-timeout")
            CrashPoint.reach("gc.wait-readers")
            let deadline = ContinuousClock.now + .milliseconds(Int64(gcGraceSeconds * 1000))
            var intent: Int32 = -1
            defer {
                if intent >= 0 {
                    _ = ftruncate(intent, 0)
                    flock(intent, LOCK_UN)
                    Glibc.close(intent)
                }
            }
            // Readers that start during the grace are let in; a poll, since flock has no timeout.
            while flock(fd, LOCK_EX | LOCK_NB) != 0 {
                if errno == EINTR { continue }
                guard errno == EWOULDBLOCK else { throw fail(errnoDescription()) }
                guard ContinuousClock.now >= deadline else {
                    usleep(20_000)
                    continue
                }
                // Past the grace: new readers wait behind this gc (they hold the intent file
                // only for a moment), and the running ones are waited for.
                intent = Glibc.open(intentPath(path), O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
                guard intent >= 0 else { throw fail("cannot open \(intentPath(path)): \(errnoDescription())") }
                while flock(intent, LOCK_EX) != 0 {
                    guard errno == EINTR else { throw fail(errnoDescription()) }
                }
                let pid = Array("\(getpid())\n".utf8)
                _ = ftruncate(intent, 0)
                _ = pwrite(intent, pid, pid.count, 0)
                notice?("readers still running after \(String(format: "%g", gcGraceSeconds)) s: commands that start reading now wait for this gc")
                CrashPoint.reach("gc.priority")
                while flock(fd, LOCK_EX) != 0 {
                    guard errno == EINTR else { throw fail(errnoDescription()) }
                }
                break
            }
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
        return ReaderBarrier(fd: fd, exclusive: true)
    }

    func release() {
        fd.withLock { fd in
            guard fd >= 0 else { return }
            if let identity { ReaderBarrier.sharedHere.withLock { $0[identity, default: 1] -= 1 } }
            if exclusive { _ = ftruncate(fd, 0) }
            flock(fd, LOCK_UN)
            Glibc.close(fd)
            fd = -1
        }
    }

    deinit { release() }
}

/// `gc` holds `.mrepo/gc.lock` exclusively: a reader that may not wait was turned away.
public struct GCRunning: Error, Sendable, Equatable {
    /// gc's pid, as it wrote it into the lock file (nil when the file names none).
    public var pid: Int?
}
