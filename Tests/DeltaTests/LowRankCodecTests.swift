import Delta
import Foundation
import Testing

/// ``LowRankCodec``: θ = θ_ref + L·R stored as Float32 factors, decoded chunk by chunk against the
/// reference; the bits must not depend on how the tensor is split, and corrupt factor sections
/// must fail as ``DeltaError/corruptData(object:problem:)``.
@Suite struct LowRankCodecTests {
    // MARK: - Fixtures

    /// Seeded factors with entries of about `scale`.
    func factors(rows: Int, columns: Int, rank: Int, seed: UInt64, scale: Double = 0.05) -> LowRankFactors {
        var rng = SeededRandom(seed: seed)
        func value() -> Float { Float(rng.normalPair().0 * scale) }
        let left = (0..<(rows * rank)).map { _ in value() }
        let right = (0..<(rank * columns)).map { _ in value() }
        return LowRankFactors(rows: rows, columns: columns, rank: rank, left: left, right: right)
    }

    /// A reference tensor of `count` seeded values in `dtype`.
    func referenceBytes(_ dtype: DType, count: Int, seed: UInt64) -> [UInt8] {
        var rng = SeededRandom(seed: seed)
        let values = (0..<count).map { _ in Float(rng.normalPair().0) }
        return encodeFloats(values, as: dtype)
    }

    func encodeFloats(_ values: [Float], as dtype: DType) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: values.count * dtype.byteSize)
        values.withUnsafeBufferPointer { v in out.withUnsafeMutableBytes { FloatConversion.fromFloat(dtype, v, into: $0) } }
        return out
    }

    func decodeFloats(_ bytes: [UInt8], as dtype: DType) -> [Float] {
        var out = [Float](repeating: 0, count: bytes.count / dtype.byteSize)
        bytes.withUnsafeBytes { raw in out.withUnsafeMutableBufferPointer { FloatConversion.toFloat(dtype, raw, into: $0) } }
        return out
    }

    /// What the format promises, computed here element by element: Σₖ L[i,k]·R[k,j] in Float32 with
    /// k ascending (no fused multiply-add), added to the reference in Float32, rounded once.
    func expectedBytes(_ f: LowRankFactors, reference: [UInt8], dtype: DType) -> [UInt8] {
        let ref = decodeFloats(reference, as: dtype)
        var values = [Float](repeating: 0, count: f.rows * f.columns)
        for i in 0..<f.rows {
            for j in 0..<f.columns {
                var acc: Float = 0
                for k in 0..<f.rank {
                    let product = f.left[i * f.rank + k] * f.right[k * f.columns + j]
                    acc = acc + product
                }
                values[i * f.columns + j] = ref[i * f.columns + j] + acc
            }
        }
        return encodeFloats(values, as: dtype)
    }

    func parse(_ bytes: [UInt8], name: String = "low-rank test") throws(DeltaError) -> (EncodedTensor, OwnedBytes) {
        let owned = OwnedBytes(bytes)
        return (try EncodedTensor(bytes: owned.bytes, owner: owned, name: name), owned)
    }

    func parseError(_ bytes: [UInt8]) -> DeltaError? {
        do throws(DeltaError) {
            _ = try parse(bytes)
            return nil
        } catch {
            return error
        }
    }

    func isCorrupt(_ error: DeltaError?) -> Bool {
        if case .corruptData? = error { return true }
        return false
    }

    func decode(_ encoded: [UInt8], reference: [UInt8], expected: Digest? = nil) throws -> [UInt8] {
        let (tensor, owned) = try parse(encoded)
        return try withExtendedLifetime(owned) {
            try TensorPipeline.decodeToArray(tensor, reference: memoryChunks(reference, chunkByteCount: tensor.header.chunkByteCount),
                                             expected: expected)
        }
    }

    func bitsEqual(_ a: [Float], _ b: [Float]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
    }

    /// The factor section laid out by hand as docs/format.md §4.3 describes it.
    func handBuilt(header: EncodedTensorHeader, rank: UInt32, coder: UInt8, stored: [UInt8], declaredLength: UInt32? = nil) -> [UInt8] {
        header.serialized() + littleEndianBytes(rank) + [coder, 0, 0, 0] + littleEndianBytes(declaredLength ?? UInt32(stored.count)) + stored
    }

    /// The 4 byte planes of L then R, uncompressed.
    func rawPlanes(_ f: LowRankFactors) -> [UInt8] {
        let values = f.left + f.right
        let bytes = bytesOf(values)
        var planes = [UInt8](repeating: 0, count: bytes.count)
        for i in 0..<values.count { for b in 0..<4 { planes[b * values.count + i] = bytes[4 * i + b] } }
        return planes
    }

    // MARK: - Round trips

    @Test(arguments: [DType.f32, .f16, .bf16])
    func roundTripEqualsReferencePlusProduct(dtype: DType) throws {
        for (rows, columns, rank) in [(7, 13, 3), (33, 50, 5), (1, 9, 1), (16, 16, 16)] {
            let f = factors(rows: rows, columns: columns, rank: rank, seed: UInt64(rows * 100 + columns))
            let reference = referenceBytes(dtype, count: rows * columns, seed: 9)
            let refDigest = tensorDigest(dtype, [rows, columns], reference)
            let encoded = LowRankCodec.encode(dtype: dtype, shape: [rows, columns], reference: refDigest, chunkByteCount: 64, factors: f)

            let (tensor, owned) = try parse(encoded)
            try withExtendedLifetime(owned) {
                #expect(tensor.header.encoding == .lowRank)
                #expect(tensor.header.dtype == dtype)
                #expect(tensor.header.shape == [rows, columns])
                #expect(tensor.header.byteCount == rows * columns * dtype.byteSize)
                #expect(tensor.header.reference == refDigest)
                #expect(tensor.header.chunkByteCount == 64)
                // The factors survive exactly (they are stored as Float32 bits).
                let parsed = try #require(tensor.factors)
                #expect(parsed == f)
            }

            let expected = expectedBytes(f, reference: reference, dtype: dtype)
            let decoded = try decode(encoded, reference: reference, expected: tensorDigest(dtype, [rows, columns], expected))
            #expect(decoded == expected, "\(dtype) \(rows)×\(columns) rank \(rank)")

            // And close to the exact sum (Float64), within the dtype's rounding.
            let ref = decodeFloats(reference, as: dtype)
            let out = decodeFloats(decoded, as: dtype)
            let unit = dtype == .f32 ? 1e-6 : (dtype == .f16 ? 1.0 / 1024 : 1.0 / 128)
            for i in 0..<rows {
                for j in 0..<columns {
                    var exact = Double(ref[i * columns + j]), magnitude = abs(exact)
                    for k in 0..<rank {
                        let t = Double(f.left[i * rank + k]) * Double(f.right[k * columns + j])
                        exact += t
                        magnitude += abs(t)
                    }
                    let got = Double(out[i * columns + j])
                    #expect(abs(got - exact) <= unit * magnitude + 1e-7, "\(dtype) [\(i), \(j)]: \(got) vs \(exact)")
                }
            }
        }
    }

    @Test func denseMatchesTheDecoderOrder() {
        let f = factors(rows: 9, columns: 21, rank: 4, seed: 3)
        let zero = [UInt8](repeating: 0, count: 9 * 21 * 4)
        let viaFormula = decodeFloats(expectedBytes(f, reference: zero, dtype: .f32), as: .f32)
        #expect(bitsEqual(f.dense(), viaFormula))
        #expect(f.parameterCount == 4 * (9 + 21))
    }

    @Test(arguments: [DType.f32, .f16, .bf16])
    func chunkSizeDoesNotChangeTheBits(dtype: DType) throws {
        let rows = 19, columns = 27, rank = 6
        let f = factors(rows: rows, columns: columns, rank: rank, seed: 77, scale: 0.3)
        let reference = referenceBytes(dtype, count: rows * columns, seed: 5)
        let digest = tensorDigest(dtype, [rows, columns], reference)
        var results: [[UInt8]] = []
        // Chunks that end mid-row, on SIMD-unaligned columns, one element, and the whole tensor.
        for chunk in [8, 16, 24, 40, 104, 512, 1 << 16] {
            let encoded = LowRankCodec.encode(dtype: dtype, shape: [rows, columns], reference: digest, chunkByteCount: chunk, factors: f)
            results.append(try decode(encoded, reference: reference))
        }
        #expect(results.allSatisfy { $0 == results[0] })
        #expect(results[0] == expectedBytes(f, reference: reference, dtype: dtype))
    }

    @Test func productIsIdenticalUnderAnySplit() {
        for (rows, columns, rank) in [(5, 13, 3), (4, 8, 2), (3, 31, 7), (2, 64, 1)] {
            let f = factors(rows: rows, columns: columns, rank: rank, seed: UInt64(columns), scale: 1)
            let total = rows * columns
            let whole = f.dense()
            for step in [1, 3, 7, 8, 9, 16, 29, total] {
                var split = [Float](repeating: .nan, count: total)
                f.left.withUnsafeBufferPointer { l in
                    f.right.withUnsafeBufferPointer { r in
                        split.withUnsafeMutableBufferPointer { out in
                            var start = 0
                            while start < total {
                                let end = min(total, start + step)
                                LowRankProduct.compute(left: l.baseAddress!, right: r.baseAddress!, rank: rank, columns: columns,
                                                       elements: start..<end, into: out.baseAddress! + start)
                                start = end
                            }
                        }
                    }
                }
                #expect(bitsEqual(split, whole), "\(rows)×\(columns) rank \(rank), ranges of \(step)")
            }
        }
    }

    @Test func encodingIsDeterministic() {
        let f = factors(rows: 12, columns: 10, rank: 3, seed: 1)
        let digest = tensorDigest(.f32, [12, 10], referenceBytes(.f32, count: 120, seed: 2))
        let a = LowRankCodec.encode(dtype: .f32, shape: [12, 10], reference: digest, chunkByteCount: 64, factors: f)
        let b = LowRankCodec.encode(dtype: .f32, shape: [12, 10], reference: digest, chunkByteCount: 64, factors: f)
        #expect(a == b)
    }

    /// The documented layout, built by hand with raw (uncompressed) planes, parses and decodes.
    @Test func handBuiltRawSectionDecodes() throws {
        let rows = 6, columns = 5, rank = 2
        let f = factors(rows: rows, columns: columns, rank: rank, seed: 8)
        let reference = referenceBytes(.bf16, count: rows * columns, seed: 4)
        let header = EncodedTensorHeader(encoding: .lowRank, dtype: .bf16, shape: [rows, columns], byteCount: rows * columns * 2,
                                         chunkByteCount: 16, reference: tensorDigest(.bf16, [rows, columns], reference))
        let bytes = handBuilt(header: header, rank: UInt32(rank), coder: ChunkCoder.raw.rawValue, stored: rawPlanes(f))
        let (tensor, owned) = try parse(bytes)
        withExtendedLifetime(owned) { #expect(tensor.factors == f) }
        #expect(try decode(bytes, reference: reference) == expectedBytes(f, reference: reference, dtype: .bf16))
    }

    // MARK: - Dtypes and misuse

    @Test func supportedDtypes() {
        #expect(LowRankCodec.supports(.f32) && LowRankCodec.supports(.f16) && LowRankCodec.supports(.bf16))
        for d in DType.allCases where ![.f32, .f16, .bf16].contains(d) {
            #expect(!LowRankCodec.supports(d), "\(d)")
        }
        #expect(TensorEncoding.lowRank.needsReference)
        #expect(!TensorEncoding.lossless.contains(.lowRank))
        #expect(TensorEncoding.lowRank.description == "low-rank")
    }

    @Test(arguments: [(DType.f64, [4, 4] as Shape), (.i32, [4, 4]), (.u8, [4, 4]), (.f8e4m3, [4, 4]), (.f32, [16]), (.f32, [2, 2, 4])])
    func headersOfUnsupportedTensorsAreRejected(dtype: DType, shape: Shape) {
        let count = shape.reduce(1, *)
        let header = EncodedTensorHeader(encoding: .lowRank, dtype: dtype, shape: shape, byteCount: count * dtype.byteSize,
                                         chunkByteCount: 64, reference: SHA256.hash([1]))
        let bytes = handBuilt(header: header, rank: 1, coder: ChunkCoder.raw.rawValue, stored: [UInt8](repeating: 0, count: 4 * 8))
        let error = parseError(bytes)
        #expect(isCorrupt(error), "\(dtype) \(shape): \(String(describing: error))")
    }

    @Test func lowRankWithoutAReferenceIsRejected() {
        let header = EncodedTensorHeader(encoding: .lowRank, dtype: .f32, shape: [2, 2], byteCount: 16, chunkByteCount: 64, reference: nil)
        #expect(isCorrupt(parseError(handBuilt(header: header, rank: 1, coder: 0, stored: [UInt8](repeating: 0, count: 16)))))
    }

    /// Decodes one chunk into a buffer of `byteCount` bytes; returns the bytes, or the error.
    func decodeOneChunk(_ tensor: EncodedTensor, _ index: Int, byteCount: Int, reference: ChunkSource?) -> Result<[UInt8], any Error> {
        var out = [UInt8](repeating: 0, count: byteCount)
        var scratch = [UInt8](repeating: 0, count: tensor.header.chunkByteCount * (TensorEncoding.scratchFactor + 1))
        do {
            try out.withUnsafeMutableBytes { dst in
                try scratch.withUnsafeMutableBytes { s in try tensor.decodeChunk(index, into: dst, reference: reference, scratch: s) }
            }
            return .success(out)
        } catch {
            return .failure(error)
        }
    }

    func failedWithDeltaError(_ r: Result<[UInt8], any Error>) -> Bool {
        if case let .failure(error) = r { return error is DeltaError }
        return false
    }

    @Test func decodingAChunkNeedsItsReferenceAndAValidIndex() throws {
        let f = factors(rows: 4, columns: 4, rank: 1, seed: 2)
        let reference = referenceBytes(.f32, count: 16, seed: 3)
        let encoded = LowRankCodec.encode(dtype: .f32, shape: [4, 4], reference: tensorDigest(.f32, [4, 4], reference),
                                          chunkByteCount: 32, factors: f)
        let (tensor, owned) = try parse(encoded)
        defer { withExtendedLifetime(owned) {} }
        let chunks = memoryChunks(reference, chunkByteCount: 32)
        #expect(tensor.header.chunkCount == 2)
        #expect(failedWithDeltaError(decodeOneChunk(tensor, 0, byteCount: 32, reference: nil)), "no reference")
        #expect(failedWithDeltaError(decodeOneChunk(tensor, 2, byteCount: 32, reference: chunks)), "no chunk 2")
        #expect(failedWithDeltaError(decodeOneChunk(tensor, 0, byteCount: 16, reference: chunks)), "a destination of the wrong size")
        // Chunk 1 alone is the second half of the expected tensor.
        let second = try decodeOneChunk(tensor, 1, byteCount: 32, reference: chunks).get()
        #expect(second == Array(expectedBytes(f, reference: reference, dtype: .f32)[32..<64]))
    }

    @Test func theByteCodecRefusesLowRank() {
        var planes = [UInt8](repeating: 0, count: 64), out = [UInt8](repeating: 0, count: 16)
        let stored: [UInt8] = [UInt8](repeating: 0, count: 16)
        var thrown: DeltaError?
        stored.withUnsafeBytes { s in
            planes.withUnsafeMutableBytes { p in
                out.withUnsafeMutableBytes { o in
                    do throws(DeltaError) {
                        try ChunkCodec.decode(dtype: .f32, encoding: .lowRank, coder: .raw, stored: s, reference: s, planes: p,
                                              destination: o, object: "x")
                    } catch {
                        thrown = error
                    }
                }
            }
        }
        #expect(isCorrupt(thrown))
    }

    // MARK: - Corrupt factor sections

    struct Sample {
        var bytes: [UInt8]
        var header: EncodedTensorHeader
        var headerLength: Int
        var f: LowRankFactors
        var reference: [UInt8]
    }

    func sample(coder: ChunkCoder = .zstd) -> Sample {
        let rows = 10, columns = 12, rank = 3
        // Values on a coarse grid: the low byte planes are zeros, so zstd pays.
        var f = factors(rows: rows, columns: columns, rank: rank, seed: 21)
        f.left = f.left.map { ($0 * 256).rounded() / 256 }
        f.right = f.right.map { ($0 * 256).rounded() / 256 }
        let reference = referenceBytes(.f32, count: rows * columns, seed: 22)
        let digest = tensorDigest(.f32, [rows, columns], reference)
        let header = EncodedTensorHeader(encoding: .lowRank, dtype: .f32, shape: [rows, columns], byteCount: rows * columns * 4,
                                         chunkByteCount: 64, reference: digest)
        let bytes = coder == .zstd
            ? LowRankCodec.encode(dtype: .f32, shape: [rows, columns], reference: digest, chunkByteCount: 64, factors: f)
            : handBuilt(header: header, rank: UInt32(rank), coder: ChunkCoder.raw.rawValue, stored: rawPlanes(f))
        return Sample(bytes: bytes, header: header, headerLength: header.serialized().count, f: f, reference: reference)
    }

    @Test func theSampleIsZstdCodedAndValid() throws {
        let s = sample()
        #expect(s.bytes[s.headerLength + 4] == ChunkCoder.zstd.rawValue)
        #expect(parseError(s.bytes) == nil)
        #expect(parseError(sample(coder: .raw).bytes) == nil)
    }

    @Test(arguments: [ChunkCoder.zstd, .raw])
    func truncatedSectionsAreCorrupt(coder: ChunkCoder) {
        let s = sample(coder: coder)
        // Every length from the bare header to one byte short.
        for length in s.headerLength..<s.bytes.count {
            let error = parseError(Array(s.bytes[0..<length]))
            #expect(isCorrupt(error), "\(coder) cut at \(length) of \(s.bytes.count): \(String(describing: error))")
        }
    }

    @Test(arguments: [ChunkCoder.zstd, .raw])
    func trailingBytesAreCorrupt(coder: ChunkCoder) {
        let s = sample(coder: coder)
        #expect(isCorrupt(parseError(s.bytes + [0])))
    }

    @Test(arguments: [ChunkCoder.zstd, .raw])
    func wrongRanksAreCorrupt(coder: ChunkCoder) {
        let s = sample(coder: coder)
        // 0, a rank that fits the shape but not the stored factors, the shape's limit + 1, and absurd ones.
        for rank: UInt32 in [0, 1, 2, 4, 10, 11, 12, 13, 1 << 20, UInt32.max] {
            var bytes = s.bytes
            bytes.replaceSubrange(s.headerLength..<(s.headerLength + 4), with: littleEndianBytes(rank))
            let error = parseError(bytes)
            #expect(isCorrupt(error), "\(coder) rank \(rank): \(String(describing: error))")
        }
    }

    @Test func unknownCoderIsCorrupt() {
        var bytes = sample().bytes
        bytes[sample().headerLength + 4] = 9
        #expect(isCorrupt(parseError(bytes)))
    }

    @Test func declaredLengthBeyondTheDataIsCorrupt() {
        let s = sample(coder: .raw)
        var bytes = s.bytes
        let at = s.headerLength + 8
        bytes.replaceSubrange(at..<(at + 4), with: littleEndianBytes(UInt32.max))
        #expect(isCorrupt(parseError(bytes)))
        // Raw planes of the wrong size (declared consistently) are corrupt too.
        let short = handBuilt(header: s.header, rank: 3, coder: ChunkCoder.raw.rawValue, stored: Array(rawPlanes(s.f).dropLast(4)))
        #expect(isCorrupt(parseError(short)))
    }

    @Test func garbledCompressedFactorsAreDetected() {
        let s = sample()
        let start = s.headerLength + 12
        for offset in stride(from: start + 4, to: s.bytes.count - 1, by: max(1, (s.bytes.count - start) / 7)) {
            var bytes = s.bytes
            bytes[offset] ^= 0x5A
            // Either the frame does not decompress (checksum, sizes), or the decoded bytes no longer
            // hash to the object's identity; never silently different values.
            if let error = parseError(bytes) {
                #expect(isCorrupt(error), "offset \(offset): \(error)")
                continue
            }
            let good = expectedBytes(s.f, reference: s.reference, dtype: .f32)
            #expect(throws: DeltaError.self, "offset \(offset)") {
                _ = try decode(bytes, reference: s.reference, expected: tensorDigest(.f32, [10, 12], good))
            }
        }
    }

    /// A corrupt header may declare a huge shape and rank (the data need not exist): the parser
    /// must reject it from the stored length, before reserving memory for the factors.
    @Test(arguments: [ChunkCoder.raw, .zstd])
    func hugeDeclaredFactorsAreCorruptNotACrash(coder: ChunkCoder) {
        for (dim, dtype) in [(1 << 20, DType.f32), (1 << 30, .bf16)] {
            let header = EncodedTensorHeader(encoding: .lowRank, dtype: dtype, shape: [dim, dim], byteCount: dim * dim * dtype.byteSize,
                                             chunkByteCount: 1 << 20, reference: SHA256.hash([7]))
            let stored: [UInt8] = coder == .zstd
                ? [UInt8](repeating: 0, count: 64).withUnsafeBytes { Zstd.compress($0, level: 1) }
                : [UInt8](repeating: 0, count: 64)
            let bytes = handBuilt(header: header, rank: UInt32(dim), coder: coder.rawValue, stored: stored)
            let error = parseError(bytes)
            #expect(isCorrupt(error), "\(coder) \(dim)×\(dim) \(dtype): \(String(describing: error))")
        }
    }
}
