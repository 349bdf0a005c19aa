import Delta
import Foundation
import Testing

@testable import Repo

/// Object files the fuzzer (`scripts/fuzz.sh`, docs/fuzzing.md) found mrepo mishandling.
@Suite struct RepoFuzzRegressionTests {
    /// Found by the fuzzer: an object whose header declares a chunk size of nearly 4 GiB (valid: a
    /// u32, a multiple of 8) for a 256-byte tensor. Used as a delta reference, its chunks were
    /// decoded with scratch space for the declared chunk size, 12 GiB, and the allocation failed.
    @Test func referenceWithAHugeChunkSizeIsDecodedWithScratchForItsSize() throws {
        try withTemporaryDirectory { dir in
            let store = ObjectStore(root: dir + "/objects")
            try FileManager.default.createDirectory(atPath: store.root, withIntermediateDirectories: true)
            let base = (0..<64).map { Float($0) }, tuned = (0..<64).map { Float($0) + 0.5 }
            let batch = store.makeBatch()
            let reference = try bytesOf(base).withUnsafeBytes { raw in
                try store.write(kind: .tensor, dtype: .f32, shape: [8, 8], source: raw, reference: nil,
                                options: CodecOptions(chunkByteCount: 0xFFFF_FFF8, level: 1), batch: batch)
            }
            try batch.finish()
            let header = try store.header(of: reference.info.id)
            #expect(header.chunkByteCount == 0xFFFF_FFF8 && header.byteCount == 256)
            #expect(ObjectStore.chunkScratchByteCount(header) == 3 * 256)

            let delta = try bytesOf(tuned).withUnsafeBytes { raw in
                try store.write(kind: .tensor, dtype: .f32, shape: [8, 8], source: raw, reference: (reference.info, header),
                                options: smallChunks, batch: batch)
            }
            try batch.finish()
            #expect(delta.info.reference == reference.info.id)
            #expect(try store.floats(delta.info.id) == tuned)
        }
    }
}
