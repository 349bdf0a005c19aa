import Delta
import Foundation
import Merge

// A result tensor of several chunks coded once its id is known (``JobRun/defersCoding``).
//
// Why: a merge done again (the same recipe on the same inputs) produces objects the store already
// holds. A one-chunk result is named before it is coded; a larger one is named only when its last
// chunk is hashed, so it used to be coded (zstd, grouping) and written in full, then thrown away:
// a tenth of a repeated MiniLM merge's CPU for the 47 MB word embeddings. Such a tensor is merged,
// measured, written to the prepared file and hashed as before, its base chunks kept; when its id is
// known and the store lacks it, its chunks are read back from the prepared file, hashed again
// (they must be the bytes that were named) and coded against the kept base chunks, in order.
//
// The base chunks are kept only once the merge has written a result new to the store: in a merge
// done again every result is found stored, and keeping them (47 MB for MiniLM's embeddings) cost
// fresh pages and a copy per chunk for nothing. A result that turns out new without them (its
// chunks merged before any new result was written) decodes the base's chunks again, and hashes
// them against the base's id, as every object read is verified (docs/format.md §5.7).
extension JobRun {
    /// Bytes of a result whose coding may wait for its id: its base chunks are held until then.
    static let deferredCodingLimit = 64 << 20

    /// Codes the merged tensor named `id` from the prepared file into a new object file; returns
    /// the writer (to stage) and the bytes written after the object's file header.
    func codeDeferred(_ id: ObjectID) throws -> (writer: AtomicFileWriter, stored: Int) {
        let h = job.header
        guard let prepared = job.prepared else { throw RepoError.failed("tensor '\(job.name)' has no prepared bytes to code") }
        let w = try store.incomingWriter(bufferByteCount: 0)
        let merged = pool.take(chunkCapacity), coded = pool.take(Zstd.compressBound(chunkCapacity) + 8)
        let planes = pool.take(TensorEncoding.scratchFactor * chunkCapacity), grouped = pool.take(chunkCapacity / elementSize * 4)
        let decodedBase = pool.take(chunkCapacity)
        defer { for b in [merged, coded, planes, grouped, decodedBase] { pool.give(b) } }
        // Base chunks not kept are decoded again: then every base chunk is hashed, in order, against its id.
        let baseHasher = (0..<chunkCount).allSatisfy { c in heldBase.withLock { $0[c] != nil } } ? nil : TensorHasher(dtype: h.dtype, shape: h.shape)
        do {
            let header = EncodedTensorHeader(encoding: encoding, dtype: h.dtype, shape: h.shape, byteCount: h.byteCount,
                                             chunkByteCount: h.chunkByteCount, reference: job.base.id).serialized()
            try w.write(ObjectStore.fileHeader(.tensor) + header)
            var stored = header.count
            let hasher = TensorHasher(dtype: h.dtype, shape: h.shape)
            for c in 0..<chunkCount {
                let range = h.chunkRange(c)
                let out = UnsafeMutableRawBufferPointer(rebasing: merged[0..<range.count])
                guard prepared.readPart(job.name, into: out, at: range.lowerBound) else {
                    throw RepoError.failed("tensor '\(job.name)': cannot read back its merged bytes from the prepared file: \(String(cString: strerror(errno)))")
                }
                hasher.update(UnsafeRawBufferPointer(out))
                let baseChunk: UnsafeRawBufferPointer
                if let base = heldBase.withLock({ $0[c] }) {
                    baseChunk = UnsafeRawBufferPointer(rebasing: base.value[0..<range.count])
                } else {
                    let buffer = UnsafeMutableRawBufferPointer(rebasing: decodedBase[0..<range.count])
                    try decode(job.base, chunk: c, into: buffer, baseChunk: nil, positions: nil)
                    baseChunk = UnsafeRawBufferPointer(buffer)
                }
                baseHasher?.update(baseChunk)
                let positions = grouped.baseAddress!.bindMemory(to: UInt32.self, capacity: max(range.count / elementSize, 1))
                ChunkCodec.groupPositions(dtype: h.dtype, reference: baseChunk, into: positions)
                let (coder, n) = ChunkCodec.encode(dtype: h.dtype, encoding: encoding, level: level, source: UnsafeRawBufferPointer(out),
                                                   reference: baseChunk, planes: planes, output: UnsafeMutableRawBufferPointer(rebasing: coded[8...]),
                                                   positions: UnsafePointer(positions))
                coded[0] = coder.rawValue
                coded[1] = 0; coded[2] = 0; coded[3] = 0
                coded.storeBytes(of: UInt32(n).littleEndian, toByteOffset: 4, as: UInt32.self)
                try w.write(UnsafeRawBufferPointer(rebasing: coded[0..<(8 + n)]))
                stored += 8 + n
            }
            guard hasher.finalize() == id else {
                throw RepoError.failed("tensor '\(job.name)': the merged bytes read back from the prepared file are not those merged")
            }
            if let digest = baseHasher?.finalize(), digest != job.base.id {
                throw RepoError.corruptObject(object: job.base.id.short, problem: "decoded bytes hash to \(digest.short), expected \(job.base.id.short)")
            }
            return (w, stored)
        } catch {
            w.abort()
            throw error
        }
    }

    /// Gives back the kept base chunks (the tensor is finished, or the run failed).
    func releaseHeldBase() {
        let held = heldBase.withLock { h -> [UnsafeSendable<UnsafeMutableRawBufferPointer>] in
            defer { h.removeAll() }
            return Array(h.values)
        }
        for b in held { pool.give(b.value) }
    }
}
