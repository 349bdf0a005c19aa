import Delta

/// Serialises a ``TreeFile`` for the stat cache and for `worktreeView.files` (docs/format.md §6):
/// `{"kind", "object", "size", "exec", "tensors"?, "sha256"?}`, each tensor as the array
/// `[name, dtype, shape, begin, end, object]`.
enum FileIdentityCoding {
    static func encode(_ file: TreeFile) -> String {
        do {
            return try JSONValueCoding.text(FileIdentity(file))
        } catch {
            preconditionFailure("a file identity always encodes (it holds no floating-point numbers): \(error)")
        }
    }

    /// The file, or nil when `text` does not decode. Callers decide what that means: a stat-cache
    /// entry that does not decode is a cache miss (the file is hashed again); a view's file names
    /// its row as corrupt.
    static func decode(_ text: String, path: String) -> TreeFile? {
        (try? JSONValueCoding.decode(FileIdentity.self, text: text))?.file(at: path)
    }
}

/// The stored form of a ``TreeFile`` without its path; members in the order written.
private struct FileIdentity: Codable {
    var kind: TreeFile.Kind
    var object: ObjectID
    var size: Int
    var exec: Bool
    var tensors: [TensorIdentity]?
    /// The file's SHA-256 when known, so a commit reusing this entry records it too.
    var sha256: ObjectID?

    init(_ file: TreeFile) {
        kind = file.kind
        object = file.objectID
        size = file.byteCount
        exec = file.executable
        tensors = file.tensors.isEmpty ? nil : file.tensors.map(TensorIdentity.init)
        sha256 = file.sha256
    }

    func file(at path: String) -> TreeFile {
        TreeFile(path: path, kind: kind, objectID: object, byteCount: size, executable: exec, tensors: (tensors ?? []).map(\.tensor),
                 sha256: sha256)
    }
}

/// A tensor as a six-element array: short, and the order never changes.
private struct TensorIdentity: Codable {
    var tensor: TreeTensor

    init(_ tensor: TreeTensor) { self.tensor = tensor }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.unkeyedContainer()
        try c.encode(tensor.name)
        try c.encode(tensor.dtype)
        try c.encode(tensor.shape)
        try c.encode(tensor.dataOffsets.lowerBound)
        try c.encode(tensor.dataOffsets.upperBound)
        try c.encode(tensor.objectID)
    }

    init(from decoder: any Decoder) throws {
        var c = try decoder.unkeyedContainer()
        let name = try c.decode(String.self), dtype = try c.decode(DType.self), shape = try c.decode(Shape.self)
        let begin = try c.decode(Int.self), end = try c.decode(Int.self), object = try c.decode(ObjectID.self)
        guard c.isAtEnd, begin <= end else {
            throw DecodingError.dataCorrupted(.init(codingPath: c.codingPath, debugDescription: "not [name, dtype, shape, begin, end, object]"))
        }
        tensor = TreeTensor(name: name, dtype: dtype, shape: shape, dataOffsets: begin..<end, objectID: object)
    }
}
