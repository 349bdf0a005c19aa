import Delta
import Foundation

/// A path as the bytes the file system holds (names need not be UTF-8).
struct RawPath {
    struct Failure: Error { var reason: String }

    var bytes: [UInt8]
    init(_ bytes: [UInt8]) { self.bytes = bytes }

    func appending(_ name: [UInt8]) -> RawPath { RawPath(bytes + [UInt8(ascii: "/")] + name) }

    func withCString<T>(_ body: (UnsafePointer<CChar>) -> T) -> T {
        (bytes + [0]).withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { body($0.baseAddress!) } }
    }

    /// `lstat`: nil when nothing is there.
    func status() -> stat? {
        var st = stat()
        return withCString { lstat($0, &st) } == 0 ? st : nil
    }

    var isFolder: Bool { status().map { $0.st_mode & S_IFMT == S_IFDIR } ?? false }
    var exists: Bool { status() != nil }

    /// The names in the folder, as bytes, sorted, without `.` and `..`.
    func entries() throws -> [[UInt8]] {
        guard let handle = withCString({ opendir($0) }) else { throw Failure(reason: "cannot list folder: \(errnoDescription())") }
        defer { closedir(handle) }
        var names: [[UInt8]] = []
        while let entry = readdir(handle) {
            let name = withUnsafePointer(to: &entry.pointee.d_name) { tuple in
                tuple.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: tuple.pointee)) { c in
                    Array(UnsafeRawBufferPointer(start: c, count: strlen(c)))
                }
            }
            if name != [0x2E] && name != [0x2E, 0x2E] { names.append(name) }
        }
        return names.sorted { $0.lexicographicallyPrecedes($1) }
    }

    /// Deletes what is there: a file or a link (never followed), or a folder with everything in it.
    func removeAll() throws {
        guard let st = status() else { return }
        if st.st_mode & S_IFMT == S_IFDIR {
            for name in try entries() { try appending(name).removeAll() }
            guard withCString({ rmdir($0) }) == 0 || errno == ENOENT else { throw Failure(reason: "cannot remove folder: \(errnoDescription())") }
        } else {
            guard withCString({ unlink($0) }) == 0 || errno == ENOENT else { throw Failure(reason: "cannot remove: \(errnoDescription())") }
        }
    }
}
