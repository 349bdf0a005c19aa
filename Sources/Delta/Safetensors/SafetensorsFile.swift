/// A safetensors file opened for reading: memory-mapped, header validated, one tensor at a time.
public final class SafetensorsFile: Sendable {
    /// The file's path on disk.
    public let path: String
    /// The name used in error messages (usually the path relative to the checkpoint folder).
    public let displayName: String
    public let map: MappedFile
    public let header: SafetensorsHeader
    private let byName: [String: Int]

    /// Maps and validates a safetensors file. Nothing else of the file is read.
    /// - Throws: ``DeltaError`` naming `displayName` and the fault.
    public init(path: String, displayName: String? = nil) throws(DeltaError) {
        self.path = path
        let name = displayName ?? path
        self.displayName = name
        map = try MappedFile(path: path)
        header = try SafetensorsHeader.parse(prefix: map.bytes, fileSize: map.count, file: name)
        var index: [String: Int] = [:]
        for (i, t) in header.tensors.enumerated() { index[t.name] = i }
        byName = index
    }

    /// The tensors in header order.
    public var tensors: [TensorInfo] { header.tensors }

    /// The tensor named `name`, or nil.
    public func tensor(named name: String) -> TensorInfo? {
        byName[name].map { header.tensors[$0] }
    }

    /// The raw bytes of the header: the length prefix, the JSON and its padding.
    public var headerBytes: UnsafeRawBufferPointer {
        map.bytes(in: 0..<header.dataStart)
    }

    /// File byte range of a tensor's data.
    public func fileRange(of tensor: TensorInfo) -> Range<Int> {
        (header.dataStart + tensor.dataOffsets.lowerBound)..<(header.dataStart + tensor.dataOffsets.upperBound)
    }

    /// A tensor's raw bytes, read from the mapping on demand.
    public func data(of tensor: TensorInfo) -> UnsafeRawBufferPointer {
        map.bytes(in: fileRange(of: tensor))
    }

    /// Drops a tensor's pages from this process's resident set once it has been processed.
    public func release(_ tensor: TensorInfo) {
        map.release(fileRange(of: tensor))
    }

    /// Drops a byte range (relative to the tensor's data) from the resident set.
    public func release(_ tensor: TensorInfo, range: Range<Int>) {
        let start = header.dataStart + tensor.dataOffsets.lowerBound
        map.release((start + range.lowerBound)..<(start + range.upperBound))
    }
}

/// Writes a new safetensors file tensor by tensor, atomically.
///
/// The header is written first (from the declared tensors), then each tensor's bytes in the
/// declared order. ``finish()`` syncs and renames the file into place; dropping the writer
/// before that deletes the temporary file.
public final class SafetensorsWriter {
    public let path: String
    public let infos: [TensorInfo]
    private let writer: AtomicFileWriter
    private var next = 0
    private var writtenInTensor = 0

    /// - Parameters:
    ///   - tensors: name, dtype and shape of each tensor in data order.
    ///   - metadata: the `__metadata__` map, or nil for none.
    public init(path: String, tensors: [(name: String, dtype: DType, shape: Shape)],
                metadata: [(key: String, value: String)]?) throws {
        self.path = path
        var seen = Set<String>()
        for t in tensors where !seen.insert(t.name).inserted {
            throw DeltaError.invalidTensor(file: path, tensor: t.name, problem: "declared twice")
        }
        let (bytes, infos) = SafetensorsHeader.encode(tensors: tensors, metadata: metadata)
        self.infos = infos
        writer = try AtomicFileWriter(destination: path)
        try writer.write(bytes)
    }

    /// The tensor whose bytes are expected next, or nil when all are written.
    public var pending: TensorInfo? { next < infos.count ? infos[next] : nil }

    /// Appends bytes of the current tensor (a tensor may be written in several pieces).
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var rest = bytes
        while rest.count > 0 {
            while next < infos.count, writtenInTensor == infos[next].byteCount {
                next += 1
                writtenInTensor = 0
            }
            guard next < infos.count else {
                throw DeltaError.invalidHeader(file: path, problem: "more bytes written than the header declares")
            }
            let take = min(rest.count, infos[next].byteCount - writtenInTensor)
            try writer.write(UnsafeRawBufferPointer(rebasing: rest[0..<take]))
            writtenInTensor += take
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
        }
    }

    /// Appends the bytes of an array.
    public func write(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { (raw) throws in try write(raw) }
    }

    /// Checks that every declared byte was written, then syncs and renames the file into place.
    public func finish() throws {
        while next < infos.count, writtenInTensor == infos[next].byteCount {
            next += 1
            writtenInTensor = 0
        }
        guard next == infos.count else {
            writer.abort()
            throw DeltaError.invalidTensor(file: path, tensor: infos[next].name, problem: "only \(writtenInTensor) of \(infos[next].byteCount) bytes written")
        }
        try writer.commit()
    }

    /// Writes a whole file from in-memory tensors.
    public static func write(path: String, tensors: [(name: String, dtype: DType, shape: Shape, bytes: [UInt8])],
                             metadata: [(key: String, value: String)]?) throws {
        let w = try SafetensorsWriter(path: path, tensors: tensors.map { ($0.name, $0.dtype, $0.shape) }, metadata: metadata)
        for t in tensors { try w.write(t.bytes) }
        try w.finish()
    }
}
