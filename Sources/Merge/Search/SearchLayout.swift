import Delta
import Foundation

/// How a recipe is scored from its task scores.
public enum SearchObjective: String, Sendable, CaseIterable {
    /// The mean of the task scores.
    case mean
    /// The worst task's score (no task left behind).
    case min
    /// The trade-off across tasks: the optimiser climbs the mean, a quadratic surrogate of each
    /// task (``QuadraticSurrogate``) proposes the last trials from its predicted Pareto front, and
    /// the winner is the evaluated non-dominated trial with the best worst-task score relative to
    /// each task's best.
    case pareto

    /// The number CMA-ES maximises.
    public func scalar(_ scores: [String: Double]) -> Double? {
        let values = scores.keys.sorted().compactMap { scores[$0] }
        guard !values.isEmpty else { return nil }
        switch self {
        case .mean, .pareto: return values.reduce(0, +) / Double(values.count)
        case .min: return values.min()
        }
    }
}

/// A search space laid out as coordinates in [0, 1]ⁿ for the optimiser, for given experts.
///
/// Categorical choices (the method, the balance) are one-hot blocks: one coordinate per option,
/// the largest wins (ties go to the first). CMA-ES thus moves a continuous preference per option,
/// and its covariance learns which options go with which ranges. A number in [min, max] is one
/// coordinate, mapped linearly; a gradient of k points is k coordinates. A coordinate that the
/// chosen method does not use is simply ignored for that trial.
public struct SearchLayout: Sendable {
    public enum Coordinate: Sendable, Equatable {
        case method(Int)
        case balance(Int)
        /// Point `point` of a parameter (expert nil: global).
        case parameter(name: String, expert: Int?, point: Int)
    }

    public let space: SearchSpace
    public let experts: [String]
    public let seed: UInt64
    public let coordinates: [Coordinate]
    public static let maximumDimension = 256

    public init(space: SearchSpace, experts: [String], seed: UInt64, file: String) throws(MergeError) {
        for name in space.experts.keys.sorted() where !experts.contains(name) {
            throw .invalidRecipe(file: file, problem: "experts.\(name) is not an expert of this merge (experts: \(experts.joined(separator: ", ")))")
        }
        self.space = space
        self.experts = experts
        self.seed = seed
        var coords: [Coordinate] = []
        if space.methods.count > 1 { coords += space.methods.indices.map { .method($0) } }
        if space.balances.count > 1 { coords += space.balances.indices.map { .balance($0) } }
        let types = space.methods.compactMap { try? MethodRegistry.method(named: $0) }
        let globals = Set(types.flatMap { $0.parameters.map(\.name) })
        let perExpert = Set(types.flatMap { $0.expertParameters.map(\.name) })
        for name in globals.subtracting(perExpert).sorted() {
            if case let .range(_, _, points)? = space.setting(name, expert: nil) {
                coords += (0..<points).map { .parameter(name: name, expert: nil, point: $0) }
            }
        }
        for (i, expert) in experts.enumerated() {
            for name in perExpert.sorted() {
                if case let .range(_, _, points)? = space.setting(name, expert: expert) {
                    coords += (0..<points).map { .parameter(name: name, expert: i, point: $0) }
                }
            }
        }
        guard coords.count <= SearchLayout.maximumDimension else {
            throw .invalidRecipe(file: file, problem: "the space has \(coords.count) dimensions; at most \(SearchLayout.maximumDimension)")
        }
        coordinates = coords
    }

    public var dimension: Int { coordinates.count }

    /// The recipe at a point of [0, 1]ⁿ: only the chosen method's parameters are set.
    public func recipe(at x: [Double]) -> MergeRecipe {
        func choice(_ count: Int, _ pick: (Coordinate) -> Int?) -> Int {
            guard count > 1 else { return 0 }
            var best = 0, bestValue = -Double.infinity
            for (c, v) in zip(coordinates, x) { if let i = pick(c), v > bestValue { best = i; bestValue = v } }
            return best
        }
        let methodIndex = choice(space.methods.count) { if case let .method(i) = $0 { return i } else { return nil } }
        let balanceIndex = choice(space.balances.count) { if case let .balance(i) = $0 { return i } else { return nil } }
        let id = space.methods[methodIndex]
        let method = try? MethodRegistry.method(named: id)
        let globals = Set(method?.parameters.map(\.name) ?? [])
        let perExpert = Set(method?.expertParameters.map(\.name) ?? [])
        func value(_ name: String, expert: Int?) -> ParameterValue? {
            switch space.setting(name, expert: expert.map { experts[$0] }) {
            case nil: return nil
            case let .fixed(v)?: return v
            case let .range(lo, hi, points)?:
                var values = Array(repeating: lo, count: points)
                for (c, v) in zip(coordinates, x) {
                    if case let .parameter(n, e, p) = c, n == name, e == expert, p < points {
                        values[p] = SearchLayout.round(lo + min(max(v, 0), 1) * (hi - lo))
                    }
                }
                return points == 1 ? .number(values[0]) : .gradient(values)
            }
        }
        var parameters: [String: ParameterValue] = [:]
        for name in globals.subtracting(perExpert).sorted() { parameters[name] = value(name, expert: nil) }
        let expertParameters = experts.indices.map { i in
            var d: [String: ParameterValue] = [:]
            for name in perExpert.sorted() { d[name] = value(name, expert: i) }
            return d
        }
        var recipe = MergeRecipe(method: id, parameters: parameters, expertParameters: expertParameters, experts: experts, seed: seed)
        let balance = space.balances[balanceIndex]
        // Balance rescales task vectors: a method without a merge base (regmean, fisher, linear) has
        // none, and ignores the balance coordinates as it ignores parameters it does not take.
        recipe.balance = balance == .none || method?.takesBalance != true ? nil : balance
        return recipe
    }

    /// A warm-start point's value on the chosen option of a one-hot block, and on the others. Any
    /// gap decodes to the same recipe; a gap of 0.5 (rather than 1 and 0) keeps CMA-ES, whose mean
    /// starts at the best warm-start point with σ = 0.3, proposing another option now and then
    /// (each rival wins about one sample in eight) instead of never.
    static let chosen = 0.75, rival = 0.25

    /// The warm start: every candidate method of the space with every balance option, in the
    /// space's order (methods outer), each at the method's documented defaults. A searched number
    /// sits at the method's default when that lies in its range, else at the range's centre (so do
    /// the parameters the method does not take, and those without a numeric default); a gradient
    /// has every point there. The points decode, through ``recipe(at:)``, to those recipes; a
    /// method without a merge base takes no balance, so it has one point.
    public func defaultPoints() -> [[Double]] {
        space.methods.indices.flatMap { m in
            let balances = (try? MethodRegistry.method(named: space.methods[m]))?.takesBalance == false ? [0] : Array(space.balances.indices)
            return balances.map { b in defaultPoint(method: m, balance: b) }
        }
    }

    /// The warm-start point of method `m` with balance option `b` (see ``defaultPoints()``).
    public func defaultPoint(method m: Int, balance b: Int) -> [Double] {
        let type = try? MethodRegistry.method(named: space.methods[m])
        let specs = (type?.parameters ?? []) + (type?.expertParameters ?? [])
        return coordinates.map { c in
            switch c {
            case let .method(i): return i == m ? SearchLayout.chosen : SearchLayout.rival
            case let .balance(i): return i == b ? SearchLayout.chosen : SearchLayout.rival
            case let .parameter(name, expert, _):
                guard case let .range(lo, hi, _)? = space.setting(name, expert: expert.map { experts[$0] }) else { return 0.5 }
                guard case let .number(d)? = specs.first(where: { $0.name == name })?.defaultValue, d >= lo, d <= hi else { return 0.5 }
                return (d - lo) / (hi - lo)
            }
        }
    }

    /// Six significant digits: recipes read well and a recorded trial replays to the same bytes.
    static func round(_ v: Double) -> Double {
        guard v != 0, v.isFinite else { return v }
        let scale = pow(10, 5 - floor(log10(abs(v))))
        return (v * scale).rounded() / scale
    }
}
