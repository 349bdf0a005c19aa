import Delta
import Foundation

/// Low-rank algebra on task vectors: truncated SVDs of dense deltas and of factor products, and
/// norms, inner products and spectra computed from factors without forming the dense matrix.
///
/// Factors follow the paper convention ΔW = L·R with L (rows × r) and R (r × columns), both
/// row-major Float32 (``LowRankFactors``). Large products go through OpenBLAS; reductions are in
/// Float64.
public enum LowRank {
    /// How many components a truncation keeps.
    public enum RankChoice: Sendable, Equatable {
        /// At most this many.
        case rank(Int)
        /// The fewest whose energy (sum of squared singular values) reaches this fraction.
        case energy(Double)
    }

    /// A truncated SVD.
    public struct Truncation: Sendable {
        /// Balanced factors: L = U·S^½, R = S^½·Vᵀ, each component's largest left entry positive.
        public var factors: LowRankFactors
        /// Singular values kept, descending.
        public var singularValues: [Double]
        /// ‖kept‖² / ‖matrix‖² (1 for a zero matrix).
        public var retainedEnergy: Double
        /// ‖matrix‖_F.
        public var norm: Double

        /// The relative Frobenius error of the truncation in exact arithmetic: √(1 − retained).
        public var relativeError: Double { (max(0, 1 - retainedEnergy)).squareRoot() }
    }

    // MARK: - Truncated SVD

    /// Truncated SVD of a dense row-major matrix, through the eigendecomposition of the smaller
    /// Gram matrix (A·Aᵀ or Aᵀ·A) and a projection of A on the kept eigenvectors.
    ///
    /// - Parameter maxRank: never keep more components than this (e.g. where storing factors
    ///   would cost more than the matrix).
    public static func truncate(_ a: [Float], rows m: Int, columns n: Int, choice: RankChoice, maxRank: Int? = nil) throws -> Truncation {
        precondition(a.count == m * n, "an m×n matrix")
        let s = min(m, n)
        var total = 0.0
        for x in a { total += Double(x) * Double(x) }
        guard s > 0, total > 0 else {
            return Truncation(factors: LowRankFactors(rows: m, columns: n, rank: 0, left: [], right: []), singularValues: [], retainedEnergy: 1, norm: 0)
        }
        let wide = m <= n
        // Gram of the smaller side.
        let gram = try a.withUnsafeBufferPointer { pa -> [Float] in
            var g = [Float](repeating: 0, count: s * s)
            try g.withUnsafeMutableBufferPointer { pg in
                if wide {
                    try LinearAlgebra.multiply(pa.baseAddress!, pa.baseAddress!, m: m, n: m, k: n, transposeB: true, into: pg.baseAddress!)
                } else {
                    try LinearAlgebra.multiply(pa.baseAddress!, pa.baseAddress!, m: n, n: n, k: m, transposeA: true, into: pg.baseAddress!)
                }
            }
            return g
        }
        let (values, vectors) = try LinearAlgebra.symmetricEigen(gram.map(Double.init), n: s)
        // Components, largest first.
        var order = Array((0..<s).reversed())
        // Eigenvalues below float32 noise of the Gram matrix carry no signal.
        order.removeAll { values[$0] <= values[s - 1] * 1e-6 || values[$0] <= 0 }
        var keep = order.count
        switch choice {
        case let .rank(r): keep = min(keep, max(0, r))
        case let .energy(target):
            var sum = 0.0
            var k = 0
            while k < order.count, sum / total < target {
                sum += values[order[k]]
                k += 1
            }
            keep = min(keep, max(1, k))
        }
        if let maxRank { keep = min(keep, maxRank) }
        // U: s × keep, row-major.
        var u = [Float](repeating: 0, count: s * keep)
        for (c, j) in order.prefix(keep).enumerated() {
            for i in 0..<s { u[i * keep + c] = Float(vectors[j * s + i]) }
        }
        var left: [Float], right: [Float]
        var sigma = [Double](repeating: 0, count: keep)
        if wide {
            // R' = Uᵀ·A (keep × n); σ_c = ‖row c‖.
            right = try LinearAlgebra.multiply(u, a, m: keep, n: n, k: m, transposeA: true)
            for c in 0..<keep {
                var ss = 0.0
                for j in 0..<n { ss += Double(right[c * n + j]) * Double(right[c * n + j]) }
                sigma[c] = ss.squareRoot()
            }
            left = u
            for c in 0..<keep {
                let root = sigma[c].squareRoot()
                for i in 0..<m { left[i * keep + c] = Float(Double(left[i * keep + c]) * root) }
                for j in 0..<n { right[c * n + j] = root > 0 ? Float(Double(right[c * n + j]) / root) : 0 }
            }
        } else {
            // L' = A·V (m × keep); σ_c = ‖column c‖.
            left = try LinearAlgebra.multiply(a, u, m: m, n: keep, k: n)
            for c in 0..<keep {
                var ss = 0.0
                for i in 0..<m { ss += Double(left[i * keep + c]) * Double(left[i * keep + c]) }
                sigma[c] = ss.squareRoot()
            }
            right = [Float](repeating: 0, count: keep * n)
            for c in 0..<keep {
                let root = sigma[c].squareRoot()
                for i in 0..<m { left[i * keep + c] = root > 0 ? Float(Double(left[i * keep + c]) / root) : 0 }
                for j in 0..<n { right[c * n + j] = Float(Double(u[j * keep + c]) * root) }
            }
        }
        var factors = LowRankFactors(rows: m, columns: n, rank: keep, left: left, right: right)
        fixSigns(&factors)
        let retained = sigma.reduce(0) { $0 + $1 * $1 }
        return Truncation(factors: factors, singularValues: sigma, retainedEnergy: min(1, retained / total), norm: total.squareRoot())
    }

    /// Truncated SVD of the product L·R (rows × p times p × columns) without forming it: two
    /// eigenproblems of size p. Used to express a sum of low-rank terms (concatenated factors)
    /// at a lower rank.
    public static func truncateProduct(_ product: LowRankFactors, rank: Int) throws -> Truncation {
        let m = product.rows, n = product.columns, p = product.rank
        guard p > 0, m > 0, n > 0 else {
            return Truncation(factors: LowRankFactors(rows: m, columns: n, rank: 0, left: [], right: []), singularValues: [], retainedEnergy: 1, norm: 0)
        }
        // P = LᵀL = V Λ Vᵀ; L = Q Λ^½ Vᵀ with orthonormal Q = L V Λ^-½.
        let lGram = try LinearAlgebra.multiply(product.left, product.left, m: p, n: p, k: m, transposeA: true)
        let (lv, lvec) = try LinearAlgebra.symmetricEigen(lGram.map(Double.init), n: p)
        let lmax = lv.last ?? 0
        let kept = (0..<p).reversed().filter { lv[$0] > max(lmax * 1e-10, 0) }
        let q = kept.count
        guard q > 0 else {
            return Truncation(factors: LowRankFactors(rows: m, columns: n, rank: 0, left: [], right: []), singularValues: [], retainedEnergy: 1, norm: 0)
        }
        var vInv = [Float](repeating: 0, count: p * q)   // V Λ^-½ (p × q)
        var vHalfT = [Float](repeating: 0, count: q * p) // Λ^½ Vᵀ (q × p)
        for (c, j) in kept.enumerated() {
            let root = lv[j].squareRoot()
            for i in 0..<p {
                vInv[i * q + c] = Float(lvec[j * p + i] / root)
                vHalfT[c * p + i] = Float(lvec[j * p + i] * root)
            }
        }
        let qL = try LinearAlgebra.multiply(product.left, vInv, m: m, n: q, k: p)          // m × q
        let mid = try LinearAlgebra.multiply(vHalfT, product.right, m: q, n: n, k: p)      // q × n
        // M Mᵀ = U Σ² Uᵀ.
        let mGram = try LinearAlgebra.multiply(mid, mid, m: q, n: q, k: n, transposeB: true)
        let (mv, mvec) = try LinearAlgebra.symmetricEigen(mGram.map(Double.init), n: q)
        let total = mv.reduce(0) { $0 + max($1, 0) }
        let order = (0..<q).reversed().filter { mv[$0] > 0 }
        // A product's rank is at most min(m, n); Float32 rounding can leave more positive eigenvalues
        // than that (a 2 × 384 token-type table of a full fine-tune with p = 48), and a factor pair
        // wider than its tensor cannot be stored (LowRankCodec refuses it).
        let keep = min(rank, order.count, m, n)
        var uHalf = [Float](repeating: 0, count: q * keep)    // U_R Σ^½ (q × keep)
        var uInvT = [Float](repeating: 0, count: keep * q)    // Σ^-½ U_Rᵀ (keep × q)
        var sigma: [Double] = []
        for (c, j) in order.prefix(keep).enumerated() {
            let s = mv[j].squareRoot()
            sigma.append(s)
            let root = s.squareRoot()
            for i in 0..<q {
                uHalf[i * keep + c] = Float(mvec[j * q + i] * root)
                uInvT[c * q + i] = Float(mvec[j * q + i] / root)
            }
        }
        let left = try LinearAlgebra.multiply(qL, uHalf, m: m, n: keep, k: q)
        let right = try LinearAlgebra.multiply(uInvT, mid, m: keep, n: n, k: q)
        var factors = LowRankFactors(rows: m, columns: n, rank: keep, left: left, right: right)
        fixSigns(&factors)
        let retained = sigma.reduce(0) { $0 + $1 * $1 }
        return Truncation(factors: factors, singularValues: sigma, retainedEnergy: total > 0 ? min(1, retained / total) : 1,
                          norm: total.squareRoot())
    }

    /// Makes the largest-magnitude entry of each left column positive (flipping the matching
    /// right row), so equal inputs give equal factors.
    public static func fixSigns(_ f: inout LowRankFactors) {
        let r = f.rank
        for c in 0..<r {
            var best: Float = 0
            for i in 0..<f.rows where abs(f.left[i * r + c]) > abs(best) { best = f.left[i * r + c] }
            if best < 0 {
                for i in 0..<f.rows { f.left[i * r + c] = -f.left[i * r + c] }
                for j in 0..<f.columns { f.right[c * f.columns + j] = -f.right[c * f.columns + j] }
            }
        }
    }

    // MARK: - Factor algebra (Float64)

    /// ⟨L₁R₁, L₂R₂⟩_F = tr((L₁ᵀL₂)(R₂R₁ᵀ)), in O(r₁r₂(rows + columns)).
    public static func innerProduct(_ x: LowRankFactors, _ y: LowRankFactors) -> Double {
        precondition(x.rows == y.rows && x.columns == y.columns, "factors of one shape")
        let r1 = x.rank, r2 = y.rank
        guard r1 > 0, r2 > 0 else { return 0 }
        let p = columnGram(x.left, y.left, rows: x.rows, r1, r2)      // r1 × r2
        let q = rowGram(x.right, y.right, columns: x.columns, r1, r2)  // r1 × r2: Σ_j R1[a,j] R2[b,j]
        var t = 0.0
        for i in 0..<(r1 * r2) { t += p[i] * q[i] }
        return t
    }

    /// ‖L·R‖²_F.
    public static func squaredNorm(_ x: LowRankFactors) -> Double {
        max(0, innerProduct(x, x))
    }

    /// ‖L₁R₁ − L₂R₂‖_F / ‖L₂R₂‖_F (the error of x as an approximation of `reference`).
    public static func relativeError(_ x: LowRankFactors, reference: LowRankFactors) -> Double {
        let nr = squaredNorm(reference)
        let diff = max(0, squaredNorm(x) + nr - 2 * innerProduct(x, reference))
        return nr > 0 ? (diff / nr).squareRoot() : (diff > 0 ? .infinity : 0)
    }

    /// ‖x‖²_F of a dense matrix, summed in order in Double.
    public static func squaredNorm(_ x: [Float]) -> Double {
        var s = 0.0
        for v in x { s += Double(v) * Double(v) }
        return s
    }

    /// ‖x − reference‖_F / ‖reference‖_F of dense matrices (∞ when only the reference is zero).
    public static func relativeError(_ x: [Float], reference: [Float]) -> Double {
        precondition(x.count == reference.count, "matrices of one shape")
        var d = 0.0, r = 0.0
        for j in x.indices {
            let e = Double(x[j]) - Double(reference[j])
            d += e * e
            r += Double(reference[j]) * Double(reference[j])
        }
        return r > 0 ? (d / r).squareRoot() : (d > 0 ? .infinity : 0)
    }

    /// The same product with rank `rank` ≥ its own: zero columns of L and rows of R appended.
    public static func padded(_ f: LowRankFactors, to rank: Int) -> LowRankFactors {
        guard f.rank < rank else { return f }
        var left = [Float](repeating: 0, count: f.rows * rank)
        var right = [Float](repeating: 0, count: rank * f.columns)
        for i in 0..<f.rows { for c in 0..<f.rank { left[i * rank + c] = f.left[i * f.rank + c] } }
        for c in 0..<f.rank { for j in 0..<f.columns { right[c * f.columns + j] = f.right[c * f.columns + j] } }
        return LowRankFactors(rows: f.rows, columns: f.columns, rank: rank, left: left, right: right)
    }

    /// Σ scale·Lᵢ·Rᵢ as one product: L = [scale·L₁ … scale·L_N], R = [R₁; …; R_N].
    public static func concatenate(_ parts: [LowRankFactors], scale: Float) -> LowRankFactors {
        let rows = parts[0].rows, columns = parts[0].columns
        let total = parts.reduce(0) { $0 + $1.rank }
        var left = [Float](repeating: 0, count: rows * total)
        var right: [Float] = []
        right.reserveCapacity(total * columns)
        var offset = 0
        for p in parts {
            for i in 0..<rows { for c in 0..<p.rank { left[i * total + offset + c] = scale * p.left[i * p.rank + c] } }
            right += p.right
            offset += p.rank
        }
        return LowRankFactors(rows: rows, columns: columns, rank: total, left: left, right: right)
    }

    /// The nonzero singular values of L·R, descending (from two r×r problems).
    public static func singularValues(_ x: LowRankFactors) throws -> [Double] {
        let r = x.rank
        guard r > 0 else { return [] }
        let p = columnGram(x.left, x.left, rows: x.rows, r, r)
        let q = rowGram(x.right, x.right, columns: x.columns, r, r)
        // Eigenvalues of P^½ Q P^½ are the squared singular values.
        let (pv, pvec) = try LinearAlgebra.symmetricEigen(p, n: r)
        var half = [Double](repeating: 0, count: r * r)
        for a in 0..<r {
            for b in 0..<r {
                var s = 0.0
                for j in 0..<r { s += pvec[j * r + a] * max(pv[j], 0).squareRoot() * pvec[j * r + b] }
                half[a * r + b] = s
            }
        }
        var tmp = [Double](repeating: 0, count: r * r)
        for a in 0..<r { for b in 0..<r { var s = 0.0; for j in 0..<r { s += half[a * r + j] * q[j * r + b] }; tmp[a * r + b] = s } }
        var m = [Double](repeating: 0, count: r * r)
        for a in 0..<r { for b in 0..<r { var s = 0.0; for j in 0..<r { s += tmp[a * r + j] * half[j * r + b] }; m[a * r + b] = s } }
        // Symmetrise against rounding.
        for a in 0..<r { for b in (a + 1)..<max(a + 1, r) { let v = (m[a * r + b] + m[b * r + a]) / 2; m[a * r + b] = v; m[b * r + a] = v } }
        let (values, _) = try LinearAlgebra.symmetricEigen(m, n: r)
        let top = values.max() ?? 0
        return values.reversed().filter { $0 > top * 1e-14 && $0 > 0 }.map { $0.squareRoot() }
    }

    /// The effective rank of a spectrum: exp of the entropy of σᵢ/Σσ (Roy and Vetterli, 2007).
    /// 1 for a rank-one matrix, r for r equal singular values, 0 for a zero matrix.
    public static func effectiveRank(_ singularValues: [Double]) -> Double {
        let sum = singularValues.reduce(0, +)
        guard sum > 0 else { return 0 }
        var h = 0.0
        for s in singularValues where s > 0 {
            let p = s / sum
            h -= p * log(p)
        }
        return exp(h)
    }

    /// P[a, b] = Σᵢ X[i, a]·Y[i, b] for row-major X (rows × r1), Y (rows × r2).
    static func columnGram(_ x: [Float], _ y: [Float], rows: Int, _ r1: Int, _ r2: Int) -> [Double] {
        var out = [Double](repeating: 0, count: r1 * r2)
        x.withUnsafeBufferPointer { px in
            y.withUnsafeBufferPointer { py in
                out.withUnsafeMutableBufferPointer { po in
                    for i in 0..<rows {
                        let xr = px.baseAddress! + i * r1, yr = py.baseAddress! + i * r2
                        for a in 0..<r1 {
                            let xa = Double(xr[a])
                            if xa == 0 { continue }
                            let row = po.baseAddress! + a * r2
                            for b in 0..<r2 { row[b] += xa * Double(yr[b]) }
                        }
                    }
                }
            }
        }
        return out
    }

    /// Q[a, b] = Σⱼ X[a, j]·Y[b, j] for row-major X (r1 × columns), Y (r2 × columns).
    static func rowGram(_ x: [Float], _ y: [Float], columns: Int, _ r1: Int, _ r2: Int) -> [Double] {
        var out = [Double](repeating: 0, count: r1 * r2)
        x.withUnsafeBufferPointer { px in
            y.withUnsafeBufferPointer { py in
                for a in 0..<r1 {
                    let xr = px.baseAddress! + a * columns
                    for b in 0..<r2 {
                        let yr = py.baseAddress! + b * columns
                        var s0 = 0.0, s1 = 0.0
                        var j = 0
                        while j + 1 < columns {
                            s0 += Double(xr[j]) * Double(yr[j])
                            s1 += Double(xr[j + 1]) * Double(yr[j + 1])
                            j += 2
                        }
                        if j < columns { s0 += Double(xr[j]) * Double(yr[j]) }
                        out[a * r2 + b] = s0 + s1
                    }
                }
            }
        }
        return out
    }
}
