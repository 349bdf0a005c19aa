import Delta
import ModelFactory
import Testing

@Suite struct TensorPipelineTests {
    /// 64-byte chunks: every size below crosses several chunks, and several windows of chunks.
    static let options = CodecOptions(chunkByteCount: 64, level: 1)

    @Test(arguments: DType.allCases, TensorEncoding.lossless)
    func roundTripIsBitExact(dtype: DType, encoding: TensorEncoding) throws {
        // 0 (empty), 1, less than a chunk, and sizes that are not multiples of the chunk size.
        for count in [0, 1, 7, 37, 101, 333] {
            let source = testTensor(dtype, elementCount: count, seed: UInt64(count) &+ 11)
            let reference = encoding.needsReference ? nearbyReference(dtype, source, seed: UInt64(count)) : nil
            let shape: Shape = [count]
            let (encoded, result) = try encodeTensor(source, dtype: dtype, shape: shape, encoding: encoding,
                                                     reference: reference, options: Self.options)
            let expected = tensorDigest(dtype, shape, source)
            #expect(result.digest == expected)
            #expect(result.storedByteCount == encoded.count)
            let decoded = try decodeTensor(encoded, reference: reference, expected: expected)
            #expect(decoded == source, "\(dtype) \(encoding) \(count) elements")

            let owned = OwnedBytes(encoded)
            let tensor = try EncodedTensor(bytes: owned.bytes, owner: owned, name: "t")
            // Exponent grouping needs an exponent: integers are stored with the plain integer difference.
            let stored: TensorEncoding = encoding == .integerDeltaByExponent && !dtype.isFloatingPoint ? .integerDelta : encoding
            #expect(tensor.header.encoding == stored)
            #expect(tensor.header.reference == reference.map { tensorDigest(dtype, shape, $0) })
            #expect(tensor.header.chunkCount == (source.count + 63) / 64)
            #expect(tensor.chunks.count == tensor.header.chunkCount)
        }
    }

    @Test(arguments: DType.allCases)
    func randomBitPatternsAgainstRandomReferences(dtype: DType) throws {
        let count = 1000 / dtype.byteSize
        let source = testTensor(dtype, elementCount: count, seed: 21)
        var reference = randomBytes(source.count, seed: 22)
        if dtype == .bool { reference = reference.map { $0 & 1 } }
        for encoding in TensorEncoding.lossless {
            let ref = encoding.needsReference ? reference : nil
            let (encoded, result) = try encodeTensor(source, dtype: dtype, shape: [count], encoding: encoding, reference: ref,
                                                     options: Self.options)
            #expect(try decodeTensor(encoded, reference: ref, expected: result.digest) == source)
        }
    }

    @Test func scalarAndMultiDimensionalShapes() throws {
        let scalar = bytesOf([Float.nan])
        let (encoded, result) = try encodeTensor(scalar, dtype: .f32, shape: [], encoding: .whole, reference: nil, options: Self.options)
        #expect(result.digest == tensorDigest(.f32, [], scalar))
        #expect(try decodeTensor(encoded, reference: nil, expected: result.digest) == scalar)

        let matrix = testTensor(.bf16, elementCount: 6 * 7, seed: 3)
        let (m, mr) = try encodeTensor(matrix, dtype: .bf16, shape: [6, 7], encoding: .whole, reference: nil, options: Self.options)
        #expect(mr.digest == tensorDigest(.bf16, [6, 7], matrix))
        #expect(try decodeTensor(m, reference: nil, expected: mr.digest) == matrix)
    }

    @Test func withoutAReferenceTheEncodingIsWhole() throws {
        let source = testTensor(.f32, elementCount: 40, seed: 1)
        let (encoded, _) = try encodeTensor(source, dtype: .f32, shape: [40], encoding: .integerDeltaByExponent, reference: nil,
                                            options: Self.options)
        let owned = OwnedBytes(encoded)
        let tensor = try EncodedTensor(bytes: owned.bytes, owner: owned, name: "t")
        #expect(tensor.header.encoding == .whole)
        #expect(tensor.header.reference == nil)
    }

    @Test func blobIdentityHashesWithBlobHasher() throws {
        let bytes = randomBytes(500, seed: 6)
        let (encoded, result) = try encodeTensor(bytes, dtype: .u8, shape: [500], encoding: .whole, reference: nil,
                                                 options: Self.options, identity: .blob)
        #expect(result.digest == bytes.withUnsafeBytes { BlobHasher.hash($0) })
        #expect(try decodeTensor(encoded, reference: nil, expected: result.digest, identity: .blob) == bytes)
        // The same bytes checked as a tensor have another identity.
        let asTensor = tensorDigest(.u8, [500], bytes)
        #expect(throws: DeltaError.corruptData(object: "test tensor", problem: "decoded bytes hash to \(asTensor.short), expected \(result.digest.short)")) {
            _ = try decodeTensor(encoded, reference: nil, expected: result.digest, identity: .tensor)
        }
    }

    @Test func didProcessCoversTheSourceInOrder() throws {
        let source = testTensor(.f16, elementCount: 1000, seed: 2)
        var ranges: [Range<Int>] = []
        let result = try source.withUnsafeBytes { raw in
            try TensorPipeline.encode(dtype: .f16, shape: [1000], source: raw, encoding: .whole, reference: nil,
                                      options: Self.options, sink: { _ in }, didProcess: { ranges.append($0) })
        }
        #expect(result.digest == tensorDigest(.f16, [1000], source))
        #expect(ranges.first?.lowerBound == 0)
        #expect(ranges.last?.upperBound == source.count)
        for (a, b) in zip(ranges, ranges.dropFirst()) { #expect(a.upperBound == b.lowerBound) }
    }

    @Test func wrongExpectedDigestThrowsCorruptData() throws {
        let source = testTensor(.f32, elementCount: 50, seed: 4)
        let (encoded, result) = try encodeTensor(source, dtype: .f32, shape: [50], encoding: .whole, reference: nil, options: Self.options)
        let wrong = SHA256.hash([1, 2, 3])
        #expect(throws: DeltaError.corruptData(object: "test tensor", problem: "decoded bytes hash to \(result.digest.short), expected \(wrong.short)")) {
            _ = try decodeTensor(encoded, reference: nil, expected: wrong)
        }
        // No expectation: no check.
        #expect(try decodeTensor(encoded, reference: nil, expected: nil) == source)
    }

    @Test func wrongReferenceIsDetectedByTheDigest() throws {
        let source = testTensor(.f32, elementCount: 50, seed: 4)
        let reference = nearbyReference(.f32, source, seed: 5)
        let (encoded, result) = try encodeTensor(source, dtype: .f32, shape: [50], encoding: .xor, reference: reference, options: Self.options)
        var other = reference
        other[3] ^= 0x40
        // The bytes decoded against the wrong reference are wrong, whatever they are.
        expectThrows(DeltaError.self) {
            _ = try decodeTensor(encoded, reference: other, expected: result.digest)
        } matching: {
            if case .corruptData("test tensor", _) = $0 { true } else { false }
        }
    }

    @Test func deltaWithoutItsReferenceFails() throws {
        let source = testTensor(.f32, elementCount: 50, seed: 4)
        let (encoded, result) = try encodeTensor(source, dtype: .f32, shape: [50], encoding: .xor, reference: source, options: Self.options)
        #expect(throws: DeltaError.corruptData(object: "test tensor", problem: "delta chunk decoded without its reference")) {
            _ = try decodeTensor(encoded, reference: nil, expected: result.digest)
        }
    }

    /// Offsets of each chunk's stored bytes in an encoding.
    func chunkRanges(_ encoded: [UInt8]) throws -> [(ChunkCoder, Range<Int>)] {
        let owned = OwnedBytes(encoded)
        let tensor = try EncodedTensor(bytes: owned.bytes, owner: owned, name: "t")
        return tensor.chunks.map { ($0.coder, $0.range) }
    }

    @Test(arguments: [false, true])
    func flippedByteInAStoredChunkIsDetected(compressible: Bool) throws {
        // Compressible data gives zstd chunks (checksummed frames); random data gives raw chunks
        // (caught by the digest).
        let source = compressible ? bytesOf([Float](repeating: 0.5, count: 200)) : randomBytes(800, seed: 7)
        let (encoded, result) = try encodeTensor(source, dtype: .f32, shape: [200], encoding: .whole, reference: nil,
                                                 options: CodecOptions(chunkByteCount: 256, level: 1))
        let chunks = try chunkRanges(encoded)
        #expect(chunks.count == 4)
        #expect(chunks.allSatisfy { $0.0 == (compressible ? .zstd : .raw) })
        for (_, range) in chunks {
            for position in [range.lowerBound, range.upperBound - 1] {
                var damaged = encoded
                damaged[position] ^= 0x01
                var thrown: (any Error)?
                do {
                    _ = try decodeTensor(damaged, reference: nil, expected: result.digest)
                } catch {
                    thrown = error
                }
                guard case .corruptData? = thrown as? DeltaError else {
                    Issue.record("flip at byte \(position) gave \(String(describing: thrown))")
                    continue
                }
            }
        }
    }

    @Test func fineTuneDeltasAreMuchSmallerThanWholeTensors() throws {
        // A light fine-tune's tensor coded against its base is the case the codec exists for.
        let factory = ModelFactory(architecture: .tiny, dtype: .f32, seed: 42)
        let spec = try #require(Architecture.tiny.tensors.first { $0.name == "encoder.layer.0.intermediate.dense.weight" })
        let (_, base) = factory.tensorBytes(spec, fineTune: nil)
        let (_, tuned) = factory.tensorBytes(spec, fineTune: .light("math", seed: 11))
        let options = CodecOptions(chunkByteCount: 1024, level: 3)
        let (whole, _) = try encodeTensor(tuned, dtype: .f32, shape: spec.shape, encoding: .whole, reference: nil, options: options)
        var sizes: [TensorEncoding: Int] = [:]
        for encoding in [TensorEncoding.xor, .integerDelta, .integerDeltaByExponent] {
            let (delta, result) = try encodeTensor(tuned, dtype: .f32, shape: spec.shape, encoding: encoding, reference: base, options: options)
            #expect(try decodeTensor(delta, reference: base, expected: result.digest) == tuned)
            sizes[encoding] = delta.count
        }
        #expect(whole.count > tuned.count * 8 / 10, "random-looking mantissas barely compress")
        #expect(sizes[.integerDelta]! < whole.count * 7 / 10, "\(sizes) against \(whole.count)")
        #expect(sizes[.integerDeltaByExponent]! < whole.count * 7 / 10, "\(sizes) against \(whole.count)")
        #expect(sizes[.integerDelta]! < sizes[.xor]!, "\(sizes)")
    }

    @Test func encodedSizeAccountsForHeaderAndChunkRecords() throws {
        let source = randomBytes(130, seed: 9)
        let (encoded, result) = try encodeTensor(source, dtype: .u8, shape: [130], encoding: .whole, reference: nil, options: Self.options)
        let headerSize = EncodedTensorHeader(encoding: .whole, dtype: .u8, shape: [130], byteCount: 130, chunkByteCount: 64, reference: nil)
            .serialized().count
        // Three raw chunks (64 + 64 + 2 bytes), each with an 8-byte record header.
        #expect(result.storedByteCount == headerSize + 3 * 8 + 130)
        #expect(encoded.count == result.storedByteCount)
    }
}
