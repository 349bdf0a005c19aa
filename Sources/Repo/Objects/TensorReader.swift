import Delta

/// Reads a tensor's bytes range by range, from a stored object or a mapped safetensors file.
///
/// Reads from an object decode only the chunks they touch (one decoded chunk is cached). When a
/// tensor is read once from start to end, ``finish()`` verifies its identity, so streamed reads
/// are as checked as a whole decode.
public final class TensorReader {
    public let dtype: DType
    public let shape: Shape
    public let byteCount: Int
    private let source: Source
    private var buffer: UnsafeMutableRawBufferPointer
    private var scratch: UnsafeMutableRawBufferPointer
    private var chunkBuffer: UnsafeMutableRawBufferPointer
    private var cachedChunk = -1
    private let hasher: TensorHasher
    private var hashedUpTo = 0
    private var releasedUpTo = 0

    private enum Source {
        case object(id: ObjectID, tensor: EncodedTensor, reference: ChunkSource?)
        case mapped(SafetensorsFile, TensorInfo)
    }

    /// Reads a stored tensor object.
    public init(store: ObjectStore, object: ObjectID) throws {
        let (_, tensor) = try store.open(object)
        let reference = try tensor.header.reference.map { try store.chunkSource(for: $0) }
        source = .object(id: object, tensor: tensor, reference: reference)
        dtype = tensor.header.dtype
        shape = tensor.header.shape
        byteCount = tensor.header.byteCount
        let chunk = max(1, min(tensor.header.chunkByteCount, byteCount))
        chunkBuffer = .allocate(byteCount: chunk, alignment: 64)
        scratch = .allocate(byteCount: (TensorEncoding.scratchFactor + 1) * chunk, alignment: 64)
        buffer = .allocate(byteCount: 1, alignment: 64)
        hasher = TensorHasher(dtype: dtype, shape: shape)
    }

    /// Reads a tensor of a mapped safetensors file.
    public init(file: SafetensorsFile, tensor: TensorInfo) {
        source = .mapped(file, tensor)
        dtype = tensor.dtype
        shape = tensor.shape
        byteCount = tensor.byteCount
        chunkBuffer = .allocate(byteCount: 1, alignment: 64)
        scratch = .allocate(byteCount: 1, alignment: 64)
        buffer = .allocate(byteCount: 1, alignment: 64)
        hasher = TensorHasher(dtype: dtype, shape: shape)
    }

    deinit {
        buffer.deallocate()
        scratch.deallocate()
        chunkBuffer.deallocate()
    }

    public var elementCount: Int { byteCount / dtype.byteSize }

    /// The bytes of `range`; valid until the next call.
    public func bytes(_ range: Range<Int>) throws -> UnsafeRawBufferPointer {
        precondition(range.lowerBound >= 0 && range.upperBound <= byteCount, "range within the tensor")
        let out: UnsafeRawBufferPointer
        switch source {
        case let .mapped(file, info):
            let all = file.data(of: info)
            out = UnsafeRawBufferPointer(rebasing: all[range])
            if range.lowerBound > releasedUpTo {
                file.release(info, range: releasedUpTo..<range.lowerBound)
                releasedUpTo = range.lowerBound
            }
        case let .object(_, tensor, reference):
            if buffer.count < range.count {
                buffer.deallocate()
                buffer = .allocate(byteCount: range.count, alignment: 64)
            }
            let chunkSize = tensor.header.chunkByteCount
            var position = range.lowerBound
            while position < range.upperBound {
                let index = position / chunkSize
                let chunkRange = tensor.header.chunkRange(index)
                if cachedChunk != index {
                    try tensor.decodeChunk(index, into: UnsafeMutableRawBufferPointer(rebasing: chunkBuffer[0..<chunkRange.count]),
                                           reference: reference, scratch: scratch)
                    cachedChunk = index
                }
                let end = min(range.upperBound, chunkRange.upperBound)
                let from = position - chunkRange.lowerBound
                (buffer.baseAddress! + (position - range.lowerBound))
                    .copyMemory(from: chunkBuffer.baseAddress! + from, byteCount: end - position)
                position = end
            }
            out = UnsafeRawBufferPointer(rebasing: buffer[0..<range.count])
        }
        if range.lowerBound == hashedUpTo {
            hasher.update(out)
            hashedUpTo = range.upperBound
        }
        return out
    }

    /// Verifies the identity of a stored tensor that was read from start to end.
    public func finish() throws {
        guard case let .object(id, _, _) = source, hashedUpTo == byteCount else { return }
        let digest = hasher.finalize()
        hashedUpTo = -1
        if digest != id {
            throw RepoError.corruptObject(object: id.short, problem: "decoded bytes hash to \(digest.short)")
        }
    }
}
