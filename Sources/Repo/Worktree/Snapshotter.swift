import Delta
import Foundation

/// Turns the files of a checkpoint folder into tree entries: hashing them (status) or storing
/// them in the object store (commit).
struct Snapshotter {
    let objects: ObjectStore
    let options: CodecOptions
    /// Store 2-D task vectors as truncated SVDs (`commit --lowrank`).
    var lowRank: LowRankPolicy?
    /// For files another process may be writing (a commit's folder): the source folder's
    /// file-system clock read before the scan (nil: it could not be read) and the system's time
    /// then, which say what a write during the commit could change without changing a file's
    /// `stat` (``Snapshotter/isRacy(_:)``). Nil for files only mrepo writes (a server's uploads).
    var scanStart: (clock: FileSystemClock?, timeNs: Int64)?

    /// A delta reference for a tensor: the object and its header.
    typealias Reference = (info: ObjectInfo, header: EncodedTensorHeader)

    /// A file whose header was validated and whose size is known, ready to be hashed or stored.
    struct PreparedFile {
        var scanned: ScannedFile
        /// The open safetensors file, or nil for a blob.
        var safetensors: SafetensorsFile?
        /// An entry reused from the stat cache (nothing to read).
        var cached: TreeFile?
        /// Why a safetensors file cannot be read as one (with `tolerant` only); it is then hashed as a blob.
        var unreadable: String?

        var byteCount: Int { scanned.stat.size }
    }

    /// Opens every file and validates every safetensors header, before anything is written.
    ///
    /// - Parameter tolerant: a safetensors file that does not parse (truncated, not safetensors)
    ///   is not an error but a file with a reason (`status` lists it as changed); otherwise the
    ///   codec's error is thrown.
    func prepare(_ files: [ScannedFile], cache: [String: StatCacheEntry], tolerant: Bool = false) throws -> [PreparedFile] {
        try files.map { file in
            if let entry = cache[file.path], entry.matches(file.stat),
               let tree = FileIdentityCoding.decode(entry.identity, path: file.path) {
                return PreparedFile(scanned: file, safetensors: nil, cached: tree)
            }
            guard isSafetensorsPath(file.path) else { return PreparedFile(scanned: file, safetensors: nil, cached: nil) }
            do throws(DeltaError) {
                let st = try SafetensorsFile(path: file.absolutePath, displayName: file.path)
                return PreparedFile(scanned: file, safetensors: st, cached: nil)
            } catch {
                if HuggingFaceCache.isLFSPointer(file.absolutePath) {
                    let problem = "\(file.path) is a Git LFS pointer, not the checkpoint; run 'git lfs pull' first"
                    guard tolerant else { throw RepoError.invalidArgument(problem) }
                    return PreparedFile(scanned: file, safetensors: nil, cached: nil, unreadable: problem)
                }
                guard tolerant else { throw RepoError.delta(error) }
                return PreparedFile(scanned: file, safetensors: nil, cached: nil, unreadable: error.description)
            }
        }
    }

    /// The tree entry of a file, computed by hashing (nothing is stored).
    func identify(_ file: PreparedFile, progress: ProgressCounter?) throws -> TreeFile {
        if let cached = file.cached {
            progress?.add(file.byteCount)
            return cached
        }
        let executable = file.scanned.stat.isExecutable
        guard let st = file.safetensors else {
            let map = try mapped(file.scanned)
            let sha = SHA256()
            sha.update(BlobHasher.prefix(byteCount: map.count))
            Snapshotter.hashReleasing(0..<map.count, of: map, into: sha.update)
            try Snapshotter.refuseShrunk(map, file.scanned)
            progress?.add(map.count)
            return TreeFile(path: file.scanned.path, kind: .blob, objectID: sha.finalize(), byteCount: map.count, executable: executable)
        }
        let headerID = BlobHasher.hash(st.headerBytes)
        progress?.add(st.header.dataStart)
        let infos = st.tensors
        var ids = [ObjectID](repeating: .zero, count: infos.count)
        try ids.withUnsafeMutableBufferPointer { buffer in
            let out = UnsafeSendable(buffer)
            // Largest first, so the two cores finish together.
            let order = infos.indices.sorted { infos[$0].byteCount > infos[$1].byteCount }
            try Parallel.forEach(order.count) { k, _ in
                let i = order[k]
                let t = infos[i]
                let hasher = TensorHasher(dtype: t.dtype, shape: t.shape)
                Snapshotter.hashReleasing(st.fileRange(of: t), of: st.map, into: hasher.update)
                out.value[i] = hasher.finalize()
                progress?.add(t.byteCount)
            }
        }
        try Snapshotter.refuseShrunk(st.map, file.scanned)
        return TreeFile(path: file.scanned.path, kind: .safetensors, objectID: headerID, byteCount: st.map.count,
                        executable: executable,
                        tensors: zip(infos, ids).map { TreeTensor(name: $0.name, dtype: $0.dtype, shape: $0.shape, dataOffsets: $0.dataOffsets, objectID: $1) })
    }

    /// Stores a file's objects and returns its tree entry with the objects written or found.
    ///
    /// - Parameters:
    ///   - references: delta references by tensor name (the base commit's tensors).
    ///   - recorded: which of some objects the database records.
    ///   - knownDigest: the SHA-256 recorded for a file with the same identity, if any.
    ///   - copies: where `commit --from` keeps a copy of each file it stores, written from the
    ///     bytes as they are hashed.
    func store(_ file: PreparedFile, references: ReferenceIndex, recorded: RecordedLookup,
               knownDigest: (TreeFile) throws -> Digest? = { _ in nil }, batch: ObjectStore.Batch,
               copies: FileCopies? = nil, progress: ProgressCounter?) throws -> (TreeFile, [ObjectInfo], [LowRankTensorRecord]) {
        if var cached = file.cached {
            // An entry `status` wrote, or one of an older version, has no digest: take the one
            // recorded for the same content, or read the file once.
            if cached.sha256 == nil {
                if let known = try knownDigest(cached) {
                    cached.sha256 = known
                } else {
                    let map = try mapped(file.scanned)
                    cached.sha256 = Snapshotter.fileDigest(map)
                    try Snapshotter.checkUnchanged(file.scanned, map: map)
                }
            }
            progress?.add(file.byteCount)
            return (cached, [], [])
        }
        guard lowRank != nil else {
            let (entry, infos) = try storeHashingFirst(file, references: references, recorded: recorded, batch: batch,
                                                      copies: copies, progress: progress)
            return (entry, infos, [])
        }
        return try storeLowRankFile(file, references: references, recorded: recorded, batch: batch, progress: progress)
    }

    /// ``store(_:references:recorded:knownDigest:batch:copies:progress:)`` for `commit --lowrank`:
    /// tensor by tensor, each either low-rank against its reference or encoded losslessly.
    private func storeLowRankFile(_ file: PreparedFile, references: ReferenceIndex, recorded: RecordedLookup,
                                  batch: ObjectStore.Batch, progress: ProgressCounter?) throws -> (TreeFile, [ObjectInfo], [LowRankTensorRecord]) {
        var lowRankRecords: [LowRankTensorRecord] = []
        var infos: [ObjectInfo] = []
        func note(_ result: ObjectStore.WriteResult) throws {
            if result.isNew {
                infos.append(result.info)
            } else if !batch.contains(result.info.id), try recorded([result.info.id]).isEmpty {
                // The file exists from an interrupted command but was never recorded: record what it holds.
                infos.append(try objects.inspect(result.info.id))
            }
        }
        let executable = file.scanned.stat.isExecutable
        guard let st = file.safetensors else {
            let map = try mapped(file.scanned)
            let result = try objects.write(kind: .blob, dtype: .u8, shape: [map.count], source: map.bytes, reference: nil,
                                           options: options, batch: batch,
                                           didProcess: { range in map.release(range); progress?.add(range.count) })
            try note(result)
            let digest = Snapshotter.fileDigest(map)
            try Snapshotter.checkUnchanged(file.scanned, map: map)
            return (TreeFile(path: file.scanned.path, kind: .blob, objectID: result.info.id, byteCount: map.count, executable: executable,
                             sha256: digest), infos, [])
        }
        let header = try objects.write(kind: .blob, dtype: .u8, shape: [st.header.dataStart], source: st.headerBytes,
                                       reference: nil, options: options, batch: batch)
        try note(header)
        progress?.add(st.header.dataStart)
        var tensors: [TreeTensor] = []
        for t in st.tensors {
            let reference = try references.reference(for: t.name, dtype: t.dtype, shape: t.shape)
            if let policy = lowRank, let reference,
               let (result, record) = try storeLowRank(t, source: st.data(of: t), reference: reference, policy: policy, batch: batch) {
                try note(result)
                lowRankRecords.append(record)
                st.release(t)
                progress?.add(t.byteCount)
                tensors.append(TreeTensor(name: t.name, dtype: t.dtype, shape: t.shape, dataOffsets: t.dataOffsets, objectID: result.info.id))
                continue
            }
            let result = try objects.write(kind: .tensor, dtype: t.dtype, shape: t.shape, source: st.data(of: t),
                                           reference: reference, options: options, batch: batch,
                                           didProcess: { range in st.release(t, range: range); progress?.add(range.count) })
            try note(result)
            tensors.append(TreeTensor(name: t.name, dtype: t.dtype, shape: t.shape, dataOffsets: t.dataOffsets, objectID: result.info.id))
        }
        // A file stored low-rank is not what the tree rebuilds: its digest is unknown.
        let digest = lowRankRecords.isEmpty ? Snapshotter.fileDigest(st.map) : nil
        try Snapshotter.checkUnchanged(file.scanned, map: st.map)
        return (TreeFile(path: file.scanned.path, kind: .safetensors, objectID: header.info.id, byteCount: st.map.count,
                         executable: executable, tensors: tensors, sha256: digest),
                infos, lowRankRecords)
    }

    /// The SHA-256 of a whole file (recorded in its tree entry).
    static func fileDigest(_ map: MappedFile) -> Digest {
        let sha = SHA256()
        hashReleasing(0..<map.count, of: map, into: sha.update)
        return sha.finalize()
    }

    /// Feeds `range` of `map` to `update` 4 MiB at a time, each window's pages dropped once hashed:
    /// memory stays bounded whatever the size of a tensor (a 3B model's 788 MB embedding was
    /// resident whole while `status` hashed it).
    static func hashReleasing(_ range: Range<Int>, of map: MappedFile, into update: (UnsafeRawBufferPointer) -> Void) {
        let step = 4 << 20
        var offset = range.lowerBound
        while offset < range.upperBound {
            let window = offset..<min(range.upperBound, offset + step)
            update(map.bytes(in: window))
            map.release(window)
            offset = window.upperBound
        }
    }

    /// A file read while it was shorter than when it was mapped (rewritten in place): what was read
    /// for its missing pages were zeros, not its bytes, so no identity or stat-cache entry may come of it.
    static func refuseShrunk(_ map: MappedFile, _ file: ScannedFile) throws {
        if map.shrank { throw RepoError.io(path: file.path, reason: "changed while it was being read (rewritten in place); run the command again once it is complete") }
    }

    func mapped(_ file: ScannedFile) throws -> MappedFile {
        do {
            return try MappedFile(path: file.absolutePath)
        } catch {
            throw RepoError.delta(error)
        }
    }
}

