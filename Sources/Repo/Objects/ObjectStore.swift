import Delta
import Foundation
import Synchronization

/// The identity of a stored object: the SHA-256 of its content (docs/format.md §3).
public typealias ObjectID = Digest

/// What an object holds.
public enum ObjectKind: UInt8, Sendable, Codable {
    /// A tensor, identified by ``TensorHasher`` (dtype, shape, bytes).
    case tensor = 1
    /// A non-tensor file or a safetensors header, identified by ``BlobHasher``.
    case blob = 2
}

/// Facts about one stored object, as the `object` table records them.
public struct ObjectInfo: Sendable, Equatable {
    public var id: ObjectID
    public var kind: ObjectKind
    public var encoding: TensorEncoding
    /// The object this one is a delta against.
    public var reference: ObjectID?
    /// Decoded size.
    public var logicalByteCount: Int
    /// Size of the object file.
    public var storedByteCount: Int
    /// Length of the delta chain below this object (0 for whole objects).
    public var depth: Int
    /// The CRC-32C of the object file's bytes, when known: recorded for files this repository
    /// wrote or received and verified (docs/format.md §5.7); nil for older rows.
    public var checksum: UInt32? = nil
}

/// Immutable, content-addressed object files under `.mrepo/objects`.
///
/// An object file is `objects/<first 2 hex digits>/<remaining 62>`: an 8-byte header
/// (`"MROB"`, version, kind, 2 reserved bytes) followed by an encoded tensor (``EncodedTensor``).
/// Objects are written to a temporary file, synced, and renamed into place; a file under its
/// final name is therefore always complete. Nothing here touches the database: the caller records
/// objects in the `object` table after they are durable.
public final class ObjectStore: Sendable {
    public let root: String
    public static let magic: [UInt8] = Array("MROB".utf8)
    public static let version: UInt8 = 1
    public static let headerByteCount = 8
    /// Longest delta chain the writer builds; a deeper reference makes the tensor be stored whole.
    public static let maxDepth = 4
    /// The longest delta chain a reader follows: far beyond what writers make (``maxDepth``), so
    /// only a damaged store (a cycle) reaches it.
    static let readableDepth = 64

    private let openObjects = Mutex<[ObjectID: MappedFile]>([:])
    /// Called for an object whose file is missing before reading it fails: a lazy clone fetches
    /// the file (and its delta references) from its remote here.
    let missingFileHandler = Mutex<(@Sendable (ObjectID) throws -> Void)?>(nil)
    /// Where the store notes that this process writes temporary files into `root`.
    let journal: WriteJournal?
    /// Verify-after-write: ``Batch/finish()`` decodes and re-hashes every new object from its
    /// temporary file before renaming it into place (`MREPO_VERIFY_WRITES=1`). The codec already
    /// hashes what it reads while encoding; this also catches a fault between the encoder and the
    /// disk (a codec bug, a bad page) before anything refers to the object.
    public let verifiesWrites: Bool

    /// Whether `MREPO_VERIFY_WRITES=1` is set.
    public static var verifyWritesFromEnvironment: Bool {
        ProcessInfo.processInfo.environment["MREPO_VERIFY_WRITES"] == "1"
    }

    public init(root: String, verifiesWrites: Bool = ObjectStore.verifyWritesFromEnvironment) {
        self.root = root
        journal = nil
        self.verifiesWrites = verifiesWrites
    }

    init(root: String, journal: WriteJournal, verifiesWrites: Bool = ObjectStore.verifyWritesFromEnvironment) {
        self.root = root
        self.journal = journal
        self.verifiesWrites = verifiesWrites
    }

    /// A temporary file for a new object, in `root` (named after its content when it is complete).
    ///
    /// - Parameter bufferByteCount: the writer's buffer (0 for a caller that writes large pieces).
    func incomingWriter(bufferByteCount: Int = 1 << 20) throws -> AtomicFileWriter {
        journal?.note(directory: root)
        let writer = try AtomicFileWriter(destination: root + "/incoming", bufferByteCount: bufferByteCount)
        writer.checksumsContent = true
        return writer
    }

    /// The CRC-32C of an object file's bytes, as read now (fsck's check of the recorded one).
    public func storedChecksum(of id: ObjectID) throws -> UInt32 {
        let map: MappedFile
        do {
            map = try MappedFile(path: path(for: id))
        } catch {
            throw RepoError.corruptObject(object: id.short, problem: "missing object file (\(error))")
        }
        return CRC32C.checksum(of: map)
    }

    /// The path of an object's file.
    public func path(for id: ObjectID) -> String {
        let hex = id.hex
        return root + "/" + hex.prefix(2) + "/" + hex.dropFirst(2)
    }

    /// Whether an object's file exists.
    public func exists(_ id: ObjectID) -> Bool {
        var st = stat()
        return stat(path(for: id), &st) == 0
    }

    // MARK: - Reading

    /// Maps an object file (or, given `temporary`, a new object's file not yet renamed into place)
    /// and checks its header.
    public func open(_ id: ObjectID, temporary: String? = nil) throws -> (kind: ObjectKind, tensor: EncodedTensor) {
        let (kind, tensor, _) = try openMapped(id, temporary: temporary)
        return (kind, tensor)
    }

    /// ``open(_:temporary:)``, with the mapping the tensor's bytes live in.
    func openMapped(_ id: ObjectID, temporary: String? = nil) throws -> (kind: ObjectKind, tensor: EncodedTensor, map: MappedFile) {
        let map: MappedFile
        if temporary == nil, let cached = openObjects.withLock({ $0[id] }) {
            map = cached
        } else {
            // A temporary file is this process's own (being written or received): never fetched.
            if temporary == nil, !exists(id), let fetch = missingFileHandler.withLock({ $0 }) { try fetch(id) }
            do {
                map = try MappedFile(path: temporary ?? path(for: id))
            } catch let error where temporary != nil {
                // Renamed into place meanwhile (a download installs a batch while later objects
                // are verified against it): the same bytes under the final name.
                guard let placed = try? MappedFile(path: path(for: id)) else {
                    throw RepoError.corruptObject(object: id.short, problem: "missing object file (\(error))")
                }
                map = placed
            } catch {
                throw RepoError.corruptObject(object: id.short, problem: "missing object file (\(error))")
            }
        }
        return try open(id, map: map)
    }

    /// Checks the header of a mapped object file and parses its encoded tensor.
    func open(_ id: ObjectID, map: MappedFile) throws -> (kind: ObjectKind, tensor: EncodedTensor, map: MappedFile) {
        let bytes = map.bytes
        guard bytes.count >= ObjectStore.headerByteCount, Array(bytes[0..<4]) == ObjectStore.magic else {
            throw RepoError.corruptObject(object: id.short, problem: "not an mrepo object (bad magic)")
        }
        guard bytes[4] == ObjectStore.version else {
            throw RepoError.unsupportedFormat(path: path(for: id), problem: "object version \(bytes[4]) is newer than this mrepo understands")
        }
        guard let kind = ObjectKind(rawValue: bytes[5]) else {
            throw RepoError.corruptObject(object: id.short, problem: "unknown object kind \(bytes[5])")
        }
        do {
            let tensor = try EncodedTensor(bytes: bytes, offset: ObjectStore.headerByteCount, owner: map, name: "object \(id.short)")
            return (kind, tensor, map)
        } catch {
            throw RepoError.delta(error)
        }
    }

    /// Keeps objects mapped for the rest of an operation (delta references are read once per chunk).
    public func retainMapping(_ id: ObjectID) {
        guard openObjects.withLock({ $0[id] }) == nil, let map = try? MappedFile(path: path(for: id)) else { return }
        openObjects.withLock { $0[id] = map }
    }

    /// Drops the resident pages of a retained object (and of its delta references) once a tensor
    /// that used it is done, so memory stays at one tensor's working set.
    public func releasePages(of id: ObjectID) {
        var next: ObjectID? = id
        var depth = 0
        while let current = next, depth < ObjectStore.readableDepth, let map = openObjects.withLock({ $0[current] }) {
            map.release(0..<map.count)
            next = (try? EncodedTensorHeader.parse(UnsafeRawBufferPointer(rebasing: map.bytes[ObjectStore.headerByteCount...]), object: ""))?.0.reference
            depth += 1
        }
    }

    /// Releases mappings kept by ``retainMapping(_:)``.
    public func releaseMappings() {
        openObjects.withLock { $0.removeAll() }
    }

    /// A source of decoded chunks of a tensor object, following its delta chain.
    /// - Parameter pending: new objects not yet renamed into place, by id (verify-after-write).
    public func chunkSource(for id: ObjectID, depth: Int = 0, pending: [ObjectID: String] = [:]) throws -> ChunkSource {
        guard depth <= ObjectStore.readableDepth else { throw RepoError.corruptObject(object: id.short, problem: "delta chain is too deep (a cycle?)") }
        let (_, tensor, map) = try openMapped(id, temporary: pending[id])
        let reference = try tensor.header.reference.map { try chunkSource(for: $0, depth: depth + 1, pending: pending) }
        let scratchSize = ObjectStore.chunkScratchByteCount(tensor.header)
        // Each chunk of a reference is read once per tensor coded against it: its pages go once
        // it is decoded, so a large reference never stays resident whole.
        let release = ObjectStore.chunkReleaser(tensor, map: map)
        return { index, into in
            try withScratch(scratchSize) { scratch in
                try tensor.decodeChunk(index, into: into, reference: reference, scratch: scratch)
            }
            release?(index)
        }
    }

    /// Scratch space to decode any one chunk of a tensor. No chunk is larger than the tensor: sized
    /// by the declared chunk size alone (a u32 field), it could be gigabytes for a tensor of a few bytes.
    static func chunkScratchByteCount(_ header: EncodedTensorHeader) -> Int {
        (TensorEncoding.scratchFactor + 1) * max(1, min(header.chunkByteCount, header.byteCount))
    }

    /// Decodes a tensor or blob object, streaming its bytes to `sink`, and verifies its identity.
    ///
    /// - Throws: ``RepoError/corruptObject(object:problem:)`` when the object is missing, does not
    ///   decode, or hashes to something other than `id`. Bytes already given to `sink` must then be
    ///   discarded.
    public func decode(_ id: ObjectID, knownReference: (id: ObjectID, bytes: UnsafeRawBufferPointer)? = nil,
                       sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let (kind, tensor) = try open(id)
        let reference: ChunkSource?
        if let known = knownReference, tensor.header.reference == known.id, known.bytes.count == tensor.header.byteCount {
            // The caller already holds the reference's bytes: copy its chunks instead of decoding them again.
            reference = memoryChunkSource(known.bytes, chunkByteCount: tensor.header.chunkByteCount)
        } else {
            reference = try tensor.header.reference.map { try chunkSource(for: $0) }
        }
        do {
            try TensorPipeline.decode(tensor, reference: reference, expected: id,
                                      identity: kind == .blob ? .blob : .tensor, sink: sink)
        } catch let error as DeltaError {
            if case let .corruptData(_, problem) = error {
                throw RepoError.corruptObject(object: id.short, problem: problem)
            }
            throw RepoError.delta(error)
        }
    }

    /// Decodes several tensor objects at once, on every core, straight into their destinations
    /// (``TensorPipeline/decode(into:)``), verifying each one's identity.
    ///
    /// - Throws: ``RepoError/corruptObject(object:problem:)`` naming the object that does not decode
    ///   or hashes to something else; the destinations then hold garbage.
    public func decode(into targets: [(id: ObjectID, target: TensorPipeline.DecodeTarget)]) throws {
        do {
            try TensorPipeline.decode(into: targets.map(\.target))
        } catch let error as DeltaError {
            if case let .corruptData(object, problem) = error {
                // Targets are named "object <short id>" (and " chunk <n>" for a chunk's failure).
                let id = targets.first { object == $0.target.tensor.name || object.hasPrefix($0.target.tensor.name + " ") }?.id
                throw RepoError.corruptObject(object: id?.short ?? object, problem: problem)
            }
            throw RepoError.delta(error)
        }
    }

    /// Decodes a float (or any numeric) tensor object into Float32 values, verifying it.
    public func floats(_ id: ObjectID, knownReference: (id: ObjectID, bytes: UnsafeRawBufferPointer)? = nil) throws -> [Float] {
        let header = try header(of: id)
        var out = [Float](repeating: 0, count: header.byteCount / header.dtype.byteSize)
        var filled = 0
        try out.withUnsafeMutableBufferPointer { p in
            try decode(id, knownReference: knownReference) { bytes in
                let n = bytes.count / header.dtype.byteSize
                FloatConversion.toFloat(header.dtype, bytes, into: UnsafeMutableBufferPointer(rebasing: p[filled..<(filled + n)]))
                filled += n
            }
        }
        return out
    }

    /// Decodes a whole object into memory (for blobs and small tensors).
    public func read(_ id: ObjectID) throws -> [UInt8] {
        var out = [UInt8]()
        try decode(id) { out.append(contentsOf: $0) }
        return out
    }

    /// The header of a tensor object without decoding it.
    public func header(of id: ObjectID) throws -> EncodedTensorHeader {
        try open(id).tensor.header
    }

    // MARK: - Writing

    /// Objects written by one operation.
    ///
    /// Objects are written to temporary files without waiting for the disk. ``finish()`` syncs the
    /// file system once, renames every object to its final name, and syncs again, so hundreds of
    /// objects cost two disk barriers instead of one each. ``rollback()`` deletes everything this
    /// batch wrote, so a failed command leaves the store as it found it.
    public final class Batch: Sendable {
        let store: ObjectStore
        private let state = Mutex<(pending: [ObjectID: String], created: [ObjectID])>(([:], []))

        init(store: ObjectStore) {
            self.store = store
        }

        func add(_ id: ObjectID, temporary: String) {
            state.withLock { $0.pending[id] = temporary }
        }

        /// Whether this batch already holds the object (written, not yet renamed into place).
        public func contains(_ id: ObjectID) -> Bool {
            state.withLock { $0.pending[id] != nil || $0.created.contains(id) }
        }

        /// Objects this batch created.
        public var created: [ObjectID] { state.withLock { Array($0.pending.keys) + $0.created } }

        /// Makes every object durable under its final name.
        public func finish() throws {
            let pending = state.withLock { $0.pending }
            guard !pending.isEmpty else { return }
            if store.verifiesWrites { try store.verify(pending) }
            try AtomicFileWriter.syncFileSystem(containing: store.root)
            for (id, temporary) in pending.sorted(by: { $0.key < $1.key }) {
                let dir = store.root + "/" + id.hex.prefix(2)
                if mkdir(dir, 0o755) != 0 && errno != EEXIST {
                    throw RepoError.io(path: dir, reason: errnoDescription())
                }
                guard rename(temporary, store.path(for: id)) == 0 else {
                    throw RepoError.io(path: store.path(for: id), reason: "rename failed: \(errnoDescription())")
                }
                state.withLock {
                    $0.pending[id] = nil
                    $0.created.append(id)
                }
                CrashPoint.reach("object.renamed")
            }
            try AtomicFileWriter.syncFileSystem(containing: store.root)
        }

        /// Decodes the new objects among `ids` from their temporary files and checks that each
        /// hashes to its id (``ObjectStore/verify(_:only:)``), as `MREPO_VERIFY_WRITES=1` does for all.
        func verify(_ ids: some Sequence<ObjectID>) throws {
            let pending = state.withLock { $0.pending }
            let wanted = Set(ids).filter { pending[$0] != nil }
            guard !wanted.isEmpty else { return }
            try store.verify(pending, only: wanted)
        }

        /// Deletes the objects this batch wrote.
        public func rollback() {
            let (pending, created) = state.withLock { s -> ([String], [ObjectID]) in
                defer { s.pending.removeAll(); s.created.removeAll() }
                return (Array(s.pending.values), s.created)
            }
            for path in pending { unlink(path) }
            for id in created { unlink(store.path(for: id)) }
        }
    }

    public func makeBatch() -> Batch { Batch(store: self) }

    /// Decodes each new object from its temporary file (delta references from the store or from
    /// the same batch) and checks that its bytes hash to its id.
    /// - Throws: ``RepoError/corruptObject(object:problem:)`` for the first that does not.
    /// - Parameter only: verify these (the others serve as delta references); nil: all.
    func verify(_ pending: [ObjectID: String], only: Set<ObjectID>? = nil) throws {
        for (id, temporary) in pending.sorted(by: { $0.key < $1.key }) where only?.contains(id) ?? true {
            let (kind, tensor) = try open(id, temporary: temporary)
            let reference = try tensor.header.reference.map { try chunkSource(for: $0, pending: pending) }
            do {
                try TensorPipeline.decode(tensor, reference: reference, expected: id, identity: kind == .blob ? .blob : .tensor) { _ in }
            } catch {
                throw RepoError.corruptObject(object: id.short, problem: "verify after write: the new object does not decode to its id (\(error))")
            }
        }
    }

    /// What a write produced.
    public struct WriteResult: Sendable {
        public var info: ObjectInfo
        /// False when an identical object was already stored (the new encoding was discarded).
        public var isNew: Bool
    }

    /// Encodes and stores a tensor (or a blob's bytes), unless an identical object exists.
    ///
    /// - Parameters:
    ///   - reference: the object to code the tensor against (same dtype, shape and chunk size).
    ///   - kind: `.tensor` or `.blob` (blobs are stored as U8 data and identified by ``BlobHasher``).
    ///   - didProcess: called with source byte ranges as they are done.
    public func write(kind: ObjectKind, dtype: DType, shape: Shape, source: UnsafeRawBufferPointer,
                      reference: (info: ObjectInfo, header: EncodedTensorHeader)?, options: CodecOptions,
                      batch: Batch, referenceBytes: UnsafeRawBufferPointer? = nil,
                      didProcess: ((Range<Int>) -> Void)? = nil, window: Int? = nil) throws -> WriteResult {
        var ref: TensorPipeline.Reference?
        var encoding = TensorEncoding.whole
        var codec = options
        if let reference, kind == .tensor, reference.info.depth < ObjectStore.maxDepth,
           reference.header.dtype == dtype, reference.header.shape == shape {
            if let known = referenceBytes, known.count == reference.header.byteCount {
                // The caller holds the reference's bytes: read them in place instead of decoding them.
                ref = TensorPipeline.Reference(digest: reference.info.id, bytes: known, chunkByteCount: reference.header.chunkByteCount)
            } else {
                ref = TensorPipeline.Reference(digest: reference.info.id, chunks: try chunkSource(for: reference.info.id))
            }
            encoding = TensorEncoding.preferredDelta(for: dtype)
            codec = CodecOptions(chunkByteCount: reference.header.chunkByteCount, level: options.level, rans: options.rans)
        }
        let writer = try incomingWriter()
        try writer.write(ObjectStore.fileHeader(kind))
        let result: TensorPipeline.EncodeResult
        do {
            result = try TensorPipeline.encode(dtype: dtype, shape: shape, source: source, encoding: encoding,
                                               reference: ref, options: codec, identity: kind == .blob ? .blob : .tensor,
                                               sink: { try writer.write($0) }, didProcess: didProcess, window: window)
        } catch {
            writer.abort()
            throw error
        }
        let id = result.digest
        let info = ObjectInfo(id: id, kind: kind, encoding: ref == nil ? .whole : encoding, reference: ref?.digest,
                              logicalByteCount: source.count, storedByteCount: ObjectStore.headerByteCount + result.storedByteCount,
                              depth: ref == nil ? 0 : (reference?.info.depth ?? 0) + 1)
        return try stage(writer, info: info, batch: batch)
    }

    /// The first bytes of every object file: magic, format version, kind, two reserved bytes.
    static func fileHeader(_ kind: ObjectKind) -> [UInt8] {
        ObjectStore.magic + [ObjectStore.version, kind.rawValue, 0, 0]
    }

    /// Hands a written object file to the batch, or drops it when the store or the batch already
    /// has the object.
    /// The new object's facts carry the checksum of the file written; those of an object found in
    /// place carry none (the discarded file's would not describe the stored one).
    func stage(_ writer: AtomicFileWriter, info: ObjectInfo, batch: Batch) throws -> WriteResult {
        var info = info
        if exists(info.id) || batch.contains(info.id) {
            writer.abort()
            info.checksum = nil
            return WriteResult(info: info, isNew: false)
        }
        info.checksum = writer.checksum
        batch.add(info.id, temporary: try writer.closeUnsynced())
        CrashPoint.reach("object.written")
        return WriteResult(info: info, isNew: true)
    }

    /// Stores a small blob held in memory.
    public func writeBlob(_ bytes: [UInt8], options: CodecOptions, batch: Batch) throws -> WriteResult {
        try bytes.withUnsafeBytes { raw in
            try write(kind: .blob, dtype: .u8, shape: [raw.count], source: raw, reference: nil, options: options, batch: batch)
        }
    }

    /// Reads the stored facts of an object from its file (used by fsck and to rebuild the index).
    public func inspect(_ id: ObjectID) throws -> ObjectInfo {
        let (kind, tensor) = try open(id)
        var st = stat()
        stat(path(for: id), &st)
        return ObjectInfo(id: id, kind: kind, encoding: tensor.header.encoding, reference: tensor.header.reference,
                          logicalByteCount: tensor.header.byteCount, storedByteCount: Int(st.st_size),
                          depth: try chainLength(from: tensor.header.reference, of: id))
    }

    /// The length of the delta chain of object `id` that starts at its `reference`: 0 for an
    /// object coded alone.
    /// - Parameter pending: objects not yet renamed into place, by id (their temporary files).
    func chainLength(from reference: ObjectID?, of id: ObjectID, pending: [ObjectID: String] = [:]) throws -> Int {
        var depth = 0
        var next = reference
        while let ref = next {
            depth += 1
            guard depth <= ObjectStore.readableDepth else { throw RepoError.corruptObject(object: id.short, problem: "delta chain is too deep (a cycle?)") }
            next = try openMapped(ref, temporary: pending[ref]).tensor.header.reference
        }
        return depth
    }

    /// Every object file and every leftover temporary file in the store.
    public func listFiles() -> (objects: [ObjectID], temporary: [String]) {
        var objects: [ObjectID] = []
        var temporary: [String] = []
        let fm = FileManager.default
        guard let top = try? fm.contentsOfDirectory(atPath: root) else { return ([], []) }
        for entry in top.sorted() {
            if entry.hasPrefix(AtomicFileWriter.temporaryPrefix) {
                temporary.append(root + "/" + entry)
                continue
            }
            guard entry.count == 2, let names = try? fm.contentsOfDirectory(atPath: root + "/" + entry) else { continue }
            for name in names.sorted() {
                if name.hasPrefix(AtomicFileWriter.temporaryPrefix) {
                    temporary.append(root + "/" + entry + "/" + name)
                } else if let id = ObjectID(hex: entry + name) {
                    objects.append(id)
                }
            }
        }
        return (objects, temporary)
    }

    /// Removes the files of `ids` that no row of `history` records (objects a failed transfer
    /// installed; an object file the history records is never touched).
    /// `keepingAsPartial`: move each file to its partial-download name instead (``PartialDownload/park(_:as:in:)``).
    func removeUnrecorded(_ ids: [ObjectID], history: HistoryDatabase, keepingAsPartial: Bool = false) {
        for id in ids where exists(id) {
            // A history that cannot be read keeps the file.
            guard let recorded = try? history.objectInfo(id) != nil, !recorded else { continue }
            if keepingAsPartial {
                PartialDownload.park(path(for: id), as: id, in: self)
            } else {
                remove(id)
            }
        }
    }

    /// Deletes an object file.
    public func remove(_ id: ObjectID) {
        unlink(path(for: id))
    }
}

