import Delta
import Foundation
import Testing

@testable import Merge

// Low-rank algebra (truncated SVDs, factor norms and spectra) and the LAPACK/BLAS wrappers; PEFT LoRA
// configs and adapters are in LoRAConfigAndAdapterTests.swift.

/// Dense helpers computed in Float64, independently of ``LowRank``.
enum Dense {
    static func product(_ f: LowRankFactors) -> [Double] {
        var out = [Double](repeating: 0, count: f.rows * f.columns)
        for i in 0..<f.rows {
            for k in 0..<f.rank {
                let l = Double(f.left[i * f.rank + k])
                for j in 0..<f.columns { out[i * f.columns + j] += l * Double(f.right[k * f.columns + j]) }
            }
        }
        return out
    }

    static func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
    static func norm(_ a: [Double]) -> Double { dot(a, a).squareRoot() }
    static func minus(_ a: [Double], _ b: [Double]) -> [Double] { zip(a, b).map { $0 - $1 } }
    static func relativeError(_ x: [Double], reference: [Double]) -> Double { norm(minus(x, reference)) / norm(reference) }
    static func doubles(_ x: [Float]) -> [Double] { x.map(Double.init) }

    /// m×n with the given singular values: U·diag(s)·Vᵀ from orthonormal U, V of seeded random matrices.
    static func withSpectrum(_ s: [Double], rows m: Int, columns n: Int, seed: UInt64) throws -> [Float] {
        let p = s.count
        let (u, _, _) = try LinearAlgebra.svd(randomValues(m * p, seed: seed), rows: m, columns: p)        // m×p orthonormal columns
        let (_, _, vt) = try LinearAlgebra.svd(randomValues(p * n, seed: seed + 1), rows: p, columns: n)  // p×n orthonormal rows
        var a = [Double](repeating: 0, count: m * n)
        for i in 0..<m {
            for c in 0..<p {
                let w = Double(u[i * p + c]) * s[c]
                for j in 0..<n { a[i * n + j] += w * Double(vt[c * n + j]) }
            }
        }
        return a.map(Float.init)
    }

    static func factors(rows: Int, columns: Int, rank: Int, seed: UInt64, scale: Float = 1) -> LowRankFactors {
        LowRankFactors(rows: rows, columns: columns, rank: rank, left: randomValues(rows * rank, seed: seed, scale: scale),
                       right: randomValues(rank * columns, seed: seed + 100, scale: scale))
    }
}

@Suite struct LowRankTests {
    // MARK: - LinearAlgebra

    @Test func multiplyMatchesANaiveProduct() throws {
        let m = 5, n = 7, k = 3
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = randomValues(m * k, seed: 1), b = randomValues(k * n, seed: 2)
            let c = try LinearAlgebra.multiply(a, b, m: m, n: n, k: k, transposeA: ta, transposeB: tb)
            for i in 0..<m {
                for j in 0..<n {
                    var s = 0.0
                    for t in 0..<k {
                        let x = ta ? a[t * m + i] : a[i * k + t]
                        let y = tb ? b[j * k + t] : b[t * n + j]
                        s += Double(x) * Double(y)
                    }
                    #expect(abs(Double(c[i * n + j]) - s) <= 1e-5 * (1 + abs(s)), "transpose \(ta) \(tb) [\(i), \(j)]")
                }
            }
        }
        // k = 0 gives zeros.
        #expect(try LinearAlgebra.multiply([], [], m: 2, n: 2, k: 0) == [0, 0, 0, 0])
    }

    @Test func svdReconstructsAndSorts() throws {
        for (m, n) in [(6, 9), (9, 6), (5, 5)] {
            let a = randomValues(m * n, seed: UInt64(m * n))
            let (u, s, vt) = try LinearAlgebra.svd(a, rows: m, columns: n)
            let p = min(m, n)
            #expect(s.count == p && u.count == m * p && vt.count == p * n)
            #expect(zip(s, s.dropFirst()).allSatisfy { $0 >= $1 })
            var back = [Double](repeating: 0, count: m * n)
            for i in 0..<m { for c in 0..<p { for j in 0..<n { back[i * n + j] += Double(u[i * p + c]) * s[c] * Double(vt[c * n + j]) } } }
            #expect(Dense.relativeError(back, reference: Dense.doubles(a)) < 1e-5)
        }
    }

    @Test func symmetricEigenOfAKnownMatrix() throws {
        // [[2, 1], [1, 2]]: eigenvalues 1 and 3, ascending.
        let (values, vectors) = try LinearAlgebra.symmetricEigen([2, 1, 1, 2], n: 2)
        #expect(abs(values[0] - 1) < 1e-12 && abs(values[1] - 3) < 1e-12)
        // The eigenvector of 3 is ±(1, 1)/√2.
        #expect(abs(abs(vectors[2]) - 0.5.squareRoot()) < 1e-12 && abs(vectors[2] - vectors[3]) < 1e-12)
        let solver = SymmetricEigenSolver(n: 2)
        var a: [Double] = [4, 0, 0, 1]
        try a.withUnsafeMutableBufferPointer { try solver.solve($0.baseAddress!) }
        #expect(solver.values == [1, 4])
    }

    // MARK: - Truncated SVD of dense matrices

    @Test(arguments: [(6, 9), (11, 4), (8, 8)])
    func fullRankReproducesTheMatrix(rows: Int, columns: Int) throws {
        let a = randomValues(rows * columns, seed: UInt64(rows + 10 * columns))
        let p = min(rows, columns)
        let t = try LowRank.truncate(a, rows: rows, columns: columns, choice: .rank(p))
        #expect(t.factors.rank == p)
        #expect(t.factors.rows == rows && t.factors.columns == columns)
        #expect(Dense.relativeError(Dense.product(t.factors), reference: Dense.doubles(a)) < 1e-5)
        #expect(abs(t.retainedEnergy - 1) < 1e-6)
        #expect(abs(t.norm - Dense.norm(Dense.doubles(a))) < 1e-9 * t.norm)
        let (_, s, _) = try LinearAlgebra.svd(a, rows: rows, columns: columns)
        for (x, y) in zip(t.singularValues, s) { #expect(abs(x - y) < 1e-4 * s[0]) }
    }

    @Test(arguments: [(7, 12), (12, 7)])
    func rankKErrorFollowsTheSpectrum(rows: Int, columns: Int) throws {
        let a = randomValues(rows * columns, seed: 5)
        let (_, s, _) = try LinearAlgebra.svd(a, rows: rows, columns: columns)
        let total = s.reduce(0) { $0 + $1 * $1 }
        for k in 1..<min(rows, columns) {
            let t = try LowRank.truncate(a, rows: rows, columns: columns, choice: .rank(k))
            #expect(t.factors.rank == k)
            let measured = Dense.relativeError(Dense.product(t.factors), reference: Dense.doubles(a))
            let eckartYoung = (s[k...].reduce(0) { $0 + $1 * $1 } / total).squareRoot()
            #expect(abs(measured - eckartYoung) < 1e-4, "k = \(k): measured \(measured), best \(eckartYoung)")
            #expect(abs(t.relativeError - (1 - t.retainedEnergy).squareRoot()) < 1e-12)
            #expect(abs(t.relativeError - measured) < 1e-4, "k = \(k)")
            // Balanced factors: ‖L[:, c]‖² = ‖R[c, :]‖² = σ_c; the largest |entry| of each L column is positive.
            let f = t.factors
            for c in 0..<k {
                var l2 = 0.0, r2 = 0.0, biggest: Float = 0
                for i in 0..<rows {
                    let x = f.left[i * k + c]
                    l2 += Double(x) * Double(x)
                    if abs(x) > abs(biggest) { biggest = x }
                }
                for j in 0..<columns { r2 += Double(f.right[c * columns + j]) * Double(f.right[c * columns + j]) }
                #expect(abs(l2 - s[c]) < 1e-4 * s[0] && abs(r2 - s[c]) < 1e-4 * s[0], "component \(c)")
                #expect(biggest > 0)
                #expect(abs(t.singularValues[c] - s[c]) < 1e-4 * s[0])
            }
        }
    }

    @Test func energyChoosesTheSmallestSufficientRank() throws {
        let s: [Double] = [4, 3, 2, 1, 0.5]   // energies 16, 9, 4, 1, 0.25: cumulative .529, .826, .959, .992, 1
        let a = try Dense.withSpectrum(s, rows: 9, columns: 7, seed: 3)
        for (target, rank) in [(0.3, 1), (0.6, 2), (0.9, 3), (0.97, 4), (0.995, 5)] {
            let t = try LowRank.truncate(a, rows: 9, columns: 7, choice: .energy(target))
            #expect(t.factors.rank == rank, "energy \(target)")
            #expect(t.retainedEnergy >= target - 1e-6, "energy \(target): kept \(t.retainedEnergy)")
        }
        // maxRank caps either choice.
        #expect(try LowRank.truncate(a, rows: 9, columns: 7, choice: .energy(0.995), maxRank: 2).factors.rank == 2)
        #expect(try LowRank.truncate(a, rows: 9, columns: 7, choice: .rank(4), maxRank: 3).factors.rank == 3)
    }

    @Test func rankDeficientAndZeroMatrices() throws {
        // An exactly rank-2 matrix (small integers: its Gram is exact) yields 2 components, however many are asked for.
        let u1: [Float] = [1, 2, 0, -1, 3, 1, 0, 2], v1: [Float] = [1, 0, 2, 1, -1, 3]
        let u2: [Float] = [0, 1, 1, 2, -1, 0, 1, 1], v2: [Float] = [2, 1, 0, -1, 1, 1]
        var a = [Float](repeating: 0, count: 48)
        for i in 0..<8 { for j in 0..<6 { a[i * 6 + j] = u1[i] * v1[j] + u2[i] * v2[j] } }
        for (m, n, x) in [(8, 6, a), (6, 8, (0..<48).map { a[($0 % 8) * 6 + $0 / 8] })] {
            let t = try LowRank.truncate(x, rows: m, columns: n, choice: .rank(5))
            #expect(t.factors.rank == 2, "\(m)×\(n)")
            #expect(Dense.relativeError(Dense.product(t.factors), reference: Dense.doubles(x)) < 1e-6)
        }
        let zero = try LowRank.truncate([Float](repeating: 0, count: 12), rows: 3, columns: 4, choice: .rank(2))
        #expect(zero.factors.rank == 0 && zero.retainedEnergy == 1 && zero.norm == 0 && zero.relativeError == 0)
    }

    @Test func truncationIsDeterministic() throws {
        let a = randomValues(10 * 13, seed: 8)
        let x = try LowRank.truncate(a, rows: 10, columns: 13, choice: .rank(4))
        let y = try LowRank.truncate(a, rows: 10, columns: 13, choice: .rank(4))
        #expect(x.factors == y.factors)
    }

    // MARK: - Truncating a product

    @Test func truncatingAConcatenatedSumEqualsTruncatingTheDenseSum() throws {
        let rows = 12, columns = 10
        let parts = (0..<3).map { Dense.factors(rows: rows, columns: columns, rank: 3, seed: 40 + UInt64($0)) }
        var left = [Float](repeating: 0, count: rows * 9), right: [Float] = []
        for (p, f) in parts.enumerated() {
            for i in 0..<rows { for c in 0..<3 { left[i * 9 + 3 * p + c] = f.left[i * 3 + c] } }
            right += f.right
        }
        let concatenated = LowRankFactors(rows: rows, columns: columns, rank: 9, left: left, right: right)
        var sum = [Double](repeating: 0, count: rows * columns)
        for f in parts { sum = zip(sum, Dense.product(f)).map { $0 + $1 } }
        #expect(Dense.relativeError(Dense.product(concatenated), reference: sum) < 1e-6)
        for k in [1, 3, 5, 9] {
            let viaProduct = try LowRank.truncateProduct(concatenated, rank: k)
            let viaDense = try LowRank.truncate(sum.map(Float.init), rows: rows, columns: columns, choice: .rank(k))
            #expect(viaProduct.factors.rank == k)
            #expect(abs(viaProduct.norm - viaDense.norm) < 1e-5 * viaDense.norm)
            #expect(abs(viaProduct.retainedEnergy - viaDense.retainedEnergy) < 1e-5, "k = \(k)")
            for (x, y) in zip(viaProduct.singularValues, viaDense.singularValues) { #expect(abs(x - y) < 1e-4 * viaDense.singularValues[0]) }
            let e1 = Dense.relativeError(Dense.product(viaProduct.factors), reference: sum)
            let e2 = Dense.relativeError(Dense.product(viaDense.factors), reference: sum)
            #expect(abs(e1 - e2) < 1e-4, "k = \(k): \(e1) vs \(e2)")
            #expect(abs(e1 - viaProduct.relativeError) < 1e-4, "k = \(k)")
            // Distinct singular values: the truncations themselves agree.
            #expect(Dense.relativeError(Dense.product(viaProduct.factors), reference: Dense.product(viaDense.factors)) < 1e-3)
        }
        let empty = try LowRank.truncateProduct(LowRankFactors(rows: 3, columns: 4, rank: 0, left: [], right: []), rank: 2)
        #expect(empty.factors.rank == 0 && empty.norm == 0)
    }

    /// A sum of many factor pairs over a tensor with 2 rows (BERT's token-type table in a full
    /// fine-tune's reversible merge) has rank 2 at most; rounding must not make its truncation wider.
    @Test func truncatingAWideSumOfAThinTensorKeepsAtMostItsRank() throws {
        let product = Dense.factors(rows: 2, columns: 384, rank: 48, seed: 7)
        let t = try LowRank.truncateProduct(product, rank: 16)
        #expect(t.factors.rank == 2)
        #expect(Dense.relativeError(Dense.product(t.factors), reference: Dense.product(product)) < 1e-4)
        let wide = try LowRank.truncateProduct(Dense.factors(rows: 384, columns: 3, rank: 48, seed: 8), rank: 16)
        #expect(wide.factors.rank == 3)
    }

    // MARK: - Factor algebra

    @Test func innerProductsAndNormsMatchTheDenseComputation() {
        let x = Dense.factors(rows: 14, columns: 9, rank: 2, seed: 1)
        let y = Dense.factors(rows: 14, columns: 9, rank: 5, seed: 2)
        let dx = Dense.product(x), dy = Dense.product(y)
        #expect(abs(LowRank.innerProduct(x, y) - Dense.dot(dx, dy)) < 1e-9 * Dense.norm(dx) * Dense.norm(dy))
        #expect(abs(LowRank.innerProduct(y, x) - Dense.dot(dx, dy)) < 1e-9 * Dense.norm(dx) * Dense.norm(dy))
        #expect(abs(LowRank.squaredNorm(x) - Dense.dot(dx, dx)) < 1e-9 * Dense.dot(dx, dx))
        #expect(abs(LowRank.relativeError(x, reference: y) - Dense.relativeError(dx, reference: dy)) < 1e-9)
        #expect(LowRank.relativeError(y, reference: y) < 1e-6)
        let none = LowRankFactors(rows: 14, columns: 9, rank: 0, left: [], right: [])
        #expect(LowRank.innerProduct(x, none) == 0)
        #expect(LowRank.relativeError(none, reference: none) == 0)
        #expect(LowRank.relativeError(x, reference: none) == .infinity)
        #expect(abs(LowRank.relativeError(none, reference: x) - 1) < 1e-12)
    }

    @Test func singularValuesOfFactorsMatchTheDenseSVD() throws {
        let x = Dense.factors(rows: 15, columns: 11, rank: 3, seed: 9)
        let values = try LowRank.singularValues(x)
        let (_, s, _) = try LinearAlgebra.svd(Dense.product(x).map(Float.init), rows: 15, columns: 11)
        #expect(values.count == 3)
        for (a, b) in zip(values, s) { #expect(abs(a - b) < 1e-4 * s[0]) }
        #expect(s[3] < 1e-4 * s[0])
        // Two equal columns of L: the product has rank 2.
        var y = x
        for i in 0..<15 { y.left[i * 3 + 2] = y.left[i * 3 + 1] }
        for j in 0..<11 { y.right[1 * 11 + j] = y.right[2 * 11 + j] }
        #expect(try LowRank.singularValues(y).count == 2)
        #expect(try LowRank.singularValues(LowRankFactors(rows: 2, columns: 2, rank: 0, left: [], right: [])).isEmpty)
    }

    @Test func effectiveRank() throws {
        // Rank one.
        let one = Dense.factors(rows: 10, columns: 8, rank: 1, seed: 4)
        let s1 = try LowRank.singularValues(one)
        #expect(s1.count == 1)
        #expect(abs(LowRank.effectiveRank(s1) - 1) < 1e-12)
        // r equal singular values: U_r·V_rᵀ.
        let equal = try Dense.withSpectrum([2, 2, 2, 2], rows: 12, columns: 9, seed: 6)
        let t = try LowRank.truncate(equal, rows: 12, columns: 9, choice: .rank(4))
        let s4 = try LowRank.singularValues(t.factors)
        #expect(s4.count == 4)
        #expect(abs(LowRank.effectiveRank(s4) - 4) < 1e-4)
        // Direct values.
        #expect(LowRank.effectiveRank([]) == 0)
        #expect(LowRank.effectiveRank([0, 0]) == 0)
        #expect(abs(LowRank.effectiveRank([5]) - 1) < 1e-15)
        #expect(abs(LowRank.effectiveRank([3, 3, 3]) - 3) < 1e-12)
        #expect(abs(LowRank.effectiveRank([3, 1]) - exp(-(0.75 * log(0.75) + 0.25 * log(0.25)))) < 1e-12)
    }

    @Test func fixSignsMakesTheLargestLeftEntryPositive() {
        // Columns of L: (1, −3, 2) and (−5, 2, 1); both have a negative largest entry.
        var f = LowRankFactors(rows: 3, columns: 2, rank: 2, left: [1, -5, -3, 2, 2, 1], right: [1, 2, 3, 4])
        let before = Dense.product(f)
        LowRank.fixSigns(&f)
        #expect(f.left == [-1, 5, 3, -2, -2, -1])
        #expect(f.right == [-1, -2, -3, -4])
        var g = LowRankFactors(rows: 2, columns: 1, rank: 1, left: [4, -1], right: [3])
        LowRank.fixSigns(&g)
        #expect(g.left == [4, -1] && g.right == [3])
        #expect(Dense.product(f) == before)
    }
}
