import Delta
import Foundation
import GRDB

// The object index and trees: what each stored object is, and which objects a tree names.
extension HistoryDatabase {
    public func tree(_ id: ObjectID) throws -> Tree {
        try read { db in try HistoryDatabase.tree(db, id) }
    }

    /// Whether `id` names a recorded tree (the empty tree always is).
    func hasTree(_ id: ObjectID) throws -> Bool {
        if id == Tree.empty.id { return true }
        return try read { db in try Bool.fetchOne(db, sql: "SELECT 1 FROM treeFile WHERE treeID = ? LIMIT 1", arguments: [id.hex]) ?? false }
    }

    static func tree(_ db: Database, _ id: ObjectID) throws -> Tree {
        let fileRows = try TreeFileRow.fetchAll(db, sql: "SELECT * FROM treeFile WHERE treeID = ? ORDER BY path", arguments: [id.hex])
        let tensorRows = try TreeTensorRow.fetchAll(db, sql: "SELECT * FROM treeTensor WHERE treeID = ? ORDER BY path, position", arguments: [id.hex])
        var tensorsByPath: [String: [TreeTensor]] = [:]
        for row in tensorRows { tensorsByPath[row.path, default: []].append(row.tensor) }
        return Tree(files: fileRows.map { row in
            var file = row.file
            file.tensors = tensorsByPath[file.path] ?? []
            return file
        })
    }

    /// Up to `limit` recorded files, of any trees, whose SHA-256 is `digest`, with their tensors.
    func files(withSHA256 digest: Digest, limit: Int) throws -> [TreeFile] {
        try read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT treeID, path FROM treeFile WHERE sha256 = ? LIMIT ?", arguments: [digest.hex, limit])
            return try rows.compactMap { row in
                let r = RowReader(row: row, table: "treeFile", key: digest.hex)
                return try HistoryDatabase.tree(db, try r.id("treeID")).file(at: try r.value("path"))
            }
        }
    }

    public func objectInfo(_ id: ObjectID) throws -> ObjectInfo? {
        try read { db in try HistoryDatabase.objectInfo(db, id) }
    }

    static func objectInfo(_ db: Database, _ id: ObjectID) throws -> ObjectInfo? {
        try ObjectRow.fetchOne(db, sql: "SELECT * FROM object WHERE id = ?", arguments: [id.hex])?.info
    }

    /// Every recorded object.
    public func allObjects() throws -> [ObjectInfo] {
        try read { db in try ObjectRow.fetchAll(db, sql: "SELECT * FROM object").map(\.info) }
    }

    /// - Parameter readFromFiles: objects whose facts were just read from their file in place: they
    ///   replace the row too, so a row that outlived an earlier file of that id (an interrupted gc)
    ///   describes the file now there, delta reference included. Their checksum is unknown: the
    ///   row's is kept when the row agreed with the file already (the same file), else cleared.
    static func insert(_ db: Database, objects: [ObjectInfo], readFromFiles: Set<ObjectID> = []) throws {
        // References first, so the foreign key holds at every insert.
        let sorted = objects.sorted { $0.depth < $1.depth }
        for o in sorted {
            if o.checksum != nil || readFromFiles.contains(o.id) {
                // Facts with a checksum come from a file just written or received and verified: they
                // describe the file in place, so they replace a row left by an earlier file of
                // that id (a gc interrupted between deleting the file and its row).
                try db.execute(sql: """
                    INSERT INTO object(id, kind, encoding, referenceID, logicalBytes, storedBytes, depth, crc32c)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET kind = excluded.kind, encoding = excluded.encoding,
                        referenceID = excluded.referenceID, logicalBytes = excluded.logicalBytes,
                        storedBytes = excluded.storedBytes, depth = excluded.depth,
                        crc32c = CASE WHEN excluded.crc32c IS NULL AND object.kind = excluded.kind
                            AND object.encoding = excluded.encoding AND object.referenceID IS excluded.referenceID
                            AND object.storedBytes = excluded.storedBytes THEN object.crc32c ELSE excluded.crc32c END
                    """, arguments: [o.id.hex, Int(o.kind.rawValue), Int(o.encoding.rawValue), o.reference?.hex, o.logicalByteCount,
                                    o.storedByteCount, o.depth, o.checksum.map { Int64($0) }])
            } else {
                try ObjectRow(o).insert(db, onConflict: .ignore)
            }
        }
    }

    static func insert(_ db: Database, tree: Tree) throws {
        // The identity hashes the whole listing: computed once here, not once per row.
        let treeID = tree.id
        let id = treeID.hex
        var digests: [String: Digest] = [:]
        for f in tree.files {
            if let d = try f.sha256 ?? knownDigest(db, of: f) { digests[f.path] = d }
        }
        if try Bool.fetchOne(db, sql: "SELECT 1 FROM tree WHERE id = ?", arguments: [id]) == true {
            // The same tree recorded before, perhaps by an older mrepo: add the digests it lacks.
            for (path, d) in digests {
                try db.execute(sql: "UPDATE treeFile SET sha256 = ? WHERE treeID = ? AND path = ? AND sha256 IS NULL", arguments: [d.hex, id, path])
            }
            return
        }
        try TreeRow(tree: tree).insert(db)
        for f in tree.files {
            var file = f
            file.sha256 = digests[f.path]
            try TreeFileRow(tree: treeID, file: file).insert(db)
            for (i, t) in f.tensors.enumerated() {
                try TreeTensorRow(tree: treeID, path: f.path, position: i, tensor: t).insert(db)
            }
        }
    }

    /// The recorded facts of many objects in one read transaction (a tree's objects, a commit's
    /// delta references), instead of a transaction per object. Ids not recorded are absent.
    public func objectInfos(_ ids: some Sequence<ObjectID>) throws -> [ObjectID: ObjectInfo] {
        let unique = Array(Set(ids))
        guard !unique.isEmpty else { return [:] }
        return try read { db in
            var out: [ObjectID: ObjectInfo] = [:]
            // Slices keep each statement well under SQLite's limit on parameters.
            for start in stride(from: 0, to: unique.count, by: 500) {
                let slice = unique[start..<min(start + 500, unique.count)]
                let marks = Array(repeating: "?", count: slice.count).joined(separator: ",")
                for row in try ObjectRow.fetchAll(db, sql: "SELECT * FROM object WHERE id IN (\(marks))",
                                                  arguments: StatementArguments(slice.map(\.hex))) {
                    out[row.info.id] = row.info
                }
            }
            return out
        }
    }
}
