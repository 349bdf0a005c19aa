import Delta
import Foundation
import ModelFactory
import Testing

// Helpers for the Delta tests: headers parsed in memory, bit patterns, tensors coded in memory.
// The helpers every target shares are in Tests/MrepoTestSupport.

/// Parses a header held in memory and returns the error it throws, or nil when it parses.
func headerError(_ bytes: [UInt8], file: String = "bad.safetensors") -> DeltaError? {
    do throws(DeltaError) {
        _ = try parseHeader(bytes, file: file)
        return nil
    } catch {
        return error
    }
}

func parseHeader(_ bytes: [UInt8], file: String = "test.safetensors") throws(DeltaError) -> SafetensorsHeader {
    let result: Result<SafetensorsHeader, DeltaError> = bytes.withUnsafeBytes { raw in
        do throws(DeltaError) {
            return .success(try SafetensorsHeader.parse(prefix: raw, fileSize: raw.count, file: file))
        } catch {
            return .failure(error)
        }
    }
    return try result.get()
}

/// Deterministic pseudo-random bytes.
func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
    var rng = SeededRandom(seed: seed)
    return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
}

/// Values of a dtype from its bytes.
func values<T>(_ bytes: [UInt8], as _: T.Type) -> [T] {
    bytes.withUnsafeBytes { raw in
        (0..<(raw.count / MemoryLayout<T>.size)).map { raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) }
    }
}

/// Bit patterns a lossless codec must keep: ±0, subnormals, ±infinity, NaNs with payloads (quiet
/// and signalling, both signs), the extremes, and ordinary values, as raw little-endian words.
func specialPatterns(_ dtype: DType) -> [UInt8] {
    switch dtype {
    case .f64:
        let words: [UInt64] = [0, 0x8000_0000_0000_0000, 1, 0x800F_FFFF_FFFF_FFFF, 0x7FF0_0000_0000_0000, 0xFFF0_0000_0000_0000,
                               0x7FF8_0000_0000_0001, 0x7FF0_0000_DEAD_BEEF, 0xFFF8_0000_0000_1234, 0x7FEF_FFFF_FFFF_FFFF,
                               Double(1.5).bitPattern, Double(-0.001).bitPattern]
        return bytesOf(words)
    case .f32:
        let words: [UInt32] = [0, 0x8000_0000, 1, 0x807F_FFFF, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0001, 0x7F80_0001,
                               0xFFC1_2345, 0x7F7F_FFFF, Float(1.5).bitPattern, Float(-0.001).bitPattern]
        return bytesOf(words)
    case .f16, .bf16:
        let words: [UInt16] = dtype == .f16
            ? [0, 0x8000, 1, 0x83FF, 0x7C00, 0xFC00, 0x7E01, 0x7C01, 0xFE55, 0x7BFF, 0x3C00, 0xBC00]
            : [0, 0x8000, 1, 0x807F, 0x7F80, 0xFF80, 0x7FC1, 0x7F81, 0xFFD5, 0x7F7F, 0x3F80, 0xBF80]
        return bytesOf(words)
    case .f8e4m3:
        return [0x00, 0x80, 0x01, 0x87, 0x7E, 0xFE, 0x7F, 0xFF, 0x38, 0xB8]
    case .f8e5m2:
        return [0x00, 0x80, 0x01, 0x83, 0x7C, 0xFC, 0x7D, 0x7F, 0xFE, 0x7B, 0x3C, 0xBC]
    case .i64, .u64:
        return bytesOf([UInt64.max, 0, 1, 0x8000_0000_0000_0000, 0x7FFF_FFFF_FFFF_FFFF])
    case .i32, .u32:
        return bytesOf([UInt32.max, 0, 1, 0x8000_0000, 0x7FFF_FFFF])
    case .i16, .u16:
        return bytesOf([UInt16.max, 0, 1, 0x8000, 0x7FFF])
    case .i8, .u8:
        return [0xFF, 0, 1, 0x80, 0x7F]
    case .bool:
        return [0, 1, 1, 0]
    }
}

/// A test tensor of `elementCount` elements: the special patterns first, then random bits
/// (`BOOL` stays 0 or 1).
func testTensor(_ dtype: DType, elementCount: Int, seed: UInt64) -> [UInt8] {
    let byteCount = elementCount * dtype.byteSize
    var bytes = Array(specialPatterns(dtype).prefix(byteCount))
    bytes += randomBytes(byteCount - bytes.count, seed: seed)
    if dtype == .bool { bytes = bytes.map { $0 & 1 } }
    return bytes
}

/// A reference for `source`: most elements close to it (as a fine-tune is), some equal, some
/// unrelated random bits.
func nearbyReference(_ dtype: DType, _ source: [UInt8], seed: UInt64) -> [UInt8] {
    var out = source
    var rng = SeededRandom(seed: seed)
    let width = dtype.byteSize
    for i in 0..<(source.count / width) {
        switch rng.next() % 4 {
        case 0:
            break  // equal
        case 1:
            for k in 0..<width { out[i * width + k] = UInt8(truncatingIfNeeded: rng.next()) }
        default:
            // Nudge the low byte.
            out[i * width] &+= UInt8(truncatingIfNeeded: rng.next() % 7) &- 3
        }
    }
    if dtype == .bool { out = out.map { $0 & 1 } }
    return out
}

/// Bytes kept at a stable address for an ``EncodedTensor`` to view (its owner, so `Sendable`:
/// the bytes are written once, in `init`, and only read afterwards).
final class OwnedBytes: Sendable {
    private let storage: UnsafeSendable<UnsafeMutableRawBufferPointer>
    var buffer: UnsafeMutableRawBufferPointer { storage.value }

    let count: Int

    init(_ bytes: [UInt8]) {
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 64)
        bytes.withUnsafeBytes { raw in
            if raw.count > 0 { storage.baseAddress!.copyMemory(from: raw.baseAddress!, byteCount: raw.count) }
        }
        self.storage = UnsafeSendable(storage)
        count = bytes.count
    }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: buffer[0..<count]) }

    deinit { buffer.deallocate() }
}

/// A chunk source serving chunks of a tensor held in memory.
func memoryChunks(_ bytes: [UInt8], chunkByteCount: Int) -> ChunkSource {
    { index, into in
        let start = index * chunkByteCount
        bytes.withUnsafeBytes { raw in
            into.copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[start..<(start + into.count)]))
        }
    }
}

/// Encodes a tensor with ``TensorPipeline`` and returns the encoded bytes and the result.
func encodeTensor(_ source: [UInt8], dtype: DType, shape: Shape, encoding: TensorEncoding, reference: [UInt8]?,
                  options: CodecOptions, identity: TensorPipeline.Identity = .tensor) throws -> (bytes: [UInt8], result: TensorPipeline.EncodeResult) {
    var out: [UInt8] = []
    let ref = reference.map {
        TensorPipeline.Reference(digest: tensorDigest(dtype, shape, $0), chunks: memoryChunks($0, chunkByteCount: options.chunkByteCount))
    }
    let result = try source.withUnsafeBytes { raw in
        try TensorPipeline.encode(dtype: dtype, shape: shape, source: raw, encoding: encoding, reference: ref,
                                  options: options, identity: identity, sink: { out.append(contentsOf: $0) })
    }
    return (out, result)
}

/// Decodes bytes made by ``encodeTensor``.
func decodeTensor(_ encoded: [UInt8], reference: [UInt8]?, expected: Digest?, identity: TensorPipeline.Identity = .tensor) throws -> [UInt8] {
    let owned = OwnedBytes(encoded)
    let tensor = try EncodedTensor(bytes: owned.bytes, owner: owned, name: "test tensor")
    let chunks = reference.map { memoryChunks($0, chunkByteCount: tensor.header.chunkByteCount) }
    return try TensorPipeline.decodeToArray(tensor, reference: chunks, expected: expected, identity: identity)
}

/// ``TensorHasher/hash(dtype:shape:bytes:)`` of an array.
func tensorDigest(_ dtype: DType, _ shape: Shape, _ bytes: [UInt8]) -> Digest {
    bytes.withUnsafeBytes { TensorHasher.hash(dtype: dtype, shape: shape, bytes: $0) }
}
