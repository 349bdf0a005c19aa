@testable import Delta
import ModelFactory
import Testing

/// The rANS chunk coder (coder 2) on its own: round trips of hostile planes, every plane mode,
/// and damaged streams.
@Suite struct RansCodecTests {
    /// Encodes planes (plane 0 first) with any size limit; nil when the coder declines.
    static func encode(_ planes: [UInt8], width: Int, rows: RansPlanner.Rows? = nil, limit: Int = Int.max) -> [UInt8]? {
        var output = [UInt8](repeating: 0, count: 2 * planes.count + 4096)
        var scratch = [UInt8](repeating: 0, count: 2 * planes.count + 4096)
        let n = planes.withUnsafeBytes { p in
            output.withUnsafeMutableBytes { out in
                scratch.withUnsafeMutableBytes { s in
                    RansCodec.encode(planes: p, width: width, rows: rows, output: out, scratch: s, limit: limit)
                }
            }
        }
        return n.map { Array(output[0..<$0]) }
    }

    /// Decodes stored bytes into `count` plane bytes, or returns the error.
    static func decode(_ stored: UnsafeRawBufferPointer, width: Int, count: Int) -> Result<[UInt8], RansError> {
        var planes = [UInt8](repeating: 0xEE, count: count)
        var scratch = [UInt8](repeating: 0, count: max(1, count / width))
        return planes.withUnsafeMutableBytes { p in
            scratch.withUnsafeMutableBytes { s in
                do throws(RansError) {
                    try RansCodec.decode(stored, width: width, into: p, scratch: s)
                    return .success(Array(p))
                } catch {
                    return .failure(error)
                }
            }
        }
    }

    static func decode(_ stored: [UInt8], width: Int, count: Int) -> Result<[UInt8], RansError> {
        stored.withUnsafeBytes { decode($0, width: width, count: count) }
    }

    /// Round-trips planes and returns the stored bytes (nil when the coder declined).
    @discardableResult
    func roundTrip(_ planes: [UInt8], width: Int, rows: RansPlanner.Rows? = nil, limit: Int = Int.max,
                   sourceLocation: SourceLocation = #_sourceLocation) throws -> [UInt8]? {
        guard let stored = Self.encode(planes, width: width, rows: rows, limit: limit) else { return nil }
        let decoded = try Self.decode(stored, width: width, count: planes.count).get()
        #expect(decoded == planes, sourceLocation: sourceLocation)
        return stored
    }

    // MARK: - Round trips

    @Test(arguments: [1, 2, 4, 8])
    func adversarialPlanesRoundTrip(width: Int) throws {
        var rng = SeededRandom(seed: 11)
        for m in [1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 4099, 20_000] {
            let n = m * width
            let cases: [(String, [UInt8])] = [
                ("zeros", [UInt8](repeating: 0, count: n)),
                ("all 0xff", [UInt8](repeating: 0xFF, count: n)),
                ("two symbols", (0..<n).map { _ in rng.next() & 1 == 0 ? 0x3F : 0xC0 }),
                ("uniform random", (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }),
                ("skewed", (0..<n).map { _ in UInt8(min(255, (rng.next() % 1000).leadingZeroBitCount * 3)) }),
                ("one rare symbol", (0..<n).map { i in i == n / 2 ? 0x42 : 0x00 }),
                ("counting", (0..<n).map { UInt8(truncatingIfNeeded: $0) }),
            ]
            for (name, planes) in cases {
                // Without a limit the coder codes whatever it can, so every path is exercised.
                let stored = try roundTrip(planes, width: width, limit: Int.max)
                #expect(stored != nil || Self.encode(planes, width: width) == nil, "\(name) m=\(m)")
            }
        }
    }

    @Test func skewedPlanesShrinkBelowTheirEntropyBound() throws {
        // One byte of 8 values with probabilities 1/2, 1/4, …: 1.98 bits per byte.
        var rng = SeededRandom(seed: 3)
        let m = 100_000
        let planes = (0..<m).map { _ in UInt8(min(7, (rng.next() | 1 << 40).trailingZeroBitCount)) }
        let stored = try #require(try roundTrip(planes, width: 1, limit: m))
        #expect(stored.count < m * 2 / 8 + 200)
        #expect(stored.count > m * 198 / 800)
    }

    @Test func uniformRandomPlanesAreDeclined() {
        let planes = randomBytes(64 << 10, seed: 5)
        #expect(Self.encode(planes, width: 4, limit: planes.count) == nil)
    }

    // MARK: - Hostile streams

    @Test func constantPlanesStayWithinTheExpansionBound() throws {
        // The cheapest plane there is: one value throughout. No table gives it every slot, so its
        // stream is long enough for a reader's size check (docs/format.md §5.5).
        for width in [1, 2, 4] {
            let planes = [UInt8](repeating: 0x3F, count: 1 << 20)
            let stored = try #require(try roundTrip(planes, width: width, limit: planes.count))
            #expect(stored.count * RansCodec.maximumExpansion >= planes.count)
            #expect(stored.count < 200)
        }
    }

    @Test func tableGivingOneValueEverySlotIsRefused() {
        // Mode 1 (single) with value 7 at frequency 4096, eight initial states of 2^16, no words.
        let table = RansTable.serialized(kind: .symbols, entries: (0..<256).map { $0 == 7 ? 4096 : 0 })
        var stored: [UInt8] = [1] + table
        for _ in 0..<RansKernel.stateCount { stored += littleEndianBytes(UInt32(1 << 16)) }
        #expect(Self.decode(stored, width: 1, count: 100_000) == .failure(RansError("table gives one value all 4096 slots")))
    }

    @Test func damagedStreamsAreRefused() throws {
        var rng = SeededRandom(seed: 9)
        let m = 5000
        // An exponent-like top plane and a noisy low one.
        let planes = (0..<m).map { _ in UInt8(truncatingIfNeeded: rng.next()) } + (0..<m).map { _ in UInt8(120 + (rng.next() % 64).trailingZeroBitCount) }
        let stored = try #require(try roundTrip(planes, width: 2))
        #expect(Self.decode(Array(stored.dropLast(2)), width: 2, count: 2 * m).isFailure)
        #expect(Self.decode(stored + [0, 0], width: 2, count: 2 * m) == .failure(RansError("2 bytes left after the last plane")))
        #expect(Self.decode(stored, width: 2, count: 2 * m + 2).isFailure)
        #expect(Self.decode([9] + stored.dropFirst(), width: 2, count: 2 * m) == .failure(RansError("plane 1 has unknown mode 9")))
        for cut in stride(from: 0, to: stored.count, by: max(1, stored.count / 50)) {
            #expect(Self.decode(Array(stored.prefix(cut)), width: 2, count: 2 * m).isFailure, "cut at \(cut)")
        }
        for _ in 0..<500 {
            var damaged = stored
            damaged[Int(rng.next() % UInt64(stored.count))] ^= UInt8(1) << UInt8(rng.next() % 8)
            // Refused, or decoded to some planes (the object's digest catches those): never a trap.
            _ = Self.decode(damaged, width: 2, count: 2 * m)
        }
    }
}

extension Result {
    var isFailure: Bool {
        if case .failure = self { return true }
        return false
    }
}
