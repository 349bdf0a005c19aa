/// How much the experts' task vectors τᵢ = θᵢ − θ₀ disagree on one tensor, and what the merge did.
///
/// Definitions (docs/merging.md, "Conflict report"):
/// - cosines: cos(τᵢ, τⱼ) for each pair i < j;
/// - sign conflict: among elements where at least two τᵢ are non-zero, the fraction where both
///   signs occur;
/// - conflicting mass: Σ|τᵢ| over elements whose sign differs from the elected sign sgn(Σᵢ τᵢ),
///   over Σ|τᵢ| — the share of update mass a TIES-style sign election discards;
/// - far from expert: per expert, the fraction of elements where the merge lies farther from the
///   expert than the base does, |θ_M − θᵢ| > |θ₀ − θᵢ|;
/// - TALL masks: mᵢ = |τᵢ| > λ·|τ_M − τᵢ|; the fractions of elements selected by no expert
///   (catastrophic), one (selfish) and two or more (shared).
public struct ConflictMetrics: Sendable, Equatable {
    public var elementCount = 0
    public var taskVectorNorms: [Double] = []
    /// cos(τᵢ, τⱼ) for i < j, in (0,1), (0,2), ..., (1,2), ... order.
    public var cosines: [Double?] = []
    public var signConflict = 0.0
    public var conflictingMass = 0.0
    public var farFromExpert: [Double] = []
    public var tallNone = 0.0
    public var tallOne = 0.0
    public var tallShared = 0.0
    /// ‖θ_M − θ₀‖ / ‖θ₀‖.
    public var mergedRelativeUpdate: Double?
    public var keptFraction: [Double]?
    public var notes: [String: Double] = [:]

    public init() {}

    /// The smallest pairwise cosine.
    public var minCosine: Double? { cosines.compactMap { $0 }.min() }

    /// Largest over smallest non-zero task-vector norm.
    public var normRatio: Double? {
        let nonzero = taskVectorNorms.filter { $0 > 0 }
        guard let lo = nonzero.min(), let hi = nonzero.max(), nonzero.count > 1 else { return nil }
        return hi / lo
    }

    /// Measures a merged tensor. With no base (methods that do not use one), only the experts'
    /// distances to the merge are measured.
    static func measure(base: [Float]?, experts: [[Float]], merged: [Float], keptFraction: [Double]?, tallLambda: Double,
                        notes: [String: Double]) -> ConflictMetrics {
        var m = ConflictMetrics()
        m.keptFraction = keptFraction
        m.notes = notes
        let n = merged.count
        m.elementCount = n
        let k = experts.count
        guard let base, n > 0 else { return m }
        let tl = Float(tallLambda)
        let blockCount = (n + Kernels.block - 1) / Kernels.block
        // Per block: [dots (k×k upper incl. diagonal), signConflict, multiNonzero, conflicting, totalMass,
        //             far (k), tall0, tall1, tall2, mergedDelta², base²]
        let pairCount = k * (k + 1) / 2
        let width = pairCount + 4 + k + 3 + 2
        var partial = [Double](repeating: 0, count: blockCount * width)
        let pointers = experts.map { e in e.withUnsafeBufferPointer { SendableConst($0) } }
        withExtendedLifetime(experts) {
            base.withUnsafeBufferPointer { pb in
                merged.withUnsafeBufferPointer { pm in
                    partial.withUnsafeMutableBufferPointer { pp in
                        let b = SendableConst(pb), mm = SendableConst(pm)
                        let out = SendableDoubles(pp)
                        Kernels.blocks(n) { r in
                            let row = (r.lowerBound / Kernels.block) * width
                            var acc = [Double](repeating: 0, count: width)
                            var tau = [Float](repeating: 0, count: k)
                            for j in r {
                                let b0 = b.p[j], mj = mm.p[j]
                                var pos = 0, neg = 0
                                var sum: Float = 0
                                for i in 0..<k {
                                    let t = pointers[i].p[j] - b0
                                    tau[i] = t
                                    sum += t
                                    if t > 0 { pos += 1 } else if t < 0 { neg += 1 }
                                }
                                var d = 0
                                for i in 0..<k {
                                    for i2 in i..<k {
                                        acc[d] += Double(tau[i]) * Double(tau[i2])
                                        d += 1
                                    }
                                }
                                if pos + neg >= 2 {
                                    acc[pairCount + 1] += 1
                                    if pos > 0 && neg > 0 { acc[pairCount] += 1 }
                                }
                                let elected: Float = sum >= 0 ? 1 : -1
                                let tauM = mj - b0
                                var selected = 0
                                for i in 0..<k {
                                    let t = tau[i]
                                    let mass = Double(abs(t))
                                    acc[pairCount + 3] += mass
                                    if (t > 0 && elected < 0) || (t < 0 && elected > 0) { acc[pairCount + 2] += mass }
                                    let e = pointers[i].p[j]
                                    if abs(mj - e) > abs(b0 - e) { acc[pairCount + 4 + i] += 1 }
                                    if abs(t) > tl * abs(tauM - t) { selected += 1 }
                                }
                                acc[pairCount + 4 + k + min(selected, 2)] += 1
                                acc[pairCount + 4 + k + 3] += Double(tauM) * Double(tauM)
                                acc[pairCount + 4 + k + 4] += Double(b0) * Double(b0)
                            }
                            for c in 0..<width { out.p[row + c] = acc[c] }
                        }
                    }
                }
            }
        }
        var total = [Double](repeating: 0, count: width)
        for blockIndex in 0..<blockCount {
            for c in 0..<width { total[c] += partial[blockIndex * width + c] }
        }
        var d = 0
        var dots = [[Double]](repeating: [Double](repeating: 0, count: k), count: k)
        for i in 0..<k {
            for i2 in i..<k {
                dots[i][i2] = total[d]
                dots[i2][i] = total[d]
                d += 1
            }
        }
        m.taskVectorNorms = (0..<k).map { dots[$0][$0].squareRoot() }
        for i in 0..<k {
            for i2 in (i + 1)..<max(k, i + 1) {
                let denominator = m.taskVectorNorms[i] * m.taskVectorNorms[i2]
                m.cosines.append(denominator > 0 ? dots[i][i2] / denominator : nil)
            }
        }
        let multi = total[pairCount + 1]
        m.signConflict = multi > 0 ? total[pairCount] / multi : 0
        m.conflictingMass = total[pairCount + 3] > 0 ? total[pairCount + 2] / total[pairCount + 3] : 0
        m.farFromExpert = (0..<k).map { total[pairCount + 4 + $0] / Double(n) }
        m.tallNone = total[pairCount + 4 + k] / Double(n)
        m.tallOne = total[pairCount + 4 + k + 1] / Double(n)
        m.tallShared = total[pairCount + 4 + k + 2] / Double(n)
        let baseNorm = total[pairCount + 4 + k + 4]
        m.mergedRelativeUpdate = baseNorm > 0 ? (total[pairCount + 4 + k + 3] / baseNorm).squareRoot() : nil
        return m
    }
}

struct SendableDoubles: @unchecked Sendable {
    let p: UnsafeMutableBufferPointer<Double>
    init(_ p: UnsafeMutableBufferPointer<Double>) { self.p = p }
}
