@testable import Delta
import Foundation
import Synchronization
import Testing

@Suite struct AtomicFileTests {
    func listing(_ dir: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
    }

    /// A reflink copy where the file system has them; otherwise nothing happens and the caller
    /// writes the bytes. Either way the file ends up holding the source's bytes.
    @Test func cloneContentsCopiesTheSourceOrLeavesTheFileEmpty() throws {
        let folder = try TemporaryDirectory()
        let dir = folder.path
        let source = randomBytes(100_000, seed: 5)
        try writeFile(source, to: dir + "/src.bin")
        let w = try AtomicFileWriter(destination: dir + "/copy.bin")
        if w.cloneContents(of: dir + "/src.bin") {
            #expect(w.byteCount == source.count)
        } else {
            #expect(w.byteCount == 0)
            try w.write(source)
        }
        try w.commit()
        #expect(try readFile(dir + "/copy.bin") == source)
        // A source that cannot be opened is no clone.
        let other = try AtomicFileWriter(destination: dir + "/none.bin")
        #expect(!other.cloneContents(of: dir + "/missing.bin"))
        other.abort()
    }

    @Test func commitReplacesTheFileWhole() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/f.bin"
            try writeFile([1, 2, 3], to: path)
            let writer = try AtomicFileWriter(destination: path, permissions: 0o755)
            try writer.write([9, 9])
            // Until the commit the old file is in place, next to a temporary file.
            #expect(try readFile(path) == [1, 2, 3])
            #expect(writer.temporaryPath.hasPrefix(dir + "/" + AtomicFileWriter.temporaryPrefix))
            #expect(try listing(dir).count == 2)
            let big = randomBytes(3 << 20, seed: 1)  // larger than the write buffer
            try writer.write(big)
            #expect(writer.byteCount == 2 + big.count)
            try writer.commit()
            #expect(try readFile(path) == [9, 9] + big)
            #expect(try listing(dir) == ["f.bin"])
            let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
            #expect(mode == 0o755)
        }
    }

    @Test func abortLeavesTheOldFileAndNoTemporaryFile() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/f.bin"
            try writeFile([1], to: path)
            let writer = try AtomicFileWriter(destination: path)
            try writer.write([2, 3])
            writer.abort()
            #expect(try readFile(path) == [1])
            #expect(try listing(dir) == ["f.bin"])
            // Dropping an unfinished writer aborts it too.
            do {
                let dropped = try AtomicFileWriter(destination: dir + "/new.bin")
                try dropped.write([4])
            }
            #expect(try listing(dir) == ["f.bin"])
        }
    }

    @Test func commitUnderAnotherName() throws {
        try withTemporaryDirectory { dir in
            let writer = try AtomicFileWriter(destination: dir + "/incoming")
            try writer.write([5, 6])
            try writer.commit(renamingTo: dir + "/final", syncDirectory: false)
            #expect(try listing(dir) == ["final"])
            #expect(try readFile(dir + "/final") == [5, 6])
        }
    }

    @Test func creatingInAMissingDirectoryIsAnIOError() {
        expectThrows(DeltaError.self) {
            _ = try AtomicFileWriter(destination: "/nonexistent-mrepo-dir/x")
        } matching: {
            if case .io("/nonexistent-mrepo-dir/x", _) = $0 { true } else { false }
        }
    }

    @Test func splitPathCases() {
        #expect(splitPath("a/b/c") == ("a/b", "c"))
        #expect(splitPath("c") == ("", "c"))
        #expect(splitPath("/c") == ("/", "c"))
    }

    /// Many closed files are synced side by side (more files than threads; in-process tests do
    /// not sync, `MREPO_FSYNC=0`: the CLI tests sync for real).
    @Test func syncFilesKeepsEveryFile() throws {
        let folder = try TemporaryDirectory()
        let dir = folder.path
        var paths: [String] = []
        for i in 0..<(AtomicFileWriter.concurrentSyncLimit * 2 + 3) {
            let writer = try AtomicFileWriter(destination: dir + "/f\(i)")
            try writer.write([UInt8(i)])
            paths.append(try writer.closeUnsynced())
        }
        try AtomicFileWriter.syncFiles(paths)
        try AtomicFileWriter.syncFiles([])
        try AtomicFileWriter.syncDirectories([dir, dir])
        for (i, path) in paths.enumerated() { #expect(try readFile(path) == [UInt8(i)]) }
    }

    /// The side-by-side runner calls every index once, on several threads, and rethrows the
    /// first error only after every other call has returned.
    @Test func concurrentlyRunsEveryCallOnceAndRethrowsAfterAll() throws {
        let count = AtomicFileWriter.concurrentSyncLimit * 3 + 1
        let calls = Mutex<[Int]>([])
        try AtomicFileWriter.concurrently(count) { i in calls.withLock { $0.append(i) } }
        #expect(calls.withLock { $0.sorted() } == Array(0..<count))

        calls.withLock { $0.removeAll() }
        expectThrows(DeltaError.self) {
            try AtomicFileWriter.concurrently(count) { i in
                calls.withLock { $0.append(i) }
                if i == 5 { throw DeltaError.io(path: "file 5", reason: "cannot open") }
            }
        } matching: {
            if case let .io(path, _) = $0 { path == "file 5" } else { false }
        }
        #expect(calls.withLock { $0.sorted() } == Array(0..<count))
        expectThrows(DeltaError.self) {
            try AtomicFileWriter.concurrently(1) { _ in throw DeltaError.io(path: "only", reason: "x") }
        } matching: {
            if case let .io(path, _) = $0 { path == "only" } else { false }
        }
    }
}
