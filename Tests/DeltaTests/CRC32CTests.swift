import Foundation
import MrepoTestSupport
import Delta
import Testing

/// CRC-32C: the published check values, the processor's instruction against the tables, and
/// a checksum continued piece by piece equal to the checksum of the whole.
@Suite struct CRC32CTests {
    @Test func publishedCheckValues() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8]()) == 0)
        // RFC 3720 (iSCSI), appendix B.4.
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum((0..<32).map { UInt8(31 - $0) }) == 0x113F_DB5C)
    }

    @Test func hardwareAndTablesAgreeAtEveryLengthAndAlignment() {
        var rng = SeededRandom(seed: 3)
        let bytes = (0..<40_000).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        bytes.withUnsafeBytes { all in
            for start in 0..<9 {
                // Across the three-segment blocks (3 × 4096 bytes) of the processor's path too.
                for count in [0, 1, 7, 8, 9, 15, 16, 63, 64, 65, 1000, 4000, 12287, 12288, 12289, 24576 + 13, 39_000] {
                    let piece = UnsafeRawBufferPointer(rebasing: all[start..<(start + count)])
                    #expect(CRC32C.checksum(piece) == CRC32C.portableChecksum(piece), "start \(start), count \(count)")
                }
            }
            let whole = CRC32C.checksum(all)
            var running: UInt32 = 0
            var at = 0
            for step in [1, 13, 64, 500, 7] where at < all.count {
                let end = min(all.count, at + step)
                running = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: all[at..<end]), continuing: running)
                at = end
            }
            running = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: all[at...]), continuing: running)
            #expect(running == whole)
            #expect(CRC32C.portableChecksum(UnsafeRawBufferPointer(rebasing: all[100...]),
                                            continuing: CRC32C.portableChecksum(UnsafeRawBufferPointer(rebasing: all[..<100]))) == whole)
        }
    }

    @Test func aWriterChecksumsWhatItWrites() throws {
        let dir = try TemporaryDirectory()
        let writer = try AtomicFileWriter(destination: dir.path + "/f", bufferByteCount: 16)
        writer.checksumsContent = true
        let parts: [[UInt8]] = [Array("hello, ".utf8), [UInt8](repeating: 7, count: 100), Array("world".utf8)]
        for p in parts { try writer.write(p) }
        #expect(writer.checksum == CRC32C.checksum(parts.flatMap { $0 }))
        try writer.commit()
        let plain = try AtomicFileWriter(destination: dir.path + "/g")
        try plain.write([1, 2, 3])
        #expect(plain.checksum == nil)
        plain.abort()
    }
}
