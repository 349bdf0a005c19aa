import Delta
import Merge
import Foundation

/// One tensor of a safetensors file in a tree.
public struct TreeTensor: Sendable, Equatable, Hashable {
    public var name: String
    public var dtype: DType
    public var shape: Shape
    /// Byte range of the tensor's data within the file's data section.
    public var dataOffsets: Range<Int>
    /// The tensor object.
    public var objectID: ObjectID

    public init(name: String, dtype: DType, shape: Shape, dataOffsets: Range<Int>, objectID: ObjectID) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataOffsets = dataOffsets
        self.objectID = objectID
    }

    public var byteCount: Int { dataOffsets.count }
}

/// One file of a tree.
public struct TreeFile: Sendable, Equatable {
    public enum Kind: String, Sendable, Codable {
        /// Any file, stored whole as a blob.
        case blob
        /// A safetensors file: its header bytes are a blob, each tensor is an object.
        case safetensors
    }

    /// Relative, normalised path (`model-00001-of-00002.safetensors`, `1_Pooling/config.json`).
    public var path: String
    public var kind: Kind
    /// The blob holding the file (blob) or the file's header bytes (safetensors).
    public var objectID: ObjectID
    /// Size of the file.
    public var byteCount: Int
    /// Whether the file has an executable bit.
    public var executable: Bool
    /// Tensors in header order (safetensors only).
    public var tensors: [TreeTensor]
    /// The SHA-256 of the file's bytes, when known: recorded at commit (`treeFile.sha256`) and
    /// checked whenever the file is rebuilt. Not part of the tree's id or of ``identity``, which
    /// the objects determine; nil in trees of older versions and where mrepo never had the bytes.
    public var sha256: Digest?

    public init(path: String, kind: Kind, objectID: ObjectID, byteCount: Int, executable: Bool, tensors: [TreeTensor] = [],
                sha256: Digest? = nil) {
        self.path = path
        self.kind = kind
        self.objectID = objectID
        self.byteCount = byteCount
        self.executable = executable
        self.tensors = tensors
        self.sha256 = sha256
    }

    /// A digest of everything that makes up the file: equal identities mean byte-identical files.
    public var identity: String {
        var text = "\(kind.rawValue):\(objectID.hex):\(byteCount):\(executable ? 1 : 0)"
        for t in tensors { text += ":" + t.objectID.hex }
        return SHA256.hash(Array(text.utf8)).hex
    }
}

/// The content of a commit: files by path.
public struct Tree: Sendable, Equatable {
    /// Files sorted by path.
    public private(set) var files: [TreeFile]

    public init(files: [TreeFile]) {
        self.files = files.sorted { $0.path < $1.path }
    }

    public static let empty = Tree(files: [])

    public func file(at path: String) -> TreeFile? {
        files.first { $0.path == path }
    }

    /// The tree with the SHA-256 of files it lacks filled in from `known` (files with the same
    /// identity, hence the same bytes).
    func fillingDigests(from known: [TreeFile]) -> Tree {
        var digests: [String: Digest] = [:]
        for f in known { if let d = f.sha256 { digests[f.identity] = d } }
        guard !digests.isEmpty else { return self }
        var copy = self
        for i in copy.files.indices where copy.files[i].sha256 == nil {
            copy.files[i].sha256 = digests[copy.files[i].identity]
        }
        return copy
    }

    /// Total size of the files.
    public var logicalByteCount: Int { files.reduce(0) { $0 + $1.byteCount } }
    public var tensorCount: Int { files.reduce(0) { $0 + $1.tensors.count } }

    /// Every tensor with the file that holds it.
    public var allTensors: [(path: String, tensor: TreeTensor)] {
        files.flatMap { f in f.tensors.map { (f.path, $0) } }
    }

    /// The model's tensors by name (statistics files, `mrepo_stats/`, are not the model's). When
    /// two files hold a tensor of the same name, the first file (by path) wins.
    public var tensorsByName: [String: TreeTensor] {
        var out: [String: TreeTensor] = [:]
        for f in files where !StatisticsLayout.isStatistics(f.path) {
            for t in f.tensors where out[t.name] == nil { out[t.name] = t }
        }
        return out
    }

    /// Tensor names that more than one file holds (`tensors`: each tensor's file and name), such
    /// as two text encoders' `q.weight`: tensors can be paired by name across trees (a re-shard
    /// moves them between files) except these, which are paired by file too (``pairingKey(path:name:shared:)``).
    public static func namesInSeveralFiles(_ tensors: some Sequence<(path: String, name: String)>) -> Set<String> {
        var fileOf: [String: String] = [:], shared = Set<String>()
        for t in tensors {
            if let other = fileOf[t.name], other != t.path { shared.insert(t.name) } else { fileOf[t.name] = t.path }
        }
        return shared
    }

    /// What pairs a tensor with its counterpart in another tree: its name, or its file and name for
    /// a name in `shared` (``namesInSeveralFiles(_:)``).
    public static func pairingKey(path: String, name: String, shared: Set<String>) -> String {
        shared.contains(name) ? path + "\u{0}" + name : name
    }

    /// Every object the tree refers to directly (headers, blobs, tensors).
    public var objectIDs: Set<ObjectID> {
        var ids = Set<ObjectID>()
        for f in files {
            ids.insert(f.objectID)
            for t in f.tensors { ids.insert(t.objectID) }
        }
        return ids
    }

    /// The tree's identity: SHA-256 of its canonical listing (docs/format.md §3.3).
    public var id: ObjectID {
        let sha = SHA256()
        sha.update("mrepo-tree v1\n")
        // Names are written as JSON strings, so no name can forge a line break of the listing.
        for f in files {
            sha.update("file \(f.kind.rawValue) \(f.executable ? "755" : "644") \(f.byteCount) \(f.objectID.hex) \(JSONValue.string(f.path).serialized())\n")
            for t in f.tensors {
                sha.update("tensor \(t.dtype.rawValue) \(t.shape.map(String.init).joined(separator: ",")) \(t.dataOffsets.lowerBound) \(t.dataOffsets.upperBound) \(t.objectID.hex) \(JSONValue.string(t.name).serialized())\n")
            }
        }
        return sha.finalize()
    }
}

extension TreeTensor: PlacedTensor {}
