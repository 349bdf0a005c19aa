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
public enum RMMVariant: String, Sendable, CaseIterable {
    case position, layer, dense
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
    public var variant: RMMVariant
    /// Basis size actually kept (≤ the requested one; smaller when the experts span less).
    public var k: Int
    public var rows: Int
    public var columns: Int
    /// Rank of the experts' factors (0 for dense).
    public var rank: Int
    public var expertCount: Int
    public var center: Bool
    /// Stored arrays by suffix (`left.mean`, `left.basis`, `coeff`, ...), with their shapes.
    public var arrays: [String: (shape: Shape, values: [Float])]
    /// Σ kept eigenvalues / Σ all eigenvalues of the centred experts (1 when nothing varies).
    public var retainedEnergy: Double
    /// Per expert: the fraction of its centred vector's energy the basis keeps.
    public var expertEnergy: [Double]
    /// Per expert: its centred vector's energy (to weigh ``expertEnergy`` across modules).
    public var expertTotals: [Double] = []

    public init(variant: RMMVariant, k: Int, rows: Int, columns: Int, rank: Int, expertCount: Int, center: Bool,
                arrays: [String: (shape: Shape, values: [Float])], retainedEnergy: Double = 1, expertEnergy: [Double] = []) {
        self.variant = variant
        self.k = k
        self.rows = rows
        self.columns = columns
        self.rank = rank
        self.expertCount = expertCount
        self.center = center
        self.arrays = arrays
        self.retainedEnergy = retainedEnergy
        self.expertEnergy = expertEnergy
    }

    /// The array suffixes and shapes a module of this variant stores.
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

    /// Float32 values stored for this module.
    public var storedParameterCount: Int { arrays.values.reduce(0) { $0 + $1.values.count } }

    private func values(_ key: String) -> [Float]? { arrays[key]?.values }

    /// Rebuilds expert `i`.
    public func rebuild(_ i: Int) -> RMMRebuilt {
        precondition(i >= 0 && i < expertCount, "an expert of the merge")
        let n = expertCount, r = rank
        switch variant {
        case .position:
            let left = Self.rebuildPositions(mean: values("left.mean"), basis: values("left.basis") ?? [], coeff: values("left.coeff") ?? [],
                                             positions: rows, r: r, k: k, n: n, expert: i)
            let rightT = Self.rebuildPositions(mean: values("right.mean"), basis: values("right.basis") ?? [], coeff: values("right.coeff") ?? [],
                                               positions: columns, r: r, k: k, n: n, expert: i)
            var right = [Float](repeating: 0, count: r * columns)
            for j in 0..<columns { for a in 0..<r { right[a * columns + j] = rightT[j * r + a] } }
            return .factors(LowRankFactors(rows: rows, columns: columns, rank: r, left: left, right: right))
        case .layer:
            let coeff = values("coeff") ?? []
            let left = Self.combine(mean: values("left.mean"), basis: values("left.basis") ?? [], count: rows * r, k: k, weights: (0..<k).map { coeff[$0 * n + i] })
            let right = Self.combine(mean: values("right.mean"), basis: values("right.basis") ?? [], count: r * columns, k: k, weights: (0..<k).map { coeff[$0 * n + i] })
            return .factors(LowRankFactors(rows: rows, columns: columns, rank: r, left: left, right: right))
        case .dense:
            let coeff = values("coeff") ?? []
            return .dense(Self.combine(mean: values("mean"), basis: values("basis") ?? [], count: rows * columns, k: k,
                                       weights: (0..<k).map { coeff[$0 * n + i] }))
        }
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

/// Fitting and evaluating reversible merges.
public enum ReversibleMerge {
    /// Fits the basis of one module.
    ///
    /// - Parameters:
    ///   - k: basis size; must be in 1..<N.
    ///   - center: subtract the experts' mean first (exact rebuilds need k ≥ N − 1 centred, k ≥ min(r, N) otherwise).
    public static func fit(_ experts: RMMExperts, variant: RMMVariant, k: Int, center: Bool = true) throws -> RMMModule {
        let n = experts.count
        guard n >= 2 else { throw MergeError.invalidInputs(method: "rmm", problem: "a reversible merge needs at least 2 experts, got \(n)") }
        guard k >= 1, k < n else {
            throw MergeError.invalidParameter(method: "rmm", parameter: "basis", problem: "is \(k); it must be between 1 and N − 1 = \(n - 1) (a basis of N or more vectors stores more than the experts themselves)")
        }
        try validate(experts, variant: variant)
        switch (variant, experts) {
        case let (.position, .factors(f)):
            return try fitPositions(f, k: k, center: center)
        case let (.layer, .factors(f)):
            let rows = f[0].rows, columns = f[0].columns, r = f[0].rank
            let vectors = f.map { $0.left + $0.right }
            let (mean, basis, coeff, energy, perExpert, kept, totals) = try fitVectors(vectors, k: k, center: center)
            var arrays: [String: (shape: Shape, values: [Float])] = [:]
            if let mean {
                arrays["left.mean"] = ([rows, r], Array(mean[0..<(rows * r)]))
                arrays["right.mean"] = ([r, columns], Array(mean[(rows * r)...]))
            }
            var lb: [Float] = [], rb: [Float] = []
            let len = rows * r
            for c in 0..<kept {
                let v = basis[(c * vectors[0].count)..<((c + 1) * vectors[0].count)]
                lb += v.prefix(len)
                rb += v.dropFirst(len)
            }
            arrays["left.basis"] = ([kept, rows, r], lb)
            arrays["right.basis"] = ([kept, r, columns], rb)
            arrays["coeff"] = ([kept, n], coeff)
            var module = RMMModule(variant: .layer, k: kept, rows: rows, columns: columns, rank: r, expertCount: n, center: center,
                                   arrays: arrays, retainedEnergy: energy, expertEnergy: perExpert)
            module.expertTotals = totals
            return module
        case let (.dense, .factors(f)):
            return try fit(.dense(f.map { $0.dense() }, rows: f[0].rows, columns: f[0].columns), variant: .dense, k: k, center: center)
        case let (.dense, .dense(d, rows, columns)):
            let (mean, basis, coeff, energy, perExpert, kept, totals) = try fitVectors(d, k: k, center: center)
            var arrays: [String: (shape: Shape, values: [Float])] = [:]
            if let mean { arrays["mean"] = ([rows, columns], mean) }
            arrays["basis"] = ([kept, rows, columns], basis)
            arrays["coeff"] = ([kept, n], coeff)
            var module = RMMModule(variant: .dense, k: kept, rows: rows, columns: columns, rank: 0, expertCount: n, center: center,
                                   arrays: arrays, retainedEnergy: energy, expertEnergy: perExpert)
            module.expertTotals = totals
            return module
        case (_, .dense):
            preconditionFailure("validate(_:variant:) rejects dense experts for the \(variant.rawValue) variant")
        }
    }

    /// Checks that the experts fit `variant` (at least one expert): one shape for all, one rank for
    /// the factor variants, dense experts only for `dense`.
    static func validate(_ experts: RMMExperts, variant: RMMVariant) throws {
        switch experts {
        case let .factors(f):
            let rows = f[0].rows, columns = f[0].columns, r = f[0].rank
            for (i, x) in f.enumerated() where x.rows != rows || x.columns != columns {
                throw MergeError.invalidInputs(method: "rmm", problem: "experts have different shapes (expert 0 is \(rows)×\(columns), expert \(i) is \(x.rows)×\(x.columns))")
            }
            for (i, x) in f.enumerated() where variant != .dense && x.rank != r {
                throw MergeError.invalidInputs(method: "rmm", problem: "experts have different ranks (expert 0 has rank \(r), expert \(i) rank \(x.rank)); the \(variant.rawValue) variant needs one rank, use variant=dense")
            }
        case let .dense(d, rows, columns):
            guard variant == .dense else {
                throw MergeError.invalidInputs(method: "rmm", problem: "the \(variant.rawValue) variant needs low-rank factors; dense experts take variant=dense")
            }
            for (i, x) in d.enumerated() where x.count != rows * columns {
                throw MergeError.invalidInputs(method: "rmm", problem: "expert \(i) has \(x.count) values, not \(rows)×\(columns) = \(rows * columns)")
            }
        }
    }

    /// Per-position PCA of the rows of L and the columns of R (experts validated by ``validate(_:variant:)``).
    static func fitPositions(_ f: [LowRankFactors], k: Int, center: Bool) throws -> RMMModule {
        let n = f.count, rows = f[0].rows, columns = f[0].columns, r = f[0].rank
        // Positions × r matrices per expert: L as is, R transposed.
        let leftSide = f.map(\.left)
        let rightSide = f.map { x -> [Float] in
            var t = [Float](repeating: 0, count: columns * r)
            for a in 0..<r { for j in 0..<columns { t[j * r + a] = x.right[a * columns + j] } }
            return t
        }
        let left = try fitSide(leftSide, positions: rows, r: r, k: k, center: center)
        let right = try fitSide(rightSide, positions: columns, r: r, k: k, center: center)
        var arrays: [String: (shape: Shape, values: [Float])] = [:]
        if center {
            arrays["left.mean"] = ([rows, r], left.mean)
            arrays["right.mean"] = ([columns, r], right.mean)
        }
        arrays["left.basis"] = ([rows, r, k], left.basis)
        arrays["left.coeff"] = ([rows, k, n], left.coeff)
        arrays["right.basis"] = ([columns, r, k], right.basis)
        arrays["right.coeff"] = ([columns, k, n], right.coeff)
        let total = left.total + right.total
        let kept = left.kept + right.kept
        let perExpert = (0..<n).map { i -> Double in
            let t = left.expertTotal[i] + right.expertTotal[i]
            return t > 0 ? max(0, 1 - (left.expertResidual[i] + right.expertResidual[i]) / t) : 1
        }
        var module = RMMModule(variant: .position, k: k, rows: rows, columns: columns, rank: r, expertCount: n, center: center,
                               arrays: arrays, retainedEnergy: total > 0 ? min(1, kept / total) : 1, expertEnergy: perExpert)
        module.expertTotals = (0..<n).map { left.expertTotal[$0] + right.expertTotal[$0] }
        return module
    }

    struct SideFit {
        var mean: [Float]
        var basis: [Float]
        var coeff: [Float]
        var total = 0.0, kept = 0.0
        var expertTotal: [Double]
        var expertResidual: [Double]
    }

    /// PCA at every position of one side; positions are split across cores, each with its own solver.
    static func fitSide(_ x: [[Float]], positions: Int, r: Int, k: Int, center: Bool) throws -> SideFit {
        let n = x.count
        var mean = [Float](repeating: 0, count: positions * r)
        var basis = [Float](repeating: 0, count: positions * r * k)
        var coeff = [Float](repeating: 0, count: positions * k * n)
        let workers = min(Parallel.workerCount, max(1, positions / 256))
        var partial = [(total: Double, kept: Double, expertTotal: [Double], expertResidual: [Double])](
            repeating: (0, 0, [Double](repeating: 0, count: n), [Double](repeating: 0, count: n)), count: workers)
        try mean.withUnsafeMutableBufferPointer { pm in
            try basis.withUnsafeMutableBufferPointer { pb in
                try coeff.withUnsafeMutableBufferPointer { pc in
                    try partial.withUnsafeMutableBufferPointer { pp in
                        // Workers write disjoint positions of each buffer.
                        let out = UnsafeSendable((mean: pm, basis: pb, coeff: pc, partial: pp))
                        try Parallel.forEach(workers) { w, failed in
                            let solver = SymmetricEigenSolver(n: n)
                            var c = [Double](repeating: 0, count: r * n)   // centred X, r × n
                            var g = [Double](repeating: 0, count: n * n)
                            var acc = (total: 0.0, kept: 0.0, expertTotal: [Double](repeating: 0, count: n), expertResidual: [Double](repeating: 0, count: n))
                            let lo = positions * w / workers, hi = positions * (w + 1) / workers
                            for p in lo..<hi {
                                if failed() { return }
                                for a in 0..<r {
                                    var mu = 0.0
                                    if center {
                                        for i in 0..<n { mu += Double(x[i][p * r + a]) }
                                        mu /= Double(n)
                                    }
                                    out.value.mean[p * r + a] = Float(mu)
                                    for i in 0..<n { c[a * n + i] = Double(x[i][p * r + a]) - Double(Float(mu)) }
                                }
                                // G = CᵀC (n × n).
                                for i in 0..<n {
                                    for j in i..<n {
                                        var s = 0.0
                                        for a in 0..<r { s += c[a * n + i] * c[a * n + j] }
                                        g[i * n + j] = s
                                        g[j * n + i] = s
                                    }
                                }
                                var trace = 0.0
                                for i in 0..<n {
                                    trace += g[i * n + i]
                                    acc.expertTotal[i] += g[i * n + i]
                                }
                                acc.total += trace
                                if trace == 0 { continue }
                                try g.withUnsafeMutableBufferPointer { try solver.solve($0.baseAddress!) }
                                let values = solver.values
                                let top = values[n - 1]
                                // Basis vectors u = C v / σ; coefficients w = σ vᵀ.
                                for cc in 0..<k {
                                    let j = n - 1 - cc
                                    let lambda = values[j]
                                    guard lambda > top * 1e-12, lambda > 0 else { break }
                                    acc.kept += lambda
                                    let sigma = lambda.squareRoot()
                                    var u = [Double](repeating: 0, count: r)
                                    var biggest = 0.0
                                    for a in 0..<r {
                                        var s = 0.0
                                        for i in 0..<n { s += c[a * n + i] * g[j * n + i] }
                                        u[a] = s / sigma
                                        if abs(u[a]) > abs(biggest) { biggest = u[a] }
                                    }
                                    let sign = biggest < 0 ? -1.0 : 1.0
                                    for a in 0..<r { out.value.basis[(p * r + a) * k + cc] = Float(sign * u[a]) }
                                    for i in 0..<n { out.value.coeff[(p * k + cc) * n + i] = Float(sign * sigma * g[j * n + i]) }
                                }
                                // Residual per expert (in the stored precision).
                                for i in 0..<n {
                                    var res = 0.0
                                    for a in 0..<r {
                                        var s = 0.0
                                        for cc in 0..<k { s += Double(out.value.basis[(p * r + a) * k + cc]) * Double(out.value.coeff[(p * k + cc) * n + i]) }
                                        let d = c[a * n + i] - s
                                        res += d * d
                                    }
                                    acc.expertResidual[i] += res
                                }
                            }
                            out.value.partial[w] = acc
                        }
                    }
                }
            }
        }
        var fit = SideFit(mean: mean, basis: basis, coeff: coeff, expertTotal: [Double](repeating: 0, count: n), expertResidual: [Double](repeating: 0, count: n))
        for part in partial {
            fit.total += part.total
            fit.kept += part.kept
            for i in 0..<n {
                fit.expertTotal[i] += part.expertTotal[i]
                fit.expertResidual[i] += part.expertResidual[i]
            }
        }
        return fit
    }

    /// PCA of whole vectors (one per expert) through the N × N Gram matrix.
    static func fitVectors(_ v: [[Float]], k: Int, center: Bool) throws
        -> (mean: [Float]?, basis: [Float], coeff: [Float], energy: Double, perExpert: [Double], kept: Int, totals: [Double]) {
        let n = v.count, len = v[0].count
        var mean: [Float]?
        var c = v
        if center {
            var m = [Double](repeating: 0, count: len)
            for x in v { for j in 0..<len { m[j] += Double(x[j]) } }
            let mf = m.map { Float($0 / Double(n)) }
            mean = mf
            for i in 0..<n { for j in 0..<len { c[i][j] = v[i][j] - mf[j] } }
        }
        var g = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in i..<n {
                var s = 0.0
                c[i].withUnsafeBufferPointer { a in c[j].withUnsafeBufferPointer { b in for t in 0..<len { s += Double(a[t]) * Double(b[t]) } } }
                g[i * n + j] = s
                g[j * n + i] = s
            }
        }
        let diag = (0..<n).map { g[$0 * n + $0] }
        let (values, vectors) = try LinearAlgebra.symmetricEigen(g, n: n)
        let total = values.reduce(0) { $0 + max($1, 0) }
        let top = values.last ?? 0
        var basis: [Float] = []
        var coeff: [[Float]] = []
        var keptEnergy = 0.0
        for cc in 0..<k {
            let j = n - 1 - cc
            guard values[j] > top * 1e-12, values[j] > 0 else { break }
            keptEnergy += values[j]
            let sigma = values[j].squareRoot()
            var e = [Double](repeating: 0, count: len)
            for i in 0..<n {
                let w = vectors[j * n + i] / sigma
                if w == 0 { continue }
                for t in 0..<len { e[t] += w * Double(c[i][t]) }
            }
            var biggest = 0.0
            for x in e where abs(x) > abs(biggest) { biggest = x }
            let sign = biggest < 0 ? -1.0 : 1.0
            basis += e.map { Float(sign * $0) }
            coeff.append((0..<n).map { Float(sign * sigma * vectors[j * n + $0]) })
        }
        let kept = coeff.count
        // Per-expert retained energy: 1 − ‖c_i − Σ w E‖² / ‖c_i‖², from the Gram (exact in the basis span).
        var perExpert = [Double](repeating: 1, count: n)
        for i in 0..<n where diag[i] > 0 {
            var captured = 0.0
            for cc in 0..<kept { captured += Double(coeff[cc][i]) * Double(coeff[cc][i]) }
            perExpert[i] = min(1, max(0, captured / diag[i]))
        }
        return (mean, basis, coeff.flatMap { $0 }, total > 0 ? min(1, keptEnergy / total) : 1, perExpert, kept, diag)
    }
}
