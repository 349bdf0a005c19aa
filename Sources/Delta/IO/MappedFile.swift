import CKernels
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory map of a whole file.
///
/// Pages are read on first touch. After a tensor is processed, ``release(_:)`` drops its pages
/// from this process's resident set (they stay in the page cache), so reading a model one tensor
/// at a time keeps the resident set near one tensor, whatever the model's size.
///
/// `@unchecked Sendable` (one of two in Delta, see ``UnsafeSendable``): the compiler cannot see that a raw
/// pointer is safe to share, but this one is a read-only mapping (`PROT_READ`, `MAP_PRIVATE`) that is
/// set once in `init`, never written through, and unmapped only in `deinit`, when no thread holds the
/// object. `madvise` calls change residency, never contents.
public final class MappedFile: @unchecked Sendable {
    /// The path the file was opened with.
    public let path: String
    /// The file's size in bytes.
    public let count: Int
    private let base: UnsafeMutableRawPointer?
    /// This mapping's slot among the guarded ones (mapguard.c; -1: unguarded).
    private let guardSlot: Int32

    /// Maps `path` read-only.
    /// - Throws: ``DeltaError/io(path:reason:)`` when the file cannot be opened or mapped.
    public init(path: String) throws(DeltaError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(path: path, reason: errnoDescription()) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .io(path: path, reason: errnoDescription()) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .io(path: path, reason: "not a regular file") }
        count = Int(st.st_size)
        if count == 0 {
            base = nil
            guardSlot = -1
            return
        }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != UnsafeMutableRawPointer(bitPattern: -1) else {
            throw .io(path: path, reason: "mmap failed: \(errnoDescription())")
        }
        base = p
        // A file that shrinks while it is read (rewritten by a trainer) reads zeros past its new
        // end instead of killing the process with SIGBUS; ``shrank`` and the caller's size check say so.
        guardSlot = mrepo_guard_mapping(p, count)
    }

    deinit {
        mrepo_unguard_mapping(guardSlot)
        if let base { munmap(base, count) }
    }

    /// Installs the guard of mapped files (SIGBUS handler, SIGBUS unblocked) before any thread
    /// starts, so that every thread inherits it; the first mapping installs it otherwise.
    public static func installGuard() {
        mrepo_guard_install()
    }

    /// Whether the file shrank under the mapping while it was read: some of ``bytes`` read as
    /// zeros that are not the file's.
    public var shrank: Bool { mrepo_mapping_shrank(guardSlot) != 0 }

    /// The whole file. Valid while this object lives.
    public var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base, count: count)
    }

    /// A byte range of the file. Valid while this object lives.
    public func bytes(in range: Range<Int>) -> UnsafeRawBufferPointer {
        precondition(range.lowerBound >= 0 && range.upperBound <= count, "range checked against the validated header")
        guard let base else { return UnsafeRawBufferPointer(start: nil, count: 0) }
        return UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count)
    }

    /// Tells the kernel the range will be read soon, in order.
    public func willNeed(_ range: Range<Int>) {
        advise(range, MADV_WILLNEED)
    }

    /// Tells the kernel the file will be read once, front to back: read ahead aggressively, and
    /// pages behind the reader may go.
    public func adviseSequential() {
        advise(0..<count, MADV_SEQUENTIAL)
    }

    /// Drops the pages of `range` from this process's resident set. Reading them again is valid.
    public func release(_ range: Range<Int>) {
        advise(range, MADV_DONTNEED)
    }

    private func advise(_ range: Range<Int>, _ advice: Int32) {
        guard let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = range.lowerBound / page * page
        let end = min(count, range.upperBound)
        guard end > start else { return }
        _ = madvise(base + start, end - start, advice)
    }
}
