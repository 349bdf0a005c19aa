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
        let n = merged.count
        let accumulator = Accumulator(count: n, experts: experts.count, measures: base != nil, tallLambda: tallLambda,
                                      sampleElements: sampleElements)
        if let base, n > 0 {
            BlockMergeRun.withPointers(experts) { pointers in
                base.withUnsafeBufferPointer { pb in
                    merged.withUnsafeBufferPointer { pm in
                        let b = pb.baseAddress!, mm = pm.baseAddress!
                        Kernels.blocks(n) { r in
                            guard accumulator.measures(r) else { return }
                            accumulator.measure(r, base: b + r.lowerBound, experts: pointers.map { $0 + r.lowerBound },
                                                merged: mm + r.lowerBound)
                        }
                    }
                }
            }
        }
        return accumulator.finish(keptFraction: keptFraction, notes: notes)
    }

    /// ``measure(base:experts:merged:keptFraction:tallLambda:notes:sampleElements:)`` with the
    /// values read a block at a time, only the blocks the sample measures: `read(i, range, into)`
    /// writes elements `range` of input `i` (0 the base, 1...k the experts, k + 1 the merged
    /// tensor) as Float32 into the buffer. Memory is a few blocks whatever the tensor's size.
    public static func measureStreaming(count n: Int, experts k: Int, tallLambda: Double, notes: [String: Double] = [:],
                                        read: (Int, Range<Int>, UnsafeMutableBufferPointer<Float>) throws -> Void) rethrows -> ConflictMetrics {
        let accumulator = Accumulator(count: n, experts: k, measures: k > 0, tallLambda: tallLambda)
        let buffers = (0..<(k + 2)).map { _ in UnsafeMutableBufferPointer<Float>.allocate(capacity: Kernels.block) }
        defer { buffers.forEach { $0.deallocate() } }
        var start = 0
        while start < n {
            let r = start..<min(start + Kernels.block, n)
            if accumulator.measures(r) {
                for i in buffers.indices { try read(i, r, UnsafeMutableBufferPointer(rebasing: buffers[i][0..<r.count])) }
                accumulator.measure(r, base: UnsafePointer(buffers[0].baseAddress!), experts: buffers[1..<(k + 1)].map { UnsafePointer($0.baseAddress!) },
                                    merged: UnsafePointer(buffers[k + 1].baseAddress!))
            }
            start = r.upperBound
        }
        return accumulator.finish(keptFraction: nil, notes: notes)
    }

    /// The figures of one tensor, gathered block by block (``Kernels/blocks(_:_:)``'s blocks, in any
    /// order and on any thread) and combined in block order, so they do not depend on the order
    /// the blocks ran in. Large tensors are measured on every `stride`-th block (at least
    /// ``sampleElements`` elements): the figures are fractions and cosines, which such a sample
    /// estimates closely.
    final class Accumulator: Sendable {
        let count: Int
        let expertCount: Int
        /// False without a base: nothing is measured but the element count.
        let enabled: Bool
        let tallLambda: Float
        let blockCount: Int
        let stride: Int
        let width: Int
        /// Per-block partial sums: each block (on whichever thread) writes only its own row, the
        /// disjointness the wrapper stands for; ``finish(keptFraction:notes:)`` reads them after all.
        private let partial: UnsafeSendable<UnsafeMutablePointer<Double>>

        init(count n: Int, experts k: Int, measures: Bool, tallLambda: Double, sampleElements: Int = ConflictMetrics.sampleElements) {
            count = n
            expertCount = k
            enabled = measures && n > 0
            self.tallLambda = Float(tallLambda)
            blockCount = (n + Kernels.block - 1) / Kernels.block
            stride = max(1, blockCount / max(1, sampleElements / Kernels.block))
            // Per block: dots (k×k upper incl. diagonal), then the counters of `Column`.
            width = k * (k + 1) / 2 + Column.count + k
            let size = enabled ? blockCount * width : 1
            let sums = UnsafeMutablePointer<Double>.allocate(capacity: size)
            sums.initialize(repeating: 0, count: size)
            partial = UnsafeSendable(sums)
        }

        deinit { partial.value.deallocate() }

        /// Whether the block starting at `r.lowerBound` is measured.
        func measures(_ r: Range<Int>) -> Bool {
            enabled && (r.lowerBound / Kernels.block) % stride == 0
        }

        /// Measures block `r` (one of ``Kernels/blocks(_:_:)``'s ranges); every pointer is at the
        /// block's first element.
        func measure(_ r: Range<Int>, base: UnsafePointer<Float>, experts: [UnsafePointer<Float>], merged: UnsafePointer<Float>) {
            guard measures(r) else { return }
            ConflictMetrics.measureBlock(count: r.count, base: base, merged: merged, experts: experts, tallLambda: tallLambda,
                                         into: partial.value + (r.lowerBound / Kernels.block) * width)
        }

        /// The figures, from every measured block.
        func finish(keptFraction: [Double]?, notes: [String: Double]) -> ConflictMetrics {
            var m = ConflictMetrics()
            m.keptFraction = keptFraction
            m.notes = notes
            m.elementCount = count
            guard enabled else { return m }
            let n = count, k = expertCount
            let measured = stride == 1 ? n : (0..<blockCount).filter { $0 % stride == 0 }.reduce(0) { $0 + min(Kernels.block, n - $1 * Kernels.block) }
            m.measuredElements = measured
            let pairCount = k * (k + 1) / 2
            var total = [Double](repeating: 0, count: width)
            for blockIndex in 0..<blockCount {
                for c in 0..<width { total[c] += partial.value[blockIndex * width + c] }
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
    }

    /// Counters after the k(k+1)/2 dot products, then one far-from-expert count per expert.
    enum Column {
        static let signConflict = 0, multiNonzero = 1, conflictingMass = 2, mass = 3
        static let tallNone = 4, tallOne = 5, tallShared = 6, mergedSquares = 7, baseSquares = 8
        static let count = 9
    }

    /// All counters of one block, in three passes over the inputs: element by element (sign and
    /// TALL counts, the sum of the task vectors, the squares), the dot products of every pair of task
    /// vectors, then expert by expert (the update mass). Task vectors τᵢ = θᵢ − θ₀ are formed in
    /// Float32 as they are read, never stored. Every Double sum keeps its lanes (element i of a block
    /// in lane i mod 4, or mod 2 for the squares, the tail in lane 0) and their order, so the figures
    /// do not depend on the vector width or the pass structure. Pointers are at the block's first element.
    static func measureBlock(count len: Int, base b: UnsafePointer<Float>, merged mg: UnsafePointer<Float>, experts: [UnsafePointer<Float>],
                             tallLambda tl: Float, into acc: UnsafeMutablePointer<Double>) {
        let k = experts.count
        precondition(len <= Kernels.block, "one block at a time")
        let pairCount = k * (k + 1) / 2
        BlockScratch.with(floats: Kernels.block) { tauSum in
            let far = UnsafeMutablePointer<SIMD8<Int32>>.allocate(capacity: max(k, 1))
            defer { far.deallocate() }
            far.initialize(repeating: SIMD8<Int32>(), count: max(k, 1))
            let rb = UnsafeRawPointer(b), rm = UnsafeRawPointer(mg), rs = UnsafeMutableRawPointer(tauSum)
            let magnitude = SIMD8<UInt32>(repeating: 0x7FFF_FFFF)
            @inline(__always) func abs8(_ v: SIMD8<Float>) -> SIMD8<Float> {
                unsafeBitCast(unsafeBitCast(v, to: SIMD8<UInt32>.self) & magnitude, to: SIMD8<Float>.self)
            }
            let one = SIMD8<Int32>(repeating: 1), two = SIMD8<Int32>(repeating: 2), zero = SIMD8<Int32>()
            let tl8 = SIMD8<Float>(repeating: tl)
            var multi8 = zero, conflict8 = zero, none8 = zero, one8 = zero, shared8 = zero
            var squares = SIMD2<Double>(), baseSquares = SIMD2<Double>()
            var jj = 0
            while jj + 8 <= len {
                let o = 4 * jj
                let bv = rb.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                let mv = rm.loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                let tauM = mv - bv
                var sum = SIMD8<Float>(), positive = zero, negative = zero, selected = zero
                for i in 0..<k {
                    let xv = UnsafeRawPointer(experts[i]).loadUnaligned(fromByteOffset: o, as: SIMD8<Float>.self)
                    let d = xv - bv
                    sum += d
                    positive &+= zero.replacing(with: one, where: d .> 0)
                    negative &+= zero.replacing(with: one, where: d .< 0)
                    selected &+= zero.replacing(with: one, where: abs8(d) .> tl8 * abs8(tauM - d))
                    far[i] &+= zero.replacing(with: one, where: abs8(mv - xv) .> abs8(bv - xv))
                }
                rs.storeBytes(of: sum, toByteOffset: o, as: SIMD8<Float>.self)
                multi8 &+= zero.replacing(with: one, where: positive &+ negative .>= two)
                conflict8 &+= zero.replacing(with: one, where: (positive .> zero) .& (negative .> zero))
                none8 &+= zero.replacing(with: one, where: selected .== zero)
                one8 &+= zero.replacing(with: one, where: selected .== one)
                shared8 &+= zero.replacing(with: one, where: selected .>= two)
                // The squares in pairs (lanes: even and odd elements), in element order.
                for p in Swift.stride(from: 0, to: 8, by: 2) {
                    let u = SIMD2<Double>(Double(tauM[p]), Double(tauM[p + 1]))
                    let w = SIMD2<Double>(Double(bv[p]), Double(bv[p + 1]))
                    squares += u * u
                    baseSquares += w * w
                }
                jj += 8
            }
            var multi = Int(multi8.wrappedSum()), conflict = Int(conflict8.wrappedSum())
            var none = Int(none8.wrappedSum()), single = Int(one8.wrappedSum()), shared = Int(shared8.wrappedSum())
            var farCounts = (0..<k).map { Int(far[$0].wrappedSum()) }
            let tail = jj
            while jj < len {
                var sum: Float = 0
                var p = 0, q = 0, s = 0
                let tauM = mg[jj] - b[jj]
                for i in 0..<k {
                    let x = experts[i][jj]
                    let d = x - b[jj]
                    sum += d
                    p += d > 0 ? 1 : 0
                    q += d < 0 ? 1 : 0
                    s += tallSelects(d, merged: tauM, lambda: tl) ? 1 : 0
                    farCounts[i] += abs(mg[jj] - x) > abs(b[jj] - x) ? 1 : 0
                }
                tauSum[jj] = sum
                multi += p + q >= 2 ? 1 : 0
                conflict += p > 0 && q > 0 ? 1 : 0
                none += s == 0 ? 1 : 0
                single += s == 1 ? 1 : 0
                shared += s >= 2 ? 1 : 0
                jj += 1
            }
            // Squares of the tail: pairs, then a last single element in lane 0.
            var t = tail
            while t + 2 <= len {
                let u = SIMD2<Double>(Double(mg[t] - b[t]), Double(mg[t + 1] - b[t + 1]))
                let w = SIMD2<Double>(Double(b[t]), Double(b[t + 1]))
                squares += u * u
                baseSquares += w * w
                t += 2
            }
            if t < len {
                let u = Double(mg[t] - b[t])
                squares[0] += u * u
                baseSquares[0] += Double(b[t]) * Double(b[t])
            }
            for i in 0..<k { acc[pairCount + Column.count + i] = Double(farCounts[i]) }
            // Dot products of every pair (and each τ with itself), all in one pass.
            dots(count: len, base: b, experts: experts, into: acc)
            // Update mass, and the mass against the elected sign: four Double lanes shared by every
            // expert, one expert after the other.
            var mass = SIMD4<Double>(), against = SIMD4<Double>()
            let sign4 = SIMD4<UInt32>(repeating: 0x7FFF_FFFF)
            for i in 0..<k {
                let x = experts[i], rx = UnsafeRawPointer(x)
                var jj = 0
                while jj + 4 <= len {
                    let tv = rx.loadUnaligned(fromByteOffset: 4 * jj, as: SIMD4<Float>.self) - rb.loadUnaligned(fromByteOffset: 4 * jj, as: SIMD4<Float>.self)
                    let sv = rs.loadUnaligned(fromByteOffset: 4 * jj, as: SIMD4<Float>.self)
                    let a = unsafeBitCast(unsafeBitCast(tv, to: SIMD4<UInt32>.self) & sign4, to: SIMD4<Float>.self)
                    let nonNegative = sv .>= 0
                    let disagrees = (nonNegative .& (tv .< 0)) .| (.!nonNegative .& (tv .> 0))
                    mass += SIMD4<Double>(a)
                    // +0 where the sign agrees, as the scalar form adds.
                    against += SIMD4<Double>(SIMD4<Float>().replacing(with: a, where: disagrees))
                    jj += 4
                }
                while jj < len {
                    let t = x[jj] - b[jj]
                    mass[0] += Double(abs(t))
                    against[0] += disagrees(t, tauSum[jj]) ? Double(abs(t)) : 0
                    jj += 1
                }
            }
            let c = pairCount
            acc[c + Column.signConflict] = Double(conflict)
            acc[c + Column.multiNonzero] = Double(multi)
            acc[c + Column.conflictingMass] = (against[0] + against[1]) + (against[2] + against[3])
            acc[c + Column.mass] = (mass[0] + mass[1]) + (mass[2] + mass[3])
            acc[c + Column.tallNone] = Double(none)
            acc[c + Column.tallOne] = Double(single)
            acc[c + Column.tallShared] = Double(shared)
            acc[c + Column.mergedSquares] = squares[0] + squares[1]
            acc[c + Column.baseSquares] = baseSquares[0] + baseSquares[1]
        }
    }

    /// τᵢ·τⱼ for every pair i ≤ j, into `acc[0..<k(k+1)/2]` in (0,0), (0,1), …, (1,1), … order: each
    /// summed as ``Kernels/dot(_:_:count:)`` sums it (four lanes, tail in lane 0), in one pass.
    static func dots(count len: Int, base b: UnsafePointer<Float>, experts: [UnsafePointer<Float>], into acc: UnsafeMutablePointer<Double>) {
        let k = experts.count
        let pairs = k * (k + 1) / 2
        let sums = UnsafeMutablePointer<SIMD4<Double>>.allocate(capacity: max(pairs, 1))
        let deltas = UnsafeMutablePointer<SIMD4<Double>>.allocate(capacity: max(k, 1))
        defer { sums.deallocate(); deltas.deallocate() }
        sums.initialize(repeating: SIMD4<Double>(), count: max(pairs, 1))
        deltas.initialize(repeating: SIMD4<Double>(), count: max(k, 1))
        Kernels.addPairDots(count: len, base: b, experts: experts, lanes: sums, deltas: deltas)
        for p in 0..<pairs { acc[p] = (sums[p][0] + sums[p][1]) + (sums[p][2] + sums[p][3]) }
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
