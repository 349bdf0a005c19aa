import Delta

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
    /// Elements the figures were measured on: all of them, or a sample of evenly spaced blocks
    /// for tensors over ``sampleElements`` elements.
    public var measuredElements = 0

    /// Tensors larger than this are measured on a sample of about this many elements.
    public static let sampleElements = 1 << 19

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
                        notes: [String: Double], sampleElements: Int = ConflictMetrics.sampleElements) -> ConflictMetrics {
        var m = ConflictMetrics()
        m.keptFraction = keptFraction
        m.notes = notes
        let n = merged.count
        m.elementCount = n
        let k = experts.count
        guard let base, n > 0 else { return m }
        let tl = Float(tallLambda)
        let blockCount = (n + Kernels.block - 1) / Kernels.block
        // Large tensors are measured on every `stride`-th block (at least ``sampleElements`` elements):
        // the figures are fractions and cosines, which such a sample estimates closely.
        let stride = max(1, blockCount / max(1, sampleElements / Kernels.block))
        let measured = stride == 1 ? n : (0..<blockCount).filter { $0 % stride == 0 }.reduce(0) { $0 + min(Kernels.block, n - $1 * Kernels.block) }
        m.measuredElements = measured
        // Per block: dots (k×k upper incl. diagonal), then the counters of `Column`.
        let pairCount = k * (k + 1) / 2
        let width = pairCount + Column.count + k
        var partial = [Double](repeating: 0, count: blockCount * width)
        let pointers = experts.map { e in e.withUnsafeBufferPointer { UnsafeSendable($0) } }
        withExtendedLifetime(experts) {
            base.withUnsafeBufferPointer { pb in
                merged.withUnsafeBufferPointer { pm in
                    partial.withUnsafeMutableBufferPointer { pp in
                        let b = UnsafeSendable(pb), mm = UnsafeSendable(pm)
                        let out = UnsafeSendable(pp)
                        Kernels.blocks(n) { r in
                            let blockIndex = r.lowerBound / Kernels.block
                            guard blockIndex % stride == 0 else { return }
                            measureBlock(r, base: b.value.baseAddress!, merged: mm.value.baseAddress!, experts: pointers.map { $0.value.baseAddress! },
                                         tallLambda: tl, into: out.value.baseAddress! + blockIndex * width)
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
        let c = pairCount
        let multi = total[c + Column.multiNonzero]
        m.signConflict = multi > 0 ? total[c + Column.signConflict] / multi : 0
        m.conflictingMass = total[c + Column.mass] > 0 ? total[c + Column.conflictingMass] / total[c + Column.mass] : 0
        let counted = Double(measured)
        m.farFromExpert = (0..<k).map { total[c + Column.count + $0] / counted }
        m.tallNone = total[c + Column.tallNone] / counted
        m.tallOne = total[c + Column.tallOne] / counted
        m.tallShared = total[c + Column.tallShared] / counted
        let baseNorm = total[c + Column.baseSquares]
        m.mergedRelativeUpdate = baseNorm > 0 ? (total[c + Column.mergedSquares] / baseNorm).squareRoot() : nil
        return m
    }

    /// Counters after the k(k+1)/2 dot products, then one far-from-expert count per expert.
    enum Column {
        static let signConflict = 0, multiNonzero = 1, conflictingMass = 2, mass = 3
        static let tallNone = 4, tallOne = 5, tallShared = 6, mergedSquares = 7, baseSquares = 8
        static let count = 9
    }

    /// All counters of one block, loop by loop over block-sized buffers (no per-element allocation;
    /// Double sums in four independent lanes).
    static func measureBlock(_ r: Range<Int>, base: UnsafePointer<Float>, merged: UnsafePointer<Float>, experts: [UnsafePointer<Float>],
                             tallLambda tl: Float, into acc: UnsafeMutablePointer<Double>) {
        let k = experts.count, len = r.count, r0 = r.lowerBound
        let b = base + r0, mg = merged + r0
        let tau = UnsafeMutablePointer<Float>.allocate(capacity: k * len)
        let tauSum = UnsafeMutablePointer<Float>.allocate(capacity: len)
        let positive = UnsafeMutablePointer<Int32>.allocate(capacity: len)
        let negative = UnsafeMutablePointer<Int32>.allocate(capacity: len)
        let selected = UnsafeMutablePointer<Int32>.allocate(capacity: len)
        defer { tau.deallocate(); tauSum.deallocate(); positive.deallocate(); negative.deallocate(); selected.deallocate() }
        tauSum.initialize(repeating: 0, count: len)
        positive.initialize(repeating: 0, count: len)
        negative.initialize(repeating: 0, count: len)
        selected.initialize(repeating: 0, count: len)
        let pairCount = k * (k + 1) / 2
        for i in 0..<k {
            let x = experts[i] + r0, t = tau + i * len
            var far = 0
            for jj in 0..<len {
                let d = x[jj] - b[jj]
                t[jj] = d
                tauSum[jj] += d
                positive[jj] &+= d > 0 ? 1 : 0
                negative[jj] &+= d < 0 ? 1 : 0
                let tauM = mg[jj] - b[jj]
                selected[jj] &+= tallSelects(d, merged: tauM, lambda: tl) ? 1 : 0
                far &+= abs(mg[jj] - x[jj]) > abs(b[jj] - x[jj]) ? 1 : 0
            }
            acc[pairCount + Column.count + i] = Double(far)
        }
        // Dot products of every pair (and each τ with itself).
        var d = 0
        for i in 0..<k {
            for i2 in i..<k {
                acc[d] = Kernels.dot(tau + i * len, tau + i2 * len, count: len)
                d += 1
            }
        }
        var multi = 0, conflict = 0, none = 0, one = 0, shared = 0
        for jj in 0..<len {
            let p = positive[jj], q = negative[jj]
            multi &+= p &+ q >= 2 ? 1 : 0
            conflict &+= p > 0 && q > 0 ? 1 : 0
            let s = selected[jj]
            none &+= s == 0 ? 1 : 0
            one &+= s == 1 ? 1 : 0
            shared &+= s >= 2 ? 1 : 0
        }
        var mass = (0.0, 0.0, 0.0, 0.0), against = (0.0, 0.0, 0.0, 0.0)
        for i in 0..<k {
            let t = tau + i * len
            var jj = 0
            while jj + 4 <= len {
                mass.0 += Double(abs(t[jj])); mass.1 += Double(abs(t[jj + 1]))
                mass.2 += Double(abs(t[jj + 2])); mass.3 += Double(abs(t[jj + 3]))
                against.0 += disagrees(t[jj], tauSum[jj]) ? Double(abs(t[jj])) : 0
                against.1 += disagrees(t[jj + 1], tauSum[jj + 1]) ? Double(abs(t[jj + 1])) : 0
                against.2 += disagrees(t[jj + 2], tauSum[jj + 2]) ? Double(abs(t[jj + 2])) : 0
                against.3 += disagrees(t[jj + 3], tauSum[jj + 3]) ? Double(abs(t[jj + 3])) : 0
                jj += 4
            }
            while jj < len {
                mass.0 += Double(abs(t[jj]))
                against.0 += disagrees(t[jj], tauSum[jj]) ? Double(abs(t[jj])) : 0
                jj += 1
            }
        }
        var mergedSquares = (0.0, 0.0), baseSquares = (0.0, 0.0)
        var jj = 0
        while jj + 2 <= len {
            let u0 = Double(mg[jj] - b[jj]), u1 = Double(mg[jj + 1] - b[jj + 1])
            mergedSquares.0 += u0 * u0; mergedSquares.1 += u1 * u1
            baseSquares.0 += Double(b[jj]) * Double(b[jj]); baseSquares.1 += Double(b[jj + 1]) * Double(b[jj + 1])
            jj += 2
        }
        if jj < len {
            let u = Double(mg[jj] - b[jj])
            mergedSquares.0 += u * u
            baseSquares.0 += Double(b[jj]) * Double(b[jj])
        }
        let c = pairCount
        acc[c + Column.signConflict] = Double(conflict)
        acc[c + Column.multiNonzero] = Double(multi)
        acc[c + Column.conflictingMass] = (against.0 + against.1) + (against.2 + against.3)
        acc[c + Column.mass] = (mass.0 + mass.1) + (mass.2 + mass.3)
        acc[c + Column.tallNone] = Double(none)
        acc[c + Column.tallOne] = Double(one)
        acc[c + Column.tallShared] = Double(shared)
        acc[c + Column.mergedSquares] = mergedSquares.0 + mergedSquares.1
        acc[c + Column.baseSquares] = baseSquares.0 + baseSquares.1
    }

    /// Whether a delta's sign differs from the elected sign sgn(Σ τ) (ties elect +).
    @inline(__always)
    static func disagrees(_ t: Float, _ sum: Float) -> Bool {
        sum >= 0 ? t < 0 : t > 0
    }

    /// Whether expert τᵢ's TALL mask selects an element: |τᵢ| > λ·|τ_M − τᵢ|.
    @inline(__always)
    static func tallSelects(_ tau: Float, merged tauM: Float, lambda: Float) -> Bool {
        abs(tau) > lambda * abs(tauM - tau)
    }
}
