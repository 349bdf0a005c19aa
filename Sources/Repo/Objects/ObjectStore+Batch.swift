import Delta
import Foundation

/// Many objects at once: encoding those a commit lacks (their identities already known), and
/// decoding the objects of a file for a checkout or an export. Both run through ``TensorBatch``,
/// chunk by chunk on every core, and drop the pages of every object they read as they go.
extension ObjectStore {
    /// An object to store whose identity the caller computed (by hashing the bytes first).
    struct NewObject {
        var id: ObjectID
        var kind: ObjectKind
        var dtype: DType
        var shape: Shape
        var source: UnsafeRawBufferPointer
        /// A delta reference (used when its depth, dtype and shape allow).
        var reference: (info: ObjectInfo, header: EncodedTensorHeader)?
    }

    /// Encodes and stores `items`, in order, unless the store or the batch has them already.
    ///
    /// - Parameter didProcess: called with each item's source byte ranges once they are coded.
    /// - Returns: one result per item.
    func write(_ items: [NewObject], options: CodecOptions, batch: Batch,
               didProcess: ((_ item: Int, Range<Int>) -> Void)? = nil) throws -> [WriteResult] {
        var jobs: [TensorEncodeJob] = []
        var depths: [Int] = []
        for item in items {
            var job = TensorEncodeJob(dtype: item.dtype, shape: item.shape, source: item.source, encoding: .whole, reference: nil, options: options)
            var depth = 0
            if let reference = item.reference, item.kind == .tensor, reference.info.depth < ObjectStore.maxDepth,
               reference.header.dtype == item.dtype, reference.header.shape == item.shape {
                job.reference = TensorPipeline.Reference(digest: reference.info.id, chunks: try chunkSource(for: reference.info.id))
                job.encoding = TensorEncoding.preferredDelta(for: item.dtype)
                job.options = CodecOptions(chunkByteCount: reference.header.chunkByteCount, level: options.level, rans: options.rans)
                depth = reference.info.depth + 1
            }
            jobs.append(job)
            depths.append(depth)
        }
        var results: [WriteResult] = []
        results.reserveCapacity(items.count)
        var writer: AtomicFileWriter?
        do {
            try TensorBatch.encode(jobs, sink: { i, bytes in
                if writer == nil {
                    let w = try incomingWriter()
                    writer = w
                    try w.write(ObjectStore.fileHeader(items[i].kind))
                }
                try writer!.write(bytes)
            }, finished: { i, stored in
                let header = jobs[i].header
                let info = ObjectInfo(id: items[i].id, kind: items[i].kind, encoding: header.encoding, reference: header.reference,
                                      logicalByteCount: items[i].source.count, storedByteCount: ObjectStore.headerByteCount + stored,
                                      depth: depths[i])
                let w = writer!
                writer = nil
                results.append(try stage(w, info: info, batch: batch))
            }, didProcess: didProcess)
        } catch {
            writer?.abort()
            throw error
        }
        return results
    }

    /// A decode job for an object (and, through ``chunkSource(for:depth:)``, its reference chain),
    /// verifying its identity when `verify` is set. Its pages are dropped chunk by chunk.
    func decodeJob(_ id: ObjectID, verify: Bool) throws -> (job: TensorDecodeJob, kind: ObjectKind) {
        let (kind, tensor, map) = try openMapped(id)
        let reference = try tensor.header.reference.map { try chunkSource(for: $0) }
        let release = ObjectStore.chunkReleaser(tensor, map: map)
        let job = TensorDecodeJob(tensor: tensor, reference: reference,
                                  expected: verify ? (id, kind == .blob ? .blob : .tensor) : nil, chunkDone: release)
        return (job, kind)
    }

    /// Drops the pages of a chunk's stored bytes once it is decoded (they are read once per use).
    static func chunkReleaser(_ tensor: EncodedTensor, map: MappedFile?) -> (@Sendable (Int) -> Void)? {
        guard let map, tensor.factors == nil, let start = tensor.bytes.baseAddress, let fileStart = map.bytes.baseAddress else { return nil }
        let offset = start - fileStart
        let ranges = tensor.chunks.map { ($0.range.lowerBound + offset)..<($0.range.upperBound + offset) }
        return { index in
            if index < ranges.count { map.release(ranges[index]) }
        }
    }
}

extension Repository {
    /// `objects`, then the rows `tree` needs that an interrupted command left without: its object
    /// files were synced and renamed into place, its record never made. A command that stores the
    /// same object again finds the file and skips writing it (and so reports no new object), and
    /// would record a tree whose rows are missing (SQLite refuses it: a foreign key). References
    /// come before the objects coded against them.
    /// - Parameter also: other objects the record names (a merge's report, a stopped merge's
    ///   decided tensors).
    func withLeftoverRows(_ objects: [ObjectInfo], for tree: Tree?, also: some Sequence<ObjectID> = [ObjectID]()) throws -> [ObjectInfo] {
        var given = Set(objects.map(\.id))
        let wanted = Set((tree?.files ?? []).flatMap { [$0.objectID] + $0.tensors.map(\.objectID) }).union(also).subtracting(given)
        guard !wanted.isEmpty else { return objects }
        let recorded = try history.objectInfos(wanted)
        var leftovers: [ObjectInfo] = []
        func add(_ id: ObjectID) throws {
            guard given.insert(id).inserted, recorded[id] == nil, try history.objectInfos([id]).isEmpty, self.objects.exists(id) else { return }
            let info = try self.objects.inspect(id)
            if let reference = info.reference { try add(reference) }
            leftovers.append(info)
        }
        for id in wanted.sorted() where recorded[id] == nil { try add(id) }
        return leftovers + objects
    }
}
