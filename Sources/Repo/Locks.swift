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
final class ReaderBarrier: Sendable {
    /// The lock file's descriptor, -1 once released (a lease may be released from any thread).
    private let fd: Mutex<Int32>
    private let exclusive: Bool

    private init(fd: Int32, exclusive: Bool) {
        self.fd = Mutex(fd)
        self.exclusive = exclusive
    }

    /// A reader's shared lock, waiting while gc runs; nil when the file cannot be opened (a
    /// read-only repository, where gc cannot run either).
    static func shared(path: String, notice: ((String) -> Void)?) -> ReaderBarrier? {
        var fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 { fd = Glibc.open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { return nil }
        if flock(fd, LOCK_SH | LOCK_NB) != 0 {
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buffer, buffer.count, 0)
            let pid = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
            notice?("waiting for gc\(pid.isEmpty ? "" : " (pid \(pid))") to finish")
            CrashPoint.reach("read.wait-gc")
            while flock(fd, LOCK_SH) != 0 {
                guard errno == EINTR else {
                    Glibc.close(fd)
                    return nil
                }
            }
        }
        return ReaderBarrier(fd: fd, exclusive: false)
    }

    /// A reader's shared lock if `gc` does not hold the exclusive one now, without waiting: for a
    /// server, whose threads must not wait for a `gc` that may run for minutes. `.success(nil)`:
    /// the file cannot be opened (a read-only repository, where gc cannot run either);
    /// `.failure`: gc holds it, with gc's pid when its file names one.
    static func sharedWithoutWaiting(path: String) -> Result<ReaderBarrier?, GCRunning> {
        var fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        if fd < 0 { fd = Glibc.open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else { return .success(nil) }
        while flock(fd, LOCK_SH | LOCK_NB) != 0 {
            if errno == EINTR { continue }
            let code = errno
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buffer, buffer.count, 0)
            Glibc.close(fd)
            guard code == EWOULDBLOCK else { return .success(nil) }
            let text = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
            return .failure(GCRunning(pid: Int(text)))
        }
        return .success(ReaderBarrier(fd: fd, exclusive: false))
    }

    /// gc's exclusive lock, waiting until no reader holds the shared one.
    static func exclusive(path: String, notice: ((String) -> Void)?) throws -> ReaderBarrier {
        let fd = Glibc.open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw RepoError.io(path: path, reason: "cannot open lock file: \(errnoDescription())") }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            notice?("waiting for commands reading the repository (export, diff, status, a push or fetch) to finish; the push session of a client that died, on an mrepo serve, holds it until the server's --push-session-timeout")
            CrashPoint.reach("gc.wait-readers")
            while flock(fd, LOCK_EX) != 0 {
                guard errno == EINTR else {
                    let reason = errnoDescription()
                    Glibc.close(fd)
                    throw RepoError.io(path: path, reason: "cannot lock: \(reason)")
                }
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
