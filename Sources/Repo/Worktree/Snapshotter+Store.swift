import Delta
import Foundation

/// Storing a file: hash first, then encode only the objects the repository lacks.
///
/// A file is a run of pieces that tile it: the header blob and the tensors of a safetensors file in
/// the order of their bytes, or one blob. It is read in segments of whole pieces (at most
/// ``segmentBytes``, or one larger piece). For each segment, two jobs read its bytes side by side:
/// one feeds the SHA-256 of the whole file (and, for `commit --from`, the working tree's copy), the
/// other the identity of each piece. Then one database query says which identities are recorded,
/// and only the others are encoded, on every core, with their identities known (nothing is hashed
/// twice). A file whose tensors are all stored costs two hashes side by side; a new fine-tune costs
/// what hashing and encoding cost anyway. The segment's pages stay mapped between the two steps and
/// are dropped after them, so memory stays at a segment whatever the file's size.
extension Snapshotter {
    /// Which of the given objects the history database records.
    typealias RecordedLookup = ([ObjectID]) throws -> Set<ObjectID>

    /// Bytes hashed before encoding, at most (a larger tensor is a segment of its own, whose pages
    /// are dropped as they are hashed and read again to encode it).
    static let segmentBytes = 64 << 20
    /// Bytes the two hashing jobs read between two barriers.
    static let hashWindowBytes = 16 << 20

    /// A run of a file's bytes that is one object.
    struct Piece {
        var kind: ObjectKind
        var dtype: DType
        var shape: Shape
        /// The bytes, as offsets in the file.
        var range: Range<Int>
        /// The tensor's name (empty for a blob), for its delta reference.
        var name: String

        func hasher() -> SHA256 {
            let sha = SHA256()
            sha.update(kind == .blob ? BlobHasher.prefix(byteCount: range.count) : TensorHasher.prefix(dtype: dtype, shape: shape))
            return sha
        }
    }

    /// Stores a file's objects; returns its tree entry and the objects to record.
    func storeHashingFirst(_ file: PreparedFile, references: ReferenceIndex, recorded: RecordedLookup,
                           batch: ObjectStore.Batch, copies: FileCopies?, progress: ProgressCounter?) throws -> (TreeFile, [ObjectInfo]) {
        let map = try file.safetensors?.map ?? mapped(file.scanned)
        map.adviseSequential()
        var pieces: [Piece] = []
        // Tensor index (header order) → piece index.
        var pieceOfTensor: [Int] = []
        if let st = file.safetensors {
            pieces.append(Piece(kind: .blob, dtype: .u8, shape: [st.header.dataStart], range: 0..<st.header.dataStart, name: ""))
            let order = st.tensors.indices.sorted { SafetensorsHeader.precedesInData(st.tensors[$0].dataOffsets, st.tensors[$1].dataOffsets) }
            pieceOfTensor = [Int](repeating: 0, count: st.tensors.count)
            for i in order {
                let t = st.tensors[i]
                pieceOfTensor[i] = pieces.count
                pieces.append(Piece(kind: .tensor, dtype: t.dtype, shape: t.shape, range: st.fileRange(of: t), name: t.name))
            }
        } else {
            pieces.append(Piece(kind: .blob, dtype: .u8, shape: [map.count], range: 0..<map.count, name: ""))
        }

        let fileHash = SHA256()
        let copy = try copies?.begin()
        // Where the file system shares blocks, the copy is a reflink made before the file is read
        // (the check that the file did not change while it was read covers it too); elsewhere the
        // copy is written from the bytes as they are hashed.
        let cloned = copy?.cloneContents(of: file.scanned.absolutePath) ?? false
        var ids = [ObjectID](repeating: .zero, count: pieces.count)
        var infos: [ObjectInfo] = []
        do {
            for (segment, large) in Snapshotter.segments(pieces) {
                try hashSegment(segment, of: pieces, in: map, fileHash: fileHash, copy: cloned ? nil : copy, ids: &ids, dropPages: large)
                CrashPoint.reach("commit.segment-hashed")
                infos += try storeMissing(segment, of: pieces, ids: ids, map: map, references: references, recorded: recorded,
                                          batch: batch, progress: progress)
                map.release(pieces[segment.lowerBound].range.lowerBound..<pieces[segment.upperBound - 1].range.upperBound)
            }
        } catch {
            copy?.abort()
            // Whatever was being written (an object, the copy), it was in the repository's store:
            // name it, and the file being stored (which may be on another disk).
            if let full = RepoError.fullDisk(error), case let .diskFull(store) = full {
                throw RepoError.diskFull(path: "\(store) (storing \(file.scanned.path))")
            }
            throw error
        }
        let digest = fileHash.finalize()
        try Snapshotter.checkUnchanged(file.scanned, map: map)
        if isRacy(file.scanned.stat) {
            // Changed in the tick of the scan: a rewrite in that tick would leave size, times and
            // inode as they were, and the bytes encoded could differ from the bytes hashed. The
            // new objects are decoded and checked against their ids before anything refers to them.
            do {
                try batch.verify(infos.map(\.id))
            } catch RepoError.corruptObject {
                throw RepoError.io(path: file.scanned.path, reason: "changed while it was being committed; nothing was recorded (commit again once the file is complete)")
            }
        }
        if let copy { try copies?.finish(copy, path: file.scanned.path, sha256: digest) }

        let executable = file.scanned.stat.isExecutable
        guard let st = file.safetensors else {
            return (TreeFile(path: file.scanned.path, kind: .blob, objectID: ids[0], byteCount: map.count, executable: executable, sha256: digest), infos)
        }
        let tensors = st.tensors.enumerated().map { i, t in
            TreeTensor(name: t.name, dtype: t.dtype, shape: t.shape, dataOffsets: t.dataOffsets, objectID: ids[pieceOfTensor[i]])
        }
        return (TreeFile(path: file.scanned.path, kind: .safetensors, objectID: ids[0], byteCount: map.count, executable: executable,
                         tensors: tensors, sha256: digest), infos)
    }

    /// Whether a file with this `stat`, taken by the scan, was last changed so recently that a write
    /// during the commit could leave its `stat` as it was: in the tick of the file system's clock
    /// read before the scan, or, without that clock, within two seconds of the scan.
    func isRacy(_ stat: FileStat) -> Bool {
        guard let scanStart else { return false }
        if let clock = scanStart.clock { return !clock.precedes(stat) }
        return max(stat.mtimeNs, stat.ctimeNs) >= scanStart.timeNs - 2_000_000_000
    }

    /// Consecutive pieces of at most ``segmentBytes`` together, or one larger piece (`large`).
    static func segments(_ pieces: [Piece]) -> [(Range<Int>, large: Bool)] {
        var out: [(Range<Int>, large: Bool)] = []
        var start = 0, bytes = 0
        for i in pieces.indices {
            let n = pieces[i].range.count
            if i > start, bytes + n > segmentBytes {
                out.append((start..<i, bytes > segmentBytes))
                start = i
                bytes = 0
            }
            bytes += n
        }
        if start < pieces.count { out.append((start..<pieces.count, bytes > segmentBytes)) }
        return out
    }

    /// The first step of a segment: the file's hash (and its copy) in one job, the pieces'
    /// identities in the other, window by window.
    private func hashSegment(_ segment: Range<Int>, of pieces: [Piece], in map: MappedFile, fileHash: SHA256, copy: AtomicFileWriter?,
                      ids: inout [ObjectID], dropPages: Bool) throws {
        var found = ids
        for k in segment where pieces[k].range.isEmpty { found[k] = pieces[k].hasher().finalize() }
        let end = pieces[segment.upperBound - 1].range.upperBound
        var cursor = pieces[segment.lowerBound].range.lowerBound
        var next = segment.lowerBound
        var open: SHA256?
        while cursor < end {
            let window = cursor..<min(end, cursor + Snapshotter.hashWindowBytes)
            try Parallel.forEach(2) { job, _ in
                if job == 0 {
                    let bytes = map.bytes(in: window)
                    fileHash.update(bytes)
                    try copy?.write(bytes)
                    return
                }
                while next < segment.upperBound {
                    let r = pieces[next].range
                    if r.isEmpty {
                        next += 1
                        continue
                    }
                    guard r.lowerBound < window.upperBound else { break }
                    let sha = open ?? pieces[next].hasher()
                    sha.update(map.bytes(in: max(r.lowerBound, window.lowerBound)..<min(r.upperBound, window.upperBound)))
                    guard r.upperBound <= window.upperBound else {
                        open = sha
                        break
                    }
                    found[next] = sha.finalize()
                    open = nil
                    next += 1
                }
            }
            if dropPages { map.release(window) }
            cursor = window.upperBound
        }
        ids = found
    }

    /// The second step of a segment: encodes the pieces whose objects neither the database, nor
    /// this commit, nor the object folder has. Returns the objects to record.
    private func storeMissing(_ segment: Range<Int>, of pieces: [Piece], ids: [ObjectID], map: MappedFile, references: ReferenceIndex,
                              recorded: RecordedLookup, batch: ObjectStore.Batch, progress: ProgressCounter?) throws -> [ObjectInfo] {
        let candidates = segment.filter { !batch.contains(ids[$0]) }
        let rows = try recorded(candidates.map { ids[$0] })
        var infos: [ObjectInfo] = []
        var missing: [Int] = []
        var planned = Set<ObjectID>()
        for k in candidates where !rows.contains(ids[k]) && planned.insert(ids[k]).inserted {
            if objects.exists(ids[k]) {
                // Left by an interrupted command but never recorded: record what it holds.
                infos.append(try objects.inspect(ids[k]))
            } else {
                missing.append(k)
            }
        }
        let encoding = Set(missing)
        for k in segment where !encoding.contains(k) { progress?.add(pieces[k].range.count) }
        guard !missing.isEmpty else { return infos }
        let items = try missing.map { k in
            let p = pieces[k]
            return ObjectStore.NewObject(id: ids[k], kind: p.kind, dtype: p.dtype, shape: p.shape, source: map.bytes(in: p.range),
                                         reference: p.kind == .tensor ? try references.reference(for: p.name, dtype: p.dtype, shape: p.shape) : nil)
        }
        let results = try objects.write(items, options: options, batch: batch) { i, range in
            let start = pieces[missing[i]].range.lowerBound
            map.release((start + range.lowerBound)..<(start + range.upperBound))
            progress?.add(range.count)
        }
        infos += results.filter(\.isNew).map(\.info)
        return infos
    }

    /// Refuses a file that changed while it was read: its objects and its copy could hold bytes
    /// other than the ones hashed.
    ///
    /// `map`: the file's mapping; a page of it read past the file's end while the file was shorter
    /// (rewritten in place, ``MappedFile/shrank``) counts as a change even when size, time and
    /// inode are back as they were (`cp -p` of the same file): zeros were read for its bytes.
    static func checkUnchanged(_ file: ScannedFile, map: MappedFile? = nil) throws {
        let now = FileStat.of(file.absolutePath, followLinks: true)
        // The ctime too: a writer can put the mtime back (`touch -r`, `os.utime`), never the ctime.
        guard map?.shrank != true, let now, now.size == file.stat.size, now.mtimeNs == file.stat.mtimeNs, now.ctimeNs == file.stat.ctimeNs,
              now.inode == file.stat.inode else {
            throw RepoError.io(path: file.path, reason: "changed while it was being committed; nothing was recorded (commit again once the file is complete)")
        }
    }
}

/// Delta references of a commit: the base commit's tensors by name, from one query; each
/// object's header is read only when a tensor is actually coded against it.
final class ReferenceIndex {
    struct Entry {
        var info: ObjectInfo
        var dtype: DType
        var shape: Shape
    }

    private let objects: ObjectStore
    private let entries: [String: Entry]
    private var headers: [ObjectID: EncodedTensorHeader?] = [:]

    init(objects: ObjectStore, entries: [String: Entry]) {
        self.objects = objects
        self.entries = entries
    }

    /// The base's tensor named `name`, when it is a tensor object of that dtype and shape whose
    /// header reads.
    func reference(for name: String, dtype: DType, shape: Shape) throws -> Snapshotter.Reference? {
        guard let e = entries[name], e.info.kind == .tensor, e.dtype == dtype, e.shape == shape else { return nil }
        if headers[e.info.id] == nil { headers[e.info.id] = .some(try? objects.header(of: e.info.id)) }
        guard let header = headers[e.info.id] ?? nil, header.dtype == dtype, header.shape == shape else { return nil }
        return (e.info, header)
    }
}

/// Copies of the files a `commit --from` stores, written from the bytes as they are hashed (or
/// reflinks, where the file system has them) into a temporary folder in `.mrepo`: the working tree's next content, moved into place once the commit
/// is recorded (``Repository/stageCheckout(_:over:force:prepared:)``) instead of decoding every
/// object again. A crash leaves the folder to the next command's sweep (docs/format.md §7.4).
final class FileCopies {
    let directory: String
    private(set) var files: [String: PreparedFile] = [:]
    private var count = 0

    init(metaDirectory: String) throws {
        directory = TemporaryName.path(in: metaDirectory, name: "copies")
        guard mkdir(directory, 0o755) == 0 else {
            throw RepoError.io(path: directory, reason: "cannot create directory: \(errnoDescription())")
        }
    }

    deinit { discard() }

    func begin() throws -> AtomicFileWriter {
        count += 1
        return try AtomicFileWriter(destination: directory + "/\(count)")
    }

    /// Keeps a complete copy for `path`, with the SHA-256 of the bytes written to it.
    func finish(_ writer: AtomicFileWriter, path: String, sha256: Digest) throws {
        files[path] = PreparedFile(temporary: try writer.closeUnsynced(), sha256: sha256)
    }

    /// Makes every copy durable (before it is renamed into the working tree), all side by side.
    func sync() throws {
        try AtomicFileWriter.syncFiles(files.values.map(\.temporary))
    }

    /// Deletes the folder and the copies not moved away.
    func discard() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}
