@testable import Delta
import Testing

/// The rANS writer's planning: the cheap estimates it merges by, and the modes it must still find
/// when it plans blocks on a sample.
@Suite struct RansPlannerTests {
    /// Counts of `m` symbols drawn by `draw`.
    static func counts(_ m: Int, seed: UInt64, _ draw: (inout SeededRandom) -> Int) -> [UInt32] {
        var rng = SeededRandom(seed: seed)
        var h = [UInt32](repeating: 0, count: 256)
        for _ in 0..<m { h[draw(&rng)] += 1 }
        return h
    }

    @Test func estimateStaysCloseToTheChosenTable() {
        let cases: [(String, [UInt32])] = [
            ("exponent-like", Self.counts(200_000, seed: 1) { 120 + min(12, Int(($0.next() | 1 << 40).trailingZeroBitCount)) }),
            ("near uniform", Self.counts(300_000, seed: 2) { Int($0.next() % 256) }),
            ("two symbols", Self.counts(50_000, seed: 3) { $0.next() % 5 == 0 ? 7 : 200 }),
            ("one symbol", [UInt32](repeating: 0, count: 255) + [1000]),
            ("sparse small", Self.counts(300, seed: 4) { Int($0.next() % 40) * 6 }),
        ]
        for (name, h) in cases {
            let exact = RansTableBuilder.choose(h, refined: true).bytes
            let estimate = h.withUnsafeBufferPointer { RansTableBuilder.estimate($0.baseAddress!) }
            // Entropy is a lower bound of the coded bits; the quantised table and its header add little.
            #expect(abs(estimate - exact) <= 0.01 * exact + 40, "\(name): estimate \(estimate), chosen \(exact)")
        }
    }

    @Test func estimateOfTwoRowsIsTheEstimateOfTheirSum() {
        let a = Self.counts(10_000, seed: 5) { Int($0.next() % 32) }
        let b = Self.counts(20_000, seed: 6) { 16 + Int($0.next() % 64) }
        let sum = zip(a, b).map { $0 + $1 }
        let joined = a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { RansTableBuilder.estimate(pa.baseAddress!, plus: $0.baseAddress!) } }
        let direct = sum.withUnsafeBufferPointer { RansTableBuilder.estimate($0.baseAddress!) }
        #expect(joined == direct)
        #expect(joined > 0)
    }

    @Test func rowsOfDifferentScalesAreCodedInBlocks() throws {
        // An exponent-like plane whose rows (256 symbols) each sit around one of four levels: the
        // sampled planning must still find blocks, and come close to the rows' own entropy.
        var rng = SeededRandom(seed: 7)
        let rows = 400, length = 256
        var plane = [UInt8]()
        for _ in 0..<rows {
            let level = [20, 60, 100, 140][Int(rng.next() % 4)]
            for _ in 0..<length { plane.append(UInt8(level + min(7, Int((rng.next() | 1 << 40).trailingZeroBitCount)))) }
        }
        let stored = try #require(try RansCodecTests().roundTrip(plane, width: 1, rows: RansPlanner.Rows(length: length, offset: 0)))
        #expect(stored[0] == RansPlanner.Plan.Mode.blocks.rawValue)
        // About 1.98 bits per symbol within a row; order 0 would need 2 bits more.
        #expect(stored.count < plane.count * 21 / 80 + 600)
    }

    @Test func blocksFollowRowsThatStartMidChunk() throws {
        var rng = SeededRandom(seed: 8)
        let length = 300, offset = 1000
        let plane = (0..<(length * 200)).map { i in
            UInt8(((i + offset) / length) % 2 == 0 ? 30 : 90) &+ UInt8(rng.next() % 4)
        }
        let stored = try #require(try RansCodecTests().roundTrip(plane, width: 1, rows: RansPlanner.Rows(length: length, offset: offset)))
        #expect(stored[0] == RansPlanner.Plan.Mode.blocks.rawValue)
        #expect(stored.count < plane.count * 2 / 8 + 600)
    }

    @Test func aPlaneThatFollowsTheNextIsCodedByContext() throws {
        // Plane 1 takes 16 values (4 bits); plane 0 is a function of it plus noise of 3 values:
        // 1.58 bits by context, 5.6 bits without.
        var rng = SeededRandom(seed: 9)
        let m = 100_000
        let high = (0..<m).map { _ in UInt8(rng.next() % 16) * 16 }
        let low = high.map { $0 / 16 * 7 + UInt8(rng.next() % 3) }
        let stored = try #require(try RansCodecTests().roundTrip(low + high, width: 2))
        #expect(stored.count < m * 59 / 80 + 4000)
    }
}
