import Delta
import GRDB

/// The SHA-256 of each file of a tree (`treeFile.sha256`, docs/format.md §6.3): recorded at commit,
/// checked whenever a file is rebuilt. Not part of the tree id, so it changes no id.
extension HistoryDatabase {
    /// The SHA-256 recorded for a file of another tree with the same identity (the same objects,
    /// hence the same bytes), if any.
    static func knownDigest(_ db: Database, of file: TreeFile) throws -> Digest? {
        let rows = try Row.fetchAll(db, sql: """
            SELECT treeID, path, sha256 FROM treeFile
            WHERE objectID = ? AND byteCount = ? AND kind = ? AND sha256 IS NOT NULL LIMIT 8
            """, arguments: [file.objectID.hex, file.byteCount, file.kind.rawValue])
        for row in rows {
            let r = RowReader(row: row, table: "treeFile", key: row.keyText("treeID"))
            let tensors = try String.fetchAll(db, sql: "SELECT objectID FROM treeTensor WHERE treeID = ? AND path = ? ORDER BY position",
                                              arguments: [try r.value("treeID", String.self), try r.value("path", String.self)])
            if tensors == file.tensors.map(\.objectID.hex), let d = try r.optionalID("sha256") { return d }
        }
        return nil
    }

    /// The SHA-256 recorded for `file` as an entry of the tree `treeID`, when that tree is recorded
    /// (the same listing, hence the same objects: a merge done again), else ``knownDigest(_:of:)``.
    func knownDigest(of file: TreeFile, inTree treeID: ObjectID) throws -> Digest? {
        try read { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT treeID, sha256 FROM treeFile WHERE treeID = ? AND path = ? AND objectID = ? AND byteCount = ? AND kind = ?
                """, arguments: [treeID.hex, file.path, file.objectID.hex, file.byteCount, file.kind.rawValue])
            if let row, let d = try RowReader(row: row, table: "treeFile", key: treeID.hex).optionalID("sha256") { return d }
            return try HistoryDatabase.knownDigest(db, of: file)
        }
    }

    /// ``knownDigest(_:of:)`` in a read transaction of its own.
    func knownDigest(of file: TreeFile) throws -> Digest? {
        try read { try HistoryDatabase.knownDigest($0, of: file) }
    }
}
