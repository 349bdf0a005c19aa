@testable import Delta
import Foundation
import Testing

/// Coder 2 inside whole tensors: bit-exact round trips of every float dtype and encoding (NaN
/// payloads, ±0, subnormals, infinities, empty and odd-length tensors), the version rules, and
/// chunks that must be refused before they are decoded.
@Suite struct RansPipelineTests {
    /// The default options with coder 2 asked for (what `MREPO_RANS=1` gives).
    static let rans = CodecOptions(chunkByteCount: 4 << 20, level: 1, rans: true)

    /// Weight-like values: Gaussian with a scale per row, so exponents vary by row, with the
    /// special values every codec must keep bit for bit.
    static func weights(rows: Int, columns: Int, seed: UInt64) -> [Float] {
        var rng = SeededRandom(seed: seed)
        var out = [Float]()
        out.reserveCapacity(rows * columns)
        for _ in 0..<rows {
            let scale = Float(0.01 + 0.2 * rng.uniform())
            for _ in 0..<columns {
                let g = sqrt(-2 * log(max(1e-12, rng.uniform()))) * cos(2 * .pi * rng.uniform())
                out.append(scale * Float(g))
            }
        }
        let specials: [UInt32] = [0x7FC0_0001, 0xFFA0_0000, 0x7F80_0001, 0x0000_0000, 0x8000_0000, 0x0000_0001,
                                  0x807F_FFFF, 0x7F80_0000, 0xFF80_0000, 0x0040_0000]
        for (k, bits) in specials.enumerated() where k * 37 < out.count { out[k * 37] = Float(bitPattern: bits) }
        return out
    }

    /// The bytes of `values` in `dtype` (F32, BF16 or F16), specials carried over bit for bit.
    static func bytes(_ values: [Float], _ dtype: DType) -> [UInt8] {
        switch dtype {
        case .bf16: return bytesOf(values.map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16) })
        case .f16:
            var halves = values.map { Float16($0).bitPattern }
            for (k, bits) in [0x7E01, 0xFD00, 0x8000, 0x0000, 0x0001, 0x83FF, 0x7C00].enumerated() where k * 41 < halves.count {
                halves[k * 41] = UInt16(bits)
            }
            return bytesOf(halves)
        default: return bytesOf(values)
        }
    }

    static func coders(_ encoded: [UInt8]) throws -> [ChunkCoder] {
        let owned = OwnedBytes(encoded)
        return try EncodedTensor(bytes: owned.bytes, owner: owned, name: "obj").chunks.map(\.coder)
    }

    @Test(arguments: [DType.f32, .bf16, .f16], [TensorEncoding.whole, .xor, .integerDelta, .integerDeltaByExponent])
    func floatTensorsRoundTripBitExactly(dtype: DType, encoding: TensorEncoding) throws {
        let shape: Shape = [96, 200]
        let base = Self.bytes(Self.weights(rows: 96, columns: 200, seed: 1), dtype)
        var tuned = Self.weights(rows: 96, columns: 200, seed: 1)
        var rng = SeededRandom(seed: 2)
        for i in tuned.indices where i % 37 != 0 { tuned[i] += tuned[i] * Float(rng.uniform() - 0.5) * 1e-3 }
        let source = Self.bytes(tuned, dtype)
        let reference = encoding == .whole ? nil : base
        // Chunks of 16 KiB: below the size from which zstd is no longer tried, and a last chunk
        // that is not full.
        for chunk in [4 << 20, 16 << 10] {
            let options = CodecOptions(chunkByteCount: chunk, level: 1, rans: true)
            let (encoded, result) = try encodeTensor(source, dtype: dtype, shape: shape, encoding: encoding, reference: reference, options: options)
            // Rows of 64 elements or more may be coded as a grid: version 3; else version 2.
            #expect(encoded[4] == (encoding == .integerDeltaByExponent ? 2 : 3), "floating-point tensors of 1 KiB and more are written as version 2 or 3")
            let decoded = try decodeTensor(encoded, reference: reference, expected: result.digest)
            #expect(decoded == source)
            #expect(result.digest == tensorDigest(dtype, shape, source))
            if encoding == .whole {
                #expect(try Self.coders(encoded).contains(.rans), "\(dtype) chunk \(chunk)")
                #expect(encoded.count < source.count * 95 / 100)
            }
        }
    }

    @Test(arguments: [DType.f32, .bf16, .f16])
    func oddEmptyAndTinyTensorsRoundTrip(dtype: DType) throws {
        for (shape, chunk) in [([0, 7], 64), ([1], 64), ([7], 8), ([1001], 4 << 20), ([3, 333], 1000), ([513], 1024)] as [(Shape, Int)] {
            let count = shape.reduce(1, *)
            let source = Self.bytes(Self.weights(rows: 1, columns: count, seed: UInt64(count)), dtype)
            let options = CodecOptions(chunkByteCount: chunk, level: 1, rans: true)
            let (encoded, result) = try encodeTensor(source, dtype: dtype, shape: shape, encoding: .whole, reference: nil, options: options)
            // Rows of 64 to 65536 elements may make a grid: version 3.
            let version: UInt8 = source.count < ChunkCoderOptions.ransMinimumTensorBytes ? 1 : shape.count >= 2 && shape[1] >= 64 ? 3 : 2
            #expect(encoded[4] == version, "\(shape)")
            #expect(try decodeTensor(encoded, reference: nil, expected: result.digest) == source, "\(shape)")
        }
    }

    @Test func batchEncodingWritesTheSameBytesAsThePipeline() throws {
        // Commit codes many tensors through TensorBatch: with rANS asked for, it must choose
        // exactly as TensorPipeline does (version 3 header, rows for the blocks and the grid).
        let f32 = Self.bytes(Self.weights(rows: 40, columns: 300, seed: 11), .f32)
        let bf16 = Self.bytes(Self.weights(rows: 33, columns: 77, seed: 12), .bf16)
        let options = CodecOptions(chunkByteCount: 16 << 10, level: 1, rans: true)
        let tensors: [(DType, Shape, [UInt8])] = [(.f32, [40, 300], f32), (.bf16, [33, 77], bf16), (.u8, [100], randomBytes(100, seed: 13))]
        var batched = [[UInt8]](repeating: [], count: tensors.count)
        try f32.withUnsafeBytes { a in
            try bf16.withUnsafeBytes { b in
                try tensors[2].2.withUnsafeBytes { c in
                    let jobs = zip(tensors, [a, b, c]).map { t, raw in
                        TensorEncodeJob(dtype: t.0, shape: t.1, source: raw, encoding: .whole, reference: nil, options: options)
                    }
                    try TensorBatch.encode(jobs, sink: { i, bytes in batched[i].append(contentsOf: bytes) }, finished: { _, _ in })
                }
            }
        }
        for (i, t) in tensors.enumerated() {
            let (single, _) = try encodeTensor(t.2, dtype: t.0, shape: t.1, encoding: .whole, reference: nil, options: options)
            #expect(batched[i] == single, "\(t.0)")
        }
        #expect(batched[0][4] == 3 && batched[1][4] == 3 && batched[2][4] == 1)
        #expect(try Self.coders(batched[0]).contains(.rans))
    }

    @Test func withoutRANSFloatTensorsAreWrittenAsBefore() throws {
        #expect(CodecOptions.default.rans == CodecOptions.ransRequested)
        let source = Self.bytes(Self.weights(rows: 64, columns: 128, seed: 10), .f32)
        let options = CodecOptions(chunkByteCount: 4 << 20, level: 1, rans: false)
        let (encoded, result) = try encodeTensor(source, dtype: .f32, shape: [64, 128], encoding: .whole, reference: nil, options: options)
        #expect(encoded[4] == 1)
        #expect(try Self.coders(encoded) == [.zstd])
        #expect(try decodeTensor(encoded, reference: nil, expected: result.digest) == source)
    }

    @Test func integerTensorsAndSmallFloatsStayVersionOne() throws {
        let ints = randomBytes(4096, seed: 3)
        let (encoded, _) = try encodeTensor(ints, dtype: .i32, shape: [1024], encoding: .whole, reference: nil, options: Self.rans)
        #expect(encoded[4] == 1)
        let small = bytesOf([Float](repeating: 0.5, count: 255))
        let (encodedSmall, _) = try encodeTensor(small, dtype: .f32, shape: [255], encoding: .whole, reference: nil, options: Self.rans)
        #expect(encodedSmall[4] == 1)
    }

    @Test func objectIdsDoNotDependOnTheCoder() throws {
        // The id is the digest of the tensor's bytes: the same with coder 2 as with zstd.
        let source = Self.bytes(Self.weights(rows: 64, columns: 128, seed: 4), .f32)
        let (encoded, result) = try encodeTensor(source, dtype: .f32, shape: [64, 128], encoding: .whole, reference: nil, options: Self.rans)
        #expect(try Self.coders(encoded) == [.rans])
        #expect(result.digest == tensorDigest(.f32, [64, 128], source))
        let hex = result.digest.hex
        #expect(hex == source.withUnsafeBytes { TensorHasher.hash(dtype: .f32, shape: [64, 128], bytes: $0) }.hex)
    }

    /// A version 1 object, as every earlier mrepo wrote it: zstd chunks, read as before.
    @Test func versionOneObjectsStillDecode() throws {
        let source = Self.bytes(Self.weights(rows: 32, columns: 64, seed: 5), .bf16)
        let header = EncodedTensorHeader(encoding: .whole, dtype: .bf16, shape: [32, 64], byteCount: source.count,
                                         chunkByteCount: 4 << 20, reference: nil)
        var planes = [UInt8](repeating: 0, count: 2 * source.count)
        var output = [UInt8](repeating: 0, count: Zstd.compressBound(source.count))
        let (coder, n) = source.withUnsafeBytes { s in
            planes.withUnsafeMutableBytes { p in
                output.withUnsafeMutableBytes { o in
                    ChunkCodec.encode(dtype: .bf16, encoding: .whole, level: 1, source: s, reference: nil, planes: p, output: o)
                }
            }
        }
        #expect(coder == .zstd)
        let encoded = header.serialized() + [coder.rawValue, 0, 0, 0] + littleEndianBytes(UInt32(n)) + output[0..<n]
        #expect(encoded[4] == 1)
        #expect(try decodeTensor(encoded, reference: nil, expected: tensorDigest(.bf16, [32, 64], source)) == source)
    }

    /// The first chunk record of an encoding: where its coder byte and stored bytes are.
    static func firstRecord(_ encoded: [UInt8]) throws -> (coderAt: Int, stored: Range<Int>) {
        let owned = OwnedBytes(encoded)
        let tensor = try EncodedTensor(bytes: owned.bytes, owner: owned, name: "obj")
        let stored = tensor.chunks[0].range
        return (stored.lowerBound - 8, stored)
    }

    @Test func coderTwoInAVersionOneTensorIsCorrupt() throws {
        let source = Self.bytes(Self.weights(rows: 64, columns: 64, seed: 6), .f32)
        var (encoded, _) = try encodeTensor(source, dtype: .f32, shape: [64, 64], encoding: .whole, reference: nil, options: Self.rans)
        #expect(try Self.coders(encoded) == [.rans])
        encoded[4] = 1
        expectThrows(DeltaError.corruptData(object: "obj", problem: "chunk 0 uses coder 2 in a version 1 tensor")) { try Self.coders(encoded) }
    }

    @Test func rANSRecordTooShortForItsChunkIsRefusedBeforeDecoding() throws {
        // A header claiming a chunk of 2^31 bytes over a stream of a few dozen: refused when the
        // object is opened, before any memory is reserved for the chunk.
        let header = EncodedTensorHeader(encoding: .whole, dtype: .f32, shape: [1 << 29], byteCount: 1 << 31,
                                         chunkByteCount: 1 << 31, reference: nil, version: 2)
        let stored = [UInt8](repeating: 1, count: 40)
        let encoded = header.serialized() + [2, 0, 0, 0] + littleEndianBytes(UInt32(stored.count)) + stored
        expectThrows(DeltaError.corruptData(object: "obj", problem: "chunk 0 is a rans stream of 40 bytes, too short for a chunk of 2147483648 bytes")) {
            try Self.coders(encoded)
        }
    }

    @Test func damagedRANSChunksFailWithATypedError() throws {
        let source = Self.bytes(Self.weights(rows: 48, columns: 64, seed: 7), .bf16)
        let (encoded, result) = try encodeTensor(source, dtype: .bf16, shape: [48, 64], encoding: .whole, reference: nil, options: Self.rans)
        let record = try Self.firstRecord(encoded)
        #expect(encoded[record.coderAt] == ChunkCoder.rans.rawValue)
        var rng = SeededRandom(seed: 8)
        var refused = 0
        for trial in 0..<300 {
            var damaged = encoded
            let at = record.stored.lowerBound + Int(rng.next() % UInt64(record.stored.count))
            if trial % 3 == 0 {
                damaged[at] = UInt8(truncatingIfNeeded: rng.next())
            } else {
                damaged[at] ^= UInt8(1) << UInt8(rng.next() % 8)
            }
            // Either the chunk is refused as corrupt, or it decodes to other bytes that the
            // digest check refuses: never a crash, never the original bytes under a wrong stream.
            do {
                let decoded = try decodeTensor(damaged, reference: nil, expected: result.digest)
                #expect(decoded == source)
            } catch let error as DeltaError {
                guard case .corruptData(let object, _) = error else {
                    Issue.record("unexpected error \(error)")
                    continue
                }
                #expect(object.hasPrefix("test tensor"))
                #expect(!error.description.contains("\n"))
                refused += 1
            }
        }
        #expect(refused > 250)
    }
}
