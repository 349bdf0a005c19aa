import Delta
import Dispatch
import Foundation
@testable import Repo
import Synchronization
import Testing

/// ``FrontierDigest``: the SHA-256 of a file hashed in order as far as it is written.
@Suite final class FrontierDigestTests {
    let folder: String

    init() throws {
        folder = NSTemporaryDirectory() + "mrepo-frontier-\(UInt64.random(in: 0...UInt64.max))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: folder) }

    /// A file of `count` bytes (zeros) at its final size, and the bytes to write into it.
    func makeFile(_ count: Int) -> (path: String, fd: Int32, bytes: [UInt8]) {
        let path = folder + "/f"
        let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o644)
        _ = ftruncate(fd, off_t(count))
        var rng = SeededRandom(seed: 3)
        return (path, fd, (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
    }

    func write(_ fd: Int32, _ bytes: [UInt8], _ range: Range<Int>) {
        bytes.withUnsafeBytes { b in _ = PositionalIO.writeAll(fd, UnsafeRawBufferPointer(rebasing: b[range]), at: range.lowerBound) }
    }

    /// Parts written out of order, hashed as they join the written prefix: the file's digest; a
    /// part never written (a hole) is hashed as the zeros it holds once the file is complete.
    @Test func partsOutOfOrderGiveTheFilesDigest() throws {
        let n = 9 << 20 + 123
        let (path, fd, bytes) = makeFile(n)
        defer { close(fd) }
        let digest = FrontierDigest(path: path, byteCount: n)
        let cuts = [0, 100, 3 << 20, 5 << 20, 7 << 20, n - 50, n]
        // Every part but the first, from the last; then the first; one part (a hole) is left out.
        for i in [5, 4, 2, 1, 0] {
            write(fd, bytes, cuts[i]..<cuts[i + 1])
            digest.wrote(cuts[i]..<cuts[i + 1])
        }
        digest.complete()
        var expected = bytes
        for j in cuts[3]..<cuts[4] { expected[j] = 0 }
        #expect(digest.value.value == SHA256.hash(expected))
        #expect(digest.value.value == SHA256.hash(try readFile(path)))
    }

    /// A second write over bytes already written or hashed leaves the digest unknown (nil), as does
    /// a cancel: the caller hashes the finished file.
    @Test func aRewriteOrACancelGivesNoDigest() throws {
        let n = 1 << 20
        let (path, fd, bytes) = makeFile(n)
        defer { close(fd) }
        let rewritten = FrontierDigest(path: path, byteCount: n)
        write(fd, bytes, 0..<n)
        rewritten.wrote(0..<(n / 2))
        rewritten.wrote((n / 4)..<n)
        rewritten.complete()
        #expect(rewritten.value.value == nil)
        let cancelled = FrontierDigest(path: path, byteCount: n)
        cancelled.wrote(0..<(n / 2))
        cancelled.cancel()
        #expect(cancelled.value.value == nil)
        let whole = FrontierDigest(path: path, byteCount: n)
        whole.wrote(0..<n)
        whole.complete()
        #expect(whole.value.value == SHA256.hash(bytes))
    }

    /// A held digest hashes nothing: once the file is complete its `afterwards` runs (the sync)
    /// without a digest; released, it hashes the file as it is then (bytes changed while it was
    /// held count, which shows none were hashed before); cancelled while held, it gives nil.
    @Test func aHeldDigestHashesOnlyOnceReleased() throws {
        let n = 3 << 20 + 77
        let (path, fd, bytes) = makeFile(n)
        defer { close(fd) }
        let synced = DispatchSemaphore(value: 0)
        let counter = Mutex(0)
        let held = FrontierDigest(path: path, byteCount: n, held: true, afterwards: {
            counter.withLock { $0 += 1 }
            synced.signal()
        })
        #expect(held.isHeld)
        write(fd, bytes, 0..<n)
        held.wrote(0..<n)
        held.complete()
        synced.wait()
        #expect(held.isHeld && held.isIntact)
        // Changed behind the digest's back (not reported): only a digest not yet taken sees it.
        var changed = bytes
        changed[n / 2] ^= 0xFF
        write(fd, changed, (n / 2)..<(n / 2 + 1))
        held.release()
        #expect(!held.isHeld)
        #expect(held.value.value == SHA256.hash(changed))
        #expect(counter.withLock { $0 } == 1, "the sync runs once")

        let cancelled = FrontierDigest(path: path, byteCount: n, held: true)
        cancelled.wrote(0..<n)
        cancelled.complete()
        cancelled.cancel()
        #expect(cancelled.value.value == nil)
        #expect(!cancelled.isIntact)
        // A write over another leaves a held digest not intact (its known digest is not taken).
        let rewritten = FrontierDigest(path: path, byteCount: n, held: true)
        rewritten.wrote(0..<(n / 2))
        rewritten.wrote((n / 4)..<n)
        #expect(!rewritten.isIntact)
        rewritten.cancel()
        _ = rewritten.value.value
    }
}
