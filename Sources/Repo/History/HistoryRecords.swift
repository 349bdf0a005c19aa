import Delta
import GRDB
import Merge

// The rows of the history database as GRDB records (docs/format.md §6): `FetchableRecord` to read,
// `PersistableRecord` to insert. Reading turns a row into the domain value, checking what the schema
// cannot: ids are 64 hex digits, kinds and dtypes are known. A row that fails throws
// ``RepoError/corruptRecord(_:problem:)`` naming its table and key; it never reads as absent and
// never stops the process. Writing spells each column as format.md §6 documents it.

/// Decoding one column, with the table and key of the row in the error.
struct RowReader {
    let row: Row
    let table: String
    let key: String

    func corrupt(_ problem: String) -> RepoError {
        .corruptRecord("\(table) row \(key)", problem: problem)
    }

    func value<T: DatabaseValueConvertible>(_ column: String, _: T.Type = T.self) throws -> T {
        do {
            return try row.decode(T.self, forColumn: column)
        } catch {
            throw corrupt("column \(column): \(error)")
        }
    }

    func id(_ column: String) throws -> ObjectID {
        let text: String = try value(column)
        guard let id = ObjectID(hex: text) else { throw corrupt("column \(column) holds '\(text.prefix(80))', not an object id") }
        return id
    }

    func optionalID(_ column: String) throws -> ObjectID? {
        guard let text: String = try value(column, String?.self) else { return nil }
        guard let id = ObjectID(hex: text) else { throw corrupt("column \(column) holds '\(text.prefix(80))', not an object id") }
        return id
    }

    /// The `Codable` record a JSON column holds (`text` is the column's value).
    func json<T: Decodable>(_: T.Type, column: String, text: String) throws -> T {
        do {
            return try JSONValueCoding.decode(T.self, text: text)
        } catch {
            throw corrupt("column \(column): \(StoredRecord.problem(error))")
        }
    }

    func raw<T: RawRepresentable>(_ column: String, as _: T.Type) throws -> T where T.RawValue: DatabaseValueConvertible {
        let v: T.RawValue = try value(column)
        guard let out = T(rawValue: v) else { throw corrupt("column \(column) holds an unknown value \(v)") }
        return out
    }
}

extension Row {
    /// The key column's text, for error messages (whatever it holds).
    func keyText(_ column: String) -> String {
        ((try? decode(String?.self, forColumn: column)) ?? nil).map { String($0.prefix(16)) } ?? "?"
    }
}

/// A row of `commit` with its parents (from `commitParent`).
struct CommitRow: FetchableRecord, PersistableRecord {
    static let databaseTableName = "commit"
    var commit: Commit

    init(_ commit: Commit) {
        self.commit = commit
    }

    func encode(to container: inout PersistenceContainer) {
        container["id"] = commit.id.hex
        container["treeID"] = commit.treeID.hex
        container["baseID"] = commit.base?.hex
        container["author"] = commit.author
        container["timestamp"] = commit.timestamp
        container["message"] = commit.message
        // Metrics and extra are stored in the spelling their commit id hashes (format.md §3.4).
        container["metrics"] = JSONValue.object(commit.metrics.map { JSONMember($0.name, .double($0.value)) }).serialized()
        container["extra"] = commit.extra.serialized()
        container["generation"] = commit.generation
    }

    init(row: Row) throws {
        try self.init(row: row, parents: [])
    }

    init(row: Row, parents: [ObjectID]) throws {
        let r = RowReader(row: row, table: "commit", key: row.keyText("id"))
        let metricsText: String = try r.value("metrics")
        let extraText: String = try r.value("extra")
        let metrics: [Commit.Metric]
        do {
            guard case let .object(members) = try JSONValue.parse(Array(metricsText.utf8)) else { throw r.corrupt("metrics is not a JSON object") }
            metrics = try members.map { m in
                guard let v = m.value.doubleValue else { throw r.corrupt("metric '\(m.key)' is not a number") }
                return Commit.Metric(name: m.key, value: v)
            }
        } catch let error as RepoError {
            throw error
        } catch {
            throw r.corrupt("metrics: \(error)")
        }
        // `extra` stays a value: its bytes are hashed; its members decode through ``Commit/record(_:)``.
        let extra: JSONValue
        do {
            extra = try JSONValue.parse(Array(extraText.utf8))
        } catch {
            throw r.corrupt("extra: \(error)")
        }
        guard case .object = extra else { throw r.corrupt("extra is not a JSON object") }
        commit = Commit(id: try r.id("id"), treeID: try r.id("treeID"), parents: parents, base: try r.optionalID("baseID"),
                        author: try r.value("author"), timestamp: try r.value("timestamp"), message: try r.value("message"),
                        metrics: metrics, extra: extra, generation: try r.value("generation"))
    }
}

/// A row of `commitParent`.
struct CommitParentRow: FetchableRecord, PersistableRecord {
    static let databaseTableName = "commitParent"
    var commit: ObjectID
    /// Nil when the query did not select it.
    var position: Int?
    var parent: ObjectID

    init(commit: ObjectID, position: Int, parent: ObjectID) {
        self.commit = commit
        self.position = position
        self.parent = parent
    }

    init(row: Row) throws {
        let r = RowReader(row: row, table: "commitParent", key: row.keyText("commitID"))
        commit = try r.id("commitID")
        position = try r.value("position", Int?.self)
        parent = try r.id("parentID")
    }

    func encode(to container: inout PersistenceContainer) {
        container["commitID"] = commit.hex
        container["position"] = position
        container["parentID"] = parent.hex
    }
}

/// A row of `ref`.
struct RefRow: FetchableRecord, PersistableRecord {
    static let databaseTableName = "ref"
    var ref: Ref

    init(_ ref: Ref) {
        self.ref = ref
    }

    func encode(to container: inout PersistenceContainer) {
        container["name"] = ref.name
        container["kind"] = ref.kind.rawValue
        container["commitID"] = ref.target.hex
        container["message"] = ref.message
        container["timestamp"] = ref.timestamp
    }

    init(row: Row) throws {
        let r = RowReader(row: row, table: "ref", key: row.keyText("name"))
        ref = Ref(name: try r.value("name"), kind: try r.raw("kind", as: Ref.Kind.self), target: try r.id("commitID"),
                  message: try r.value("message"), timestamp: try r.value("timestamp"))
    }
}

/// A row of `treeTensor`, with the path of its file.
struct TreeTensorRow: FetchableRecord, PersistableRecord {
    static let databaseTableName = "treeTensor"
    /// Only written (reads select one tree's rows).
    var treeID: ObjectID?
    var path: String
    var position = 0
    var tensor: TreeTensor

    init(tree: ObjectID, path: String, position: Int, tensor: TreeTensor) {
        treeID = tree
        self.path = path
        self.position = position
        self.tensor = tensor
    }

    func encode(to container: inout PersistenceContainer) {
        container["treeID"] = treeID?.hex
        container["path"] = path
        container["position"] = position
        container["name"] = tensor.name
        container["dtype"] = tensor.dtype.rawValue
        container["shape"] = tensor.shape.map(String.init).joined(separator: ",")
        container["beginOffset"] = tensor.dataOffsets.lowerBound
        container["endOffset"] = tensor.dataOffsets.upperBound
        container["objectID"] = tensor.objectID.hex
    }

    init(row: Row) throws {
        let r = RowReader(row: row, table: "treeTensor", key: row.keyText("treeID"))
        let shapeText: String = try r.value("shape")
        var shape: [Int] = []
        if !shapeText.isEmpty {
            for part in shapeText.split(separator: ",", omittingEmptySubsequences: false) {
                guard let n = Int(part), n >= 0 else { throw r.corrupt("shape '\(shapeText.prefix(80))' is not a list of sizes") }
                shape.append(n)
            }
        }
        let begin: Int = try r.value("beginOffset"), end: Int = try r.value("endOffset")
        guard begin >= 0, begin <= end else { throw r.corrupt("data offsets \(begin)..<\(end) are not a range") }
        path = try r.value("path")
        tensor = TreeTensor(name: try r.value("name"), dtype: try r.raw("dtype", as: DType.self), shape: shape,
                            dataOffsets: begin..<end, objectID: try r.id("objectID"))
    }
}

/// A row of `treeFile`; its tensors come from `treeTensor`.
struct TreeFileRow: FetchableRecord, PersistableRecord {
    static let databaseTableName = "treeFile"
    /// Only written (reads select one tree's rows).
    var treeID: ObjectID?
    var file: TreeFile

    init(tree: ObjectID, file: TreeFile) {
        treeID = tree
        self.file = file
    }

    func encode(to container: inout PersistenceContainer) {
        container["treeID"] = treeID?.hex
        container["path"] = file.path
        container["kind"] = file.kind.rawValue
        container["objectID"] = file.objectID.hex
        container["byteCount"] = file.byteCount
        container["executable"] = file.executable ? 1 : 0
        container["sha256"] = file.sha256?.hex
    }

    init(row: Row) throws {
        let r = RowReader(row: row, table: "treeFile", key: row.keyText("treeID"))
        let executable: Int = try r.value("executable")
        file = TreeFile(path: try r.value("path"), kind: try r.raw("kind", as: TreeFile.Kind.self), objectID: try r.id("objectID"),
                        byteCount: try r.value("byteCount"), executable: executable != 0, tensors: [],
                        sha256: try r.optionalID("sha256"))
    }
}

/// A row of `object`.
struct ObjectRow: FetchableRecord, PersistableRecord {
    static let databaseTableName = "object"
    var info: ObjectInfo

    init(_ info: ObjectInfo) {
        self.info = info
    }

    func encode(to container: inout PersistenceContainer) {
        container["id"] = info.id.hex
        container["kind"] = Int(info.kind.rawValue)
        container["encoding"] = Int(info.encoding.rawValue)
        container["referenceID"] = info.reference?.hex
        container["logicalBytes"] = info.logicalByteCount
        container["storedBytes"] = info.storedByteCount
        container["depth"] = info.depth
        container["crc32c"] = info.checksum.map { Int64($0) }
    }

    init(row: Row) throws {
        let r = RowReader(row: row, table: "object", key: row.keyText("id"))
        let kind: Int = try r.value("kind"), encoding: Int = try r.value("encoding")
        guard let k = UInt8(exactly: kind).flatMap(ObjectKind.init(rawValue:)) else { throw r.corrupt("unknown object kind \(kind)") }
        guard let e = UInt8(exactly: encoding).flatMap(TensorEncoding.init(rawValue:)) else { throw r.corrupt("unknown encoding \(encoding)") }
        info = ObjectInfo(id: try r.id("id"), kind: k, encoding: e, reference: try r.optionalID("referenceID"),
                          logicalByteCount: try r.value("logicalBytes"), storedByteCount: try r.value("storedBytes"), depth: try r.value("depth"))
        if let crc = row["crc32c"] as Int64? {
            guard let c = UInt32(exactly: crc) else { throw r.corrupt("crc32c \(crc) is out of range") }
            info.checksum = c
        }
    }
}

/// A row of `tree`: its id and the totals of its files (only written; trees are read by file).
struct TreeRow: PersistableRecord {
    static let databaseTableName = "tree"
    var tree: Tree

    func encode(to container: inout PersistenceContainer) {
        container["id"] = tree.id.hex
        container["fileCount"] = tree.files.count
        container["tensorCount"] = tree.tensorCount
        container["logicalBytes"] = tree.logicalByteCount
    }
}

/// A row of `reflog`.
struct ReflogRow: FetchableRecord, PersistableRecord {
    static let databaseTableName = "reflog"
    var entry: ReflogEntry

    init(_ entry: ReflogEntry) {
        self.entry = entry
    }

    init(row: Row) throws {
        let r = RowReader(row: row, table: "reflog", key: row.keyText("id"))
        entry = ReflogEntry(ref: try r.value("ref"), old: try r.optionalID("oldID"), new: try r.optionalID("newID"),
                            timestamp: try r.value("timestamp"), message: try r.value("message"))
    }

    func encode(to container: inout PersistenceContainer) {
        container["ref"] = entry.ref
        container["oldID"] = entry.old?.hex
        container["newID"] = entry.new?.hex
        container["timestamp"] = entry.timestamp
        container["message"] = entry.message
    }
}

/// A row of `statCache`: one working tree's entry for one file.
struct StatCacheRow: FetchableRecord, PersistableRecord {
    static let databaseTableName = "statCache"
    var worktree: String
    var entry: StatCacheEntry

    init(worktree: String, entry: StatCacheEntry) {
        self.worktree = worktree
        self.entry = entry
    }

    init(row: Row) throws {
        worktree = try RowReader(row: row, table: "statCache", key: row.keyText("path")).value("worktree")
        entry = try StatCacheEntry(row: row)
    }

    func encode(to container: inout PersistenceContainer) {
        container["worktree"] = worktree
        container["path"] = entry.path
        container["size"] = entry.size
        container["mtimeNs"] = entry.mtimeNs
        container["ctimeNs"] = entry.ctimeNs
        container["inode"] = Int64(bitPattern: entry.inode)
        container["device"] = Int64(bitPattern: entry.device)
        container["recordedNs"] = entry.recordedNs
        container["identity"] = entry.identity
    }
}
