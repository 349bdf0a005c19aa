import Delta
import Foundation
@testable import Repo
import Testing

/// An object whose download broke off is continued by the next fetch from where it stopped
/// (``PartialDownload``): only the rest is asked for, and bytes that are not the object's
/// beginning cost a download from the start, never a wrong object.
@Suite struct PartialDownloadTests {
    /// Two clones of the fixture's origin and the objects a fetch of a new commit brings, the
    /// largest first.
    struct Setup {
        let f: RemoteTests.Fixture
        let plain: Repository
        let resumed: Repository
        let new: [ObjectID]

        init() async throws {
            f = try RemoteTests.Fixture()
            plain = try await f.clone("plain")
            resumed = try await f.clone("resumed")
            try f.origin.writeModel(.light("code", seed: 12))
            try f.origin.commitAll("code")
            let store = f.origin.objects
            new = f.origin.objectFiles.subtracting(plain.objectFiles).sorted {
                (FileStat.of(store.path(for: $0))?.size ?? 0) > (FileStat.of(store.path(for: $1))?.size ?? 0)
            }
        }

        func stored(_ id: ObjectID) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: f.origin.objects.path(for: id)))) }

        /// Leaves `bytes` as the partial download of `id` in `resumed`.
        func plant(_ id: ObjectID, _ bytes: [UInt8]) throws {
            let dir = PartialDownload.folder(of: resumed.objects)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + id.hex))
        }

        var partialFiles: [String] { (try? FileManager.default.contentsOfDirectory(atPath: PartialDownload.folder(of: resumed.objects))) ?? [] }

        /// Fetches into both clones; returns the bytes each received.
        func fetchBoth() async throws -> (plain: Int, resumed: Int) {
            let a = try await plain.fetch(remote: "origin")
            let b = try await resumed.fetch(remote: "origin")
            #expect(resumed.objectFiles == plain.objectFiles)
            #expect(try resumed.fsck().isClean)
            return (a.bytes, b.bytes)
        }
    }

    @Test func aFetchAsksOnlyForTheRestOfAPartialDownload() async throws {
        let s = try await Setup()
        let id = try #require(s.new.first)
        let bytes = try s.stored(id)
        #expect(bytes.count > 1000)
        try s.plant(id, Array(bytes.prefix(bytes.count / 2)))
        let (plain, resumed) = try await s.fetchBoth()
        #expect(resumed == plain - bytes.count / 2)
        #expect(s.partialFiles.isEmpty)
        #expect(try s.resumed.fsck().warnings.isEmpty)
    }

    /// Bytes that are not the object's beginning (a power loss that left zeros, another remote that
    /// codes the object otherwise) fail the object's verification, and it is downloaded again whole.
    @Test func bytesThatAreNotTheObjectsBeginningAreDownloadedAgain() async throws {
        let s = try await Setup()
        let id = try #require(s.new.first)
        let size = try s.stored(id).count
        try s.plant(id, [UInt8](repeating: 0, count: size / 2))
        let (plain, resumed) = try await s.fetchBoth()
        #expect(resumed == plain - size / 2 + size)
        #expect(s.partialFiles.isEmpty)
    }

    /// More bytes than the object holds are dropped before anything is asked for.
    @Test func aPartialFileLongerThanTheObjectIsDropped() async throws {
        let s = try await Setup()
        let id = try #require(s.new.first)
        let size = try s.stored(id).count
        try s.plant(id, [UInt8](repeating: 7, count: size + 10))
        let (plain, resumed) = try await s.fetchBoth()
        #expect(resumed == plain)
        #expect(s.partialFiles.isEmpty)
    }

    /// A partial file that another download holds is left to it: this fetch downloads the object
    /// into a file of its own. fsck counts what is left, and gc removes it once no one holds it.
    @Test func aHeldPartialFileIsLeftToItsHolderAndGCRemovesItAfter() async throws {
        let s = try await Setup()
        let id = try #require(s.new.first)
        try s.plant(id, [1, 2, 3])
        let held = try #require(PartialDownload.claim(id, in: s.resumed.objects))
        let (plain, resumed) = try await s.fetchBoth()
        #expect(resumed == plain)
        #expect(s.partialFiles == [id.hex])
        #expect(PartialDownload.claim(id, in: s.resumed.objects) == nil, "a second claim while it is held")
        #expect(try s.resumed.gc().removedTemporaryFiles == 0, "gc leaves a held partial file")
        held.keep()
        let fsck = try s.resumed.fsck()
        #expect(fsck.isClean)
        #expect(fsck.warnings.contains { $0.hasPrefix("1 object of a fetch or clone that broke off or still runs, in .mrepo/objects/partial (3 bytes") }, "\(fsck.warnings)")
        let report = try s.resumed.gc()
        #expect(report.removedTemporaryFiles == 1)
        #expect(s.partialFiles.isEmpty)
        #expect(try s.resumed.fsck().warnings.isEmpty)
    }

    /// Odd entries in the folder (a FIFO, a link, a folder named like an id) are not partial
    /// downloads: fsck does not count them and gc neither hangs on nor follows them; a `partial`
    /// that is a link to elsewhere is not read or emptied through.
    @Test func oddEntriesAreLeftAlone() async throws {
        let s = try await Setup()
        let dir = PartialDownload.folder(of: s.resumed.objects)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let names = (0..<3).map { String(repeating: "\($0 + 1)", count: 64) }
        #expect(mkfifo(dir + "/" + names[0], 0o644) == 0)
        try FileManager.default.createSymbolicLink(atPath: dir + "/" + names[1], withDestinationPath: s.f.dir + "/elsewhere")
        try FileManager.default.createDirectory(atPath: dir + "/" + names[2], withIntermediateDirectories: true)
        #expect(PartialDownload.census(s.resumed.objects).count == 0)
        #expect(try s.resumed.gc().removedTemporaryFiles == 0)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == names)
        let (plain, resumed) = try await s.fetchBoth()
        #expect(resumed == plain)

        // `partial` itself a link to a folder holding a file named like an id.
        try FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: s.f.dir + "/outside", withIntermediateDirectories: true)
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: s.f.dir + "/outside/" + names[0]))
        try FileManager.default.createSymbolicLink(atPath: dir, withDestinationPath: s.f.dir + "/outside")
        #expect(PartialDownload.census(s.resumed.objects).count == 0)
        #expect(try s.resumed.gc().removedTemporaryFiles == 0)
        #expect(FileManager.default.fileExists(atPath: s.f.dir + "/outside/" + names[0]))
    }

    /// A fetch that fails on the transfer stores nothing, but keeps what it had received under
    /// partial names, for the next fetch not to ask for again: here the remote lacks one object.
    /// One refused for a damaged object keeps nothing (RemoteCLITests).
    @Test func aFetchThatFailsKeepsWhatItReceived() async throws {
        let s = try await Setup()
        let missing = try #require(s.new.last)
        let file = s.f.origin.objects.path(for: missing)
        let original = try s.stored(missing)
        unlink(file)
        let error = await #expect(throws: RepoError.self) { _ = try await s.resumed.fetch(remote: "origin") }
        #expect("\(error.map { "\($0)" } ?? "")".contains(missing.short))
        // Nothing stored (a failed fetch stores nothing), the rest kept under its partial name.
        #expect(s.resumed.objectFiles.intersection(s.new).isEmpty)
        let kept = Set(s.partialFiles.compactMap(ObjectID.init(hex:)))
        #expect(!kept.isEmpty, "nothing received was kept")
        #expect(!kept.contains(missing))
        #expect(try s.resumed.fsck().isClean)
        try Data(original).write(to: URL(fileURLWithPath: file))
        let (plain, resumed) = try await s.fetchBoth()
        let keptBytes = kept.reduce(0) { $0 + (FileStat.of(s.f.origin.objects.path(for: $1))?.size ?? 0) }
        #expect(resumed == plain - keptBytes)
    }

    /// Each transport continues a file that holds the object's first bytes, and starts over when
    /// the file holds more than the object (here a folder remote; S3RemoteTests and the CLI tests
    /// of `mrepo serve` do the same over S3 and HTTP).
    @Test func theFolderTransportContinuesAFile() async throws {
        let s = try await Setup()
        let id = try #require(s.new.first)
        try await PartialDownloadTests.expectResumes(Transports.open(s.f.dir + "/origin"), id, stored: try s.stored(id), in: s.f.dir)
    }

    /// What ``expectResumes`` checks, on any transport.
    static func expectResumes(_ transport: any RemoteTransport, _ id: ObjectID, stored: [UInt8], in dir: String) async throws {
        let path = dir + "/download-" + UUID().uuidString
        defer { unlink(path) }
        for (prefix, received) in [(stored.count / 3, stored.count - stored.count / 3), (0, stored.count), (stored.count + 5, stored.count)] {
            let held = prefix <= stored.count ? Array(stored.prefix(prefix)) : stored + [1, 2, 3, 4, 5]
            try Data(held).write(to: URL(fileURLWithPath: path))
            if prefix == 0 { unlink(path) }
            let n = try await transport.getObject(id, to: path)
            #expect(n == received, "from \(prefix) bytes")
            #expect(Array(try Data(contentsOf: URL(fileURLWithPath: path))) == stored, "from \(prefix) bytes")
        }
    }
}
