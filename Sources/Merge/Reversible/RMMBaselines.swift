import Delta
import Foundation

/// The single-model merges a reversible merge is compared with, measured the same way: by the
/// relative Frobenius error ‖ΔW_merged − ΔWᵢ‖ / ‖ΔWᵢ‖ of each expert's task vector.
///
/// Each method runs twice: on the factors separately (all L's merged, all R's merged, then
/// multiplied: the "separate merging" that loses the coupling of L and R), and on the dense
/// task vectors (what mergekit does after folding adapters into their base).
public enum RMMBaselines {
    /// A baseline method and the parameters it runs with.
    public struct Method: Sendable {
        public var id: String
        public var label: String
        public var parameters: [String: ParameterValue]
        public var expertParameters: [String: ParameterValue]
    }

    /// Task arithmetic with λ = 1/N (the scale that minimises the summed reconstruction error of
    /// a sum), TIES and DARE-TIES at density 0.5, both normalised (the mean of the agreeing
    /// experts), so that each is compared at the scale of one expert.
    public static func methods(expertCount n: Int) -> [Method] {
        [
            Method(id: "task_arithmetic", label: "task arithmetic (λ = 1/N)", parameters: ["lambda": .number(1 / Double(n))], expertParameters: [:]),
            Method(id: "ties", label: "TIES (density 0.5, disjoint mean)", parameters: ["normalize": .flag(true)], expertParameters: ["density": .number(0.5)]),
            Method(id: "dare_ties", label: "DARE-TIES (density 0.5, rescaled, disjoint mean)", parameters: ["normalize": .flag(true)],
                   expertParameters: ["density": .number(0.5)]),
        ]
    }

    /// One baseline's errors for one module.
    public struct Result: Sendable {
        /// `<method>/factors` or `<method>/dense`.
        public var name: String
        /// Per expert, ‖ΔW_merged − ΔWᵢ‖ / ‖ΔWᵢ‖.
        public var errors: [Double]
    }

    /// Runs every baseline on one module's experts (factor baselines only when all ranks agree;
    /// dense baselines always, on L·R for factors).
    public static func evaluate(module: String, experts: RMMExperts, layerCount: Int, seed: UInt64) throws -> [Result] {
        let n = experts.count
        var out: [Result] = []
        let names = (0..<n).map { "expert\($0)" }
        func plan(_ m: Method) throws -> MergePlan {
            try MergePlan(MergeRecipe(method: m.id, parameters: m.parameters,
                                      expertParameters: Array(repeating: m.expertParameters.merging(["weight": .number(1)]) { a, _ in a }, count: n),
                                      experts: names, seed: seed))
        }
        let dense: [[Float]]
        let rows: Int, columns: Int
        switch experts {
        case let .factors(f):
            rows = f[0].rows
            columns = f[0].columns
            let r = f[0].rank
            if f.allSatisfy({ $0.rank == r }) {
                for m in methods(expertCount: n) {
                    let p = try plan(m)
                    let lc = TensorContext(name: module + ".lora_B", shape: [rows, r], layerCount: layerCount)
                    let rc = TensorContext(name: module + ".lora_A", shape: [r, columns], layerCount: layerCount)
                    let left = try p.merge(lc, base: [Float](repeating: 0, count: rows * r), experts: f.map(\.left)).values
                    let right = try p.merge(rc, base: [Float](repeating: 0, count: r * columns), experts: f.map(\.right)).values
                    let merged = LowRankFactors(rows: rows, columns: columns, rank: r, left: left, right: right)
                    out.append(Result(name: m.id + "/factors", errors: f.map { LowRank.squaredNorm($0) == 0 ? .nan : LowRank.relativeError(merged, reference: $0) }))
                }
            }
            dense = f.map { $0.dense() }
        case let .dense(d, r, c):
            rows = r
            columns = c
            dense = d
        }
        // A zero expert has nothing to rebuild: no relative error (NaN, left out of the means), as
        // for this merge's own rebuild.
        let isZero = dense.map { LowRank.squaredNorm($0) == 0 }
        let context = TensorContext(name: module, shape: [rows, columns], layerCount: layerCount)
        for m in methods(expertCount: n) {
            let merged = try plan(m).merge(context, base: [Float](repeating: 0, count: rows * columns), experts: dense).values
            let errors = (0..<n).map { i in isZero[i] ? .nan : LowRank.relativeError(merged, reference: dense[i]) }
            out.append(Result(name: m.id + "/dense", errors: errors))
        }
        return out
    }
}
