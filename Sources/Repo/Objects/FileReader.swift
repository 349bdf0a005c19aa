import Delta
import Foundation

/// Reads the bytes of a committed file straight from the object store, a piece at a time, without
/// writing the file anywhere: the header blob, then each tensor decoded chunk by chunk (docs/format.md
/// §4.5). `mrepo serve` streams files and answers byte ranges with it.
///
/// The layout (where each object's bytes fall in the file) comes from the tree alone, so the size
/// and any range are known before anything is decoded; a range decodes only the chunks it touches.
/// Every object read from its first byte to its last is verified against its id, and a read of the
/// whole file also against the file's recorded SHA-256: a mismatch throws, so the server can cut the
/// transfer instead of finishing a wrong file.
public final class FileReader: Sendable {
    public let file: TreeFile
    let store: ObjectStore
    /// Where each object's bytes lie in the file, in order, without gaps.
    let segments: [Segment]

    struct Segment: Sendable {
        var range: Range<Int>
        var object: ObjectID
        var identityPrefix: [UInt8]
    }

    /// Lays out a file of a tree; throws when the tree's offsets do not tile the file.
    public init(store: ObjectStore, file: TreeFile) throws {
        self.file = file
        self.store = store
        let headerCount = try store.header(of: file.objectID).byteCount
        var segments = [Segment(range: 0..<headerCount, object: file.objectID, identityPrefix: BlobHasher.prefix(byteCount: headerCount))]
        var offset = headerCount
        if file.kind == .safetensors {
            for t in file.tensors.inDataOrder() {
                guard headerCount + t.dataOffsets.lowerBound == offset else {
                    throw RepoError.corruptObject(object: file.objectID.short, problem: "\(file.path): tensor '\(t.name)' does not follow the previous one")
                }
                offset += t.byteCount
                segments.append(Segment(range: (offset - t.byteCount)..<offset, object: t.objectID,
                                        identityPrefix: TensorHasher.prefix(dtype: t.dtype, shape: t.shape)))
            }
        }
        guard offset == file.byteCount else {
            throw RepoError.corruptObject(object: file.objectID.short, problem: "\(file.path): the objects hold \(offset) bytes, the tree records \(file.byteCount)")
        }
        self.segments = segments.filter { !$0.range.isEmpty }
    }

    public var byteCount: Int { file.byteCount }

    /// A cursor over `range` (default: the whole file).
    public func cursor(_ range: Range<Int>? = nil) -> Cursor {
        Cursor(reader: self, range: range ?? 0..<file.byteCount)
    }

    /// Walks a range of the file. Not `Sendable`: one consumer at a time, in one task.
    public final class Cursor {
        let reader: FileReader
        public let range: Range<Int>
        private var position: Int
        private var segmentIndex = 0
        private var open: OpenObject?
        /// The whole file's SHA-256, while the cursor reads the file from its first byte.
        private let fileHash: SHA256?

        init(reader: FileReader, range: Range<Int>) {
            self.reader = reader
            self.range = range
            position = range.lowerBound
            fileHash = range == 0..<reader.file.byteCount && reader.file.sha256 != nil ? SHA256() : nil
            segmentIndex = reader.segments.firstIndex { $0.range.upperBound > range.lowerBound } ?? reader.segments.count
        }

        /// An object being read, with the maps of its delta chain (their pages are dropped after
        /// each piece so resident memory stays at a chunk, however many transfers run).
        private struct OpenObject {
            var segment: Segment
            var tensor: EncodedTensor
            var reference: ChunkSource?
            var maps: [MappedFile]
            /// Identity hash, when the object is read from its first byte.
            var hasher: SHA256?
        }

        /// Decodes the next piece (at most one chunk of one object) and hands it to `body`, whose
        /// buffer is valid only during the call. Returns false at the end of the range.
        ///
        /// - Throws: ``RepoError/corruptObject(object:problem:)`` when an object does not decode or
        ///   does not verify; the bytes handed out before are then not to be trusted.
        public func next(_ body: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
            guard position < range.upperBound, segmentIndex < reader.segments.count else { return false }
            let segment = reader.segments[segmentIndex]
            if open == nil || open!.segment.range != segment.range {
                open = try openObject(segment)
            }
            let object = open!
            let header = object.tensor.header
            let local = position - segment.range.lowerBound
            let chunk = local / header.chunkByteCount
            let chunkRange = header.chunkRange(chunk)
            let end = min(range.upperBound, segment.range.lowerBound + chunkRange.upperBound)
            try withScratch(chunkRange.count) { destination in
                let out = UnsafeMutableRawBufferPointer(rebasing: destination[0..<chunkRange.count])
                try withScratch(ObjectStore.chunkScratchByteCount(header)) { scratch in
                    do {
                        try object.tensor.decodeChunk(chunk, into: out, reference: object.reference, scratch: scratch)
                    } catch let error as DeltaError {
                        throw RepoError.corruptObject(object: segment.object.short, problem: error.description)
                    }
                }
                let piece = UnsafeRawBufferPointer(rebasing: out[(local - chunkRange.lowerBound)..<(end - segment.range.lowerBound - chunkRange.lowerBound)])
                object.hasher?.update(piece)
                fileHash?.update(piece)
                try body(piece)
            }
            for map in object.maps { map.release(0..<map.count) }
            position = end
            if position == segment.range.upperBound {
                if let hasher = object.hasher {
                    let digest = hasher.finalize()
                    guard digest == segment.object else {
                        throw RepoError.corruptObject(object: segment.object.short, problem: "\(reader.file.path): decoded bytes hash to \(digest.short)")
                    }
                }
                open = nil
                segmentIndex += 1
            }
            if position == reader.file.byteCount, let fileHash, let expected = reader.file.sha256 {
                let actual = fileHash.finalize()
                guard actual == expected else {
                    throw RepoError.corruptTree(reader.file.path, problem: "the rebuilt file's SHA-256 is \(actual.short), the tree records \(expected.short)")
                }
            }
            return true
        }

        private func openObject(_ segment: Segment) throws -> OpenObject {
            var maps: [MappedFile] = []
            let (_, tensor) = try reader.store.open(segment.object, keeping: &maps)
            guard tensor.header.byteCount == segment.range.count else {
                throw RepoError.corruptObject(object: segment.object.short, problem: "\(reader.file.path): holds \(tensor.header.byteCount) bytes, the tree says \(segment.range.count)")
            }
            let reference = try tensor.header.reference.map { try reader.store.chunkSource(for: $0, keeping: &maps) }
            var hasher: SHA256?
            if position == segment.range.lowerBound {
                hasher = SHA256()
                hasher!.update(segment.identityPrefix)
            }
            return OpenObject(segment: segment, tensor: tensor, reference: reference, maps: maps, hasher: hasher)
        }
    }
}

extension ObjectStore {
    /// ``open(_:)`` that also hands out the file's map (so its pages can be dropped).
    func open(_ id: ObjectID, keeping maps: inout [MappedFile]) throws -> (kind: ObjectKind, tensor: EncodedTensor) {
        let map: MappedFile
        do {
            map = try MappedFile(path: path(for: id))
        } catch {
            throw RepoError.corruptObject(object: id.short, problem: "missing object file (\(error))")
        }
        maps.append(map)
        let (kind, tensor, _) = try open(id, map: map)
        return (kind, tensor)
    }

    /// ``chunkSource(for:depth:)`` that hands out the maps of the delta chain.
    func chunkSource(for id: ObjectID, keeping maps: inout [MappedFile], depth: Int = 0) throws -> ChunkSource {
        guard depth <= ObjectStore.readableDepth else { throw RepoError.corruptObject(object: id.short, problem: "delta chain is too deep (a cycle?)") }
        let (_, tensor) = try open(id, keeping: &maps)
        let reference = try tensor.header.reference.map { try chunkSource(for: $0, keeping: &maps, depth: depth + 1) }
        let scratchSize = ObjectStore.chunkScratchByteCount(tensor.header)
        return { index, into in
            try withScratch(scratchSize) { scratch in
                try tensor.decodeChunk(index, into: into, reference: reference, scratch: scratch)
            }
        }
    }
}
