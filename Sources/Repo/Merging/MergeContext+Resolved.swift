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
        let base = try objects.floats(baseInput.tensor.objectID)
        let experts = try expertTensors.map { tensors -> [Float] in
            let expertID = (tensors[name] ?? baseInput).tensor.objectID
            return expertID == baseInput.tensor.objectID ? base : try objects.floats(expertID)
        }
        let merged = id == baseInput.tensor.objectID ? base : try objects.floats(id)
        let measured = ConflictMetrics.measure(base: base, experts: experts, merged: merged, keptFraction: nil,
                                               tallLambda: plan.recipe.consensus?.lambda ?? 1, notes: [:])
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
