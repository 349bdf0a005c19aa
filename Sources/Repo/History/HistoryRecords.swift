import Delta
import GRDB

// The rows of the history database as GRDB records (docs/format.md §6). Each turns its row into the
// domain value, checking what the schema cannot: ids are 64 hex digits, kinds and dtypes are known.
// A row that fails throws ``RepoError/corruptRecord(_:problem:)`` naming its table and key; it
// never reads as absent and never stops the process.

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
struct CommitRow: FetchableRecord {
    var commit: Commit

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
struct CommitParentRow: FetchableRecord {
    var commit: ObjectID
    var parent: ObjectID

    init(row: Row) throws {
        let r = RowReader(row: row, table: "commitParent", key: row.keyText("commitID"))
        commit = try r.id("commitID")
        parent = try r.id("parentID")
    }
}

/// A row of `ref`.
struct RefRow: FetchableRecord {
    var ref: Ref

    init(row: Row) throws {
        let r = RowReader(row: row, table: "ref", key: row.keyText("name"))
        ref = Ref(name: try r.value("name"), kind: try r.raw("kind", as: Ref.Kind.self), target: try r.id("commitID"),
                  message: try r.value("message"), timestamp: try r.value("timestamp"))
    }
}

/// A row of `treeTensor`, with the path of its file.
struct TreeTensorRow: FetchableRecord {
    var path: String
    var tensor: TreeTensor

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
struct TreeFileRow: FetchableRecord {
    var file: TreeFile

    init(row: Row) throws {
        let r = RowReader(row: row, table: "treeFile", key: row.keyText("treeID"))
        let executable: Int = try r.value("executable")
        file = TreeFile(path: try r.value("path"), kind: try r.raw("kind", as: TreeFile.Kind.self), objectID: try r.id("objectID"),
                        byteCount: try r.value("byteCount"), executable: executable != 0, tensors: [],
                        sha256: try r.optionalID("sha256"))
    }
}

/// A row of `object`.
struct ObjectRow: FetchableRecord {
    var info: ObjectInfo

    init(row: Row) throws {
        let r = RowReader(row: row, table: "object", key: row.keyText("id"))
        let kind: Int = try r.value("kind"), encoding: Int = try r.value("encoding")
        guard let k = UInt8(exactly: kind).flatMap(ObjectKind.init(rawValue:)) else { throw r.corrupt("unknown object kind \(kind)") }
        guard let e = UInt8(exactly: encoding).flatMap(TensorEncoding.init(rawValue:)) else { throw r.corrupt("unknown encoding \(encoding)") }
        info = ObjectInfo(id: try r.id("id"), kind: k, encoding: e, reference: try r.optionalID("referenceID"),
                          logicalByteCount: try r.value("logicalBytes"), storedByteCount: try r.value("storedBytes"), depth: try r.value("depth"))
    }
}
