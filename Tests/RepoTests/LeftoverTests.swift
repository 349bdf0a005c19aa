import Delta
import Foundation
import Testing

@testable import Repo

/// Temporary files of processes that are gone: opening a repository deletes those its journal
/// names (and those in `.mrepo`), gc all of them; files of running processes are never touched.
@Suite struct LeftoverTests {
    func touch(_ path: String) throws {
        try writeFile("partial", to: path)
    }

    func exists(_ path: String) -> Bool { FileStat.of(path) != nil }

    /// A process that has ended but was not reaped (a zombie: a container's first process often
    /// reaps nothing) holds no file and no lock: its temporary files are leftovers. Its pid still
    /// answers `kill(pid, 0)`.
    @Test func aZombieIsGone() throws {
        // sh starts `true` in the background, prints its pid, and becomes `sleep`, which never reaps it.
        let parent = Process()
        parent.executableURL = URL(fileURLWithPath: "/bin/sh")
        parent.arguments = ["-c", "true & echo $!; exec sleep 600"]
        let out = Pipe()
        parent.standardOutput = out
        try parent.run()
        defer {
            kill(parent.processIdentifier, SIGKILL)
            parent.waitUntilExit()
        }
        var line = [UInt8]()
        while let byte = try out.fileHandleForReading.read(upToCount: 1)?.first, byte != UInt8(ascii: "\n") { line.append(byte) }
        let zombie = try #require(pid_t(String(decoding: line, as: UTF8.self)))
        // `true` ends on its own; wait for it without a clock (its state turns to Z).
        var tries = 0
        while !ProcessLiveness.isZombie(zombie) && tries < 10_000_000 {
            sched_yield()
            tries += 1
        }
        try #require(ProcessLiveness.isZombie(zombie), "pid \(zombie) never showed as a zombie")
        #expect(kill(zombie, 0) == 0, "the zombie's pid exists")
        #expect(ProcessLiveness.isGone(zombie))
        #expect(!ProcessLiveness.isGone(parent.processIdentifier))
        #expect(!ProcessLiveness.isGone(getpid()))
    }

    @Test func openingDeletesWhatADeadProcessLeftAndNothingElse() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            try repo.commitAll("base")
            let root = repo.root, meta = repo.metaDirectory, objects = repo.objects.root
            let dead = try deadPid(), live = getppid(), me = getpid()
            let tmp = AtomicFileWriter.temporaryPrefix
            // What a killed merge leaves in .mrepo (found by listing .mrepo).
            try touch(meta + "/\(tmp)\(dead)-a1-prepared/0.safetensors")
            try touch(meta + "/\(tmp)\(dead)-a2-merge-report.json")
            // What its journal names: an object being written, a file staged in a folder it created.
            try touch(objects + "/\(tmp)\(dead)-b1-incoming")
            try touch(root + "/sub/\(tmp)\(dead)-b2-model.safetensors")
            try touch(root + "/\(tmp)\(dead)-b3-config.json")
            let journal = meta + "/\(tmp)\(dead)-j-journal"
            let lines = ["dir \(JSONValue.string(objects).serialized())", "mkdir \(JSONValue.string(root + "/sub").serialized())",
                         "dir \(JSONValue.string(root + "/sub").serialized())", "dir \(JSONValue.string(root).serialized())"]
            try writeFile(lines.joined(separator: "\n") + "\n", to: journal)
            // Not named by any journal: only gc looks there.
            try touch(objects + "/ab/\(tmp)\(dead)-c1-incoming")
            try touch(root + "/other/\(tmp)\(dead)-c2-notes.txt")
            // Files of running processes, this one included.
            let kept = [objects + "/\(tmp)\(live)-d1-incoming", root + "/\(tmp)\(live)-d2-config.json",
                        root + "/\(tmp)\(me)-d3-config.json", meta + "/\(tmp)\(live)-d4-prepared"]
            for path in kept { try touch(path) }

            _ = try Repository.open(at: root)
            for gone in [meta + "/\(tmp)\(dead)-a1-prepared", meta + "/\(tmp)\(dead)-a2-merge-report.json", objects + "/\(tmp)\(dead)-b1-incoming",
                         root + "/sub", root + "/\(tmp)\(dead)-b3-config.json", journal] {
                #expect(!exists(gone), "\(gone) is left")
            }
            for path in kept + [objects + "/ab/\(tmp)\(dead)-c1-incoming", root + "/other/\(tmp)\(dead)-c2-notes.txt"] {
                #expect(exists(path), "\(path) was deleted")
            }
            #expect(try repo.status().isClean, "status ignores temporary files")

            let report = try repo.gc()
            #expect(report.removedTemporaryFiles == 2)
            #expect(!exists(objects + "/ab/\(tmp)\(dead)-c1-incoming") && !exists(root + "/other/\(tmp)\(dead)-c2-notes.txt"))
            for path in kept { #expect(exists(path), "gc deleted \(path)") }
        }
    }

    @Test func aJournalLivesAsLongAsItsRepositoryObject() throws {
        try withRepository { repo, dir in
            try repo.writeModel()
            try repo.commitAll("base")
            let journals = { (try? FileManager.default.contentsOfDirectory(atPath: repo.metaDirectory))?.filter { $0.hasSuffix("-journal") } ?? [] }
            // `repo` wrote objects: its journal stays while it lives.
            let before = journals().count
            #expect(before == 1)
            var other: Repository? = try Repository.open(at: repo.root)
            _ = try other?.export("HEAD", to: dir + "/out")
            let during = journals().count
            #expect(during == before + 1, "the export noted the folders it wrote into")
            other = nil
            let after = journals().count
            #expect(after == before, "the journal goes with its repository object")
        }
    }

    /// Sets a file's modification time `seconds` into the past.
    func age(_ path: String, by seconds: Double) throws {
        let then = Date().timeIntervalSince1970 - seconds
        var times = [timespec(tv_sec: Int(then), tv_nsec: 0), timespec(tv_sec: Int(then), tv_nsec: 0)]
        try #require(utimensat(AT_FDCWD, path, &times, 0) == 0)
    }

    @Test func temporaryNamesCarryTheirOwnerAndOnlyTheSameOwnersDeadFilesAreLeftovers() throws {
        // On Linux the owner is known (boot id and pid namespace), and every temporary name has it.
        let owner = try #require(AtomicFileWriter.processOwner)
        #expect(owner.count == 8 && owner.allSatisfy(\.isHexDigit))
        let mine = splitPath(AtomicFileWriter.temporaryPath(for: "/x/model.safetensors")).name
        #expect(TemporaryName.writer(of: mine)?.pid == getpid() && TemporaryName.writer(of: mine)?.owner.map(String.init) == owner)
        #expect(TemporaryName.writer(of: ".mrepo-tmp-42-r-config.json").map { "\($0.pid) \($0.owner == nil)" } == "42 true")
        #expect(TemporaryName.writer(of: ".mrepo-tmp-x.1-r-config.json") == nil)

        try withRepository { repo, _ in
            try repo.writeModel()
            try repo.commitAll("base")
            let root = repo.root, meta = repo.metaDirectory, objects = repo.objects.root
            let dead = try deadPid(), tmp = AtomicFileWriter.temporaryPrefix
            let other = owner == "00000000" ? "11111111" : "00000000"
            // A process of another container sharing the volume: its pid may be dead here and
            // alive there. Its journal names folders with files it is still writing.
            let theirs = [meta + "/\(tmp)\(dead).\(other)-j-journal", objects + "/\(tmp)\(dead).\(other)-b1-incoming",
                          root + "/\(tmp)\(dead).\(other)-b2-config.json", meta + "/\(tmp)\(dead).\(other)-a1-prepared/0.safetensors"]
            for path in theirs { try touch(path) }
            try writeFile("dir \(JSONValue.string(objects).serialized())\ndir \(JSONValue.string(root).serialized())\n", to: theirs[0])
            // A dead process of this owner: a leftover, as one of an older mrepo (no owner).
            let ours = [objects + "/\(tmp)\(dead).\(owner)-c1-incoming", root + "/\(tmp)\(dead).\(owner)-c2-config.json"]
            for path in ours { try touch(path) }
            try writeFile("dir \(JSONValue.string(objects).serialized())\ndir \(JSONValue.string(root).serialized())\n",
                          to: meta + "/\(tmp)\(dead).\(owner)-j-journal")

            _ = try Repository.open(at: root)
            for path in ours { #expect(!exists(path), "\(path) is left") }
            for path in theirs { #expect(exists(path), "\(path) was deleted") }
            // gc leaves them too while they are recent, and deletes them once a day old.
            _ = try repo.gc()
            for path in theirs { #expect(exists(path), "gc deleted \(path)") }
            for path in theirs { try age(path, by: ProcessLiveness.othersGrace + 60) }
            // A folder counts as changed when a file in it is: the prepared folder of a merge that
            // is still writing its files stays.
            let prepared = meta + "/\(tmp)\(dead).\(other)-a1-prepared"
            try touch(prepared + "/1.safetensors")
            try age(prepared, by: ProcessLiveness.othersGrace + 60)
            let first = try repo.gc()
            #expect(first.removedTemporaryFiles == 2, "the two files named by the day-old journal (which goes too)")
            for path in theirs.prefix(3) { #expect(!exists(path), "\(path) is left") }
            #expect(exists(prepared + "/1.safetensors"), "a folder with a fresh file was deleted")
            try age(prepared + "/1.safetensors", by: ProcessLiveness.othersGrace + 60)
            try age(prepared, by: ProcessLiveness.othersGrace + 60)
            #expect(try repo.gc().removedTemporaryFiles == 1)
            #expect(!exists(prepared))
            #expect(try repo.fsck().isClean)
        }
    }
}
