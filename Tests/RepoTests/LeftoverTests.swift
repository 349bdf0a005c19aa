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
}
