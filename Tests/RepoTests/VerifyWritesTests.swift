import Delta
import Foundation
import Testing

@testable import Repo

/// Verify-after-write (`MREPO_VERIFY_WRITES=1`): a batch decodes and re-hashes its new objects
/// before renaming them into place.
@Suite struct VerifyWritesTests {
    func store(_ dir: String, verifies: Bool) throws -> ObjectStore {
        try FileManager.default.createDirectory(atPath: dir + "/objects", withIntermediateDirectories: true)
        return ObjectStore(root: dir + "/objects", verifiesWrites: verifies)
    }

    func values(_ n: Int, seed: Float) -> [UInt8] {
        let floats = (0..<n).map { Float($0 % 97) * 0.01 + seed }
        return floats.withUnsafeBytes { Array($0) }
    }

    @Test func intactObjectsPassAndTheirDeltasToo() throws {
        try withTemporaryDirectory { dir in
            let s = try store(dir, verifies: true)
            let batch = s.makeBatch()
            let baseBytes = values(4096, seed: 1)
            let base = try baseBytes.withUnsafeBytes {
                try s.write(kind: .tensor, dtype: .f32, shape: [4096], source: $0, reference: nil, options: .default, batch: batch)
            }
            // A delta against an object of the same batch, still under its temporary name.
            let temporary = try #require(s.listFiles().temporary.first)
            let header = try s.open(base.info.id, temporary: temporary).tensor.header
            // The encoder copies the reference's chunks from memory; verifying decodes it from its temporary file.
            let delta = try values(4096, seed: 1.5).withUnsafeBytes { source in
                try baseBytes.withUnsafeBytes { known in
                    try s.write(kind: .tensor, dtype: .f32, shape: [4096], source: source, reference: (base.info, header), options: .default,
                                batch: batch, referenceBytes: known)
                }
            }
            #expect(delta.info.reference == base.info.id)
            try batch.finish()
            #expect(s.exists(base.info.id) && s.exists(delta.info.id))
        }
    }

    @Test func aDamagedNewObjectStopsTheBatchBeforeTheRename() throws {
        try withTemporaryDirectory { dir in
            for verifies in [true, false] {
                let s = try store(dir + "/\(verifies)", verifies: verifies)
                let batch = s.makeBatch()
                let written = try values(4096, seed: 2).withUnsafeBytes {
                    try s.write(kind: .tensor, dtype: .f32, shape: [4096], source: $0, reference: nil, options: .default, batch: batch)
                }
                // Flip one byte of the stored payload, as a bad page between encoder and disk would.
                let temporary = try #require(s.listFiles().temporary.first)
                var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: temporary)))
                bytes[bytes.count - 1] ^= 0xFF
                try Data(bytes).write(to: URL(fileURLWithPath: temporary))
                let error = thrownError { try batch.finish() }
                if verifies {
                    guard case let .corruptObject(object, problem)? = error as? RepoError else {
                        Issue.record("expected corruptObject, got \(String(describing: error))")
                        continue
                    }
                    #expect(object == written.info.id.short && problem.contains("verify after write"))
                    #expect(!s.exists(written.info.id), "nothing renamed into place")
                    batch.rollback()
                    #expect(s.listFiles().temporary.isEmpty)
                } else {
                    // Without verification the damage is found on the first read.
                    #expect(error == nil && s.exists(written.info.id))
                    #expect(thrownError { _ = try s.read(written.info.id) } is RepoError)
                }
            }
        }
    }
}
