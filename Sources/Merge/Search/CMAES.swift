import Foundation

/// A seeded pseudo-random generator (SplitMix64): the same seed gives the same stream on every
/// machine, which is what makes a search reproducible and resumable.
public struct SearchRandom: Sendable {
    private var state: UInt64
    private var spare: Double?

    public init(seed: UInt64) { state = seed ^ 0x6A09_E667_F3BC_C908 }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    public mutating func uniform() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Standard normal (Box–Muller; the second value of each pair is kept for the next call).
    public mutating func normal() -> Double {
        if let s = spare { spare = nil; return s }
        var u = uniform()
        while u <= 0 { u = uniform() }
        let v = uniform()
        let r = (-2 * Foundation.log(u)).squareRoot()
        spare = r * sin(2 * .pi * v)
        return r * cos(2 * .pi * v)
    }
}

/// CMA-ES (Hansen's covariance matrix adaptation evolution strategy, the "purecma" form of his
/// tutorial, arXiv:1604.00772) in Float64, maximising a score over the unit box [0, 1]ⁿ.
///
/// Each generation samples λ points from N(m, σ²C) (``ask()``), and ``tell(_:)`` takes their scores
/// in the same order. Points are clamped to the box before they are returned, and the clamped
/// points are what the update learns from (the box is the whole space a recipe is decoded from).
/// Everything is deterministic given the seed and the scores, so a search replays exactly: resume
/// is "ask again and tell the recorded scores".
public struct CMAES: Sendable {
    public let dimension: Int
    public let populationSize: Int
    let mu: Int
    let weights: [Double]
    let muEff: Double
    let cc, cs, c1, cmu, damps, chiN: Double
    public private(set) var mean: [Double]
    public private(set) var sigma: Double
    var covariance: [[Double]]
    var pathC: [Double]
    var pathS: [Double]
    /// C = B·diag(D²)·Bᵀ, refreshed after each update.
    var basis: [[Double]]
    var scales: [Double]
    public private(set) var generation = 0
    var random: SearchRandom

    public init(dimension n: Int, seed: UInt64, mean: [Double]? = nil, sigma: Double = 0.3, population: Int? = nil) {
        precondition(n >= 1)
        dimension = n
        let lambda = max(population ?? (4 + Int(3 * Foundation.log(Double(n)))), 2)
        populationSize = lambda
        mu = lambda / 2
        let raw = (0..<mu).map { Foundation.log(Double(lambda + 1) / 2) - Foundation.log(Double($0 + 1)) }
        let total = raw.reduce(0, +)
        weights = raw.map { $0 / total }
        muEff = 1 / weights.map { $0 * $0 }.reduce(0, +)
        let nd = Double(n)
        cc = (4 + muEff / nd) / (nd + 4 + 2 * muEff / nd)
        cs = (muEff + 2) / (nd + muEff + 5)
        c1 = 2 / ((nd + 1.3) * (nd + 1.3) + muEff)
        cmu = min(1 - c1, 2 * (muEff - 2 + 1 / muEff) / ((nd + 2) * (nd + 2) + muEff))
        damps = 1 + 2 * max(0, ((muEff - 1) / (nd + 1)).squareRoot() - 1) + cs
        chiN = nd.squareRoot() * (1 - 1 / (4 * nd) + 1 / (21 * nd * nd))
        self.mean = mean ?? Array(repeating: 0.5, count: n)
        self.sigma = sigma
        covariance = (0..<n).map { i in (0..<n).map { $0 == i ? 1 : 0 } }
        basis = covariance
        scales = Array(repeating: 1, count: n)
        pathC = Array(repeating: 0, count: n)
        pathS = Array(repeating: 0, count: n)
        random = SearchRandom(seed: seed)
    }

    /// The next generation's λ points, in [0, 1]ⁿ.
    public mutating func ask() -> [[Double]] {
        (0..<populationSize).map { _ in
            let z = (0..<dimension).map { _ in random.normal() }
            var x = mean
            for i in 0..<dimension {
                var s = 0.0
                for j in 0..<dimension { s += basis[i][j] * scales[j] * z[j] }
                x[i] = min(1, max(0, x[i] + sigma * s))
            }
            return x
        }
    }

    /// Updates the distribution from one generation's points and their scores (higher is better;
    /// nil: the evaluation failed, ranked below every success). A generation with fewer than μ
    /// successes changes nothing (the next one samples the same distribution anew).
    public mutating func tell(_ points: [[Double]], scores: [Double?]) {
        generation += 1
        let ranked = zip(points, scores).enumerated().compactMap { i, ps in ps.1.map { (i, ps.0, $0) } }
            .sorted { $0.2 != $1.2 ? $0.2 > $1.2 : $0.0 < $1.0 }
        guard ranked.count >= mu else { return }
        let n = dimension
        let old = mean
        var m = Array(repeating: 0.0, count: n)
        for k in 0..<mu { for i in 0..<n { m[i] += weights[k] * ranked[k].1[i] } }
        mean = m
        let y = (0..<n).map { (m[$0] - old[$0]) / sigma }
        // C^(-1/2)·y = B·D⁻¹·Bᵀ·y
        var bty = Array(repeating: 0.0, count: n)
        for j in 0..<n { for i in 0..<n { bty[j] += basis[i][j] * y[i] }; bty[j] /= scales[j] }
        var invSqrtY = Array(repeating: 0.0, count: n)
        for i in 0..<n { for j in 0..<n { invSqrtY[i] += basis[i][j] * bty[j] } }
        let csFactor = (cs * (2 - cs) * muEff).squareRoot()
        for i in 0..<n { pathS[i] = (1 - cs) * pathS[i] + csFactor * invSqrtY[i] }
        let normS = pathS.map { $0 * $0 }.reduce(0, +).squareRoot()
        let hsig = normS / (1 - pow(1 - cs, 2 * Double(generation))).squareRoot() / chiN < 1.4 + 2 / (Double(n) + 1)
        let ccFactor = (cc * (2 - cc) * muEff).squareRoot()
        for i in 0..<n { pathC[i] = (1 - cc) * pathC[i] + (hsig ? ccFactor * y[i] : 0) }
        let deltaH = hsig ? 0 : cc * (2 - cc)
        let steps = (0..<mu).map { k in (0..<n).map { (ranked[k].1[$0] - old[$0]) / sigma } }
        for i in 0..<n {
            for j in 0...i {
                var rankMu = 0.0
                for k in 0..<mu { rankMu += weights[k] * steps[k][i] * steps[k][j] }
                let v = (1 - c1 - cmu + c1 * deltaH) * covariance[i][j] + c1 * pathC[i] * pathC[j] + cmu * rankMu
                covariance[i][j] = v
                covariance[j][i] = v
            }
        }
        sigma *= exp(min(1, (cs / damps) * (normS / chiN - 1)))
        sigma = min(max(sigma, 1e-6), 1)
        let (values, vectors) = SymmetricEigen.decompose(covariance)
        scales = values.map { max($0, 1e-20).squareRoot() }
        basis = vectors
    }
}

/// Eigen-decomposition of a small symmetric matrix by cyclic Jacobi rotations: exact enough for
/// CMA-ES's covariance (a few dozen dimensions) and free of any library.
enum SymmetricEigen {
    /// Eigenvalues and eigenvectors (the columns of the second result).
    static func decompose(_ matrix: [[Double]]) -> ([Double], [[Double]]) {
        let n = matrix.count
        var a = matrix
        var v = (0..<n).map { i in (0..<n).map { $0 == i ? 1.0 : 0.0 } }
        for _ in 0..<100 {
            var off = 0.0
            for i in 0..<n { for j in (i + 1)..<max(n, i + 1) { off += a[i][j] * a[i][j] } }
            if off < 1e-22 { break }
            for p in 0..<n {
                for q in (p + 1)..<max(n, p + 1) where abs(a[p][q]) > 1e-300 {
                    let theta = (a[q][q] - a[p][p]) / (2 * a[p][q])
                    let t = (theta >= 0 ? 1.0 : -1.0) / (abs(theta) + (theta * theta + 1).squareRoot())
                    let c = 1 / (t * t + 1).squareRoot(), s = t * c
                    for k in 0..<n {
                        let akp = a[k][p], akq = a[k][q]
                        a[k][p] = c * akp - s * akq
                        a[k][q] = s * akp + c * akq
                    }
                    for k in 0..<n {
                        let apk = a[p][k], aqk = a[q][k]
                        a[p][k] = c * apk - s * aqk
                        a[q][k] = s * apk + c * aqk
                    }
                    for k in 0..<n {
                        let vkp = v[k][p], vkq = v[k][q]
                        v[k][p] = c * vkp - s * vkq
                        v[k][q] = s * vkp + c * vkq
                    }
                }
            }
        }
        return ((0..<n).map { a[$0][$0] }, v)
    }
}
