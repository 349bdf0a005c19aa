@testable import Delta
import Foundation
import Testing
#if canImport(Glibc)
import Glibc
#endif

@Suite struct PageCacheTests {
    /// Pages of `path` in the page cache, by mincore(2) over a fresh mapping.
    func residentPages(_ path: String) throws -> Int {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0)
        defer { close(fd) }
        var st = stat()
        try #require(fstat(fd, &st) == 0)
        let count = Int(st.st_size)
        let map = try #require(mmap(nil, count, PROT_READ, MAP_SHARED, fd, 0))
        try #require(map != UnsafeMutableRawPointer(bitPattern: -1))
        defer { munmap(map, count) }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var vector = [UInt8](repeating: 0, count: (count + page - 1) / page)
        try #require(mincore(map, count, &vector) == 0)
        return vector.reduce(0) { $0 + Int($1 & 1) }
    }

    /// Whether the folder is on tmpfs, whose pages are the files themselves and are never dropped
    /// (the file system of the longest mount point above it, from /proc/self/mounts).
    func onTmpfs(_ path: String) -> Bool {
        guard let text = try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8) else { return false }
        let real = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        var best = (length: -1, type: "")
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3 else { continue }
            let mount = String(fields[1])
            let inside = mount == "/" || real == mount || real.hasPrefix(mount + "/")
            if inside, mount.count > best.length { best = (mount.count, String(fields[2])) }
        }
        return best.type == "tmpfs"
    }

    /// A file of `byteCount` bytes, synced (clean pages: the tests may run with MREPO_FSYNC=0) and
    /// read (cached).
    func cachedFile(_ path: String, byteCount: Int, seed: UInt64) throws -> [UInt8] {
        let bytes = randomBytes(byteCount, seed: seed)
        try writeFile(bytes, to: path)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        try #require(fd >= 0)
        try #require(fsync(fd) == 0)
        close(fd)
        #expect(try readFile(path) == bytes)
        return bytes
    }

    @Test func aDroppedFileKeepsItsBytesAndLeavesTheCache() throws {
        let folder = try TemporaryDirectory()
        let path = folder.path + "/model.safetensors"
        let bytes = try cachedFile(path, byteCount: 12 << 20, seed: 3)
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let pages = (bytes.count + page - 1) / page
        PageCache.dropInBackground([path, folder.path + "/missing.bin"]).wait()
        if !onTmpfs(folder.path) {
            // Clean pages of an unmapped file go at once (a few may be busy at that instant).
            #expect(try residentPages(path) < pages / 4)
        }
        #expect(try readFile(path) == bytes)
    }

    @Test func smallFilesAndFilesWithOtherLinksAreLeftCached() throws {
        let folder = try TemporaryDirectory()
        guard !onTmpfs(folder.path) else { return }
        let small = folder.path + "/config.json", linked = folder.path + "/linked.safetensors"
        _ = try cachedFile(small, byteCount: 1 << 20, seed: 4)
        _ = try cachedFile(linked, byteCount: 12 << 20, seed: 5)
        try #require(link(linked, folder.path + "/other-name.safetensors") == 0)
        let before = (try residentPages(small), try residentPages(linked))
        PageCache.dropInBackground([small, linked]).wait()
        // Another link outlives the unlink that the drop prepares for, and may be read by its
        // other name (a checkpoint hard-linked into the working tree).
        #expect(try residentPages(small) == before.0)
        #expect(try residentPages(linked) == before.1)
        // Below a threshold given by the caller, a small file goes too.
        PageCache.dropInBackground([small], minimumByteCount: 0).wait()
        let after = try residentPages(small)
        #expect(after < before.0, "resident pages of the small file: \(before.0) before the drop, \(after) after")
    }

    @Test func pendingDropsAreWaitedForBeforeFilesAreReplaced() throws {
        let folder = try TemporaryDirectory()
        let paths = try (0..<3).map { i in
            let path = folder.path + "/shard-\(i).safetensors"
            _ = try cachedFile(path, byteCount: 9 << 20, seed: UInt64(10 + i))
            return path
        }
        let first = PageCache.dropInBackground(Array(paths[0..<2]))
        let second = PageCache.dropInBackground([paths[2]])
        PageCache.waitForPendingDrops()
        // Every file was handled by then: the pages are gone without waiting on either drop.
        if !onTmpfs(folder.path) {
            let pages = (9 << 20) / Int(sysconf(Int32(_SC_PAGESIZE)))
            for path in paths { #expect(try residentPages(path) < pages / 4) }
        }
        first.wait()
        second.wait()
    }
}
