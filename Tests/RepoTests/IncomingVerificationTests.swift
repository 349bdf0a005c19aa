import Delta
import Foundation
import MrepoTestSupport
@testable import Repo
import Testing

/// A download verifies a delta against a reference that is verified but not yet installed: read
/// from its incoming file, or from its final name once its batch was installed meanwhile
/// (docs/format.md §10, ``ObjectMover/download(_:)``).
@Suite final class IncomingVerificationTests {
    let source: TemporaryRepository
    let target: TemporaryRepository

    init() throws {
        source = try TemporaryRepository()
        target = try TemporaryRepository()
    }

    /// A delta object of the source and its reference, each copied to an incoming file of the target.
    func incomingPair() throws -> (delta: ObjectID, reference: ObjectID, deltaFile: String, referenceFile: String) {
        let repo = source.repo
        let n = 5000
        let base = (0..<n).map { Float($0 % 97) / 97 }
        try writeFloats([("w", base)], to: repo.root + "/model.safetensors")
        try repo.commitAll("base")
        try writeFloats([("w", base.map { $0 + 0.001 })], to: repo.root + "/model.safetensors")
        let tuned = try repo.commitAll("tuned")
        let id = try #require(try repo.tree(of: tuned.commit.id).files.first { $0.path == "model.safetensors" }?.tensors.first?.objectID)
        let reference = try #require(try repo.objects.header(of: id).reference, "the fine-tune is stored as a delta")
        let store = target.repo.objects
        let (deltaFile, referenceFile) = (store.incomingPath(), store.incomingPath())
        try FileManager.default.copyItem(atPath: repo.objects.path(for: id), toPath: deltaFile)
        try FileManager.default.copyItem(atPath: repo.objects.path(for: reference), toPath: referenceFile)
        return (id, reference, deltaFile, referenceFile)
    }

    @Test func deltaVerifiesAgainstAReferenceInItsIncomingFile() throws {
        let (delta, reference, deltaFile, referenceFile) = try incomingPair()
        let store = target.repo.objects
        _ = try store.verifyIncoming(reference, path: referenceFile)
        // Not stored, not pending: refused, as before.
        let refused = #expect(throws: RepoError.self) {
            try store.verifyIncoming(delta, path: deltaFile, references: nil, pending: [:], sink: { _ in })
        }
        #expect(refused.map { "\($0)" }?.contains("is not stored here") == true)
        let row = try store.verifyIncoming(delta, path: deltaFile, references: nil, pending: [reference: referenceFile], sink: { _ in })
        #expect(row.depth == 1 && row.reference == reference)
        // The reference's batch is installed meanwhile: the stale incoming path falls back to its name.
        try store.install(reference, from: referenceFile)
        #expect(!FileManager.default.fileExists(atPath: referenceFile))
        let again = try store.verifyIncoming(delta, path: deltaFile, references: nil, pending: [reference: referenceFile], sink: { _ in })
        #expect(again.depth == 1)
    }

    @Test func aPendingReferenceThatDoesNotDecodeFailsTheDelta() throws {
        let (delta, reference, deltaFile, referenceFile) = try incomingPair()
        // Damage the reference's last byte (inside its coded data).
        let handle = try #require(FileHandle(forUpdatingAtPath: referenceFile))
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: size - 1)
        let last = try #require(try handle.read(upToCount: 1)).first!
        try handle.seek(toOffset: size - 1)
        try handle.write(contentsOf: [last ^ 0xff])
        try handle.close()
        let error = #expect(throws: RepoError.self) {
            try self.target.repo.objects.verifyIncoming(delta, path: deltaFile, references: nil, pending: [reference: referenceFile], sink: { _ in })
        }
        #expect(error.map { "\($0)" }?.contains("received object rejected") == true)
    }

    /// A remote that claims a reference cycle cannot make the chain walk spin.
    @Test func aClaimedReferenceCycleEnds() throws {
        let a = ObjectID(hex: String(repeating: "a", count: 64))!, b = ObjectID(hex: String(repeating: "b", count: 64))!
        let files = IncomingFiles(references: [a: b, b: a])
        files.add(a, path: "/a")
        files.add(b, path: "/b")
        #expect(files.chain(from: a) == [a: "/a", b: "/b"])
        #expect(IncomingFiles(references: [a: a]).chain(from: a).isEmpty)
    }
}
