import Delta
import Testing

@Suite struct ChunkCodecTests {
    /// Encodes one chunk and decodes it again, returning the coder and the decoded bytes.
    func roundTrip(_ dtype: DType, _ encoding: TensorEncoding, source: [UInt8], reference: [UInt8]?) throws -> (ChunkCoder, Int, [UInt8]) {
        let (coder, stored) = encodeChunk(dtype, encoding, source: source, reference: reference)
        let decoded = try decodeChunk(dtype, encoding, coder: coder, stored: stored, reference: reference, count: source.count)
        return (coder, stored.count, decoded)
    }

    func encodeChunk(_ dtype: DType, _ encoding: TensorEncoding, source: [UInt8], reference: [UInt8]?) -> (ChunkCoder, [UInt8]) {
        var planes = [UInt8](repeating: 0, count: TensorEncoding.scratchFactor * max(source.count, 1))
        var output = [UInt8](repeating: 0, count: Zstd.compressBound(source.count))
        let (coder, n) = source.withUnsafeBytes { src in
            planes.withUnsafeMutableBytes { p in
                output.withUnsafeMutableBytes { out in
                    withOptionalBytes(reference) { ref in
                        ChunkCodec.encode(dtype: dtype, encoding: encoding, level: 3, source: src, reference: ref, planes: p, output: out)
                    }
                }
            }
        }
        return (coder, Array(output[0..<n]))
    }

    func decodeChunk(_ dtype: DType, _ encoding: TensorEncoding, coder: ChunkCoder, stored: [UInt8], reference: [UInt8]?,
                     count: Int) throws(DeltaError) -> [UInt8] {
        var planes = [UInt8](repeating: 0, count: TensorEncoding.scratchFactor * max(count, 1))
        var out = [UInt8](repeating: 0xEE, count: count)
        let result: Result<Void, DeltaError> = stored.withUnsafeBytes { s in
            planes.withUnsafeMutableBytes { p in
                out.withUnsafeMutableBytes { dst in
                    withOptionalBytes(reference) { ref in
                        do throws(DeltaError) {
                            try ChunkCodec.decode(dtype: dtype, encoding: encoding, coder: coder, stored: s, reference: ref,
                                                  planes: p, destination: dst, object: "obj chunk 0")
                            return .success(())
                        } catch {
                            return .failure(error)
                        }
                    }
                }
            }
        }
        try result.get()
        return out
    }

    @Test(arguments: DType.allCases, TensorEncoding.lossless)
    func oneChunkRoundTripsBitExactly(dtype: DType, encoding: TensorEncoding) throws {
        for count in [1, 5, 64, 300] {
            let source = testTensor(dtype, elementCount: count, seed: UInt64(count))
            let reference = encoding.needsReference ? nearbyReference(dtype, source, seed: 77) : nil
            let (_, _, decoded) = try roundTrip(dtype, encoding, source: source, reference: reference)
            #expect(decoded == source, "\(dtype) \(encoding) \(count) elements")
        }
    }

    @Test(arguments: DType.allCases, TensorEncoding.lossless)
    func unrelatedReferenceRoundTrips(dtype: DType, encoding: TensorEncoding) throws {
        // Random bits against random bits: every sign, exponent and NaN combination.
        let source = testTensor(dtype, elementCount: 200, seed: 1)
        var reference = randomBytes(source.count, seed: 2)
        if dtype == .bool { reference = reference.map { $0 & 1 } }
        let (_, _, decoded) = try roundTrip(dtype, encoding, source: source, reference: encoding.needsReference ? reference : nil)
        #expect(decoded == source)
    }

    @Test func compressibleChunksUseZstdAndRandomOnesAreStoredRaw() throws {
        let zeros = [UInt8](repeating: 0, count: 4096)
        let (zcoder, zsize, zdecoded) = try roundTrip(.f32, .whole, source: zeros, reference: nil)
        #expect(zcoder == .zstd)
        #expect(zsize < 100)
        #expect(zdecoded == zeros)
        let noise = randomBytes(4096, seed: 4)
        let (rcoder, rsize, rdecoded) = try roundTrip(.u8, .whole, source: noise, reference: nil)
        #expect(rcoder == .raw)
        #expect(rsize == noise.count)
        #expect(rdecoded == noise)
    }

    @Test func deltaAgainstAnEqualReferenceIsTiny() throws {
        let source = testTensor(.f32, elementCount: 1024, seed: 8)
        for encoding in [TensorEncoding.xor, .integerDelta, .integerDeltaByExponent] {
            let (coder, size, decoded) = try roundTrip(.f32, encoding, source: source, reference: source)
            #expect(coder == .zstd)
            #expect(size < 64, "\(encoding)")
            #expect(decoded == source)
        }
    }

    @Test func rawChunkOfTheWrongSizeIsCorrupt() {
        #expect(throws: DeltaError.corruptData(object: "obj chunk 0", problem: "raw chunk holds 3 bytes, expected 4")) {
            _ = try decodeChunk(.u8, .whole, coder: .raw, stored: [1, 2, 3], reference: nil, count: 4)
        }
    }

    @Test func deltaChunkWithoutItsReferenceIsCorrupt() {
        let source = testTensor(.f32, elementCount: 8, seed: 1)
        let (coder, stored) = encodeChunk(.f32, .xor, source: source, reference: source)
        let problem = "reference chunk is missing or has the wrong size"
        #expect(throws: DeltaError.corruptData(object: "obj chunk 0", problem: problem)) {
            _ = try decodeChunk(.f32, .xor, coder: coder, stored: stored, reference: nil, count: source.count)
        }
        #expect(throws: DeltaError.corruptData(object: "obj chunk 0", problem: problem)) {
            _ = try decodeChunk(.f32, .xor, coder: coder, stored: stored, reference: Array(source.dropLast(4)), count: source.count)
        }
    }

    @Test func flippedByteInAZstdChunkIsDetected() throws {
        let source = [UInt8](repeating: 7, count: 2048)
        let (coder, stored) = encodeChunk(.u8, .whole, source: source, reference: nil)
        #expect(coder == .zstd)
        for position in [0, stored.count / 2, stored.count - 1] {
            var damaged = stored
            damaged[position] ^= 0x10
            var thrown: DeltaError?
            do throws(DeltaError) {
                _ = try decodeChunk(.u8, .whole, coder: .zstd, stored: damaged, reference: nil, count: source.count)
            } catch {
                thrown = error
            }
            // The frame's magic, block headers and content checksum make every one of these flips an error.
            guard case let .corruptData(object, problem)? = thrown else {
                Issue.record("flip at \(position) not detected: \(String(describing: thrown))")
                continue
            }
            #expect(object == "obj chunk 0")
            #expect(problem.hasPrefix("zstd: "))
        }
    }

    @Test func wholeEncodingRotatesFloatWordsSoTheExponentLeads() throws {
        // 1.0f = 0x3F800000; rotated left by one: 0x7F000000. The top plane holds the exponent.
        let (_, stored) = encodeChunk(.f32, .whole, source: bytesOf([Float(1), Float(1)]), reference: nil)
        // Too small to compress: stored raw, planes low byte first.
        #expect(stored == [0, 0, 0, 0, 0, 0, 0x7F, 0x7F])
        let (_, ints) = encodeChunk(.u32, .whole, source: bytesOf([UInt32(0x3F80_0000), 0x0102_0304]), reference: nil)
        #expect(ints == [0x00, 0x04, 0x00, 0x03, 0x80, 0x02, 0x3F, 0x01])
    }

    @Test func integerDeltaIsZigzagCodedAcrossZero() throws {
        // -0.0 → +0.0 and the smallest step either way are differences of one unit in the ordered
        // integers: zigzag gives 1 or 2, so every high plane is zero.
        let source = bytesOf([Float(bitPattern: 0x0000_0001), Float(bitPattern: 0x8000_0000), Float(bitPattern: 0x8000_0001)])
        let reference = bytesOf([Float(0), Float(0), Float(bitPattern: 0x8000_0000)])
        let (_, stored) = encodeChunk(.f32, .integerDelta, source: source, reference: reference)
        #expect(stored.count == 12)
        #expect(Array(stored[3...]) == [0, 0, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(stored[0..<3]).allSatisfy { $0 >= 1 && $0 <= 2 })
    }
}

/// Calls `body` with the bytes of an optional array (nil stays nil).
func withOptionalBytes<R>(_ bytes: [UInt8]?, _ body: (UnsafeRawBufferPointer?) throws -> R) rethrows -> R {
    guard let bytes else { return try body(nil) }
    return try bytes.withUnsafeBytes { try body($0) }
}
