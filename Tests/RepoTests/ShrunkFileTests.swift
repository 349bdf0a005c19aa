import Delta
import Foundation
@testable import Repo
import Testing

/// A file rewritten in place while it is read, and back to its size, time and inode afterwards
/// (`cp -p` of the same checkpoint): the pages read while it was shorter were zeros, so its
/// commit and its identity are refused, though the stat check alone would pass (the review found a
/// commit that recorded such zeros under the file's real ids, exit 0).
@Suite struct ShrunkFileTests {
    @Test func aFileThatShrankWhileMappedIsRefusedEvenWhenItsStatIsBack() throws {
        try withTemporaryDirectory { dir in
            let page = Int(sysconf(Int32(_SC_PAGESIZE)))
            let bytes = (0..<(4 * page)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ 1) }
            try writeFile(bytes, to: dir + "/weights.bin")
            let scanned = try #require(try FolderScanner.scan(root: dir, ignore: IgnoreRules(file: dir + "/.mrepoignore")).first)
            let map = try MappedFile(path: scanned.absolutePath)
            try Snapshotter.checkUnchanged(scanned, map: map)
            // Shorter while read: the last page reads as zeros.
            #expect(truncate(scanned.absolutePath, off_t(page)) == 0)
            #expect(map.bytes[3 * page] == 0)
            // Back as it was: same bytes, size, modification time and inode.
            let fd = open(scanned.absolutePath, O_WRONLY)
            _ = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
            var times = [timespec(tv_sec: Int(scanned.stat.mtimeNs / 1_000_000_000), tv_nsec: Int(scanned.stat.mtimeNs % 1_000_000_000)),
                         timespec(tv_sec: Int(scanned.stat.mtimeNs / 1_000_000_000), tv_nsec: Int(scanned.stat.mtimeNs % 1_000_000_000))]
            #expect(futimens(fd, &times) == 0)
            close(fd)
            let now = try #require(FileStat.of(scanned.absolutePath, followLinks: true))
            #expect(now.size == scanned.stat.size && now.mtimeNs == scanned.stat.mtimeNs && now.inode == scanned.stat.inode)
            #expect(map.shrank)
            expectThrows(RepoError.io(path: "weights.bin", reason: "changed while it was being committed; nothing was recorded (commit again once the file is complete)")) {
                try Snapshotter.checkUnchanged(scanned, map: map)
            }
            expectThrows(RepoError.io(path: "weights.bin", reason: "changed while it was being read (rewritten in place); run the command again once it is complete")) {
                try Snapshotter.refuseShrunk(map, scanned)
            }
        }
    }
}
