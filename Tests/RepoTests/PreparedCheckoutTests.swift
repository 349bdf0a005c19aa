import Delta
import Foundation
@testable import Repo
import Testing

/// ``PreparedCheckout``'s digests: held until a result new to the store is written, so that a
/// merge done again takes the SHA-256 the history records for the same file instead of hashing it.
@Suite final class PreparedCheckoutTests {
    let fixture: TemporaryRepository
    var repo: Repository { fixture.repo }
    /// The committed tree whose file the prepared checkout rebuilds, and that file's bytes.
    let tree: Tree
    let bytes: [UInt8]
    /// A digest no file has: what the history "records" in these tests.
    let recorded = SHA256.hash(Array("not the file".utf8))

    init() throws {
        fixture = try TemporaryRepository()
        let a = (0..<3000).map { Float($0) / 7 }
        let b = (0..<1000).map { Float($0) * 0.5 - 3 }
        try writeFloats([("a.weight", a), ("b.weight", b)], to: fixture.repo.root + "/model.safetensors")
        try fixture.repo.commitAll("base")
        tree = try fixture.repo.tree(of: try fixture.repo.resolve("HEAD"))
        bytes = try readFile(fixture.repo.root + "/model.safetensors")
    }

    /// Writes every tensor of the tree's file into a prepared checkout (`twice`: the first one
    /// written a second time over itself), ends the merge's writes, and finishes it.
    func prepare(resume: Bool, known: Digest?, twice: Bool = false, mayRepeat: Bool = true) throws -> PreparedFile {
        let prepared = try PreparedCheckout(repository: repo, template: tree, mayRepeat: mayRepeat)
        #expect(prepared.wroteNewResult == !mayRepeat, "a first merge's digests start at once")
        defer { prepared.discard() }
        let file = try #require(tree.file(at: "model.safetensors"))
        if resume { prepared.resumeDigests() }
        for (i, t) in file.tensors.enumerated() {
            var stored = [UInt8]()
            try repo.objects.decode(t.objectID) { stored.append(contentsOf: $0) }
            stored.withUnsafeBytes { prepared.writePart(t.name, $0, at: 0) }
            if twice, i == 0 { stored.withUnsafeBytes { prepared.writePart(t.name, $0, at: 0) } }
            prepared.completed(t.name)
        }
        prepared.startDigests()
        let ready = prepared.finish(for: tree, store: repo.objects, knownDigest: { _ in known })
        let out = try #require(ready["model.safetensors"])
        #expect(try readFile(out.temporary) == bytes, "the prepared file is the committed one")
        return out
    }

    /// Every result found stored (the digests never resumed) and the history knowing the file: its
    /// recorded digest is taken, not a hash of the file.
    @Test func aHeldDigestTakesTheRecordedOne() throws {
        #expect(try prepare(resume: false, known: recorded).sha256 == recorded)
    }

    /// A new result resumed the digests: the file is hashed (what the history says is not asked).
    @Test func aResumedDigestHashesTheFile() throws {
        #expect(try prepare(resume: true, known: recorded).sha256 == SHA256.hash(bytes))
    }

    /// A merge whose recipe the store does not hold (a first merge): its digests start at once, so
    /// its files are hashed as they are written, and nothing waits for a result to be found new.
    @Test func aFirstMergesDigestIsNeverHeld() throws {
        #expect(try prepare(resume: false, known: recorded, mayRepeat: false).sha256 == SHA256.hash(bytes))
    }

    /// Held, but the history knows no such file: hashed at the end.
    @Test func aHeldDigestWithoutARecordHashesTheFile() throws {
        #expect(try prepare(resume: false, known: nil).sha256 == SHA256.hash(bytes))
    }

    /// Held, but a tensor written over itself: the recorded digest is not trusted, the file is hashed.
    @Test func aFileWrittenTwiceIsHashed() throws {
        #expect(try prepare(resume: false, known: recorded, twice: true).sha256 == SHA256.hash(bytes))
    }

    /// The history's digest of a file of a recorded tree is read from that tree's own entry.
    @Test func theRecordedDigestOfATreesFile() throws {
        let file = try #require(tree.file(at: "model.safetensors"))
        #expect(try repo.history.knownDigest(of: file, inTree: tree.id) == SHA256.hash(bytes))
        // Another tree (unrecorded): the same objects recorded elsewhere still give it.
        #expect(try repo.history.knownDigest(of: file, inTree: recorded) == SHA256.hash(bytes))
    }
}
