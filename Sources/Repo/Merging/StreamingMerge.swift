import Delta
import Foundation
import Merge
import Synchronization

/// Merges tensors chunk by chunk, several tensors at once, on every core.
///
/// A tensor whose method decides nothing from whole inputs (linear, task arithmetic, DARE without
/// rescaling: ``MergePlan/mergesByRange(_:expertCount:)``) is merged one chunk per work item: the
/// base's chunk is decoded, each expert's chunk decoded against it, the chunk merged, post-processed
/// and measured (``TensorStream``), written to the prepared checkout and coded against the base's
/// chunk, all while the chunk is in cache; no tensor is held whole. A tensor whose whole inputs would
/// pass ``MergeOptions/wholeTensorBudget`` and whose method's first pass can run over chunks (TIES'
/// thresholds: ``StreamingSelection``) is decided by passes over its chunks first, then merged the
/// same way. Other tensors (small TIES tensors, SLERP's angle, Model Stock's cosines) are decoded
/// chunk by chunk into whole buffers, prepared once every chunk is in, then merged and coded chunk
/// by chunk the same way.
///
/// Each tensor is completed in chunk order by whichever worker finished the next chunk: the inputs'
/// and the result's identities are hashed and the coded chunks appended to the object file, which is
/// the file ``ObjectStore/write(kind:dtype:shape:source:reference:options:batch:referenceBytes:didProcess:window:)``
/// would write, byte for byte. Work items are taken from a queue ordered by tensor; tensors held whole
/// are admitted while their buffers fit a budget of about one largest tensor's inputs.
final class StreamingMerge: Sendable {
    /// One tensor to merge, prepared by ``MergeContext``.
    struct Job: Sendable {
        var name: String
        var base: Input
        /// Inputs other than the base (an expert that holds the base's tensor, or another
        /// expert's, is not decoded twice).
        var inputs: [Input]
        /// For each expert: -1 for the base, else its index in `inputs`.
        var slots: [Int]
        var header: EncodedTensorHeader
        /// The base's stored facts (the result is a delta against it, one level deeper).
        var baseInfo: ObjectInfo
        /// Offered each chunk of the result (nil: nothing is prepared).
        var prepared: PreparedCheckout?
        var merging: Merging
        /// A result whose metrics trip these is not stored.
        var thresholds: ConflictThresholds
        /// For the base, then each input: its file and the CRC-32C its row records, where that may
        /// verify it instead of a hash of its decoded bytes (docs/format.md §5.7); nil otherwise.
        var checksums: [ChecksumCheck?] = []
    }

    /// An object file and the checksum recorded for it.
    struct ChecksumCheck: Sendable {
        var map: MappedFile
        var recorded: UInt32
    }

    /// How a tensor's merge is prepared.
    enum Merging: Sendable {
        /// Ready to take ranges.
        case byRange(TensorStream)
        /// Prepared by passes over the inputs, chunk by chunk (TIES' thresholds of a large tensor,
        /// Model Stock's Gram tables of a tensor of several chunks), then taking ranges.
        case passes(any ChunkPasses)
        /// Prepared from the whole inputs (base, then each expert, as Float32) once they are decoded.
        /// A tensor of one chunk is prepared from that chunk, decoded once, in the work item that
        /// merges it.
        case whole(@Sendable (_ base: UnsafePointer<Float>, _ experts: [UnsafePointer<Float>]) throws -> TensorStream)
    }

    /// A stored tensor decoded chunk by chunk: its own reference is the merge base's chunk, a
    /// source of decoded chunks, or nothing (whole).
    struct Input: Sendable {
        var id: ObjectID
        var tensor: EncodedTensor
        var reference: Reference

        enum Reference: Sendable {
            case none
            case base
            case chunks(ChunkSource)
        }
    }

    /// What a job produced: its object (nil when a threshold was tripped) and metrics.
    struct Output: Sendable {
        var info: ObjectInfo?
        var isNew: Bool
        var metrics: ConflictMetrics
    }

    private let store: ObjectStore
    private let batch: ObjectStore.Batch
    private let level: Int32
    /// Whether tensors decided by passes keep their decoded inputs for the later passes (``PassSpill``).
    private let spills: Bool
    /// Inputs' bytes up to which a spill is kept in memory (in ``arena``), not in a file.
    private let residentBudget: Int
    private let pool = ChunkBufferPool()
    private let arena = SpillArena()

    init(store: ObjectStore, batch: ObjectStore.Batch, level: Int32, spills: Bool = true, residentBudget: Int = 0) {
        self.store = store
        self.batch = batch
        self.level = level
        self.spills = spills
        self.residentBudget = residentBudget
    }

    /// Bytes a tensor merged whole holds: the base's and each input's bytes, and their Float32 copies.
    static func wholeByteCount(_ h: EncodedTensorHeader, inputs: Int) -> Int {
        (1 + inputs) * (h.byteCount + (h.dtype == .f32 ? 0 : h.byteCount / h.dtype.byteSize * 4))
    }

    /// Whether a tensor can be merged by chunks: every input stored with the base's dtype, size and
    /// chunk size, chunks holding whole blocks of the method, and a result coded against the base.
    static func accepts(base: EncodedTensorHeader, baseInfo: ObjectInfo?, experts: [EncodedTensorHeader], outputDType: DType?) -> Bool {
        guard base.byteCount > 0, base.dtype.isFloatingPoint, base.encoding != .lowRank, outputDType == nil || outputDType == base.dtype,
              let baseInfo, baseInfo.depth < ObjectStore.maxDepth,
              base.chunkByteCount % (TensorStream.blockElements * base.dtype.byteSize) == 0 else { return false }
        return experts.allSatisfy {
            $0.dtype == base.dtype && $0.byteCount == base.byteCount && $0.chunkByteCount == base.chunkByteCount && $0.encoding != .lowRank
        }
    }

    /// Merges every job; results in job order. On failure the objects this call wrote are deleted
    /// and the first error is thrown.
    func run(_ jobs: [Job], progress: ProgressCounter?) throws -> [Output] {
        let runs = jobs.map { job in
            let resident = spills && (1 + job.inputs.count) * job.header.byteCount <= residentBudget
            return JobRun(job, pool: pool, level: level, store: store, batch: batch, progress: progress, spills: spills,
                          arena: resident ? arena : nil)
        }
        defer {
            pool.drain()
            arena.free()
        }
        do {
            // Tensors decided by passes go first, one at a time on every core: their passes hold a
            // chunk per worker (and, for ties, 4 bytes per element), and leave range-wise tensors.
            // One whose passes kept its decoded inputs is merged at once, so that one spill file
            // exists at a time; the others wait for the queue with the rest.
            var rest: [JobRun] = []
            for run in runs {
                if run.selection != nil {
                    try run.runPasses()
                    if run.spilled {
                        try process([run])
                        continue
                    }
                }
                rest.append(run)
            }
            // Every spilled tensor is finished: the tensors held whole get the arena's memory.
            arena.free()
            try process(rest)
        } catch {
            for run in runs { run.abort() }
            throw error
        }
        return try runs.map { try $0.output() }
    }

    /// Runs every work item of `runs` on every core; throws the first failure.
    private func process(_ runs: [JobRun]) throws {
        guard !runs.isEmpty else { return }
        let queue = WorkQueue(runs: runs)
        try Parallel.forEach(Parallel.workerCount) { _, _ in
            while let item = queue.next() {
                do {
                    try item.perform()
                    queue.done(item)
                } catch {
                    queue.fail(error)
                }
            }
        }
        if let error = queue.failure { throw error }
    }
}

/// A SHA-256 fed by whichever worker holds the next chunk.
final class LockedHasher: Sendable {
    private let sha: Mutex<SHA256>

    init(_ prefix: [UInt8]) {
        let sha = SHA256()
        sha.update(prefix)
        self.sha = Mutex(sha)
    }

    func update(_ bytes: UnsafeRawBufferPointer) {
        let b = UnsafeSendable(bytes)
        sha.withLock { $0.update(b.value) }
    }

    func finalize() -> Digest { sha.withLock { $0.finalize() } }
}
