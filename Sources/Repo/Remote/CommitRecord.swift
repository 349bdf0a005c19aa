import Delta
import Foundation

/// A commit as it travels between repositories: the commit row, its tree's rows, and the index
/// rows of every object the commit needs (its tree's objects, the objects its `extra` names, and
/// all their delta references), in one canonical JSON document (docs/format.md, "Commit records").
///
/// The record is self-contained so that a receiver can record the commit before it has every
/// object file (a lazy clone), and canonical (sorted keys, no white space) so that the same commit
/// always gives the same bytes. The receiver trusts none of it: ``validate()`` recomputes the tree
/// id from the file rows and the commit id from the commit fields, and object rows are checked
/// against the object files whenever those arrive.
public struct CommitRecord: Sendable, Equatable, Codable {
    /// `format` of every record.
    public static let formatName = "mrepo-commit-record"
    /// The record version this build writes and the newest it reads.
    public static let currentVersion = 1

    public var format: String
    public var version: Int
    /// The commit id (64 hex digits), as every other id below.
    public var id: String
    public var tree: String
    public var parents: [String]
    public var base: String?
    public var author: String
    /// Seconds since 1970, as recorded (a multiple of 0.001).
    public var timestamp: Double
    public var message: String
    public var metrics: [Commit.Metric]
    /// The commit's `extra` as the compact JSON text that its id hashes (§3.4), kept as text so
    /// that no number is re-spelled on the way.
    public var extra: String
    public var files: [File]
    public var objects: [Object]

    /// One file of the tree (a `treeFile` row and its `treeTensor` rows).
    public struct File: Sendable, Equatable, Codable {
        public var path: String
        /// `blob` or `safetensors`.
        public var kind: String
        public var object: String
        public var size: Int
        public var executable: Bool
        /// The file's SHA-256, when recorded (§6.3).
        public var sha256: String?
        public var tensors: [Tensor]
    }

    /// One tensor of a safetensors file, in header order.
    public struct Tensor: Sendable, Equatable, Codable {
        public var name: String
        public var dtype: String
        public var shape: [Int]
        public var begin: Int
        public var end: Int
        public var object: String
    }

    /// One `object` row.
    public struct Object: Sendable, Equatable, Codable {
        public var id: String
        public var kind: Int
        public var encoding: Int
        public var reference: String?
        public var logicalBytes: Int
        public var storedBytes: Int
        public var depth: Int

        public init(_ info: ObjectInfo) {
            id = info.id.hex
            kind = Int(info.kind.rawValue)
            encoding = Int(info.encoding.rawValue)
            reference = info.reference?.hex
            logicalBytes = info.logicalByteCount
            storedBytes = info.storedByteCount
            depth = info.depth
        }
    }

    /// The record of a commit, its tree and the rows of the objects it needs (any order).
    public init(commit: Commit, tree: Tree, objects: [ObjectInfo]) {
        format = CommitRecord.formatName
        version = CommitRecord.currentVersion
        id = commit.id.hex
        self.tree = commit.treeID.hex
        // What the id hashes: a shallow boundary sends the parents it does not hold.
        parents = commit.hashedParents.map(\.hex)
        base = commit.hashedBase?.hex
        author = commit.author
        timestamp = commit.timestamp
        message = commit.message
        metrics = commit.metrics
        extra = commit.extra.serialized()
        files = tree.files.map { f in
            File(path: f.path, kind: f.kind.rawValue, object: f.objectID.hex, size: f.byteCount, executable: f.executable,
                 sha256: f.sha256?.hex,
                 tensors: f.tensors.map {
                     Tensor(name: $0.name, dtype: $0.dtype.rawValue, shape: $0.shape, begin: $0.dataOffsets.lowerBound,
                            end: $0.dataOffsets.upperBound, object: $0.objectID.hex)
                 })
        }
        self.objects = objects.sorted { ($0.depth, $0.id) < ($1.depth, $1.id) }.map(Object.init)
    }

    /// What a checked record holds.
    public struct Contents: Sendable {
        /// The commit; `generation` is 0 here: the receiver computes it from the parents it holds.
        public var commit: Commit
        public var tree: Tree
        public var objects: [ObjectInfo]
    }

    /// Parses the record's fields and recomputes its ids.
    /// - Throws: ``RepoError/corruptRecord(_:problem:)`` naming the commit and what is wrong.
    public func validate() throws -> Contents {
        let what = "commit record \(id.prefix(12))"
        func bad(_ problem: String) -> RepoError { .corruptRecord(what, problem: problem) }
        guard format == CommitRecord.formatName else { throw bad("not a commit record (format '\(format)')") }
        guard version <= CommitRecord.currentVersion, version >= 1 else {
            throw RepoError.unsupportedFormat(path: what, problem: "commit record version \(version) is newer than this mrepo understands (\(CommitRecord.currentVersion))")
        }
        func digest(_ hex: String, _ field: String) throws -> ObjectID {
            guard hex.count == 64, hex == hex.lowercased(), let d = ObjectID(hex: hex) else { throw bad("\(field) is not 64 lower-case hex digits") }
            return d
        }
        let commitID = try digest(id, "id")
        let treeID = try digest(tree, "tree")
        let parentIDs = try parents.map { try digest($0, "parent") }
        let baseID = try base.map { try digest($0, "base") }
        guard timestamp.isFinite, metrics.allSatisfy({ $0.value.isFinite }) else { throw bad("a time or metric is not a finite number") }
        let extraValue: JSONValue
        do {
            extraValue = try JSONValue.parse(Array(extra.utf8))
        } catch {
            throw bad("extra is not JSON (\(error))")
        }
        var treeFiles: [TreeFile] = []
        for f in files {
            guard let kind = TreeFile.Kind(rawValue: f.kind) else { throw bad("file '\(f.path)' has unknown kind '\(f.kind)'") }
            do {
                guard try PathPolicy.normalize(f.path) == f.path else { throw bad("unsafe path '\(f.path)'") }
            } catch let RepoError.unsafePath(path, reason) {
                // Not damage: a tree this mrepo will not take (a `.git` folder, say), said as such.
                throw RepoError.unsafePath(path, reason: "\(reason); \(what) is refused: its tree must not hold this path")
            }
            guard f.size >= 0 else { throw bad("file '\(f.path)' has a negative size") }
            let tensors = try f.tensors.map { t -> TreeTensor in
                guard let dtype = DType(rawValue: t.dtype) else { throw bad("tensor '\(t.name)' has unknown dtype '\(t.dtype)'") }
                guard t.begin >= 0, t.end >= t.begin, t.shape.allSatisfy({ $0 >= 0 }) else { throw bad("tensor '\(t.name)' has a bad shape or offsets") }
                return TreeTensor(name: t.name, dtype: dtype, shape: t.shape, dataOffsets: t.begin..<t.end, objectID: try digest(t.object, "tensor object"))
            }
            treeFiles.append(TreeFile(path: f.path, kind: kind, objectID: try digest(f.object, "file object"), byteCount: f.size,
                                      executable: f.executable, tensors: tensors, sha256: try f.sha256.map { try digest($0, "sha256") }))
        }
        guard Set(treeFiles.map(\.path)).count == treeFiles.count else { throw bad("two files share a path") }
        let treeValue = Tree(files: treeFiles)
        guard treeValue.id == treeID else { throw bad("its files hash to tree \(treeValue.id.short), not \(treeID.short)") }
        let recomputed = Commit.computeID(treeID: treeID, parents: parentIDs, base: baseID, author: author, timestamp: timestamp,
                                          message: message, metrics: metrics, extra: extraValue)
        guard recomputed == commitID else { throw bad("its fields hash to \(recomputed.short), not to its id") }
        var infos: [ObjectInfo] = []
        for o in objects {
            guard let kind = ObjectKind(rawValue: UInt8(clamping: o.kind)), let encoding = TensorEncoding(rawValue: UInt8(clamping: o.encoding)) else {
                throw bad("object \(o.id.prefix(12)) has an unknown kind or encoding")
            }
            guard o.logicalBytes >= 0, o.storedBytes >= 0, o.depth >= 0, o.depth <= ObjectStore.readableDepth else {
                throw bad("object \(o.id.prefix(12)) has impossible sizes or depth")
            }
            infos.append(ObjectInfo(id: try digest(o.id, "object id"), kind: kind, encoding: encoding,
                                    reference: try o.reference.map { try digest($0, "reference") },
                                    logicalByteCount: o.logicalBytes, storedByteCount: o.storedBytes, depth: o.depth))
        }
        // Self-contained: every object the tree names, and every reference, has a row here.
        let listed = Set(infos.map(\.id))
        for needed in treeValue.objectIDs where !listed.contains(needed) { throw bad("object \(needed.short) of its tree has no row") }
        for info in infos { if let r = info.reference, !listed.contains(r) { throw bad("reference \(r.short) of object \(info.id.short) has no row") } }
        let commit = Commit(id: commitID, treeID: treeID, parents: parentIDs, base: baseID, author: author, timestamp: timestamp,
                            message: message, metrics: metrics, extra: extraValue, generation: 0)
        return Contents(commit: commit, tree: treeValue, objects: infos)
    }

    /// The canonical bytes: JSON with sorted keys and no white space.
    public func encoded() -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Every field is a string, number, bool or array of them: encoding cannot fail.
        return (try? encoder.encode(self)) ?? Data()
    }

    /// Parses a record's bytes (`source` names where they came from, for the error).
    public static func decode(_ data: Data, source: String) throws -> CommitRecord {
        do {
            return try JSONDecoder().decode(CommitRecord.self, from: data)
        } catch {
            throw RepoError.corruptRecord("commit record from \(source)", problem: "not a valid record: \(error)")
        }
    }
}
