import Delta
import Foundation
import Merge

extension MergeContext {
    /// The tensors to merge chunk by chunk (``StreamingMerge``): merged by the plan (no recorded
    /// resolution, no vocabulary rows to settle), stored so that chunks line up. The others take
    /// ``mergeTensor(_:context:batch:thresholds:plan:)``.
    func streamingJobs(_ report: ConflictReport, layerCount: Int) throws -> [StreamingMerge.Job] {
        let store = repository.objects
        var jobs: [StreamingMerge.Job] = []
        for entry in report.tensors where entry.mergeClass == .merged && resolutions[entry.name] == nil {
            let name = entry.name
            guard case .merge = decision(for: name), let baseInput = baseTensors[name] else { continue }
            let context = TensorContext(name: name, shape: baseInput.tensor.shape, layerCount: layerCount)
            let baseID = baseInput.tensor.objectID
            let base = try store.open(baseID).tensor
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
                    inputs.append(try input(id, try store.open(id).tensor))
                    slots.append(inputs.count - 1)
                }
            }
            let baseInfo = try repository.history.objectInfo(baseID)
            guard StreamingMerge.accepts(base: base.header, baseInfo: baseInfo, experts: inputs.map(\.tensor.header),
                                         outputDType: options.outputDType), let baseInfo else { continue }
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
            jobs.append(StreamingMerge.Job(name: name, base: try input(baseID, base), inputs: inputs, slots: slots, header: base.header,
                                           baseInfo: baseInfo, prepared: prepared, merging: merging, thresholds: options.thresholds))
        }
        return jobs
    }

    /// Merges the streaming jobs; their objects join the batch. Returns each tensor's object (nil
    /// when its metrics trip a threshold) and metrics by name.
    func runStreaming(_ jobs: [StreamingMerge.Job], batch: ObjectStore.Batch, counter: ProgressCounter) throws -> [String: (ObjectInfo?, ConflictMetrics)] {
        guard !jobs.isEmpty else { return [:] }
        let engine = StreamingMerge(store: repository.objects, batch: batch, level: repository.codecOptions.level,
                                     spills: options.spillPasses, residentBudget: options.residentSpillBudget)
        let outputs = try engine.run(jobs, progress: counter)
        var out: [String: (ObjectInfo?, ConflictMetrics)] = [:]
        for (job, o) in zip(jobs, outputs) {
            var info = o.info
            if !o.isNew, let id = info?.id, let known = try repository.history.objectInfo(id) { info = known }
            out[job.name] = (info, o.metrics)
        }
        return out
    }
}
