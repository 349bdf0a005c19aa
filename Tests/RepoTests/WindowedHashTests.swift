import Delta
import Foundation
import Testing

@testable import Repo

/// `status` hashes a mapped file in 4 MiB windows, dropping each window's pages once hashed (a 3B
/// model's 788 MB embedding was resident whole): the digest is the one of the whole range at once.
@Suite struct WindowedHashTests {
    @Test func hashingByWindowsGivesTheWholeRangesDigest() throws {
        let folder = FileManager.default.temporaryDirectory.path + "/mrepo-windowed-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Two whole windows and a partial one, from an offset that is not page aligned.
        var rng = SeededRandom(seed: 3)
        let bytes = (0..<(9 << 20) + 4099).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let path = folder + "/blob.bin"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let map = try MappedFile(path: path)
        for range in [0..<bytes.count, 5..<bytes.count, 4097..<(8 << 20) + 1, 7..<7] {
            var windows = 0
            let sha = SHA256()
            Snapshotter.hashReleasing(range, of: map) { chunk in
                windows += 1
                #expect(chunk.count <= 4 << 20)
                sha.update(chunk)
            }
            #expect(sha.finalize() == bytes.withUnsafeBytes { SHA256.hash(UnsafeRawBufferPointer(rebasing: $0[range])) }, "\(range)")
            #expect(windows == (range.count + (4 << 20) - 1) / (4 << 20))
        }
        #expect(Snapshotter.fileDigest(map) == SHA256.hash(bytes))
    }
}
