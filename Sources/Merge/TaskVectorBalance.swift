/// `--balance`: how the experts' task vectors are rescaled before any method sees them.
///
/// `norm` rescales, per tensor, each expert's task vector τᵢ = θᵢ − θ₀ to the mean of the experts'
/// Frobenius norms on that tensor (experts whose τᵢ is zero there are left alone and do not count
/// in the mean), so one fine-tune that moved 15× further than the others does not drown them.
/// Per tensor rather than over the whole model: the merge stays one pass, a tensor at a time,
/// and the subspace methods the option is meant for (TSV, Iso, WUDI) already work per matrix.
/// The cost is that each expert's per-layer profile is replaced by the experts' mean profile, and
/// a tensor an expert barely moved is scaled up to the others' norm.
public enum TaskVectorBalance: String, Sendable, CaseIterable {
    case none
    case norm

    /// The experts with their task vectors rescaled (θ₀ + fᵢ·τᵢ, fᵢ = mean‖τ‖/‖τᵢ‖), and the factors.
    public static func balanced(_ experts: [[Float]], base: [Float]) -> (experts: [[Float]], factors: [Double]) {
        let norms = experts.map { e -> Double in
            var s = 0.0
            for j in 0..<min(e.count, base.count) {
                let d = Double(e[j]) - Double(base[j])
                s += d * d
            }
            return s.squareRoot()
        }
        let moved = norms.filter { $0 > 0 }
        guard !moved.isEmpty else { return (experts, norms.map { _ in 1 }) }
        let target = moved.reduce(0, +) / Double(moved.count)
        let factors = norms.map { $0 > 0 ? target / $0 : 1 }
        let out = zip(experts, factors).map { e, f -> [Float] in
            guard f != 1 else { return e }
            var x = [Float](repeating: 0, count: e.count)
            for j in 0..<e.count { x[j] = Float(Double(base[j]) + f * (Double(e[j]) - Double(base[j]))) }
            return x
        }
        return (out, factors)
    }
}
