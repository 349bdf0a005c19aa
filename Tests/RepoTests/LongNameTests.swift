import Delta
import Foundation
import Testing

@testable import Repo

/// Names as long as a file system takes (255 bytes): every file mrepo writes goes through a
/// temporary name beside it, which must fit too.
@Suite struct LongNameTests {
    /// A name of exactly `bytes` UTF-8 bytes, with multi-byte characters near its end (a cut must
    /// not split one).
    func longName(_ bytes: Int, ending: String) -> String {
        let tail = "é—" + ending
        return String(repeating: "w", count: bytes - tail.utf8.count) + tail
    }

    @Test func aFileWithTheLongestNameIsWrittenBackByExportSwitchAndClone() async throws {
        let fixture = try TemporaryRepository()
        let repo = fixture.repo
        let name = longName(AtomicFileWriter.maximumNameBytes, ending: ".json")
        #expect(name.utf8.count == 255)
        try repo.writeModel()
        try writeFile(#"{"long": true}"#, to: repo.root + "/" + name)
        let first = try repo.commitAll("a long name").commit.id
        let files = try snapshot(repo.root).mapValues(\.bytes)

        let export = fixture.dir + "/export"
        defer { try? FileManager.default.removeItem(atPath: export) }
        _ = try repo.export("HEAD", to: export)
        #expect(try snapshot(export).mapValues(\.bytes) == files)

        // Switching away removes it; switching back writes it again.
        _ = try repo.switchBranch("without", create: true)
        try FileManager.default.removeItem(atPath: repo.root + "/" + name)
        try repo.commitAll("without the long name")
        #expect(FileManager.default.fileExists(atPath: repo.root + "/" + name) == false)
        _ = try repo.switchBranch("main")
        #expect(try snapshot(repo.root).mapValues(\.bytes) == files)
        #expect(try repo.status().isClean)

        // A clone into a folder whose own name is as long (its staging folder is named after it).
        let parent = fixture.dir + "/clones"
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: parent) }
        let destination = parent + "/" + longName(AtomicFileWriter.maximumNameBytes, ending: "-clone")
        let (copy, _) = try await Repository.clone(url: repo.root, into: destination)
        #expect(try copy.resolve("main") == first)
        #expect(try snapshot(destination).filter { !$0.key.hasPrefix(".mrepo/") }.mapValues(\.bytes) == files)
        #expect(try FileManager.default.contentsOfDirectory(atPath: parent) == [splitPath(destination).name])
        #expect(try repo.fsck().isClean)
    }

    /// A path component past 255 bytes (a Hub commit recorded one) is refused in a tree, and a
    /// branch or tag name past 255 bytes when it is made: the Hub's revision paths could not
    /// serve it, and no checkout could write the file.
    @Test func namesPastAFileNamesLengthAreRefused() throws {
        let long = String(repeating: "p", count: 256)
        #expect(throws: RepoError.self) { _ = try PathPolicy.normalize("a/" + long) }
        #expect(try PathPolicy.normalize("a/" + String(long.dropFirst())) == "a/" + String(long.dropFirst()))
        #expect(throws: RepoError.self) { try RefNames.validateNew(long) }
        try RefNames.validateNew(String(long.dropFirst()))
    }

    @Test func temporaryNamesFitAFileNameAndKeepWholeCharacters() {
        for bytes in [20, 100, 230, 250, 255] {
            let name = longName(bytes, ending: ".safetensors")
            let temporary = splitPath(AtomicFileWriter.temporaryPath(for: "/some/folder/" + name)).name
            #expect(temporary.utf8.count <= AtomicFileWriter.maximumNameBytes)
            #expect(temporary.hasPrefix(AtomicFileWriter.temporaryPrefix + "\(getpid())"))
            // The cut keeps a prefix of the name, never half a character.
            let kept = String(temporary.split(separator: "-", maxSplits: 4).last ?? "")
            #expect(name.hasPrefix(kept))
            #expect(TemporaryName.pid(of: temporary) == getpid())
        }
        #expect(AtomicFileWriter.fitting("aé", in: 2) == "a")
        #expect(AtomicFileWriter.fitting("aé", in: 3) == "aé")
        #expect(AtomicFileWriter.fitting("", in: 0) == "")
    }
}
