import Delta
import Merge

extension MergeContext {
    /// The figures of a settled conflict measured again on the tensor it was settled with: what
    /// describes the merge (far from expert, TALL masks, merged relative update) is the committed
    /// tensor's, and `kept` is dropped (no trimming made it); what describes the experts' task
    /// vectors (cosines, norms, sign conflict, conflicting mass) stays. `metrics` unchanged when
    /// the tensor cannot be compared element by element (a shape or dtype settled by taking a side).
    func remeasured(_ metrics: ConflictMetrics, name: String, settledWith id: ObjectID) throws -> ConflictMetrics {
        guard let baseInput = baseTensors[name] else { return metrics }
        let shape = baseInput.tensor.shape
        let objects = repository.objects
        guard try objects.header(of: id).shape == shape,
              expertTensors.allSatisfy({ ($0[name] ?? baseInput).tensor.shape == shape }) else { return metrics }
        // Read a block at a time, only the blocks the sample measures: never whole tensors (an
        // embedding of a large vocabulary is gigabytes per input).
        let ids = [baseInput.tensor.objectID] + expertTensors.map { ($0[name] ?? baseInput).tensor.objectID } + [id]
        let readers = try ids.map { try TensorReader(store: objects, object: $0) }
        let measured = try ConflictMetrics.measureStreaming(count: shape.elementCount ?? 0, experts: expertTensors.count,
                                                            tallLambda: plan.recipe.consensus?.lambda ?? 1) { i, range, out in
            let reader = readers[i], size = reader.dtype.byteSize
            FloatConversion.toFloat(reader.dtype, try reader.bytes((range.lowerBound * size)..<(range.upperBound * size)), into: out)
        }
        var out = metrics
        out.farFromExpert = measured.farFromExpert
        out.tallNone = measured.tallNone
        out.tallOne = measured.tallOne
        out.tallShared = measured.tallShared
        out.mergedRelativeUpdate = measured.mergedRelativeUpdate
        out.keptFraction = nil
        return out
    }
}
