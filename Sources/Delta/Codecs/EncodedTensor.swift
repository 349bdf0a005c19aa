import Foundation

/// Produces the decoded bytes of chunk `index` of a reference tensor into a buffer of exactly
/// that chunk's size. Called from worker threads.
public typealias ChunkSource = @Sendable (_ index: Int, _ into: UnsafeMutableRawBufferPointer) throws -> Void

/// The chunks of a tensor whose bytes are already in memory: copied, not decoded. `bytes` must
/// stay valid while the source is used.
public func memoryChunkSource(_ bytes: UnsafeRawBufferPointer, chunkByteCount: Int) -> ChunkSource {
    let bytes = UnsafeSendable(bytes)
    return { index, into in
        let start = index * chunkByteCount
        into.copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes.value[start..<(start + into.count)]))
    }
}

/// Parameters of the lossless codec.
public struct CodecOptions: Sendable, Equatable {
    /// Uncompressed bytes per chunk. Chunks are coded independently (and in parallel).
    public var chunkByteCount: Int
    /// zstd level for the byte planes.
    public var level: Int32
    /// Whether floating-point chunks may be coded with rANS (coder 2, in version 2 tensors).
    /// Off unless asked for (``ransRequested``): it stores float bases about 2.5 % smaller than
    /// zstd but its writer costs about twice the CPU time (docs/benchmarks.md, "rANS coder").
    public var rans: Bool

    /// 4 MiB chunks at zstd level 1: measured in docs/benchmarks.md ("Codec choice").
    public static let `default` = CodecOptions(chunkByteCount: 4 << 20, level: 1)

    /// True when the environment sets `MREPO_RANS=1`.
    public static let ransRequested: Bool = ProcessInfo.processInfo.environment["MREPO_RANS"] == "1"

    public init(chunkByteCount: Int, level: Int32, rans: Bool = CodecOptions.ransRequested) {
        precondition(chunkByteCount > 0 && chunkByteCount % 8 == 0, "chunks hold whole elements of every dtype")
        self.chunkByteCount = chunkByteCount
        self.level = level
        self.rans = rans
    }
}

/// The header of an encoded tensor (docs/format.md §4.2). All integers little-endian.
///
/// ```
/// magic            4   "MRTN"
/// version          1   1, 2 when chunks may use ChunkCoder.rans, 3 also its grid mode
/// encoding         1   TensorEncoding
/// dtype            1   DType.code
/// rank             1
/// chunkByteCount   4   u32
/// byteCount        8   u64
/// shape            8 × rank, u64 each
/// reference       32   identity of the reference tensor (zeros when encoding is whole)
/// ```
/// Chunk records follow: `coder (1) | reserved (3) | storedByteCount (u32) | stored bytes`; a
/// ``TensorEncoding/lowRank`` tensor has its factor section instead (``LowRankCodec``).
public struct EncodedTensorHeader: Sendable, Equatable {
    public var encoding: TensorEncoding
    public var dtype: DType
    public var shape: Shape
    public var byteCount: Int
    public var chunkByteCount: Int
    public var reference: Digest?
    /// 1, or 2 when the chunks may use ``ChunkCoder/rans``, or 3 when they may also use its grid
    /// mode (docs/format.md §4.2). A reader of an older version refuses a newer one, rather than
    /// calling its chunks corrupt.
    public var version: UInt8

    public static let magic: [UInt8] = Array("MRTN".utf8)
    /// The newest version this build reads and writes.
    public static let newestVersion: UInt8 = 3

    public init(encoding: TensorEncoding, dtype: DType, shape: Shape, byteCount: Int, chunkByteCount: Int, reference: Digest?,
                version: UInt8 = 1) {
        self.version = version
        self.encoding = encoding
        self.dtype = dtype
        self.shape = shape
        self.byteCount = byteCount
        self.chunkByteCount = chunkByteCount
        self.reference = reference
    }

    /// Number of chunks.
    public var chunkCount: Int { byteCount == 0 ? 0 : (byteCount - 1) / chunkByteCount + 1 }

    /// The byte range of chunk `index` within the tensor.
    public func chunkRange(_ index: Int) -> Range<Int> {
        let start = index * chunkByteCount
        return start..<min(byteCount, start + chunkByteCount)
    }

    public func serialized() -> [UInt8] {
        var out = EncodedTensorHeader.magic
        out.append(version)
        out.append(encoding.rawValue)
        out.append(dtype.code)
        out.append(UInt8(shape.count))
        out.appendLE(UInt32(chunkByteCount))
        out.appendLE(UInt64(byteCount))
        for dim in shape { out.appendLE(UInt64(dim)) }
        out.append(contentsOf: (reference ?? .zero).bytes)
        return out
    }

    /// Parses a header at the start of `bytes`.
    /// - Returns: the header and its length in bytes.
    public static func parse(_ bytes: UnsafeRawBufferPointer, object: String) throws(DeltaError) -> (EncodedTensorHeader, Int) {
        var r = ByteReader(bytes)
        func bad(_ problem: String) -> DeltaError { .corruptData(object: object, problem: problem) }
        guard let m = r.bytes(4), Array(m) == magic else { throw bad("not an encoded tensor (bad magic)") }
        guard let version = r.u8() else { throw bad("header is truncated") }
        guard version >= 1, version <= EncodedTensorHeader.newestVersion else {
            throw .unsupported(what: "\(object): tensor encoding version \(version) (this mrepo reads versions 1 to \(EncodedTensorHeader.newestVersion)); upgrade mrepo")
        }
        guard let enc = r.u8(), let encoding = TensorEncoding(rawValue: enc) else { throw bad("unknown tensor encoding") }
        guard let code = r.u8(), let dtype = DType(code: code) else { throw bad("unknown dtype code") }
        guard let rank = r.u8(), let chunk = r.u32(), let count = r.u64() else { throw bad("header is truncated") }
        var shape: Shape = []
        for _ in 0..<rank {
            guard let dim = r.u64(), dim <= UInt64(Int.max) else { throw bad("header is truncated") }
            shape.append(Int(dim))
        }
        guard let refBytes = r.bytes(32), let ref = Digest(bytes: refBytes) else { throw bad("header is truncated") }
        guard chunk > 0, Int(chunk) % 8 == 0 else { throw bad("invalid chunk size \(chunk)") }
        guard count <= UInt64(Int.max), let elements = shape.elementCount,
              case let (expected, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize), !overflow, expected == Int(count)
        else {
            throw bad("byte count \(count) disagrees with \(dtype.rawValue) × \(shape.shapeDescription)")
        }
        let header = EncodedTensorHeader(encoding: encoding, dtype: dtype, shape: shape, byteCount: Int(count),
                                         chunkByteCount: Int(chunk), reference: ref == .zero ? nil : ref, version: version)
        if encoding.needsReference, header.reference == nil { throw bad("delta encoding without a reference") }
        if !encoding.needsReference, header.reference != nil { throw bad("whole encoding with a reference") }
        if encoding == .integerDeltaByExponent, !dtype.isFloatingPoint { throw bad("exponent grouping on non-float dtype \(dtype.rawValue)") }
        if encoding == .lowRank, shape.count != 2 || !LowRankCodec.supports(dtype) { throw bad("low-rank encoding of a \(dtype.rawValue) \(shape.shapeDescription) tensor") }
        return (header, r.offset)
    }
}

/// A parsed, read-only view of an encoded tensor's bytes (usually a mapped object file).
///
/// Sendable: `bytes` is a raw pointer, which the compiler cannot prove shareable (hence the
/// ``UnsafeSendable`` around it), but it is only ever read, and `owner` (a ``MappedFile``, itself
/// immutable) keeps it valid for as long as any copy of this value lives. A view made without an
/// owner is used inside the caller's `withUnsafeBytes` scope only. Worker threads decode chunks of
/// one tensor at once through ``ChunkSource`` closures that capture it.
public struct EncodedTensor: Sendable {
    public let header: EncodedTensorHeader
    /// Where each chunk's stored bytes are, and how they are coded.
    public let chunks: [(coder: ChunkCoder, range: Range<Int>)]
    /// Bytes of the whole encoding (header and chunks).
    public var bytes: UnsafeRawBufferPointer { viewBytes.value }
    private let viewBytes: UnsafeSendable<UnsafeRawBufferPointer>
    /// Keeps `bytes` valid.
    private let owner: (any AnyObject & Sendable)?
    /// Name used in error messages.
    public let name: String
    /// The factors of a ``TensorEncoding/lowRank`` tensor (nil for the lossless encodings).
    public let factors: LowRankFactors?

    /// Parses the header and chunk table of `bytes`.
    /// - Parameters:
    ///   - offset: where the encoded tensor starts within `bytes`.
    ///   - owner: an object that keeps `bytes` alive (e.g. the ``MappedFile``).
    public init(bytes: UnsafeRawBufferPointer, offset: Int = 0, owner: (any AnyObject & Sendable)?, name: String) throws(DeltaError) {
        let view = UnsafeRawBufferPointer(rebasing: bytes[offset...])
        let (header, headerLength) = try EncodedTensorHeader.parse(view, object: name)
        var chunks: [(coder: ChunkCoder, range: Range<Int>)] = []
        var factors: LowRankFactors?
        if header.encoding == .lowRank {
            let (decoded, end) = try LowRankCodec.decodeFactors(view, offset: headerLength, header: header, object: name)
            guard end == view.count else {
                throw .corruptData(object: name, problem: "\(view.count - end) bytes after the low-rank factors")
            }
            factors = decoded
        } else {
            var r = ByteReader(view)
            r.offset = headerLength
            // Each chunk record takes at least 8 bytes: a corrupt byte count must not reserve more.
            chunks.reserveCapacity(min(header.chunkCount, (view.count - headerLength) / 8))
            for i in 0..<header.chunkCount {
                // A coder added later comes with a newer header version, refused above: within
                // the versions this build reads, an unknown coder is damage.
                guard let c = r.u8(), let coder = ChunkCoder(rawValue: c), r.bytes(3) != nil, let length = r.u32() else {
                    throw .corruptData(object: name, problem: "chunk \(i) record is truncated or has an unknown coder")
                }
                if coder == .rans, header.version < 2 {
                    throw .corruptData(object: name, problem: "chunk \(i) uses coder 2 in a version \(header.version) tensor")
                }
                let start = r.offset
                guard let stored = r.bytes(Int(length)) else {
                    throw .corruptData(object: name, problem: "chunk \(i) runs past the end (\(length) bytes at \(start))")
                }
                // Checked before any chunk is decoded: decoding reserves memory for the chunk's
                // size, which a damaged header may put in the gigabytes.
                let size = header.chunkRange(i).count
                switch coder {
                case .raw:
                    guard stored.count == size else {
                        throw .corruptData(object: name, problem: "chunk \(i) is raw with \(stored.count) bytes, the chunk has \(size)")
                    }
                case .zstd:
                    let declared = Zstd.frameContentSize(UnsafeRawBufferPointer(rebasing: stored))
                    guard declared == size else {
                        throw .corruptData(object: name, problem: "chunk \(i) is a zstd frame of \(declared.map { "\($0) bytes" } ?? "no declared size"), the chunk has \(size) bytes")
                    }
                case .rans:
                    // No table gives a value all 4096 slots, so every coded byte costs some bits:
                    // a stream cannot stand for more than this many bytes (docs/format.md §5.5).
                    guard size <= RansCodec.maximumExpansion * stored.count else {
                        throw .corruptData(object: name, problem: "chunk \(i) is a rans stream of \(stored.count) bytes, too short for a chunk of \(size) bytes")
                    }
                }
                chunks.append((coder, start..<(start + Int(length))))
            }
            guard r.offset == view.count else {
                throw .corruptData(object: name, problem: "\(view.count - r.offset) bytes after the last chunk")
            }
        }
        self.header = header
        self.chunks = chunks
        self.viewBytes = UnsafeSendable(view)
        self.owner = owner
        self.name = name
        self.factors = factors
    }

    /// Total stored bytes (header and chunks).
    public var storedByteCount: Int { bytes.count }

    /// Decodes chunk `index` into `destination` (exactly that chunk's size).
    ///
    /// - Parameters:
    ///   - reference: produces the reference's chunk when the encoding is a delta.
    ///   - scratch: at least `TensorEncoding.scratchFactor + 1` chunk sizes of scratch space.
    public func decodeChunk(_ index: Int, into destination: UnsafeMutableRawBufferPointer,
                            reference: ChunkSource?, scratch: UnsafeMutableRawBufferPointer) throws {
        // A delta with more chunks than its (damaged) reference asks for chunks the reference
        // does not have: refuse before computing a range past the end.
        guard index >= 0, index < header.chunkCount else {
            throw DeltaError.corruptData(object: name, problem: "chunk \(index) asked for, the tensor has \(header.chunkCount) (a delta reference with another chunk size?)")
        }
        let range = header.chunkRange(index)
        let k = TensorEncoding.scratchFactor
        var refBytes: UnsafeRawBufferPointer?
        if header.encoding.needsReference, index < header.chunkCount {
            guard let reference else {
                throw DeltaError.corruptData(object: name, problem: factors == nil ? "delta chunk decoded without its reference"
                    : "low-rank chunk \(index) asked for \(destination.count) bytes without its reference")
            }
            let refBuffer = UnsafeMutableRawBufferPointer(rebasing: scratch[(k * range.count)..<((k + 1) * range.count)])
            try reference(index, refBuffer)
            refBytes = UnsafeRawBufferPointer(refBuffer)
        }
        try decodeChunk(index, into: destination, referenceChunk: refBytes,
                        scratch: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<(k * range.count)]))
    }

    /// Decodes chunk `index` into `destination` (exactly that chunk's size) against the reference's
    /// chunk held by the caller (nil for whole encodings).
    ///
    /// - Parameters:
    ///   - scratch: at least `TensorEncoding.scratchFactor` chunk sizes of scratch space.
    ///   - positions: the reference chunk's ``ChunkCodec/groupPositions(dtype:reference:into:)``, when the
    ///     caller has them (used by ``TensorEncoding/integerDeltaByExponent``).
    public func decodeChunk(_ index: Int, into destination: UnsafeMutableRawBufferPointer,
                            referenceChunk: UnsafeRawBufferPointer?, scratch: UnsafeMutableRawBufferPointer,
                            positions: UnsafePointer<UInt32>? = nil) throws {
        let range = header.chunkRange(index)
        let k = TensorEncoding.scratchFactor
        if let factors {
            guard index < header.chunkCount, destination.count == range.count, let referenceChunk, referenceChunk.count == range.count else {
                throw DeltaError.corruptData(object: name, problem: "low-rank chunk \(index) asked for \(destination.count) bytes without its reference")
            }
            LowRankCodec.decode(factors, dtype: header.dtype, byteRange: range, reference: referenceChunk,
                                scratch: UnsafeMutableRawBufferPointer(rebasing: scratch[0..<(k * range.count)]), destination: destination)
            return
        }
        guard index < chunks.count, destination.count == range.count else {
            throw DeltaError.corruptData(object: name, problem: "chunk \(index) asked for \(destination.count) bytes, holds \(range.count) (a delta reference with another chunk size?)")
        }
        let planes = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<(k * range.count)])
        if header.encoding.needsReference, referenceChunk == nil {
            throw DeltaError.corruptData(object: name, problem: "delta chunk decoded without its reference")
        }
        let chunk = chunks[index]
        try ChunkCodec.decode(dtype: header.dtype, encoding: header.encoding, coder: chunk.coder,
                              stored: UnsafeRawBufferPointer(rebasing: bytes[chunk.range]), reference: header.encoding.needsReference ? referenceChunk : nil,
                              planes: planes, destination: destination, object: "\(name) chunk \(index)",
                              positions: header.encoding == .integerDeltaByExponent ? positions : nil, ransGrid: header.version >= 3)
    }

    /// Drops the stored bytes of chunk `index` from the process's resident set when they are a
    /// mapped file's pages (they are read again from the page cache if needed).
    public func releaseStoredBytes(ofChunk index: Int) {
        guard let map = owner as? MappedFile, index < chunks.count, let start = bytes.baseAddress, let fileStart = map.bytes.baseAddress else { return }
        let offset = start - UnsafeRawPointer(fileStart)
        let range = chunks[index].range
        map.release((offset + range.lowerBound)..<(offset + range.upperBound))
    }

    /// Drops every stored byte from the resident set (see ``releaseStoredBytes(ofChunk:)``): reading
    /// the chunk records at open touches a page of every chunk, which stays resident otherwise.
    public func releaseStoredBytes() {
        guard let map = owner as? MappedFile, let start = bytes.baseAddress, let fileStart = map.bytes.baseAddress else { return }
        let offset = start - UnsafeRawPointer(fileStart)
        map.release(offset..<(offset + bytes.count))
    }
}

// MARK: - Little-endian helpers

extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        var v = value.littleEndian
        Swift.withUnsafeBytes(of: &v) { append(contentsOf: $0) }
    }
}

/// Reads little-endian integers from a buffer, returning nil past its end.
public struct ByteReader {
    let bytes: UnsafeRawBufferPointer
    public var offset = 0

    public init(_ bytes: UnsafeRawBufferPointer) {
        self.bytes = bytes
    }

    public mutating func bytes(_ count: Int) -> UnsafeRawBufferPointer.SubSequence? {
        guard count >= 0, count <= bytes.count - offset else { return nil }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }

    public mutating func u8() -> UInt8? { integer(UInt8.self) }
    public mutating func u32() -> UInt32? { integer(UInt32.self) }
    public mutating func u64() -> UInt64? { integer(UInt64.self) }

    private mutating func integer<T: FixedWidthInteger>(_: T.Type) -> T? {
        let size = MemoryLayout<T>.size
        guard size <= bytes.count - offset else { return nil }
        defer { offset += size }
        return T(littleEndian: bytes.loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
