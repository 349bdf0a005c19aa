import Delta
import Foundation

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
            let fit = try fitVectors(vectors, k: k, center: center)
            // Each basis vector (and the mean) is L's rows·r values, then R's r·columns.
            let len = rows * r, width = vectors[0].count
            var lb: [Float] = [], rb: [Float] = []
            for c in 0..<fit.kept {
                let v = fit.basis[(c * width)..<((c + 1) * width)]
                lb += v.prefix(len)
                rb += v.dropFirst(len)
            }
            let basis = RMMModule.LayerBasis(mean: fit.mean.map { (Array($0[0..<len]), Array($0[len...])) }, leftBasis: lb, rightBasis: rb,
                                             coeff: fit.coeff)
            return RMMModule(basis: .layer(basis), k: fit.kept, rows: rows, columns: columns, rank: r, expertCount: n,
                             retainedEnergy: fit.retainedEnergy, expertEnergy: fit.expertEnergy, expertTotals: fit.expertTotals)
        case let (.dense, .factors(f)):
            return try fit(.dense(f.map { $0.dense() }, rows: f[0].rows, columns: f[0].columns), variant: .dense, k: k, center: center)
        case let (.dense, .dense(d, rows, columns)):
            let fit = try fitVectors(d, k: k, center: center)
            return RMMModule(basis: .dense(RMMModule.DenseBasis(mean: fit.mean, basis: fit.basis, coeff: fit.coeff)), k: fit.kept, rows: rows,
                             columns: columns, rank: 0, expertCount: n, retainedEnergy: fit.retainedEnergy, expertEnergy: fit.expertEnergy,
                             expertTotals: fit.expertTotals)
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
        let basis = RMMModule.PositionBasis(mean: center ? (left.mean, right.mean) : nil, leftBasis: left.basis, leftCoeff: left.coeff,
                                            rightBasis: right.basis, rightCoeff: right.coeff)
        let total = left.total + right.total
        let kept = left.kept + right.kept
        let perExpert = (0..<n).map { i -> Double in
            let t = left.expertTotal[i] + right.expertTotal[i]
            return t > 0 ? max(0, 1 - (left.expertResidual[i] + right.expertResidual[i]) / t) : 1
        }
        return RMMModule(basis: .position(basis), k: k, rows: rows, columns: columns, rank: r, expertCount: n,
                         retainedEnergy: total > 0 ? min(1, kept / total) : 1, expertEnergy: perExpert,
                         expertTotals: (0..<n).map { left.expertTotal[$0] + right.expertTotal[$0] })
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

    /// What ``fitVectors(_:k:center:)`` finds.
    struct VectorFit {
        /// The experts' mean (nil uncentred).
        var mean: [Float]?
        /// `kept` basis vectors, one after the other.
        var basis: [Float]
        /// [kept, n]: each expert's coefficients.
        var coeff: [Float]
        /// Basis vectors kept (≤ k: directions without variance are dropped).
        var kept: Int
        /// Σ kept eigenvalues / Σ eigenvalues.
        var retainedEnergy: Double
        /// Per expert: the fraction of its centred energy the basis keeps, and that energy.
        var expertEnergy: [Double]
        var expertTotals: [Double]
    }

    /// PCA of whole vectors (one per expert) through the N × N Gram matrix.
    static func fitVectors(_ v: [[Float]], k: Int, center: Bool) throws -> VectorFit {
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
        return VectorFit(mean: mean, basis: basis, coeff: coeff.flatMap { $0 }, kept: kept, retainedEnergy: total > 0 ? min(1, keptEnergy / total) : 1,
                         expertEnergy: perExpert, expertTotals: diag)
    }
}
