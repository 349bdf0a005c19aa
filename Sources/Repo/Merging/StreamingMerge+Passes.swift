import Delta
import Dispatch
import Foundation
import Merge
import Synchronization

// A tensor decided by passes (``ChunkPasses``: TIES' thresholds, Model Stock's Gram tables): its passes over the inputs' chunks, and the
// decoding of a chunk's inputs that they and the range-wise merge share (read back from the
// ``PassSpill`` after the first pass).
extension JobRun {
    // MARK: - Tensors decided by passes

    /// Runs every pass of the selection over the inputs' chunks (on every core), then readies the
    /// tensor for range-wise merging. The inputs are verified by the merge itself. The first pass
    /// keeps the decoded inputs in a ``PassSpill`` where it can, for the other passes and the merge.
    func runPasses() throws {
        guard let selection else { return }
        if spills, selection.spillPays {
            let inputCount = 1 + job.inputs.count, byteCount = job.header.byteCount
            let made = arena.map { PassSpill(memory: $0.bytes(inputCount * byteCount), inputCount: inputCount, byteCount: byteCount, chunkCount: chunkCount) }
                ?? PassSpill(directory: store.root, inputCount: inputCount, byteCount: byteCount, chunkCount: chunkCount)
            spill.withLock { $0 = made }
        }
        let next = Atomic<Int>(0)
        while selection.needsPass {
            next.store(0, ordering: .relaxed)
            // Passes whose sums keep their order see the chunks in order: each is decoded by any
            // worker and observed by whichever holds the next one (as chunks are completed).
            let inOrder = selection.ordered ? OrderedBaton() : nil
            let waiting = Mutex<[Int: ChunkWork]>([:])
            // At most a few chunks decoded and not yet observed: a worker that runs ahead of a slow
            // one (a busy machine) waits instead of holding every chunk's inputs.
            let ahead = DispatchSemaphore(value: Parallel.workerCount + 1)
            defer { waiting.withLock { w in
                for work in w.values { work.release() }
                w.removeAll()
            } }
            try Parallel.forEach(min(Parallel.workerCount, chunkCount)) { _, failed in
                while !failed() {
                    if inOrder != nil {
                        // Chunks are taken in order after a permit, so the next one to observe
                        // always holds one: the wait ends.
                        while ahead.wait(timeout: .now() + .milliseconds(20)) == .timedOut {
                            if failed() { return }
                        }
                    }
                    let c = next.add(1, ordering: .relaxed).oldValue
                    guard c < chunkCount else {
                        if inOrder != nil { ahead.signal() }
                        return
                    }
                    let work = ChunkWork(index: c, pool: pool)
                    do {
                        _ = try decodeInputs(c, into: work, positionsNeeded: false)
                    } catch {
                        work.release()
                        throw error
                    }
                    guard let inOrder else {
                        observe(work, selection)
                        continue
                    }
                    waiting.withLock { $0[c] = work }
                    try inOrder.ready(c) { k in
                        guard let w = waiting.withLock({ $0.removeValue(forKey: k) }) else { return }
                        observe(w, selection)
                        ahead.signal()
                    }
                }
            }
            selection.endPass()
        }
        let stream = try selection.stream()
        preparedStream.withLock { $0 = stream }
    }

    /// Feeds a chunk's decoded inputs to the selection's current pass, then gives back its buffers.
    private func observe(_ work: ChunkWork, _ selection: any ChunkPasses) {
        defer { work.release() }
        let count = job.header.chunkRange(work.index).count
        let first = job.header.chunkRange(work.index).lowerBound / elementSize
        if job.header.dtype == .bf16 {
            // Read as stored where the pass can (no Float32 copies).
            let bits = work.raw.map { UnsafePointer($0.baseAddress!.assumingMemoryBound(to: UInt16.self)) }
            if selection.observe(first..<(first + count / elementSize), bf16Base: bits[0], experts: job.slots.map { bits[$0 + 1] }) { return }
        }
        let floats = floatViews(work, count: count)
        selection.observe(first..<(first + count / elementSize), base: floats[0], experts: job.slots.map { floats[$0 + 1] })
    }

    /// Decodes chunk `c` of the base, then of every input (deltas against the base's chunk), into
    /// `work`'s raw buffers in that order (or reads them back from the spill; an in-memory spill's
    /// bytes are decoded into and read in place); returns the chunk's byte count, the base's bytes
    /// and the base's exponent-group positions (computed to decode the inputs, else only when needed).
    func decodeInputs(_ c: Int, into work: ChunkWork, positionsNeeded: Bool) throws
        -> (count: Int, baseChunk: UnsafeRawBufferPointer, positions: UnsafePointer<UInt32>?) {
        let range = job.header.chunkRange(c)
        let count = range.count
        let spill = self.spill.withLock { $0 }
        let buffers = (0..<(1 + job.inputs.count)).map { i in
            spill?.resident(input: i, range: range) ?? UnsafeMutableRawBufferPointer(rebasing: work.take(chunkCapacity)[0..<count])
        }
        for buffer in buffers { work.appendRaw(buffer) }
        let baseChunk = UnsafeRawBufferPointer(buffers[0])
        if let spill, spill.contains(c) {
            for (i, buffer) in buffers.enumerated() where !spill.load(c, input: i, offset: range.lowerBound, into: buffer) {
                throw RepoError.failed("tensor '\(job.name)': cannot read back its decoded chunk \(c) from the merge's spill file: \(String(cString: strerror(errno)))")
            }
            return (count, baseChunk, positionsNeeded ? groupPositions(of: baseChunk, work: work) : nil)
        }
        try decode(job.base, chunk: c, into: buffers[0], baseChunk: nil, positions: nil)
        let positions = groupPositions(of: baseChunk, work: work)
        for (input, buffer) in zip(job.inputs, buffers.dropFirst()) {
            try decode(input, chunk: c, into: buffer, baseChunk: baseChunk, positions: positions)
        }
        spill?.store(c, offset: range.lowerBound, inputs: buffers.map { UnsafeRawBufferPointer($0) })
        return (count, baseChunk, positions)
    }

    /// Float32 views of a chunk's decoded inputs: the bytes themselves, or widened copies.
    func floatViews(_ work: ChunkWork, count: Int) -> [UnsafePointer<Float>] {
        work.raw.map { raw in
            if job.header.dtype == .f32 { return UnsafePointer(raw.baseAddress!.assumingMemoryBound(to: Float.self)) }
            let f = work.takeScratch(chunkCapacity / elementSize * 4)
            let out = f.baseAddress!.bindMemory(to: Float.self, capacity: count / elementSize)
            FloatConversion.toFloat(job.header.dtype, UnsafeRawBufferPointer(rebasing: raw[0..<count]),
                                    into: UnsafeMutableBufferPointer(start: out, count: count / elementSize))
            return UnsafePointer(out)
        }
    }

    /// Closes the spill (its blocks are freed), once the tensor is finished or the run failed.
    func releaseSpill() {
        spill.withLock { s in
            s?.close()
            s = nil
        }
    }
}
