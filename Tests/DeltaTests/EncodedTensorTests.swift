import Delta
import Testing

/// The error parsing an encoded tensor's header throws, or nil.
private func parseHeaderError(_ bytes: [UInt8]) -> DeltaError? {
    bytes.withUnsafeBytes { raw in
        do throws(DeltaError) {
            _ = try EncodedTensorHeader.parse(raw, object: "obj")
            return nil
        } catch {
            return error
        }
    }
}

/// The error opening an encoded tensor throws, or nil.
private func tensorError(_ bytes: [UInt8]) -> DeltaError? {
    let owned = OwnedBytes(bytes)
    do throws(DeltaError) {
        _ = try EncodedTensor(bytes: owned.bytes, owner: owned, name: "obj")
        return nil
    } catch {
        return error
    }
}

@Suite struct EncodedTensorTests {
    func parseHeader(_ bytes: [UInt8]) throws -> (EncodedTensorHeader, Int) {
        try bytes.withUnsafeBytes { raw in try EncodedTensorHeader.parse(raw, object: "obj") }
    }

    @Test func headerLayoutAndRoundTrip() throws {
        let reference = SHA256.hash([1])
        let header = EncodedTensorHeader(encoding: .integerDeltaByExponent, dtype: .bf16, shape: [3, 5], byteCount: 30,
                                         chunkByteCount: 256, reference: reference)
        let bytes = header.serialized()
        #expect(bytes.count == 4 + 1 + 1 + 1 + 1 + 4 + 8 + 2 * 8 + 32)
        #expect(Array(bytes[0..<8]) == Array("MRTN".utf8) + [1, 3, DType.bf16.code, 2])
        #expect(Array(bytes[8..<12]) == littleEndianBytes(UInt32(256)))
        #expect(Array(bytes[12..<20]) == littleEndianBytes(UInt64(30)))
        #expect(Array(bytes[20..<28]) == littleEndianBytes(UInt64(3)))
        #expect(Array(bytes[36...]) == reference.bytes)
        let (parsed, length) = try parseHeader(bytes)
        #expect(parsed == header)
        #expect(length == bytes.count)
        #expect(parsed.chunkCount == 1)
    }

    @Test func wholeHeaderStoresZerosForTheReference() throws {
        let header = EncodedTensorHeader(encoding: .whole, dtype: .f32, shape: [], byteCount: 4, chunkByteCount: 8, reference: nil)
        let bytes = header.serialized()
        #expect(bytes.suffix(32).allSatisfy { $0 == 0 })
        let (parsed, _) = try parseHeader(bytes)
        #expect(parsed.reference == nil)
        #expect(parsed.shape == [])
    }

    @Test func chunkRanges() {
        let header = EncodedTensorHeader(encoding: .whole, dtype: .u8, shape: [150], byteCount: 150, chunkByteCount: 64, reference: nil)
        #expect(header.chunkCount == 3)
        #expect(header.chunkRange(0) == 0..<64)
        #expect(header.chunkRange(2) == 128..<150)
        let empty = EncodedTensorHeader(encoding: .whole, dtype: .u8, shape: [0], byteCount: 0, chunkByteCount: 64, reference: nil)
        #expect(empty.chunkCount == 0)
    }

    @Test func corruptHeadersAreRejected() {
        let good = EncodedTensorHeader(encoding: .xor, dtype: .f32, shape: [2], byteCount: 8, chunkByteCount: 64,
                                       reference: SHA256.hash([2])).serialized()
        func damaged(_ index: Int, _ value: UInt8) -> [UInt8] {
            var b = good
            b[index] = value
            return b
        }
        let cases: [([UInt8], String)] = [
            (damaged(0, UInt8(ascii: "X")), "not an encoded tensor (bad magic)"),
            (damaged(5, 9), "unknown tensor encoding"),
            (damaged(6, 0), "unknown dtype code"),
            (damaged(8, 65), "invalid chunk size 65"),
            (damaged(12, 9), "byte count 9 disagrees with F32 × 2"),
            (damaged(7, 3), "header is truncated"),  // rank 3 needs more bytes than there are
            (Array(good.prefix(10)), "header is truncated"),
            (Array(good.dropLast()), "header is truncated"),
            (Array(good[0..<(good.count - 32)]) + [UInt8](repeating: 0, count: 32), "delta encoding without a reference"),
        ]
        for (bytes, problem) in cases {
            #expect(parseHeaderError(bytes) == .corruptData(object: "obj", problem: problem), "\(problem)")
        }
        #expect(parseHeaderError(damaged(7, 3))?.description == "obj: corrupt: header is truncated")
        // A newer encoding version is not corruption: this build cannot read it.
        #expect(parseHeaderError(damaged(4, 4)) == .unsupported(what: "obj: tensor encoding version 4 (this mrepo reads versions 1 to 3); upgrade mrepo"))
        #expect(parseHeaderError(damaged(4, 0)) == .unsupported(what: "obj: tensor encoding version 0 (this mrepo reads versions 1 to 3); upgrade mrepo"))
        #expect(parseHeaderError(damaged(4, 2)) == nil)
        #expect(parseHeaderError(damaged(4, 3)) == nil)
    }

    @Test func chunkTableErrors() throws {
        let source = randomBytes(100, seed: 1)
        let (encoded, _) = try encodeTensor(source, dtype: .u8, shape: [100], encoding: .whole, reference: nil,
                                            options: CodecOptions(chunkByteCount: 64, level: 1))
        #expect(tensorError(encoded) == nil)
        #expect(tensorError(encoded + [0, 0, 0]) == .corruptData(object: "obj", problem: "3 bytes after the last chunk"))
        let truncated = Array(encoded.dropLast(1))
        let headerSize = encoded.count - (8 + 64) - (8 + 36)
        #expect(tensorError(truncated) == .corruptData(object: "obj", problem: "chunk 1 runs past the end (36 bytes at \(headerSize + 72 + 8))"))
        var badCoder = encoded
        badCoder[headerSize] = 7
        #expect(tensorError(badCoder) == .corruptData(object: "obj", problem: "chunk 0 record is truncated or has an unknown coder"))
    }

    @Test func decodingAtAnOffsetIgnoresWhatComesBefore() throws {
        let source = randomBytes(40, seed: 2)
        let (encoded, result) = try encodeTensor(source, dtype: .u8, shape: [40], encoding: .whole, reference: nil,
                                                 options: CodecOptions(chunkByteCount: 16, level: 1))
        let owned = OwnedBytes([9, 9, 9, 9, 9, 9, 9, 9] + encoded)
        let tensor = try EncodedTensor(bytes: owned.bytes, offset: 8, owner: owned, name: "obj")
        #expect(tensor.storedByteCount == encoded.count)
        #expect(try TensorPipeline.decodeToArray(tensor, reference: nil, expected: result.digest) == source)
    }
}

@Suite struct HostileEncodingTests {
    @Test func byteCountOverflowIsCorruptNotACrash() {
        // F64 × 2^62 elements overflows Int when multiplied by the element size.
        var bytes = Array("MRTN".utf8) + [1, 0, DType.f64.code, 1]
        bytes += littleEndianBytes(UInt32(64)) + littleEndianBytes(UInt64(0)) + littleEndianBytes(UInt64(1) << 62)
        bytes += [UInt8](repeating: 0, count: 32)
        let error = parseHeaderError(bytes)
        #expect(error == .corruptData(object: "obj", problem: "byte count 0 disagrees with F64 × 4611686018427387904"))
    }

    @Test func hugeChunkCountIsCorruptNotACrash() {
        // A header announcing 2^60 bytes with nothing after it.
        var bytes = Array("MRTN".utf8) + [1, 0, DType.u8.code, 1]
        bytes += littleEndianBytes(UInt32(64)) + littleEndianBytes(UInt64(1) << 60) + littleEndianBytes(UInt64(1) << 60)
        bytes += [UInt8](repeating: 0, count: 32) + [0, 0, 0, 0, 64, 0, 0, 0]
        #expect(tensorError(bytes) == .corruptData(object: "obj", problem: "chunk 0 runs past the end (64 bytes at 68)"))
    }

    @Test func byteCountNearIntMaxIsCorruptNotACrash() {
        var bytes = Array("MRTN".utf8) + [1, 0, DType.u8.code, 1]
        bytes += littleEndianBytes(UInt32(64)) + littleEndianBytes(UInt64(Int.max)) + littleEndianBytes(UInt64(Int.max))
        bytes += [UInt8](repeating: 0, count: 32)
        #expect(tensorError(bytes) == .corruptData(object: "obj", problem: "chunk 0 record is truncated or has an unknown coder"))
        let header = EncodedTensorHeader(encoding: .whole, dtype: .u8, shape: [Int.max], byteCount: Int.max, chunkByteCount: 64, reference: nil)
        #expect(header.chunkCount == Int.max / 64 + 1)
    }
}
