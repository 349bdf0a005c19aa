/// One tensor entry of a safetensors header.
public struct TensorInfo: Sendable, Hashable {
    /// The tensor's name, e.g. `encoder.layer.0.attention.self.query.weight`.
    public var name: String
    public var dtype: DType
    public var shape: Shape
    /// Byte range of the tensor's data, relative to the start of the data section.
    public var dataOffsets: Range<Int>

    public init(name: String, dtype: DType, shape: Shape, dataOffsets: Range<Int>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataOffsets = dataOffsets
    }

    /// Number of data bytes.
    public var byteCount: Int { dataOffsets.count }
    /// Number of elements (`byteCount / dtype.byteSize`).
    public var elementCount: Int { dataOffsets.count / dtype.byteSize }
}

/// The parsed and validated header of a safetensors file.
///
/// Layout of the format: an 8-byte little-endian header length `n`, `n` bytes of UTF-8 JSON
/// (padded with spaces), then the data section. Every byte of the data section belongs to
/// exactly one tensor.
public struct SafetensorsHeader: Sendable, Equatable {
    /// Tensors in the order the header lists them.
    public var tensors: [TensorInfo]
    /// The `__metadata__` map in header order, or nil when the header has none.
    public var metadata: [(key: String, value: String)]?
    /// `n`: the JSON text plus its padding.
    public var headerByteCount: Int
    /// Size of the data section.
    public var dataByteCount: Int

    /// The largest header mrepo accepts, as the reference implementation does (100 MB).
    public static let maxHeaderByteCount = 100_000_000

    /// File offset where the data section begins.
    public var dataStart: Int { 8 + headerByteCount }
    /// Size of the whole file this header describes.
    public var fileByteCount: Int { dataStart + dataByteCount }
    /// Tensors in the order of their data in the file.
    public var tensorsInDataOrder: [TensorInfo] { tensors.inDataOrder() }

    /// The order of tensors' data in a file: by start, and an empty tensor before the tensor that
    /// starts where it sits (`[8, 8]` before `[8, 20]`). By start alone, a header listing the
    /// empty tensor after the other put it after, where the other's bytes were expected.
    public static func precedesInData(_ a: Range<Int>, _ b: Range<Int>) -> Bool {
        (a.lowerBound, a.upperBound) < (b.lowerBound, b.upperBound)
    }

    public static func == (a: SafetensorsHeader, b: SafetensorsHeader) -> Bool {
        a.tensors == b.tensors && a.headerByteCount == b.headerByteCount && a.dataByteCount == b.dataByteCount
            && a.metadata?.map(\.key) == b.metadata?.map(\.key) && a.metadata?.map(\.value) == b.metadata?.map(\.value)
    }

    /// Reads the header length from the first 8 bytes of a file.
    ///
    /// - Parameters:
    ///   - first8: at least the first 8 bytes of the file.
    ///   - fileSize: the file's size in bytes.
    ///   - file: the name used in error messages.
    /// - Returns: `n`, the byte count of the JSON header that follows.
    public static func headerLength(first8: UnsafeRawBufferPointer, fileSize: Int, file: String) throws(DeltaError) -> Int {
        guard fileSize >= 8 else {
            throw .invalidHeader(file: file, problem: "file is \(fileSize) bytes, too short for a safetensors header (needs at least 8)")
        }
        // The file is long enough but the caller read less of it (a short read).
        guard first8.count >= 8 else { throw .truncatedData(file: file, expected: 8, actual: first8.count) }
        var length: UInt64 = 0
        for i in (0..<8).reversed() { length = length << 8 | UInt64(first8[i]) }
        guard length <= UInt64(maxHeaderByteCount) else {
            throw .invalidHeader(file: file, problem: notSafetensors(first8) ?? "header length \(length) exceeds the \(maxHeaderByteCount)-byte limit")
        }
        guard Int(length) <= fileSize - 8 else {
            // Not looked at as another format: a truncated safetensors file's length bytes can look
            // like one (640 is stored as 80 02 00 ..., a pickle's first bytes).
            throw .invalidHeader(file: file, problem: "header length \(length) runs past the end of the file (\(fileSize) bytes)")
        }
        guard length >= 2 else {
            throw .invalidHeader(file: file, problem: "header length \(length) is too short for a JSON object")
        }
        return Int(length)
    }

    /// What a file whose first bytes make no header length looks like instead, for the error: a
    /// PyTorch checkpoint (a zip archive, or a bare pickle), or text such as JSON; nil if nothing
    /// is recognised.
    static func notSafetensors(_ first8: UnsafeRawBufferPointer) -> String? {
        let b = Array(first8.prefix(8))
        if b.starts(with: [0x50, 0x4B, 0x03, 0x04]) { return "not a safetensors file: it is a zip archive (a PyTorch .bin or .pt checkpoint?)" }
        if b.first == 0x80, b.count > 1, (2...5).contains(b[1]) { return "not a safetensors file: it is a Python pickle (a PyTorch checkpoint?)" }
        if b.starts(with: Array("GGUF".utf8)) { return "not a safetensors file: it is a GGUF file" }
        let text = b.allSatisfy { $0 == 0x09 || $0 == 0x0A || $0 == 0x0D || (0x20..<0x7F).contains($0) }
        if text { return "not a safetensors file: it begins like text (\(b.first == UInt8(ascii: "{") || b.first == UInt8(ascii: "[") ? "JSON" : "'\(String(decoding: b, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))…'"))" }
        return nil
    }

    /// Parses and validates a header.
    ///
    /// Rejects, with a one-line error naming `file`: an oversized or truncated header, JSON that is
    /// invalid or has duplicate keys, a tensor name holding a control character (U+0000–U+001F,
    /// U+007F), an unknown dtype, a shape or offsets that are not
    /// non-negative integers, a byte length that disagrees with dtype × shape, offsets outside
    /// the data section, overlapping tensors, and data bytes that belong to no tensor.
    ///
    /// - Parameters:
    ///   - prefix: the file's first `8 + n` bytes (or more).
    ///   - fileSize: the file's size in bytes.
    ///   - file: the name used in error messages.
    public static func parse(prefix: UnsafeRawBufferPointer, fileSize: Int, file: String) throws(DeltaError) -> SafetensorsHeader {
        let n = try headerLength(first8: prefix, fileSize: fileSize, file: file)
        guard prefix.count >= 8 + n else {
            throw .truncatedData(file: file, expected: 8 + n, actual: prefix.count)
        }
        let jsonBytes = UnsafeRawBufferPointer(rebasing: prefix[8..<(8 + n)])
        guard jsonBytes.first == UInt8(ascii: "{") else {
            throw .invalidHeader(file: file, problem: "header does not start with '{'")
        }
        let root: JSONValue
        do {
            root = try JSONValue.parse(jsonBytes)
        } catch {
            throw .invalidHeader(file: file, problem: "header is not valid JSON: \(error.message) at byte \(8 + error.offset)")
        }
        guard let members = root.objectValue else {
            throw .invalidHeader(file: file, problem: "header is not a JSON object")
        }
        let dataByteCount = fileSize - 8 - n
        var tensors: [TensorInfo] = []
        tensors.reserveCapacity(members.count)
        var metadata: [(key: String, value: String)]?
        for member in members {
            if member.key == "__metadata__" {
                guard let entries = member.value.objectValue else {
                    throw .invalidHeader(file: file, problem: "__metadata__ is not an object of strings")
                }
                var pairs: [(key: String, value: String)] = []
                for entry in entries {
                    guard let text = entry.value.stringValue else {
                        throw .invalidHeader(file: file, problem: "__metadata__ value for '\(entry.key)' is not a string")
                    }
                    pairs.append((entry.key, text))
                }
                metadata = pairs
                continue
            }
            tensors.append(try parseTensor(member, dataByteCount: dataByteCount, file: file))
        }
        try checkCoverage(tensors, dataByteCount: dataByteCount, file: file)
        return SafetensorsHeader(tensors: tensors, metadata: metadata, headerByteCount: n, dataByteCount: dataByteCount)
    }

    private static func parseTensor(_ member: JSONMember, dataByteCount: Int, file: String) throws(DeltaError) -> TensorInfo {
        let name = member.key
        func bad(_ problem: String) -> DeltaError { .invalidTensor(file: file, tensor: name, problem: problem) }
        // SQLite keeps a TEXT value only up to a NUL, and a line break would split every listing
        // and error that names the tensor: such names are refused, shown escaped.
        if let c = DisplayText.firstControlCharacter(in: name) {
            throw .invalidTensor(file: file, tensor: DisplayText.escaping(name),
                                 problem: "tensor names must not contain control characters (found \(DisplayText.codePoint(c)))")
        }
        guard member.value.objectValue != nil else { throw bad("entry is not an object") }
        guard let dtypeText = member.value["dtype"]?.stringValue else { throw bad("missing 'dtype'") }
        guard let dtype = DType(rawValue: dtypeText) else { throw bad("unknown dtype '\(dtypeText)'") }
        guard let shapeItems = member.value["shape"]?.arrayValue else { throw bad("missing 'shape'") }
        var shape: Shape = []
        for item in shapeItems {
            guard let dim = item.intValue, dim >= 0 else { throw bad("shape must be a list of non-negative integers") }
            shape.append(dim)
        }
        // Object headers store the rank in one byte (EncodedTensorHeader).
        guard shape.count <= 255 else { throw bad("shape has \(shape.count) dimensions; at most 255 are supported") }
        guard let offsets = member.value["data_offsets"]?.arrayValue else { throw bad("missing 'data_offsets'") }
        guard offsets.count == 2, let begin = offsets[0].intValue, let end = offsets[1].intValue,
              begin >= 0, end >= begin
        else { throw bad("data_offsets must be two integers [begin, end] with 0 <= begin <= end") }
        guard let count = shape.elementCount else { throw bad("shape \(shape.shapeDescription) overflows") }
        let (expected, overflow) = count.multipliedReportingOverflow(by: dtype.byteSize)
        guard !overflow else { throw bad("shape \(shape.shapeDescription) overflows") }
        guard end - begin == expected else {
            throw bad("byte length \(end - begin) does not match \(dtype.rawValue) × \(shape.shapeDescription) = \(expected) bytes")
        }
        guard end <= dataByteCount else {
            throw bad("data ends at byte \(end), data section has \(dataByteCount)")
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end)
    }

    private static func checkCoverage(_ tensors: [TensorInfo], dataByteCount: Int, file: String) throws(DeltaError) {
        let ordered = tensors.sorted {
            ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound)
        }
        var covered = 0
        var previous: TensorInfo?
        for tensor in ordered {
            let range = tensor.dataOffsets
            if range.lowerBound < covered, let prev = previous {
                throw .invalidTensor(file: file, tensor: tensor.name,
                                     problem: "bytes \(range.lowerBound)..<\(range.upperBound) overlap tensor '\(prev.name)' (bytes \(prev.dataOffsets.lowerBound)..<\(prev.dataOffsets.upperBound))")
            }
            if range.lowerBound > covered {
                throw .invalidHeader(file: file, problem: "data bytes \(covered)..<\(range.lowerBound) belong to no tensor")
            }
            if !range.isEmpty || previous == nil {
                previous = tensor
            }
            covered = max(covered, range.upperBound)
        }
        if covered != dataByteCount {
            throw .invalidHeader(file: file, problem: "data bytes \(covered)..<\(dataByteCount) belong to no tensor")
        }
    }

    /// Builds the bytes of a header (length prefix, JSON, space padding to a multiple of 8).
    ///
    /// Tensors are laid out in the order given, each directly after the previous one.
    /// - Parameters:
    ///   - tensors: name, dtype and shape of each tensor, in data order.
    ///   - metadata: the `__metadata__` map, written first when present.
    /// - Returns: the header bytes and the tensor infos with their data offsets.
    public static func encode(tensors: [(name: String, dtype: DType, shape: Shape)],
                              metadata: [(key: String, value: String)]?) -> (bytes: [UInt8], infos: [TensorInfo]) {
        var members: [JSONMember] = []
        if let metadata {
            members.append(JSONMember("__metadata__", .object(metadata.map { JSONMember($0.key, .string($0.value)) })))
        }
        var infos: [TensorInfo] = []
        var offset = 0
        for t in tensors {
            let bytes = (t.shape.elementCount ?? 0) * t.dtype.byteSize
            let info = TensorInfo(name: t.name, dtype: t.dtype, shape: t.shape, dataOffsets: offset..<(offset + bytes))
            infos.append(info)
            members.append(JSONMember(t.name, .object([
                JSONMember("dtype", .string(t.dtype.rawValue)),
                JSONMember("shape", .array(t.shape.map { .int($0) })),
                JSONMember("data_offsets", .array([.int(info.dataOffsets.lowerBound), .int(info.dataOffsets.upperBound)])),
            ])))
            offset += bytes
        }
        var json = Array(JSONValue.object(members).serialized().utf8)
        while (8 + json.count) % 8 != 0 { json.append(0x20) }
        var out = [UInt8]()
        out.reserveCapacity(8 + json.count)
        var n = UInt64(json.count)
        for _ in 0..<8 { out.append(UInt8(n & 0xFF)); n >>= 8 }
        out.append(contentsOf: json)
        return (out, infos)
    }
}

/// A tensor placed in a safetensors file's data section.
public protocol PlacedTensor {
    var dataOffsets: Range<Int> { get }
}

extension TensorInfo: PlacedTensor {}

extension Sequence where Element: PlacedTensor {
    /// In the order of their data in the file (``SafetensorsHeader/precedesInData(_:_:)``).
    public func inDataOrder() -> [Element] {
        sorted { SafetensorsHeader.precedesInData($0.dataOffsets, $1.dataOffsets) }
    }
}
