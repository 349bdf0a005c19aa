import Foundation

/// Proposes a search's trials: first the warm start (every candidate method and balance at its
/// documented defaults, ``SearchLayout/defaultPoints()``), then CMA-ES generations over the
/// layout's box with the mean at the best warm-start point, and for `--objective pareto` the last
/// fifth of the budget from the surrogate's predicted Pareto front.
///
/// The warm start is why a search never does worse than the fixed defaults it could have tried: a
/// random first generation spreads a few trials over each method at random parameters, and can
/// miss a method whose defaults are already good (docs/merging.md, "How candidates are proposed").
///
/// Deterministic given the seed and the scores it is told: a resumed search replays the recorded
/// trials through the same calls and lands in the same state (docs/merging.md, "Recipe search").
public struct SearchPlanner: Sendable {
    public let layout: SearchLayout
    public let objective: SearchObjective
    public let budget: Int
    var optimiser: CMAES
    /// Every trial told so far: its point and its scores (nil: failed).
    public private(set) var history: [(point: [Double], scores: [String: Double]?)] = []
    public private(set) var proposed = 0
    /// The warm-start points still to be proposed (emptied by the first ``propose()``).
    var warmStart: [[Double]]
    /// How many trials the warm start takes (the first ones); set by the first ``propose()``.
    public private(set) var warmStartCount = 0
    var awaitingWarmStart = false

    public init(layout: SearchLayout, objective: SearchObjective, trials: Int) {
        self.layout = layout
        self.objective = objective
        budget = trials
        optimiser = CMAES(dimension: max(layout.dimension, 1), seed: layout.seed)
        warmStart = layout.defaultPoints()
    }

    /// Trials kept for the surrogate's front under `--objective pareto`.
    var surrogateTrials: Int { objective == .pareto && budget >= 5 ? max(1, budget / 5) : 0 }

    public var remaining: Int { budget - proposed }

    /// The next batch of points (empty when the budget is spent). Every point of a batch must be
    /// told (``tell(_:scores:)``) before the next batch is asked for.
    public mutating func propose() -> [[Double]] {
        guard remaining > 0 else { return [] }
        if !warmStart.isEmpty {
            // Never more than the optimiser's share of the budget; the surrogate keeps its fifth.
            let points = Array(warmStart.prefix(max(1, budget - surrogateTrials)))
            warmStart = []
            warmStartCount = points.count
            awaitingWarmStart = true
            proposed += points.count
            return points
        }
        if remaining <= surrogateTrials, let front = surrogateFront(count: remaining) {
            proposed += front.count
            return front
        }
        var points = optimiser.ask()
        if layout.dimension == 0 { points = points.map { _ in [] } }
        let cap = remaining - (remaining > surrogateTrials ? surrogateTrials : 0)
        points = Array(points.prefix(max(1, cap)))
        proposed += points.count
        return points
    }

    /// The scores of the batch last proposed, in order.
    public mutating func tell(_ points: [[Double]], scores: [[String: Double]?]) {
        history += zip(points, scores).map { ($0, $1) }
        if awaitingWarmStart {
            // The warm start is no sample of the distribution: it only places the mean, at the best
            // point (ties: the earlier), with the same seed, so the search stays deterministic.
            awaitingWarmStart = false
            let ranked = zip(points, scores).compactMap { p, s in s.flatMap(objective.scalar).map { (p, $0) } }
            if let best = ranked.max(by: { $0.1 < $1.1 }), layout.dimension > 0 {
                optimiser = CMAES(dimension: layout.dimension, seed: layout.seed, mean: best.0)
            }
            return
        }
        // A truncated generation (the budget's end) is not a full sample: nothing more is asked of it.
        guard points.count == optimiser.populationSize, layout.dimension > 0 else { return }
        optimiser.tell(points, scores: scores.map { $0.flatMap(objective.scalar) })
    }

    /// `count` distinct points of the predicted front, best predicted worst task first; nil when
    /// too few trials succeeded to fit the surrogate.
    mutating func surrogateFront(count: Int) -> [[Double]]? {
        guard let surrogate = fitSurrogate() else { return nil }
        let tried = Set(history.map(\.point))
        let front = surrogate.paretoFront(samples: 2000, seed: layout.seed &+ UInt64(proposed), extra: history.map(\.point))
        var out: [[Double]] = []
        for f in front where !tried.contains(f.point) && !out.contains(f.point) {
            out.append(f.point)
            if out.count == count { break }
        }
        return out.count == count ? out : nil
    }

    public func fitSurrogate() -> QuadraticSurrogate? {
        let ok = history.compactMap { h in h.scores.map { (h.point, $0) } }
        guard let tasks = ok.first.map({ $0.1.keys.sorted() }), ok.allSatisfy({ $0.1.keys.sorted() == tasks }), layout.dimension > 0 else { return nil }
        return QuadraticSurrogate(points: ok.map(\.0), scores: ok.map(\.1), tasks: tasks)
    }

    /// The winning trial's index among `scores` (nil: none succeeded). Ties go to the earlier trial.
    public static func winner(_ scores: [[String: Double]?], objective: SearchObjective) -> Int? {
        let ok = scores.enumerated().compactMap { i, s in s.map { (i, $0) } }
        guard !ok.isEmpty else { return nil }
        if objective != .pareto {
            return ok.max { a, b in
                let x = objective.scalar(a.1) ?? -.infinity, y = objective.scalar(b.1) ?? -.infinity
                return x != y ? x < y : a.0 > b.0
            }?.0
        }
        let tasks = Array(Set(ok.flatMap { $0.1.keys })).sorted()
        let vectors = ok.map { s in tasks.map { s.1[$0] ?? -.infinity } }
        let best = tasks.indices.map { t in vectors.map { $0[t] }.max() ?? 0 }
        func relative(_ v: [Double]) -> Double {
            zip(v, best).map { s, b in b > 0 ? s / b : s - b }.min() ?? -.infinity
        }
        let front = Pareto.nonDominated(vectors)
        let pick = front.max { a, b in
            let x = relative(vectors[a]), y = relative(vectors[b])
            return x != y ? x < y : a > b
        }
        return pick.map { ok[$0].0 }
    }

    /// Indices (among `scores`) of the evaluated trials no other trial dominates.
    public static func observedFront(_ scores: [[String: Double]?]) -> [Int] {
        let ok = scores.enumerated().compactMap { i, s in s.map { (i, $0) } }
        let tasks = Array(Set(ok.flatMap { $0.1.keys })).sorted()
        return Pareto.nonDominated(ok.map { s in tasks.map { s.1[$0] ?? -.infinity } }).map { ok[$0].0 }
    }
}
