import Delta
import Foundation

/// Objects that arrive from another repository: written to a temporary file in the store,
/// verified (decoded and hashed against their id) and only then renamed into place.
extension ObjectStore {
    /// A new temporary path in the store for an object being received (noted in the journal,
    /// so a killed transfer leaves nothing behind after the next command).
    public func incomingPath() -> String {
        journal?.note(directory: root)
        return AtomicFileWriter.temporaryPath(for: root + "/incoming")
    }

    /// Checks that the file at `path` is a complete object file whose content is `id`: the
    /// header, every chunk decoded (against its delta reference, which must be stored here
    /// already) and the digest of the decoded bytes. Returns the facts for its `object` row.
    ///
    /// - Parameter sink: receives the decoded bytes in order (a clone writes the files it checks
    ///   out from them, ``ClonePrefill``); they are the object's content only if this returns.
    /// - Throws: ``RepoError/corruptObject(object:problem:)`` saying what is wrong.
    public func verifyIncoming(_ id: ObjectID, path: String, sink: (UnsafeRawBufferPointer) throws -> Void = { _ in }) throws -> ObjectInfo {
        try verifyIncoming(id, path: path, references: nil, sink: sink)
    }

    /// ``verifyIncoming(_:path:sink:)`` taking the delta reference's decoded chunks from
    /// `references` (shared by the objects of one download) when given, and reading references
    /// verified in this download but not yet installed from their incoming files (`pending`).
    func verifyIncoming(_ id: ObjectID, path: String, references: ReferenceChunkCache?, pending: [ObjectID: String] = [:],
                        sink: (UnsafeRawBufferPointer) throws -> Void) throws -> ObjectInfo {
        func bad(_ problem: String) -> RepoError { .corruptObject(object: id.short, problem: "received object rejected: \(problem)") }
        let map: MappedFile
        do {
            map = try MappedFile(path: path)
        } catch {
            throw bad("cannot read it (\(error))")
        }
        let bytes = map.bytes
        guard bytes.count >= ObjectStore.headerByteCount, Array(bytes[0..<4]) == ObjectStore.magic else { throw bad("not an mrepo object (bad magic)") }
        guard bytes[4] == ObjectStore.version else { throw bad("object version \(bytes[4]) is not one this mrepo understands") }
        guard let kind = ObjectKind(rawValue: bytes[5]) else { throw bad("unknown object kind \(bytes[5])") }
        let tensor: EncodedTensor
        do {
            tensor = try EncodedTensor(bytes: bytes, offset: ObjectStore.headerByteCount, owner: map, name: "object \(id.short)")
        } catch {
            throw bad("\(error)")
        }
        var depth = 0
        var reference: ChunkSource?
        if let ref = tensor.header.reference {
            guard kind == .tensor else { throw bad("a blob coded against another object") }
            guard ref != id else { throw bad("it names itself as its delta reference") }
            guard pending[ref] != nil || exists(ref) else { throw bad("its delta reference \(ref.short) is not stored here (send references first)") }
            let refHeader = try openMapped(ref, temporary: pending[ref]).tensor.header
            guard refHeader.dtype == tensor.header.dtype, refHeader.shape == tensor.header.shape else {
                throw bad("its delta reference \(ref.short) has another dtype or shape")
            }
            depth = try chainLength(from: ref, of: id, pending: pending)
            let decodeChunk = try chunkSource(for: ref, pending: pending)
            reference = references.map { $0.source(for: ref, wrapping: decodeChunk) } ?? decodeChunk
        }
        do {
            // One chunk at a time: transfers verify several objects at once (one per stream), so
            // the cores are busy without a window per object, and the four-chunk windows of four
            // concurrent objects took more scratch memory than the pool keeps (about 500 MB of
            // freshly zeroed pages in a MiniLM clone).
            _ = try TensorPipeline.decode(tensor, reference: reference, expected: id, identity: kind == .blob ? .blob : .tensor, window: 1, sink: sink)
        } catch {
            let text = (error as? DeltaError).map { "\($0)" } ?? RepoError.wrap(error).description
            throw bad(text.contains("digest") || text.contains("hash") ? "its content does not hash to its id" : text)
        }
        // Verified whole: the checksum of these bytes now stands for the decoded ones (§5.7).
        return ObjectInfo(id: id, kind: kind, encoding: tensor.header.encoding, reference: tensor.header.reference,
                          logicalByteCount: tensor.header.byteCount, storedByteCount: map.count, depth: depth,
                          checksum: CRC32C.checksum(bytes))
    }

    /// Moves a verified incoming file to the object's final name: the file synced, then renamed.
    /// The name itself becomes durable with the next sync of the file system, which
    /// ``Repository/receiveCommits(_:allowMissingObjects:shallow:known:)`` does before any row
    /// names the object (a push's objects then cost one `fsync` each, not two). `syncFolder`
    /// syncs the folder at once instead. An object stored meanwhile wins; the file is deleted.
    public func install(_ id: ObjectID, from path: String, syncFolder: Bool = true) throws {
        if exists(id) {
            unlink(path)
            return
        }
        try AtomicFileWriter.syncFile(path, shownAs: self.path(for: id))
        let dir = root + "/" + id.hex.prefix(2)
        if mkdir(dir, 0o755) != 0 && errno != EEXIST {
            throw RepoError.io(path: dir, reason: errnoDescription())
        }
        guard rename(path, self.path(for: id)) == 0 else {
            throw RepoError.io(path: self.path(for: id), reason: "rename failed: \(errnoDescription())")
        }
        if syncFolder { try AtomicFileWriter.syncDirectory(dir) }
    }
}
