@testable import Delta
import Testing

/// Mode 4 of the rANS coder (grid: row classes × column classes, docs/format.md §5.5): the
/// writer finds it where columns differ, it round-trips bit-exactly wherever rows start, its
/// section is laid out as documented, and damaged sections are refused.
@Suite struct RansGridTests {
    /// An exponent-like plane of `rows` rows of `columns`: each row at one of `levels`, every
    /// odd column (the "outlier features") 6 higher, plus a geometric spread of up to 7.
    static func plane(rows: Int, columns: Int, levels: [Int], seed: UInt64) -> [UInt8] {
        var rng = SeededRandom(seed: seed)
        var out = [UInt8]()
        out.reserveCapacity(rows * columns)
        for _ in 0..<rows {
            let level = levels[Int(rng.next() % UInt64(levels.count))]
            for c in 0..<columns {
                out.append(UInt8(level + (c % 2 == 1 ? 6 : 0) + min(7, Int((rng.next() | 1 << 40).trailingZeroBitCount))))
            }
        }
        return out
    }

    @Test func columnsThatDifferAreCodedAsAGrid() throws {
        let columns = 256
        let plane = Self.plane(rows: 300, columns: columns, levels: [20, 60], seed: 1)
        let rows = RansPlanner.Rows(length: columns, offset: 0)
        let stored = try #require(try RansCodecTests().roundTrip(plane, width: 1, rows: rows))
        #expect(stored[0] == RansPlanner.Plan.Mode.grid.rawValue)
        // Section: mode, C (u32), phase (u32), row classes, column classes, then the column map.
        #expect(Array(stored[1..<5]) == littleEndianBytes(UInt32(columns)))
        #expect(Array(stored[5..<9]) == littleEndianBytes(UInt32(0)))
        #expect(stored[9] == 2 && stored[10] == 2)
        // One bit per column, least significant first: the boosted columns 1, 3, 5, … form class 1.
        let map = Array(stored[11..<(11 + columns / 8)])
        #expect(map.allSatisfy { $0 == 0b1010_1010 })
        // Within a row class and a column class the spread costs about 1.98 bits; the tables and
        // one selector bit per row come on top. Rows alone would pay for mixing the columns.
        #expect(stored.count < plane.count * 21 / 80 + 600)
    }

    @Test(arguments: [0, 1, 50, 255])
    func gridsRoundTripWhereverTheChunkStartsInARow(offset: Int) throws {
        // Rows that start mid-plane, a last row cut short; one row class (rows of 128 make blocks
        // of two rows, which the grid does not follow) or the blocks' (rows of 256).
        for (columns, levels) in [(128, [30]), (256, [30, 90])] {
            let plane = Array(Self.plane(rows: 90, columns: columns, levels: levels, seed: UInt64(offset + 7)).dropFirst(offset % columns).dropLast(17))
            let rows = RansPlanner.Rows(length: columns, offset: offset)
            let stored = try #require(try RansCodecTests().roundTrip(plane, width: 1, rows: rows))
            #expect(stored[0] == RansPlanner.Plan.Mode.grid.rawValue, "levels \(levels) offset \(offset)")
            #expect(Array(stored[5..<9]) == littleEndianBytes(UInt32(offset % columns)))
            #expect(levels.count == 1 ? stored[9] == 1 : stored[9] >= 2)
        }
    }

    @Test func gridBelowAMantissaPlaneRoundTrips() throws {
        // Width 2: the top plane a grid, the plane below coded by its context.
        let columns = 192
        let high = Self.plane(rows: 200, columns: columns, levels: [40, 70, 100], seed: 3)
        var rng = SeededRandom(seed: 4)
        let low = high.map { $0 &* 3 &+ UInt8(rng.next() % 5) }
        let stored = try #require(try RansCodecTests().roundTrip(low + high, width: 2, rows: RansPlanner.Rows(length: columns, offset: 0)))
        #expect(stored[0] == RansPlanner.Plan.Mode.grid.rawValue)
    }

    @Test func damagedGridSectionsAreRefused() throws {
        let columns = 128
        let plane = Self.plane(rows: 100, columns: columns, levels: [20], seed: 5)
        let stored = try #require(try RansCodecTests().roundTrip(plane, width: 1, rows: RansPlanner.Rows(length: columns, offset: 0)))
        try #require(stored[0] == RansPlanner.Plan.Mode.grid.rawValue)
        func with(_ range: Range<Int>, _ bytes: [UInt8]) -> [UInt8] {
            var d = stored
            d.replaceSubrange(range, with: bytes)
            return d
        }
        let m = plane.count
        #expect(RansCodecTests.decode(with(5..<9, littleEndianBytes(UInt32(columns))), width: 1, count: m)
            == .failure(RansError("plane 0 has rows of 128 starting at column 128")))
        #expect(RansCodecTests.decode(with(1..<5, littleEndianBytes(UInt32(0))), width: 1, count: m).isFailure)
        #expect(RansCodecTests.decode(with(10..<11, [5]), width: 1, count: m)
            == .failure(RansError("plane 0 has 1 row classes of 5 column classes")))
        #expect(RansCodecTests.decode(with(9..<11, [9, 2]), width: 1, count: m)
            == .failure(RansError("plane 0 has 9 row classes of 2 column classes")))
        // Three column classes take two bits per column; the value 3 names no class.
        #expect(RansCodecTests.decode(with(10..<12, [3, 0xFF]), width: 1, count: m)
            == .failure(RansError("plane 0 puts column 0 in class 3 of 3")))
        #expect(RansCodecTests.decode(Array(stored.prefix(11 + 5)), width: 1, count: m)
            == .failure(RansError("plane 0 section is truncated")))
        // The plane's own bytes are checked by the object's digest; a reader never traps on them.
        var rng = SeededRandom(seed: 6)
        for _ in 0..<300 {
            var damaged = stored
            damaged[Int(rng.next() % UInt64(stored.count))] ^= UInt8(1) << UInt8(rng.next() % 8)
            _ = RansCodecTests.decode(damaged, width: 1, count: m)
        }
    }

    @Test func theGridIsNotPlannedWithoutRows() throws {
        // The same plane without a row hint: blocks of 1024 symbols, never a grid.
        let plane = Self.plane(rows: 300, columns: 256, levels: [20, 60], seed: 1)
        let stored = try #require(try RansCodecTests().roundTrip(plane, width: 1))
        #expect(stored[0] != RansPlanner.Plan.Mode.grid.rawValue)
    }
}

extension RansGridTests {
    @Test(arguments: [DType.f32, .bf16])
    func weightMatricesWithOutlierColumnsGetAGridExponentPlane(dtype: DType) throws {
        // Float weights whose every other input feature is 8 times larger: the exponent plane
        // (the top plane after the rotation of §5.1) is coded as a grid and decodes bit-exactly.
        let rows = 64, columns = 256
        var values = RansPipelineTests.weights(rows: rows, columns: columns, seed: 12)
        for i in values.indices where i % 2 == 1 { values[i] *= 8 }
        let source = RansPipelineTests.bytes(values, dtype)
        let n = source.count
        var planes = [UInt8](repeating: 0, count: TensorEncoding.scratchFactor * n)
        var output = [UInt8](repeating: 0, count: Zstd.compressBound(n))
        let coders = ChunkCoderOptions(rans: true, rowLength: columns)
        let (coder, count) = source.withUnsafeBytes { s in
            planes.withUnsafeMutableBytes { p in
                output.withUnsafeMutableBytes { o in
                    ChunkCodec.encode(dtype: dtype, encoding: .whole, level: 1, source: s, reference: nil, planes: p, output: o, coders: coders)
                }
            }
        }
        #expect(coder == .rans)
        #expect(output[0] == RansPlanner.Plan.Mode.grid.rawValue)
        var decoded = [UInt8](repeating: 0, count: n)
        try output.withUnsafeBytes { o in
            try planes.withUnsafeMutableBytes { p in
                try decoded.withUnsafeMutableBytes { d in
                    try ChunkCodec.decode(dtype: dtype, encoding: .whole, coder: coder, stored: UnsafeRawBufferPointer(rebasing: o[0..<count]),
                                          reference: nil, planes: p, destination: d, object: "grid")
                }
            }
        }
        #expect(decoded == source)
    }
}

extension RansGridTests {
    @Test func aGridInAVersionTwoTensorIsCorrupt() throws {
        // Through the pipeline: rows of 128 make a version 3 tensor whose exponent plane is a grid.
        let rows = 64, columns = 256
        var values = RansPipelineTests.weights(rows: rows, columns: columns, seed: 13)
        for i in values.indices where i % 2 == 0 { values[i] *= 8 }
        let source = RansPipelineTests.bytes(values, .f32)
        var (encoded, result) = try encodeTensor(source, dtype: .f32, shape: [rows, columns], encoding: .whole, reference: nil,
                                                 options: RansPipelineTests.rans)
        #expect(encoded[4] == 3)
        #expect(try decodeTensor(encoded, reference: nil, expected: result.digest) == source)
        let record = try RansPipelineTests.firstRecord(encoded)
        #expect(encoded[record.stored.lowerBound] == RansPlanner.Plan.Mode.grid.rawValue)
        encoded[4] = 2
        do {
            _ = try decodeTensor(encoded, reference: nil, expected: result.digest)
            Issue.record("a grid in a version 2 tensor decoded")
        } catch let error as DeltaError {
            #expect("\(error)".contains("plane 3 is a grid in a tensor of version 2"), "\(error)")
        }
    }
}
