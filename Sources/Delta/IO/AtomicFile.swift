import CLinux
import Glibc

/// Writes a file so that it appears whole or not at all.
///
/// Bytes go to a temporary file in the destination's directory. ``commit()`` flushes them to
/// disk (`fsync`), renames the temporary file over the destination, and syncs the directory.
/// A crash at any instant leaves either the old file or the new one, plus at most a temporary
/// file whose name starts with ``temporaryPrefix``, which readers ignore and `gc` removes.
public final class AtomicFileWriter {
    /// Every temporary file mrepo writes starts with this prefix.
    public static let temporaryPrefix = ".mrepo-tmp-"

    public let destination: String
    public let temporaryPath: String
    private var fd: Int32
    private var buffer: UnsafeMutableRawBufferPointer
    private var buffered = 0
    private var finished = false
    /// Bytes written so far.
    public private(set) var byteCount = 0
    /// Whether ``checksum`` follows the bytes written (set before the first write).
    public var checksumsContent = false {
        willSet { precondition(byteCount == 0, "the checksum starts with the first byte") }
    }
    private var runningChecksum: UInt32 = 0
    private var checksumKnown = true
    /// The CRC-32C of every byte written, when ``checksumsContent`` was set before the first write
    /// (nil otherwise, or after ``cloneContents(of:)``).
    public var checksum: UInt32? { checksumsContent && checksumKnown ? runningChecksum : nil }
    /// Bytes up to which writeback has been started.
    private var kickedUpTo = 0
    /// Bytes handed to the file (byteCount minus what is still buffered).
    private var writtenToFile = 0
    /// Writeback is started every this many bytes, so the final sync has little left to wait for.
    static let writebackStep = 32 << 20

    /// False when `MREPO_FSYNC=0`: files are still written to temporaries and renamed, but
    /// nothing waits for the disk. Unsafe after a power loss; meant for benchmarks that compare
    /// with tools that do not sync, and for scratch repositories.
    public static let syncEnabled: Bool = {
        guard let v = getenv("MREPO_FSYNC") else { return true }
        return String(cString: v) != "0"
    }()

    /// Creates the temporary file next to `destination`.
    /// - Parameters:
    ///   - permissions: mode of the final file; the default is `0o644`.
    ///   - temporaryDirectory: where to create the temporary file instead, on the same file system
    ///     (for a destination whose folder does not exist yet).
    ///   - bufferByteCount: small writes are gathered in a buffer of this size; 0 hands every write
    ///     to the file as it comes (for callers that write large pieces).
    public init(destination: String, permissions: mode_t = 0o644, temporaryDirectory: String? = nil, bufferByteCount: Int = 1 << 20) throws {
        self.destination = destination
        temporaryPath = AtomicFileWriter.temporaryPath(for: temporaryDirectory.map { $0 + "/" + splitPath(destination).name } ?? destination)
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, permissions)
        guard fd >= 0 else { throw DeltaError.io(path: destination, reason: "cannot create temporary file: \(errnoDescription())") }
        buffer = .allocate(byteCount: max(bufferByteCount, 1), alignment: 64)
        unbuffered = bufferByteCount == 0
    }

    /// Every write goes straight to the file.
    private let unbuffered: Bool

    /// A fresh temporary file name in `destination`'s directory:
    /// `.mrepo-tmp-<pid>.<owner>-<random>-<name>` (``processOwner``; without it where it is unknown).
    ///
    /// The name is cut to fit a file name's 255 bytes (the tail is only a hint for whoever reads a
    /// listing): a file whose own name is that long gets a temporary name too.
    public static func temporaryPath(for destination: String) -> String {
        let (dir, name) = splitPath(destination)
        let suffix = UInt64.random(in: 0...UInt64.max)
        let head = temporaryPrefix + processTag + "-\(String(suffix, radix: 36))-"
        return (dir.isEmpty ? "" : dir + "/") + head + fitting(name, in: maximumNameBytes - head.utf8.count)
    }

    /// Where this process's pid means something: 8 hex digits of the SHA-256 of the kernel's boot
    /// id and the process's pid namespace, or nil where they cannot be read. A temporary name
    /// carries it after the pid (`.mrepo-tmp-<pid>.<owner>-…`), so that processes in other
    /// containers or on other machines sharing the repository, whose pids this process cannot
    /// see, never take each other's files for a dead process's (docs/format.md §7.4).
    public static let processOwner: String? = {
        let fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var boot = [UInt8](repeating: 0, count: 64)
        let b = read(fd, &boot, boot.count)
        close(fd)
        var link = [CChar](repeating: 0, count: 128)
        let n = readlink("/proc/self/ns/pid", &link, link.count - 1)
        guard b > 0, n > 0 else { return nil }
        // "<boot id>\npid:[<namespace inode>]"
        let identity = Array(boot[0..<b]) + link[0..<n].map { UInt8(bitPattern: $0) }
        return String(SHA256.hash(identity).hex.prefix(8))
    }()

    /// This process in the names of its temporary files and folders: `<pid>.<owner>`, or `<pid>`
    /// where the owner is unknown.
    public static let processTag = "\(getpid())" + (processOwner.map { ".\($0)" } ?? "")

    /// The longest name of a file in a folder, in bytes (NAME_MAX on Linux and macOS).
    public static let maximumNameBytes = 255

    /// `name`'s longest prefix of whole characters' scalars that takes at most `bytes` UTF-8 bytes.
    public static func fitting(_ name: String, in bytes: Int) -> String {
        guard name.utf8.count > bytes else { return name }
        var out = String.UnicodeScalarView()
        var used = 0
        for scalar in name.unicodeScalars {
            let n = String(scalar).utf8.count
            guard used + n <= bytes else { break }
            out.append(scalar)
            used += n
        }
        return String(out)
    }

    deinit {
        if !finished { abort() }
        buffer.deallocate()
    }

    /// Makes the (still empty) file a copy of `source` that shares its blocks (a reflink, on the
    /// file systems that have them: Btrfs, XFS), instead of writing bytes. Nothing is written to the
    /// file after this; ``byteCount`` is the source's size.
    /// - Returns: false, with the file still empty, when the file system cannot (ext4, across file
    ///   systems): the caller writes the bytes instead.
    public func cloneContents(of source: String) -> Bool {
        precondition(byteCount == 0 && !finished, "a clone replaces the whole content")
        let src = open(source, O_RDONLY | O_CLOEXEC)
        guard src >= 0 else { return false }
        defer { close(src) }
        var st = stat()
        guard mrepo_ficlone(fd, src) == 0, fstat(fd, &st) == 0 else {
            _ = ftruncate(fd, 0)
            return false
        }
        byteCount = Int(st.st_size)
        writtenToFile = byteCount
        kickedUpTo = byteCount
        checksumKnown = false
        return true
    }

    /// Appends bytes.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard bytes.count > 0 else { return }
        byteCount += bytes.count
        if checksumsContent { runningChecksum = CRC32C.checksum(bytes, continuing: runningChecksum) }
        if unbuffered {
            try writeAll(bytes)
            return
        }
        if buffered + bytes.count <= buffer.count {
            buffer.baseAddress!.advanced(by: buffered).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            buffered += bytes.count
            return
        }
        try flush()
        if bytes.count >= buffer.count / 2 {
            try writeAll(bytes)
        } else {
            buffer.baseAddress!.copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
            buffered = bytes.count
        }
    }

    /// Appends the bytes of an array.
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { (raw) throws in try write(raw) }
    }

    private func flush() throws {
        guard buffered > 0 else { return }
        try writeAll(UnsafeRawBufferPointer(start: buffer.baseAddress, count: buffered))
        buffered = 0
    }

    private func writeAll(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
            if n < 0 {
                if errno == EINTR { continue }
                throw DeltaError.io(path: destination, reason: "write failed: \(errnoDescription())")
            }
            done += n
        }
        writtenToFile += bytes.count
        CrashPoint.reach("write")
        if AtomicFileWriter.syncEnabled, writtenToFile - kickedUpTo >= AtomicFileWriter.writebackStep {
            // Start writing back what is written so far, without waiting (the final fsync then
            // has little left to do, and disk and CPU work overlap).
            _ = sync_file_range(fd, Int64(kickedUpTo), Int64(writtenToFile - kickedUpTo), UInt32(MREPO_SYNC_FILE_RANGE_WRITE))
            kickedUpTo = writtenToFile
        }
    }

    /// Flushes and closes the temporary file without syncing or renaming it, for callers that
    /// sync many files at once (``syncFileSystem(containing:)``) and then rename them.
    /// - Returns: the temporary file's path.
    public func closeUnsynced() throws -> String {
        try finishFile(durable: false)
        return temporaryPath
    }

    /// Flushes and closes the file: synced (`durable`), or with its write-back started only.
    /// On failure the temporary file is removed.
    private func finishFile(durable: Bool) throws {
        precondition(!finished, "commit or abort is called once")
        do {
            try flush()
            if durable {
                guard !AtomicFileWriter.syncEnabled || fsync(fd) == 0 else {
                    throw DeltaError.io(path: destination, reason: "fsync failed: \(errnoDescription())")
                }
            } else if AtomicFileWriter.syncEnabled {
                _ = sync_file_range(fd, Int64(kickedUpTo), 0, UInt32(MREPO_SYNC_FILE_RANGE_WRITE))
            }
        } catch {
            abort()
            throw error
        }
        close(fd)
        fd = -1
        finished = true
    }

    /// Flushes every file system buffer of the file system holding `path` to disk (`syncfs`).
    public static func syncFileSystem(containing path: String) throws {
        guard syncEnabled else { return }
        let dfd = open(path, O_RDONLY | O_CLOEXEC)
        guard dfd >= 0 else { throw DeltaError.io(path: path, reason: "cannot open: \(errnoDescription())") }
        defer { close(dfd) }
        guard syncfs(dfd) == 0 else { throw DeltaError.io(path: path, reason: "syncfs failed: \(errnoDescription())") }
    }

    /// Flushes, syncs and renames the file into place, then syncs its directory.
    /// - Parameter syncDirectory: sync the directory after the rename; callers that rename many
    ///   files into one directory may pass `false` and sync it once (``syncDirectory(_:)``).
    public func commit(syncDirectory: Bool = true) throws {
        try commit(renamingTo: destination, syncDirectory: syncDirectory)
    }

    /// Like ``commit(syncDirectory:)``, but renames the file to `target` (in the same file system),
    /// for writers that learn the final name only at the end (content-addressed objects).
    public func commit(renamingTo target: String, syncDirectory: Bool) throws {
        try finishFile(durable: true)
        guard rename(temporaryPath, target) == 0 else {
            let reason = errnoDescription()
            unlink(temporaryPath)
            throw DeltaError.io(path: target, reason: "rename failed: \(reason)")
        }
        if syncDirectory {
            try AtomicFileWriter.syncDirectory(splitPath(target).dir)
        }
    }

    /// Closes and deletes the temporary file.
    public func abort() {
        guard !finished else { return }
        finished = true
        if fd >= 0 { close(fd) }
        fd = -1
        unlink(temporaryPath)
    }

    /// Flushes a closed file's data to disk (a file left by ``closeUnsynced()``, before it is
    /// renamed); errors name `shown` (default: the file).
    public static func syncFile(_ path: String, shownAs shown: String? = nil) throws {
        guard syncEnabled else { return }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DeltaError.io(path: shown ?? path, reason: "cannot open: \(errnoDescription())") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw DeltaError.io(path: shown ?? path, reason: "fsync failed: \(errnoDescription())") }
    }

    /// Flushes a directory's entries to disk, making renames into it durable.
    public static func syncDirectory(_ dir: String) throws {
        guard syncEnabled else { return }
        let path = dir.isEmpty ? "." : dir
        let dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dfd >= 0 else { throw DeltaError.io(path: path, reason: "cannot open directory: \(errnoDescription())") }
        defer { close(dfd) }
        guard fsync(dfd) == 0 else { throw DeltaError.io(path: path, reason: "fsync failed: \(errnoDescription())") }
    }

    /// Writes a whole file atomically.
    public static func write(_ bytes: [UInt8], to path: String, permissions: mode_t = 0o644) throws {
        let writer = try AtomicFileWriter(destination: path, permissions: permissions)
        try writer.write(bytes)
        try writer.commit()
    }
}

/// Splits `a/b/c` into (`a/b`, `c`).
public func splitPath(_ path: String) -> (dir: String, name: String) {
    guard let slash = path.lastIndex(of: "/") else { return ("", path) }
    let dir = String(path[..<slash])
    return (dir.isEmpty ? "/" : dir, String(path[path.index(after: slash)...]))
}
