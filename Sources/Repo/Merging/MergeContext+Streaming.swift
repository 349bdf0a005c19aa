import Delta
import Foundation
import Merge
import Synchronization

extension MergeContext {
    /// The tensors to merge chunk by chunk (``StreamingMerge``): merged by the plan (no recorded
    /// resolution, no vocabulary rows to settle), stored so that chunks line up. The others take
    /// ``mergeTensor(_:context:batch:thresholds:plan:)``.
    func streamingJobs(_ report: ConflictReport, layerCount: Int) throws -> [StreamingMerge.Job] {
        // The tensors and their base objects first, without touching the store; then every base's
        // stored facts in one read of the history (not one read per tensor), then the objects
        // opened on every core: a model's few hundred object files are opened, mapped and their
        // headers read before the first chunk is merged, on the command's critical path.
        var candidates: [(name: String, baseID: ObjectID, shape: [Int])] = []
        for entry in report.tensors where entry.mergeClass == .merged && resolutions[entry.name] == nil {
            guard case .merge = decision(for: entry.name), let baseInput = baseTensors[entry.name] else { continue }
            candidates.append((entry.name, baseInput.tensor.objectID, baseInput.tensor.shape))
        }
        guard !candidates.isEmpty else { return [] }
        // The inputs' rows too: their checksums stand in for hashing their decoded bytes.
        let inputIDs = candidates.flatMap { c in expertTensors.compactMap { $0[c.name]?.tensor.objectID } }
        let infos = try repository.history.objectInfos(candidates.map(\.baseID) + inputIDs)
        let jobs = Mutex<[StreamingMerge.Job?]>(Array(repeating: nil, count: candidates.count))
        try Parallel.forEach(candidates.count) { index, failed in
            guard !failed() else { return }
            let c = candidates[index]
            let job = try streamingJob(name: c.name, baseID: c.baseID, shape: c.shape, infos: infos, layerCount: layerCount)
            jobs.withLock { $0[index] = job }
        }
        return jobs.withLock { $0.compactMap { $0 } }
    }

    /// One tensor's streaming job, or nil when the tensor is not streamed.
    private func streamingJob(name: String, baseID: ObjectID, shape: [Int], infos: [ObjectID: ObjectInfo], layerCount: Int) throws -> StreamingMerge.Job? {
        let store = repository.objects
        let context = TensorContext(name: name, shape: shape, layerCount: layerCount)
        let baseInfo = infos[baseID]
        let (_, base, baseMap) = try store.openMapped(baseID)
        // The files whose recorded checksum may stand in for hashing the decoded bytes (checked when
        // the tensor is merged, JobRun.checksumTrust): a whole base's; an input's that is whole, or
        // coded against such a base. A base that is itself a delta, and deeper chains, are hashed.
        func check(_ id: ObjectID, _ map: MappedFile) -> StreamingMerge.ChecksumCheck? {
            infos[id]?.checksum.map { StreamingMerge.ChecksumCheck(map: map, recorded: $0) }
        }
        let baseCheck = base.header.reference == nil ? check(baseID, baseMap) : nil
        var checks = [baseCheck]
        func input(_ id: ObjectID, _ tensor: EncodedTensor) throws -> StreamingMerge.Input {
            // Every input of every tensor is opened now; the pages its chunk records were read
            // from would stay resident until its chunks are decoded (210 MB for a 3B model's
            // MLP projections, 13 chunks each).
            tensor.releaseStoredBytes()
            let reference: StreamingMerge.Input.Reference
            switch tensor.header.reference {
            case nil: reference = .none
            case baseID?: reference = .base
            case let other?: reference = .chunks(try store.chunkSource(for: other))
            }
            return StreamingMerge.Input(id: id, tensor: tensor, reference: reference)
        }
        var inputs: [StreamingMerge.Input] = []
        var slots: [Int] = []
        for tensors in expertTensors {
            let id = tensors[name]?.tensor.objectID ?? baseID
            if id == baseID {
                slots.append(-1)
            } else if let j = inputs.firstIndex(where: { $0.id == id }) {
                slots.append(j)
            } else {
                let (_, tensor, map) = try store.openMapped(id)
                let eligible = tensor.header.reference == nil || (tensor.header.reference == baseID && baseCheck != nil)
                checks.append(eligible ? check(id, map) : nil)
                inputs.append(try input(id, tensor))
                slots.append(inputs.count - 1)
            }
        }
        guard StreamingMerge.accepts(base: base.header, baseInfo: baseInfo, experts: inputs.map(\.tensor.header),
                                     outputDType: options.outputDType), let baseInfo else { return nil }
        let n = base.header.byteCount / base.header.dtype.byteSize
        let merging: StreamingMerge.Merging
        let (plan, expertCount) = (self.plan, experts.count)
        if plan.mergesByRange(context, expertCount: expertCount) {
            merging = .byRange(try TensorStream(plan: plan, context: context, count: n, expertCount: expertCount, hasBase: true))
        } else if base.header.chunkCount > 1,
                  let passes = ModelStock.passes(plan: plan, context: context, count: n, expertCount: expertCount,
                                                 chunkElements: base.header.chunkByteCount / base.header.dtype.byteSize) {
            // Its Gram tables are summed chunk by chunk as the inputs are decoded (kept in the
            // passes' spill for the merge), instead of holding every input whole.
            merging = .passes(passes)
        } else if StreamingMerge.wholeByteCount(base.header, inputs: inputs.count) > options.wholeTensorBudget,
                  let selection = StreamingSelection.make(plan: plan, context: context, count: n, expertCount: expertCount) {
            merging = .passes(selection)
        } else {
            merging = .whole { base, experts in
                try TensorStream(plan: plan, context: context, count: n, expertCount: expertCount, hasBase: true,
                                 wholeBase: base, wholeExperts: experts)
            }
        }
        return StreamingMerge.Job(name: name, base: try input(baseID, base), inputs: inputs, slots: slots, header: base.header,
                                  baseInfo: baseInfo, prepared: prepared, merging: merging, thresholds: options.thresholds,
                                  checksums: checks)
    }

    /// Merges the streaming jobs; their objects join the batch. Returns each tensor's object (nil
    /// when its metrics trip a threshold) and metrics by name.
    func runStreaming(_ jobs: [StreamingMerge.Job], batch: ObjectStore.Batch, counter: ProgressCounter) throws -> [String: (ObjectInfo?, ConflictMetrics)] {
        guard !jobs.isEmpty else { return [:] }
        let engine = StreamingMerge(store: repository.objects, batch: batch, level: repository.codecOptions.level,
                                     spills: options.spillPasses, residentBudget: options.residentSpillBudget)
        let outputs = try engine.run(jobs, progress: counter)
        // A result the store already held keeps its recorded facts (read at once for all of them).
        let known = try repository.history.objectInfos(outputs.compactMap { $0.isNew ? nil : $0.info?.id })
        var out: [String: (ObjectInfo?, ConflictMetrics)] = [:]
        for (job, o) in zip(jobs, outputs) {
            var info = o.info
            if !o.isNew, let id = info?.id, let recorded = known[id] { info = recorded }
            out[job.name] = (info, o.metrics)
        }
        return out
    }
}
