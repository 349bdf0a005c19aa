import Delta
import Foundation

/// Reversible model merging (RMM; Alipour and Amiri, arXiv 2510.14163, as reconstructed in
/// docs/merging.md): instead of one merged model, keep a compact basis from which each expert's
/// low-rank task vector can be rebuilt by a linear combination. Closed form, no data.
///
/// Three variants, all per module (one adapted weight matrix):
/// - ``RMMVariant/position``: for every row of L and every column of R (a "position"), the N
///   experts' r-dimensional vectors are centred and reduced to their top-k principal directions.
///   Storage per position: r (mean) + k·r (basis) + k·N (coefficients), against N·r for the
///   experts, i.e. the ratio (k(r+N)+r)/(rN).
/// - ``RMMVariant/layer``: one coefficient vector per expert per module: the experts' flattened
///   factors are centred and reduced together (≈ (k+1)/N of the adapters).
/// - ``RMMVariant/dense``: the same on the dense task vectors ΔW = L·R (product space), for
///   adapters whose ranks differ and for full fine-tunes kept exactly; its basis is dense.
///
/// With k ≥ N − 1 (centred) the basis spans every expert, so rebuilds are exact up to rounding.
///
/// Where the pieces live (`Sources/Merge/Reversible/`): this file holds the per-module types
/// (what a basis is, how an expert or a view is rebuilt from it); ``ReversibleMerge`` fits one
/// module; ``ReversibleMergeJob`` runs a whole merge module by module (PT-SVD of full
/// fine-tunes, errors, energies, baselines, the default view, task arithmetic of the tensors
/// outside the basis) and adds up the ``ReversibleMergeReport``; ``ReversibleMergeSettings``
/// reads the recipe; ``RMMBasisFile`` is the one reader and writer of `rmm.safetensors`. None of
/// it touches storage. The repository side is load → run → store → record:
/// `Repository+Reversible.swift` plans the merge and reads each module's inputs as Float32,
/// `Repository+ReversibleStore.swift` stores what the job returns and builds the tree, and
/// `Repository+Rebuild.swift` reads the basis back to rebuild experts and views.
public enum RMMVariant: String, Sendable, CaseIterable, Codable {
    case position, layer, dense
}

/// What the experts of a reversible merge are. The raw values are what commits and
/// `rmm.safetensors` record (docs/format.md §3.7, §4.7).
public enum RMMExpertKind: String, Sendable, CaseIterable, Codable {
    /// LoRA adapters of one base model: the experts' factors are their `lora_B`·`lora_A`.
    case adapter
    /// Full fine-tunes of one base: their 2-D task vectors (reduced by PT-SVD unless dense).
    case full
}

/// A module's experts: low-rank factors with the adapter scale folded into L, or dense deltas.
public enum RMMExperts: Sendable {
    case factors([LowRankFactors])
    case dense([[Float]], rows: Int, columns: Int)

    public var count: Int {
        switch self {
        case let .factors(f): return f.count
        case let .dense(d, _, _): return d.count
        }
    }
}

/// One expert rebuilt from a basis.
public enum RMMRebuilt: Sendable {
    case factors(LowRankFactors)
    case dense([Float])

    /// The dense task vector (rows × columns).
    public func dense() -> [Float] {
        switch self {
        case let .factors(f): return f.dense()
        case let .dense(d): return d
        }
    }

    /// The factors, when the expert was rebuilt as factors.
    public var factors: LowRankFactors? {
        if case let .factors(f) = self { return f }
        return nil
    }

    /// The factors as rebuilt, or the dense task vector truncated to `rank` by SVD (zero
    /// components appended when it has lower rank): what an adapter's file can hold.
    public func factors(rows: Int, columns: Int, rank: Int) throws -> LowRankFactors {
        switch self {
        case let .factors(f): return f
        case let .dense(d): return LowRank.padded(try LowRank.truncate(d, rows: rows, columns: columns, choice: .rank(rank)).factors, to: rank)
        }
    }

    /// λ·Σ parts: one concatenated product when every part is factors, else a dense sum.
    public static func weightedSum(_ parts: [RMMRebuilt], lambda: Float, rows: Int, columns: Int) -> RMMRebuilt {
        let factors = parts.compactMap(\.factors)
        if !factors.isEmpty, factors.count == parts.count { return .factors(LowRank.concatenate(factors, scale: lambda)) }
        return .dense(denseSum(parts, lambda: lambda, count: rows * columns))
    }

    /// λ·Σ parts as a dense matrix, summed part by part in Float32.
    public static func denseSum(_ parts: [RMMRebuilt], lambda: Float, count: Int) -> [Float] {
        var total = [Float](repeating: 0, count: count)
        for p in parts {
            let d = p.dense()
            for j in total.indices { total[j] += lambda * d[j] }
        }
        return total
    }
}

/// The fitted basis of one module: what a reversible merge stores for it.
public struct RMMModule: Sendable {
    /// The stored arrays of a module, by variant (their layout: ``layout(variant:k:rows:columns:rank:experts:center:)``).
    public enum Basis: Sendable {
        case position(PositionBasis)
        case layer(LayerBasis)
        case dense(DenseBasis)
    }

    /// ``RMMVariant/position``: per row p of L and column j of R, k directions in R^r and each
    /// expert's k coefficients.
    public struct PositionBasis: Sendable {
        /// The experts' mean row of L, [rows, r], and mean column of R, [columns, r]; nil uncentred.
        public var mean: (left: [Float], right: [Float])?
        /// [rows, r, k] and [rows, k, n].
        public var leftBasis: [Float]
        public var leftCoeff: [Float]
        /// [columns, r, k] and [columns, k, n].
        public var rightBasis: [Float]
        public var rightCoeff: [Float]
    }

    /// ``RMMVariant/layer``: k basis vectors over the flattened (L, R), one coefficient vector per expert.
    public struct LayerBasis: Sendable {
        /// The mean L, [rows, r], and mean R, [r, columns]; nil uncentred.
        public var mean: (left: [Float], right: [Float])?
        /// [k, rows, r] and [k, r, columns].
        public var leftBasis: [Float]
        public var rightBasis: [Float]
        /// [k, n].
        public var coeff: [Float]
    }

    /// ``RMMVariant/dense``: k dense basis matrices.
    public struct DenseBasis: Sendable {
        /// The mean ΔW, [rows, columns]; nil uncentred.
        public var mean: [Float]?
        /// [k, rows, columns].
        public var basis: [Float]
        /// [k, n].
        public var coeff: [Float]
    }

    public var basis: Basis
    /// Basis size actually kept (≤ the requested one; smaller when the experts span less).
    public var k: Int
    public var rows: Int
    public var columns: Int
    /// Rank of the experts' factors (0 for dense).
    public var rank: Int
    public var expertCount: Int
    /// Σ kept eigenvalues / Σ all eigenvalues of the centred experts (1 when nothing varies).
    public var retainedEnergy: Double
    /// Per expert: the fraction of its centred vector's energy the basis keeps.
    public var expertEnergy: [Double]
    /// Per expert: its centred vector's energy (to weigh ``expertEnergy`` across modules).
    public var expertTotals: [Double]

    public init(basis: Basis, k: Int, rows: Int, columns: Int, rank: Int, expertCount: Int, retainedEnergy: Double = 1,
                expertEnergy: [Double] = [], expertTotals: [Double] = []) {
        self.basis = basis
        self.k = k
        self.rows = rows
        self.columns = columns
        self.rank = rank
        self.expertCount = expertCount
        self.retainedEnergy = retainedEnergy
        self.expertEnergy = expertEnergy
        self.expertTotals = expertTotals
    }

    /// A stored module: `values` are its arrays in ``layout(variant:k:rows:columns:rank:experts:center:)`` order.
    /// - Throws: ``MergeError/invalidInputs(method:problem:)`` when an array has the wrong size.
    public init(variant: RMMVariant, k: Int, rows: Int, columns: Int, rank: Int, expertCount: Int, center: Bool, values: [[Float]]) throws {
        let layout = Self.layout(variant: variant, k: k, rows: rows, columns: columns, rank: rank, experts: expertCount, center: center)
        guard values.count == layout.count else {
            throw MergeError.invalidInputs(method: RMM.id, problem: "a \(variant.rawValue) module stores \(layout.count) arrays, got \(values.count)")
        }
        for ((suffix, shape), v) in zip(layout, values) where v.count != shape.reduce(1, *) {
            throw MergeError.invalidInputs(method: RMM.id, problem: "'\(suffix)' has \(v.count) values, its shape \(shape.shapeDescription) needs \(shape.reduce(1, *))")
        }
        // The arrays in layout order: the means first (when centred), then as listed below.
        let m = center ? 1 : 0
        let basis: Basis
        switch variant {
        case .position:
            let m2 = 2 * m
            basis = .position(PositionBasis(mean: center ? (values[0], values[1]) : nil, leftBasis: values[m2], leftCoeff: values[m2 + 1],
                                            rightBasis: values[m2 + 2], rightCoeff: values[m2 + 3]))
        case .layer:
            let m2 = 2 * m
            basis = .layer(LayerBasis(mean: center ? (values[0], values[1]) : nil, leftBasis: values[m2], rightBasis: values[m2 + 1],
                                      coeff: values[m2 + 2]))
        case .dense:
            basis = .dense(DenseBasis(mean: center ? values[0] : nil, basis: values[m], coeff: values[m + 1]))
        }
        self.init(basis: basis, k: k, rows: rows, columns: columns, rank: rank, expertCount: expertCount)
    }

    public var variant: RMMVariant {
        switch basis {
        case .position: return .position
        case .layer: return .layer
        case .dense: return .dense
        }
    }

    /// Whether the experts' mean was subtracted before the fit (the module stores it).
    public var center: Bool {
        switch basis {
        case let .position(b): return b.mean != nil
        case let .layer(b): return b.mean != nil
        case let .dense(b): return b.mean != nil
        }
    }

    /// The array suffixes and shapes a module of this variant stores, in file order.
    public static func layout(variant: RMMVariant, k: Int, rows: Int, columns: Int, rank r: Int, experts n: Int, center: Bool) -> [(String, Shape)] {
        var out: [(String, Shape)] = []
        switch variant {
        case .position:
            if center { out += [("left.mean", [rows, r]), ("right.mean", [columns, r])] }
            out += [("left.basis", [rows, r, k]), ("left.coeff", [rows, k, n]), ("right.basis", [columns, r, k]), ("right.coeff", [columns, k, n])]
        case .layer:
            if center { out += [("left.mean", [rows, r]), ("right.mean", [r, columns])] }
            out += [("left.basis", [k, rows, r]), ("right.basis", [k, r, columns]), ("coeff", [k, n])]
        case .dense:
            if center { out += [("mean", [rows, columns])] }
            out += [("basis", [k, rows, columns]), ("coeff", [k, n])]
        }
        return out
    }

    /// The stored arrays in file order: suffix, shape and values.
    public var tensors: [(suffix: String, shape: Shape, values: [Float])] {
        let values: [[Float]]
        switch basis {
        case let .position(b): values = (b.mean.map { [$0.left, $0.right] } ?? []) + [b.leftBasis, b.leftCoeff, b.rightBasis, b.rightCoeff]
        case let .layer(b): values = (b.mean.map { [$0.left, $0.right] } ?? []) + [b.leftBasis, b.rightBasis, b.coeff]
        case let .dense(b): values = (b.mean.map { [$0] } ?? []) + [b.basis, b.coeff]
        }
        let layout = Self.layout(variant: variant, k: k, rows: rows, columns: columns, rank: rank, experts: expertCount, center: center)
        return zip(layout, values).map { ($0.0, $0.1, $1) }
    }

    /// The stored arrays by suffix (`left.mean`, `left.basis`, `coeff`, ...), with their shapes.
    public var arrays: [String: (shape: Shape, values: [Float])] {
        Dictionary(tensors.map { ($0.suffix, ($0.shape, $0.values)) }, uniquingKeysWith: { a, _ in a })
    }

    /// Float32 values stored for this module.
    public var storedParameterCount: Int { tensors.reduce(0) { $0 + $1.values.count } }

    // MARK: - Rebuilding

    /// Rebuilds expert `i`.
    public func rebuild(_ i: Int) -> RMMRebuilt {
        precondition(i >= 0 && i < expertCount, "an expert of the merge")
        let n = expertCount, r = rank
        switch basis {
        case let .position(b):
            let left = Self.rebuildPositions(mean: b.mean?.left, basis: b.leftBasis, coeff: b.leftCoeff, positions: rows, r: r, k: k, n: n, expert: i)
            let rightT = Self.rebuildPositions(mean: b.mean?.right, basis: b.rightBasis, coeff: b.rightCoeff, positions: columns, r: r, k: k, n: n, expert: i)
            var right = [Float](repeating: 0, count: r * columns)
            for j in 0..<columns { for a in 0..<r { right[a * columns + j] = rightT[j * r + a] } }
            return .factors(LowRankFactors(rows: rows, columns: columns, rank: r, left: left, right: right))
        case let .layer(b):
            let weights = (0..<k).map { b.coeff[$0 * n + i] }
            let left = Self.combine(mean: b.mean?.left, basis: b.leftBasis, count: rows * r, k: k, weights: weights)
            let right = Self.combine(mean: b.mean?.right, basis: b.rightBasis, count: r * columns, k: k, weights: weights)
            return .factors(LowRankFactors(rows: rows, columns: columns, rank: r, left: left, right: right))
        case let .dense(b):
            return .dense(Self.combine(mean: b.mean, basis: b.basis, count: rows * columns, k: k, weights: (0..<k).map { b.coeff[$0 * n + i] }))
        }
    }

    /// The `mean` view: the experts' mean, i.e. the basis with every coefficient zero. Factor
    /// variants average L and R separately (rank r); the dense variant averages ΔW.
    public func meanView() -> RMMRebuilt {
        let parts = (0..<expertCount).map { rebuild($0) }
        let fs = parts.compactMap(\.factors)
        guard let first = fs.first, fs.count == parts.count else {
            return .dense(RMMRebuilt.denseSum(parts, lambda: 1 / Float(parts.count), count: rows * columns))
        }
        var left = [Float](repeating: 0, count: first.left.count), right = [Float](repeating: 0, count: first.right.count)
        for f in fs {
            for j in left.indices { left[j] += f.left[j] / Float(fs.count) }
            for j in right.indices { right[j] += f.right[j] / Float(fs.count) }
        }
        return .factors(LowRankFactors(rows: first.rows, columns: first.columns, rank: first.rank, left: left, right: right))
    }

    /// The `ta-full` view: λ·Σ of the rebuilt experts, exact (concatenated factors of rank N·r, or dense).
    public func sumView(lambda: Float) -> RMMRebuilt {
        RMMRebuilt.weightedSum((0..<expertCount).map { rebuild($0) }, lambda: lambda, rows: rows, columns: columns)
    }

    /// x̂[p] = μ[p] + U[p]·W[p][:, i] for every position p (sums in Float64, ascending c).
    static func rebuildPositions(mean: [Float]?, basis: [Float], coeff: [Float], positions: Int, r: Int, k: Int, n: Int, expert i: Int) -> [Float] {
        var out = [Float](repeating: 0, count: positions * r)
        for p in 0..<positions {
            for a in 0..<r {
                var s = Double(mean?[p * r + a] ?? 0)
                for c in 0..<k { s += Double(basis[(p * r + a) * k + c]) * Double(coeff[(p * k + c) * n + i]) }
                out[p * r + a] = Float(s)
            }
        }
        return out
    }

    /// μ + Σ_c w_c·E_c over `count` values.
    static func combine(mean: [Float]?, basis: [Float], count: Int, k: Int, weights: [Float]) -> [Float] {
        var out = [Double](repeating: 0, count: count)
        if let mean { for j in 0..<count { out[j] = Double(mean[j]) } }
        for c in 0..<k {
            let w = Double(weights[c])
            if w == 0 { continue }
            let base = c * count
            for j in 0..<count { out[j] += w * Double(basis[base + j]) }
        }
        return out.map { Float($0) }
    }
}
