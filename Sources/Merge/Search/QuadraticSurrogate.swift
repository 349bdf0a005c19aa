import Foundation

/// MAP-style surrogate (Model merging with Amortized Pareto fronts, arXiv:2406.07529): one
/// quadratic model of each task's score as a function of the search coordinates, fitted by ridge
/// least squares on the evaluated trials, then used to predict the Pareto front across tasks
/// without evaluating it.
///
/// With few trials a full quadratic (1 + n + n(n+1)/2 terms) is under-determined, so the model
/// keeps the cross terms only when there are at least twice as many trials as terms; otherwise it
/// is separable (1 + 2n terms: each coordinate's own parabola). The ridge term keeps the fit
/// defined either way.
public struct QuadraticSurrogate: Sendable {
    public let dimension: Int
    public let crossTerms: Bool
    /// Per task, the coefficients over ``features(_:)``.
    public let coefficients: [[Double]]
    public let tasks: [String]

    /// Fits one model per task from points in [0, 1]ⁿ and their scores (every point scores every task).
    public init?(points: [[Double]], scores: [[String: Double]], tasks: [String], ridge: Double = 1e-3) {
        guard let n = points.first?.count, points.count >= 3, points.count == scores.count, !tasks.isEmpty else { return nil }
        dimension = n
        let full = 1 + n + n * (n + 1) / 2
        let cross = points.count >= 2 * full
        crossTerms = cross
        self.tasks = tasks
        let rows = points.map { QuadraticSurrogate.features($0, cross: cross) }
        var out: [[Double]] = []
        for task in tasks {
            let y = scores.map { $0[task] ?? .nan }
            guard y.allSatisfy(\.isFinite) else { return nil }
            guard let beta = QuadraticSurrogate.ridgeSolve(rows, y, ridge: ridge) else { return nil }
            out.append(beta)
        }
        coefficients = out
    }

    static func features(_ x: [Double], cross: Bool) -> [Double] {
        // Centred on the box's middle: the ridge then shrinks toward a flat model there.
        let c = x.map { $0 - 0.5 }
        var f = [1.0] + c
        if cross {
            for i in 0..<c.count { for j in i..<c.count { f.append(c[i] * c[j]) } }
        } else {
            f += c.map { $0 * $0 }
        }
        return f
    }

    /// Predicted scores of every task at `x`.
    public func predict(_ x: [Double]) -> [Double] {
        let f = QuadraticSurrogate.features(x, cross: crossTerms)
        return coefficients.map { beta in zip(beta, f).map(*).reduce(0, +) }
    }

    /// (XᵀX + ridge·I) β = Xᵀy by Cholesky (the intercept is not shrunk).
    static func ridgeSolve(_ x: [[Double]], _ y: [Double], ridge: Double) -> [Double]? {
        let p = x[0].count
        var a = Array(repeating: Array(repeating: 0.0, count: p), count: p)
        var b = Array(repeating: 0.0, count: p)
        for (row, t) in zip(x, y) {
            for i in 0..<p {
                b[i] += row[i] * t
                for j in 0...i { a[i][j] += row[i] * row[j] }
            }
        }
        for i in 0..<p {
            for j in 0..<i { a[j][i] = a[i][j] }
            if i > 0 { a[i][i] += ridge * Double(x.count) }
        }
        var l = Array(repeating: Array(repeating: 0.0, count: p), count: p)
        for i in 0..<p {
            for j in 0...i {
                var s = a[i][j]
                for k in 0..<j { s -= l[i][k] * l[j][k] }
                if i == j {
                    guard s > 1e-300 else { return nil }
                    l[i][i] = s.squareRoot()
                } else {
                    l[i][j] = s / l[j][j]
                }
            }
        }
        var z = Array(repeating: 0.0, count: p)
        for i in 0..<p {
            var s = b[i]
            for k in 0..<i { s -= l[i][k] * z[k] }
            z[i] = s / l[i][i]
        }
        var beta = Array(repeating: 0.0, count: p)
        for i in stride(from: p - 1, through: 0, by: -1) {
            var s = z[i]
            for k in (i + 1)..<p { s -= l[k][i] * beta[k] }
            beta[i] = s / l[i][i]
        }
        return beta
    }

    /// The predicted Pareto front: `samples` seeded random points of the box plus `extra` (the
    /// evaluated points), kept when no other point is predicted at least as good on every task and
    /// better on one. Sorted by the predicted minimum across tasks, best first.
    public func paretoFront(samples: Int, seed: UInt64, extra: [[Double]] = []) -> [(point: [Double], predicted: [Double])] {
        var random = SearchRandom(seed: seed ^ 0x5041_5245_544F)
        var candidates = extra
        for _ in 0..<samples { candidates.append((0..<dimension).map { _ in random.uniform() }) }
        let predicted = candidates.map(predict)
        let front = Pareto.nonDominated(predicted)
        return front.map { (candidates[$0], predicted[$0]) }
            .sorted { ($0.predicted.min() ?? 0) > ($1.predicted.min() ?? 0) }
    }
}

/// Pareto dominance over score vectors (higher is better on every task).
public enum Pareto {
    /// Indices of the vectors no other vector dominates, in input order.
    public static func nonDominated(_ vectors: [[Double]]) -> [Int] {
        vectors.indices.filter { i in
            !vectors.indices.contains { j in j != i && dominates(vectors[j], vectors[i]) }
        }
    }

    public static func dominates(_ a: [Double], _ b: [Double]) -> Bool {
        var better = false
        for (x, y) in zip(a, b) {
            if x < y { return false }
            if x > y { better = true }
        }
        return better
    }
}
