import Delta
import Foundation
@testable import Repo
import Testing

// The file-system clock that lets `status` trust an entry at once (docs/format.md §6, statCache).
@Suite struct StatCacheClockTests {
    /// Overwrites a file's bytes in place (same inode, same size): the write a stat cache can miss.
    func overwrite(_ path: String, with text: String) throws {
        let handle = try #require(FileHandle(forWritingAtPath: path))
        try handle.write(contentsOf: Data(text.utf8))
        try handle.close()
    }

    @Test func anEntryIsTrustedAtOnceOnlyWhenItsFileChangedBeforeTheClockReading() throws {
        // A file changed just now: by the one-second rule alone its entry is not trusted yet.
        let now = FileStat.nowNs()
        let stat = FileStat(size: 10, mtimeNs: now, ctimeNs: now + 100, inode: 7, device: 3, mode: 0o100644)
        #expect(!StatCacheEntry(path: "f", stat: stat, identity: "x").matches(stat))
        #expect(StatCacheEntry(path: "f", stat: stat, identity: "x", clock: FileSystemClock(device: 3, nowNs: now + 101)).matches(stat))
        // A reading in the tick of the file's mtime or ctime, or of another file system: no proof.
        for clock in [FileSystemClock(device: 3, nowNs: now + 100), FileSystemClock(device: 3, nowNs: now),
                      FileSystemClock(device: 4, nowNs: now + 101)] {
            #expect(!StatCacheEntry(path: "f", stat: stat, identity: "x", clock: clock).matches(stat), "\(clock)")
        }
        // Trusted at once, but still only while every fact matches.
        let entry = StatCacheEntry(path: "f", stat: stat, identity: "x", clock: FileSystemClock(device: 3, nowNs: now + 101))
        var later = stat
        later.mtimeNs += 1
        #expect(!entry.matches(later))
    }

    @Test func theClockFollowsEarlierWritesAndPrecedesLaterOnes() throws {
        try withTemporaryDirectory { dir in
            try writeFile("before", to: dir + "/a")
            let clock = try #require(FileSystemClock.read(in: dir))
            let a = try #require(FileStat.of(dir + "/a"))
            #expect(clock.device == a.device)
            #expect(clock.nowNs >= a.mtimeNs && clock.nowNs >= a.ctimeNs)
            try writeFile("after", to: dir + "/b")
            let b = try #require(FileStat.of(dir + "/b"))
            #expect(b.mtimeNs >= clock.nowNs)
            #expect(FileSystemClock.read(in: dir + "/missing") == nil)
        }
    }

    @Test func statusTrustsAFileChangedBeforeItsClockReadingAtOnce() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            try repo.commitAll("base")
            let path = repo.root + "/model.safetensors"
            let stat = try #require(FileStat.of(path))
            // Until the file system's clock has moved past the file's last change (one tick).
            while try #require(FileSystemClock.read(in: repo.root)).nowNs <= max(stat.mtimeNs, stat.ctimeNs) {}
            repo.history.saveStatCacheOpportunistically([], removing: ["model.safetensors"])
            #expect(try repo.history.statCache()["model.safetensors"] == nil)
            #expect(try repo.status().isClean)
            let entry = try #require(try repo.history.statCache()["model.safetensors"])
            #expect(entry.matches(try #require(FileStat.of(path))), "trusted well within a second of being recorded")
        }
    }

    @Test func aFileRewrittenRightAfterStatusIsSeenAsModified() throws {
        try withRepository { repo, _ in
            try writeFile(#"{"a": 1}"#, to: repo.root + "/config.json")
            try repo.commitAll("base")
            let path = repo.root + "/config.json"
            // Each status records an entry; the same-size rewrite that follows at once, within the
            // same second (often the same clock tick) as the file's last change, must still be seen.
            for round in 0..<20 {
                #expect(try repo.status().isClean, "round \(round)")
                try overwrite(path, with: #"{"a": 2}"#)
                #expect(try repo.status().changes.map(\.kind) == [.modified], "round \(round)")
                try overwrite(path, with: #"{"a": 1}"#)
            }
        }
    }
}
