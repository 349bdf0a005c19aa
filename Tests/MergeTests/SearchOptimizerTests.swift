import Foundation
import Testing

@testable import Merge

/// The search's kernels: CMA-ES, the quadratic surrogate, Pareto dominance, the space file and the
/// layout that turns a point of the box into a recipe.
@Suite struct SearchOptimizerTests {
    /// −‖x − target‖², maximised at `target`.
    static func score(_ x: [Double], _ target: [Double]) -> Double { -zip(x, target).map { ($0 - $1) * ($0 - $1) }.reduce(0, +) }

    @Test func cmaesClimbsAQuadraticAndIsDeterministic() {
        let target = [0.2, 0.7, 0.9, 0.4]
        func run(seed: UInt64) -> ([Double], [[Double]]) {
            var es = CMAES(dimension: 4, seed: seed)
            var first: [[Double]] = []
            for g in 0..<40 {
                let points = es.ask()
                if g == 0 { first = points }
                es.tell(points, scores: points.map { Self.score($0, target) })
            }
            return (es.mean, first)
        }
        let (mean, first) = run(seed: 3)
        #expect(Self.score(mean, target) > -1e-4, "mean \(mean)")
        #expect(first.allSatisfy { $0.allSatisfy { (0...1).contains($0) } })
        let again = run(seed: 3)
        #expect(again.0 == mean && again.1 == first)
        #expect(run(seed: 4).1 != first)
    }

    @Test func failedTrialsRankLastAndTooFewLeaveTheDistribution() {
        var es = CMAES(dimension: 2, seed: 1)
        let points = es.ask()
        let before = es.mean
        es.tell(points, scores: points.map { _ in nil })
        #expect(es.mean == before)
        let next = es.ask()
        var scores: [Double?] = next.map { Self.score($0, [1, 1]) }
        scores[0] = nil
        es.tell(next, scores: scores)
        #expect(es.mean != before)
    }

    @Test func eigenDecompositionRebuildsTheMatrix() {
        let a = [[4.0, 1, 0.5], [1, 3, 0.2], [0.5, 0.2, 2]]
        let (values, vectors) = SymmetricEigen.decompose(a)
        for i in 0..<3 {
            for j in 0..<3 {
                let rebuilt = (0..<3).map { k in vectors[i][k] * values[k] * vectors[j][k] }.reduce(0, +)
                #expect(abs(rebuilt - a[i][j]) < 1e-10)
            }
        }
    }

    @Test func surrogateRecoversAQuadraticAndItsFront() throws {
        var random = SearchRandom(seed: 9)
        let points = (0..<40).map { _ in [random.uniform(), random.uniform()] }
        // Task a peaks at x0 = 0.2, task b at x0 = 0.8: the front is 0.2 ≤ x0 ≤ 0.8.
        let scores = points.map { p in ["a": 1 - (p[0] - 0.2) * (p[0] - 0.2), "b": 1 - (p[0] - 0.8) * (p[0] - 0.8) - 0.1 * p[1] * p[1]] }
        let s = try #require(QuadraticSurrogate(points: points, scores: scores, tasks: ["a", "b"], ridge: 1e-9))
        #expect(s.crossTerms)
        let predicted = s.predict([0.5, 0.5])
        #expect(abs(predicted[0] - 0.91) < 1e-6 && abs(predicted[1] - (0.91 - 0.025)) < 1e-6, "\(predicted)")
        let front = s.paretoFront(samples: 500, seed: 1)
        #expect(!front.isEmpty)
        #expect(front.allSatisfy { $0.point[0] > 0.15 && $0.point[0] < 0.85 }, "\(front.map(\.point))")
    }

    @Test func paretoDominance() {
        #expect(Pareto.dominates([1, 2], [1, 1]))
        #expect(!Pareto.dominates([1, 1], [1, 1]))
        #expect(!Pareto.dominates([2, 0], [1, 1]))
        #expect(Pareto.nonDominated([[1, 1], [2, 0], [0.5, 0.5], [1, 2]]) == [1, 3])
    }

    @Test func winnerByObjective() {
        let scores: [[String: Double]?] = [["a": 0.9, "b": 0.1], nil, ["a": 0.55, "b": 0.5], ["a": 0.4, "b": 0.4]]
        #expect(SearchPlanner.winner(scores, objective: .mean) == 2)
        #expect(SearchPlanner.winner(scores, objective: .min) == 2)
        #expect(SearchPlanner.winner([["a": 0.9, "b": 0.1], ["a": 0.3, "b": 0.35]], objective: .mean) == 0)
        #expect(SearchPlanner.winner([["a": 0.9, "b": 0.1], ["a": 0.3, "b": 0.35]], objective: .min) == 1)
        #expect(SearchPlanner.winner([nil, nil], objective: .mean) == nil)
        #expect(SearchPlanner.observedFront(scores) == [0, 2])
    }

    @Test func paretoSearchSpendsTheLastFifthOnTheSurrogatesFront() throws {
        let space = try SearchSpace(methods: ["task_arithmetic"], balances: [.none],
                                    parameters: ["lambda": .fixed(.number(1))]).fixing(method: nil, balance: nil, file: "space")
        let layout = try SearchLayout(space: space, experts: ["a", "b"], seed: 5, file: "space")
        #expect(layout.dimension == 2)
        var planner = SearchPlanner(layout: layout, objective: .pareto, trials: 20)
        var batches: [Int] = []
        while true {
            let points = planner.propose()
            if points.isEmpty { break }
            batches.append(points.count)
            planner.tell(points, scores: points.map { p in ["a": 1 - (p[0] - 0.3) * (p[0] - 0.3), "b": 1 - (p[1] - 0.6) * (p[1] - 0.6)] })
        }
        #expect(batches.reduce(0, +) == 20)
        #expect(batches.last == 4, "\(batches)")
        let recipe = layout.recipe(at: [0.25, 0.5])
        #expect(recipe.method == "task_arithmetic" && recipe.parameters["lambda"] == .number(1))
        #expect(recipe.expertParameters.map { $0["weight"] } == [.number(0.325), .number(0.55)])
    }

    @Test func layoutOneHotsTheMethodAndBalanceAndSpreadsGradients() throws {
        let text = """
            methods: [ties, task_arithmetic]
            balance: [none, norm]
            parameters:
              lambda: {min: 0.5, max: 1.5, points: 3}
              density: {min: 0.5, max: 1}
            experts:
              b: {weight: 1}
            """
        let space = try SearchSpace.parse(text, file: "s.yml").fixing(method: nil, balance: nil, file: "s.yml")
        let layout = try SearchLayout(space: space, experts: ["a", "b"], seed: 1, file: "s.yml")
        // 2 methods + 2 balances + 3 lambda points + density×2 + a's weight.
        #expect(layout.dimension == 10)
        var x = Array(repeating: 0.0, count: 10)
        x[1] = 1  // task_arithmetic
        x[3] = 1  // norm
        x[4] = 0; x[5] = 0.5; x[6] = 1
        let r = layout.recipe(at: x)
        #expect(r.method == "task_arithmetic" && r.balance == .norm)
        #expect(r.parameters["lambda"] == .gradient([0.5, 1, 1.5]))
        #expect(r.expertParameters[1]["weight"] == .number(1))
        #expect(r.expertParameters[0]["density"] == nil)
        x[0] = 2
        #expect(layout.recipe(at: x).method == "ties")
        #expect(layout.recipe(at: x).expertParameters[0]["density"] == .number(0.5))
        #expect(throws: MergeError.self) { try SearchLayout(space: space, experts: ["a", "c"], seed: 1, file: "s.yml") }
    }

    static func warmSpace() throws -> SearchLayout {
        // tsv's fraction defaults to 0 (the paper's 1/T), outside this range: the warm start takes the centre.
        let space = try SearchSpace(methods: ["task_arithmetic", "ties", "tsv", "pcb"], balances: [.none, .norm],
                                    parameters: ["fraction": .range(min: 0.2, max: 0.6, points: 1),
                                                 "lambda": .range(min: 0.2, max: 1.5, points: 2)])
            .fixing(method: nil, balance: nil, file: "space")
        return try SearchLayout(space: space, experts: ["a", "b", "c"], seed: 11, file: "space")
    }

    @Test func theWarmStartTriesEveryMethodAndBalanceAtItsDefaultsFirst() throws {
        let layout = try Self.warmSpace()
        var planner = SearchPlanner(layout: layout, objective: .mean, trials: 40)
        let first = planner.propose()
        #expect(first.count == 8 && planner.warmStartCount == 8)
        let recipes = first.map(layout.recipe(at:))
        #expect(recipes.map(\.method) == ["task_arithmetic", "task_arithmetic", "ties", "ties", "tsv", "tsv", "pcb", "pcb"])
        #expect(recipes.map(\.balance) == [nil, .norm, nil, .norm, nil, .norm, nil, .norm])
        // λ's default (1) lies in [0.2, 1.5]: every point of its gradient is exactly 1.
        #expect(recipes.allSatisfy { $0.parameters["lambda"] == .gradient([1, 1]) }, "\(recipes.map(\.parameters))")
        #expect(recipes[0].expertParameters.allSatisfy { $0["weight"] == .number(1) && $0["density"] == nil })
        #expect(recipes[2].expertParameters.allSatisfy { $0["weight"] == .number(1) && $0["density"] == .number(1) })
        #expect(recipes[4].parameters["fraction"] == .number(0.4))
        #expect(recipes[6].parameters["ratio"] == nil && recipes[6].expertParameters.allSatisfy(\.isEmpty))
        // CMA-ES then starts from the best of them (pcb with balance here), not from the box's centre.
        planner.tell(first, scores: first.indices.map { $0 == 7 ? ["x": 90] : ["x": 50 + Double($0)] })
        #expect(planner.optimiser.mean == first[7])
        var methods: [String] = []
        for _ in 0..<2 {
            let points = planner.propose()
            #expect(points.count == planner.optimiser.populationSize)
            methods += points.map { layout.recipe(at: $0).method }
            planner.tell(points, scores: points.map { _ in ["x": 60] })
        }
        #expect(methods.filter { $0 == "pcb" }.count > methods.count / 2, "\(methods)")
        #expect(methods.contains { $0 != "pcb" }, "rival methods are still proposed: \(methods)")
    }

    @Test func aFailedWarmStartLeavesTheMeanAtTheCentreAndTheSearchIsDeterministic() throws {
        let layout = try Self.warmSpace()
        var failed = SearchPlanner(layout: layout, objective: .mean, trials: 30)
        let first = failed.propose()
        failed.tell(first, scores: first.map { _ in nil })
        #expect(failed.optimiser.mean == Array(repeating: 0.5, count: layout.dimension))
        // Same seed and scores: the same trials, batch by batch; another seed: the same warm start only.
        func run(seed: UInt64) throws -> [[[Double]]] {
            let l = try SearchLayout(space: layout.space, experts: layout.experts, seed: seed, file: "space")
            var planner = SearchPlanner(layout: l, objective: .pareto, trials: 30)
            var batches: [[[Double]]] = []
            while true {
                let points = planner.propose()
                if points.isEmpty { break }
                batches.append(points)
                planner.tell(points, scores: points.map { p in ["x": Self.score(p, Array(repeating: 0.3, count: p.count)), "y": p[0]] })
            }
            return batches
        }
        let a = try run(seed: 11), b = try run(seed: 11), c = try run(seed: 12)
        #expect(a == b)
        #expect(a.map(\.count).reduce(0, +) == 30 && a.first?.count == 8)
        #expect(c.first == a.first && c[1] != a[1])
    }
    /// Data-driven methods: searchable without a merge base (so without balance), offered by the
    /// built-in method list only when the experts carry their statistics, never added to a list the
    /// user gave.
    @Test func dataDrivenMethodsAreSearchedWithoutBalanceWhenOffered() throws {
        #expect(SearchSpace.isSearchable(RegMean.self) && SearchSpace.isSearchable(Fisher.self) && SearchSpace.isSearchable(Linear.self))
        #expect(!SearchSpace.isSearchable(ModelStock.self) && !SearchSpace.isSearchable(MWA.self) && !SearchSpace.isSearchable(KnOTS.self))
        let builtIn = try SearchSpace().fixing(method: nil, balance: nil, file: "space")
        #expect(builtIn.offeringStatisticsMethods { _ in false }.methods == SearchSpace.defaultMethods)
        let offered = builtIn.offeringStatisticsMethods { $0.id == "regmean" }
        #expect(offered.methods == SearchSpace.defaultMethods + ["regmean"])
        let given = try SearchSpace(methods: ["ties"]).fixing(method: nil, balance: nil, file: "space")
        #expect(given.offeringStatisticsMethods { _ in true }.methods == ["ties"])
        #expect(try SearchSpace().fixing(method: "tsv", balance: nil, file: "space").offeringStatisticsMethods { _ in true }.methods == ["tsv"])
        let space = try SearchSpace(methods: ["ties", "regmean"], balances: [.none, .norm]).fixing(method: nil, balance: nil, file: "space")
        let layout = try SearchLayout(space: space, experts: ["a", "b"], seed: 3, file: "space")
        let warm = layout.defaultPoints().map(layout.recipe(at:))
        #expect(warm.map(\.method) == ["ties", "ties", "regmean"])
        #expect(warm.map(\.balance) == [nil, .norm, nil])
        #expect(warm[2].expertParameters == [["weight": .number(1)], ["weight": .number(1)]])
        // Wherever the balance coordinates point, regmean's recipe carries none.
        var x = layout.defaultPoint(method: 1, balance: 1)
        for (i, c) in layout.coordinates.enumerated() where c == .balance(1) { x[i] = 1 }
        #expect(layout.recipe(at: x).method == "regmean" && layout.recipe(at: x).balance == nil)
    }
}
