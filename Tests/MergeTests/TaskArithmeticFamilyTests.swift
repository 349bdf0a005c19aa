import Delta
import Testing

@testable import Merge

/// task_arithmetic, ties, dare_*, breadcrumbs*, della*: mergekit's generalized task arithmetic.
@Suite struct TaskArithmeticFamilyTests {
    static let taskVectorMethods = ["task_arithmetic", "ties", "dare_linear", "dare_ties", "breadcrumbs",
                                    "breadcrumbs_ties", "della", "della_linear"]

    // MARK: - §7 vectors

    @Test func taskArithmeticSection7() throws {
        let s = Section7.self
        let out = try merge("task_arithmetic", experts: weighted(s.weights), base: s.base, s.experts, context: s.context)
        expectClose(out.values, [0.8, 0.0, 0.5875, -0.5125, 0.34, 0.5])
    }

    @Test func taskArithmeticHalfLambdaSection7() throws {
        let s = Section7.self
        let out = try merge("task_arithmetic", ["lambda": .number(0.5)], experts: weighted(s.weights), base: s.base, s.experts,
                            context: s.context)
        expectClose(out.values, [0.45, -0.1, 0.44375, -0.25625, 0.42, 0.0])
    }

    @Test func tiesHalfDensitySection7() throws {
        let s = Section7.self
        let out = try merge("ties", experts: weighted(s.weights, ["density": .number(0.5)]), base: s.base, s.experts,
                            context: s.context)
        expectClose(out.values, [0.5571429, 0.1, 0.55, -0.3214286, -0.1, 0.0285714])
        #expect(out.metrics.keptFraction == [0.5, 0.5, 0.5])
    }

    @Test func tiesHalfDensityWithoutNormalizeSection7() throws {
        let s = Section7.self
        let out = try merge("ties", ["normalize": .flag(false)], experts: weighted(s.weights, ["density": .number(0.5)]),
                            base: s.base, s.experts, context: s.context)
        expectClose(out.values, [0.9, -0.05, 0.425, -0.5625, 0.2, 0.425])
    }

    @Test func tiesFullDensityOnlyElectsSection7() throws {
        let s = Section7.self
        let out = try merge("ties", experts: weighted(s.weights, ["density": .number(1)]), base: s.base, s.experts,
                            context: s.context)
        expectClose(out.values, [0.5571429, 0.04, 0.5166667, -0.3214286, -0.1, -0.0555556])
        #expect(out.metrics.keptFraction == [1, 1, 1])
    }

    /// A per-expert parameter given once globally applies to every expert (mergekit allows it).
    @Test func globalDensityAppliesToEveryExpert() throws {
        let s = Section7.self
        let out = try merge("ties", ["density": .number(0.5)], experts: weighted(s.weights), base: s.base, s.experts,
                            context: s.context)
        expectClose(out.values, [0.5571429, 0.1, 0.55, -0.3214286, -0.1, 0.0285714])
    }

    // MARK: - Sign election and weights

    /// mergekit elects the sign of the weighted sum Σ wᵢδᵢ (not the paper's unweighted sum).
    @Test func signElectionUsesWeightedDeltas() throws {
        // δ₁ = +1 (w 1), δ₂ = −0.6 (w 2): Σ wδ = −0.2 elects −, although Σ δ = +0.4.
        let out = try merge("ties", experts: weighted([1, 2]), base: [0], [[1], [-0.6]])
        expectClose(out.values, [-0.6])
    }

    /// A zero weighted sum elects +, and an element every expert leaves alone stays at the base.
    @Test func zeroSumElectsPlus() throws {
        let out = try merge("ties", ["normalize": .flag(false)], base: [0.5, 0.5], [[1.5, 0.5], [-0.5, 0.5]])
        #expect(out.values == [1.5, 0.5])
    }

    @Test func negativeWeightSubtractsTheTaskVector() throws {
        let base: [Float] = [1, 2, 3], expert: [Float] = [1.5, 1, 3.25]
        let out = try merge("task_arithmetic", experts: weighted([-1]), base: base, [expert])
        #expect(out.values == [0.5, 3, 2.75])
    }

    /// λ is applied after the disjoint mean: ties with λ = 2 doubles the averaged delta.
    @Test func lambdaScalesAfterNormalization() throws {
        let s = Section7.self
        let one = try merge("ties", experts: weighted(s.weights, ["density": .number(0.5)]), base: s.base, s.experts)
        let two = try merge("ties", ["lambda": .number(2)], experts: weighted(s.weights, ["density": .number(0.5)]),
                            base: s.base, s.experts)
        let expected = zip(one.values, s.base).map { Double($1) + 2 * (Double($0) - Double($1)) }
        expectClose(two.values, expected)
    }

    @Test func taskArithmeticNormalizeAveragesTheTaskVectors() throws {
        let s = Section7.self
        let out = try merge("task_arithmetic", ["normalize": .flag(true)], experts: weighted(s.weights), base: s.base, s.experts)
        let total = s.weights.reduce(0, +)
        let expected = (0..<6).map { j in
            Double(s.base[j]) + (0..<3).map { s.weights[$0] * Double(s.experts[$0][j] - s.base[j]) }.reduce(0, +) / total
        }
        expectClose(out.values, expected)
    }

    // MARK: - Merge laws

    @Test(arguments: taskVectorMethods)
    func oneExpertAtLambdaOneGivesTheExpert(method: String) throws {
        let base = randomValues(300, seed: 1), expert = randomValues(300, seed: 2)
        let out = try merge(method, base: base, [expert], seed: 9)
        expectClose(out.values, expert, method)
    }

    @Test(arguments: taskVectorMethods)
    func zeroTaskVectorsGiveTheBase(method: String) throws {
        let base = randomValues(300, seed: 3)
        let sparsifies = method != "task_arithmetic"
        let out = try merge(method, sparsifies ? ["density": .number(0.5)] : [:], experts: weighted([1, 0.5, 2]),
                            base: base, [base, base, base], seed: 4)
        #expect(sameBits(out.values, base), "\(method)")
    }

    /// Averaging members of the family (TIES' disjoint mean, task arithmetic with normalize)
    /// return the expert when every expert is the same.
    @Test(arguments: [("ties", [String: ParameterValue]()), ("task_arithmetic", ["normalize": ParameterValue.flag(true)])])
    func identicalExpertsGiveTheExpert(method: String, parameters: [String: ParameterValue]) throws {
        let base = randomValues(200, seed: 5), expert = randomValues(200, seed: 6)
        let out = try merge(method, parameters, experts: weighted([0.2, 1.5, 0.7]), base: base, [expert, expert, expert])
        expectClose(out.values, expert, method)
    }

    /// Deterministic members are symmetric: permuting the experts (with their parameters) does not
    /// change the result.
    @Test(arguments: ["task_arithmetic", "ties", "breadcrumbs", "breadcrumbs_ties"])
    func expertOrderDoesNotMatter(method: String) throws {
        let base = randomValues(240, seed: 10)
        let experts = (0..<3).map { i in zip(base, randomValues(240, seed: 11 + UInt64(i), scale: 0.5)).map { $0 + $1 } }
        let params: [[String: ParameterValue]] = [
            ["weight": .number(1), "density": .number(0.4)],
            ["weight": .number(0.5), "density": .number(0.7)],
            ["weight": .number(0.75), "density": .number(0.9)],
        ].map { p in method == "task_arithmetic" ? p.filter { $0.key == "weight" } : p }
        let gamma: [String: ParameterValue] = method.hasPrefix("breadcrumbs") ? ["gamma": .number(0.05)] : [:]
        let forward = try merge(method, gamma, experts: params, base: base, experts)
        let order = [2, 0, 1]
        let permuted = try merge(method, gamma, experts: order.map { params[$0] }, base: base, order.map { experts[$0] })
        expectClose(permuted.values, forward.values, method)
    }

    // MARK: - Sparsifying members

    /// mergekit 0.1.5 keeps max(1, ⌊ρ·n⌋) elements (≤ 0.1.4 asserted ⌊ρ·n⌋ > 0): a small tensor at
    /// a low density keeps its largest element.
    @Test func densityThatRoundsToNothingKeepsOneElement() throws {
        let ctx = TensorContext(name: "model.norm.weight", shape: [5], layerCount: 1)
        let out = try merge("ties", ["density": .number(0.1)], base: [0, 0, 0, 0, 0], [[1, -2, 3, 5, 4]], context: ctx)
        #expect(out.values == [0, 0, 0, 5, 0])
    }

    /// A window that depends on the tensor (a filtered density) is checked as the tensor is merged;
    /// one the same everywhere before any tensor (MergePlanTests).
    @Test func dellaWindowOutsideTheUnitIntervalIsAnError() {
        let ctx = TensorContext(name: "w", shape: [4], layerCount: 1)
        let filtered = ParameterValue.conditional([ParameterCondition(filter: "w", value: .number(0.1)), ParameterCondition(filter: nil, value: .number(0.5))])
        let error = mergeError {
            _ = try merge("della", ["density": filtered], base: [0, 0, 0, 0], [[1, 2, 3, 4]], context: ctx)
        }
        #expect(error?.description == "tensor 'w': DELLA needs 0 < density − epsilon and density + epsilon < 1 (expert 'expert0', density 0.1, epsilon 0.15)")
    }

    @Test func seededMethodsAreTheOnesThatDrawRandomNumbers() {
        let seeded = MethodRegistry.all.filter { $0.usesSeed }.map { $0.id }
        #expect(seeded == ["dare_linear", "dare_ties", "della", "della_linear"])
    }

    /// The same seed gives the same bytes; another seed, or another tensor name, gives another mask.
    @Test(arguments: ["dare_linear", "dare_ties", "della", "della_linear"])
    func seededMergesAreReproducible(method: String) throws {
        let base = randomValues(4096, seed: 20)
        let experts = (0..<2).map { i in zip(base, randomValues(4096, seed: 21 + UInt64(i))).map { $0 + $1 } }
        let params: [String: ParameterValue] = ["density": .number(0.5)]
        let a = try merge(method, params, base: base, experts, seed: 7)
        let b = try merge(method, params, base: base, experts, seed: 7)
        let c = try merge(method, params, base: base, experts, seed: 8)
        let d = try merge(method, params, base: base, experts, seed: 7,
                          context: TensorContext(name: "model.layers.1.mlp.weight", shape: [4096], layerCount: 2))
        #expect(sameBits(a.values, b.values))
        #expect(!sameBits(a.values, c.values))
        #expect(!sameBits(a.values, d.values))
        for fraction in a.metrics.keptFraction ?? [] { #expect(abs(fraction - 0.5) < 0.05) }
    }

    /// At density 1 nothing is thinned (γ is ignored too), so each member reduces to task
    /// arithmetic or TIES with its default normalize (§2.1's registry table).
    @Test(arguments: [
        ("dare_linear", "task_arithmetic", false), ("della_linear", "task_arithmetic", false),
        ("breadcrumbs", "task_arithmetic", false), ("dare_ties", "ties", false),
        ("breadcrumbs_ties", "ties", false), ("della", "ties", true),
    ])
    func fullDensityReducesToTheUnthinnedMethod(method: String, reference: String, normalize: Bool) throws {
        let s = Section7.self
        let thin = try merge(method, ["gamma": .number(0.3)].filter { _ in method.hasPrefix("breadcrumbs") },
                             experts: weighted(s.weights, ["density": .number(1)]), base: s.base, s.experts, seed: 3)
        let plain = try merge(reference, ["normalize": .flag(normalize)], experts: weighted(s.weights), base: s.base, s.experts)
        #expect(sameBits(thin.values, plain.values), "\(method) vs \(reference)")
    }

    /// dare_linear through a plan: the merged task vector keeps the expert's L1 mass (rescale is on
    /// by default) and about `density` of its elements.
    @Test func dareLinearKeepsTheL1MassOfTheTaskVector() throws {
        let n = 50_000
        let base = randomValues(n, seed: 50), delta = randomValues(n, seed: 51, scale: 0.5)
        let expert = zip(base, delta).map { $0 + $1 }
        let out = try merge("dare_linear", ["density": .number(0.3)], base: base, [expert], seed: 52)
        let tau = Kernels.subtract(out.values, base), tauIn = Kernels.subtract(expert, base)
        #expect(abs(Kernels.l1(tau) - Kernels.l1(tauIn)) <= Kernels.l1(tauIn) * 1e-5)
        let kept = tau.filter { $0 != 0 }.count
        #expect(abs(Double(kept) - 0.3 * Double(n)) <= 6 * (Double(n) * 0.21).squareRoot())
        #expect(out.metrics.keptFraction == [Double(kept) / Double(n)])
    }

    /// Breadcrumbs sums the thinned task vectors (normalize=false, rescale=false by default).
    @Test func breadcrumbsSumsTheThinnedTaskVectors() throws {
        let x: [Float] = [0.9, -0.05, 0.3, -0.7, 0.01, 0.45, -0.2, 0.6, -0.02, 0.15]
        let base = [Float](repeating: 0, count: 10)
        let out = try merge("breadcrumbs", ["density": .number(0.5), "gamma": .number(0.2)], experts: weighted([2]),
                            base: base, [x])
        expectClose(out.values, [0, 0, 0.6, 0, 0, 0.9, -0.4, 1.2, 0, 0.3])
        #expect(out.metrics.keptFraction == [0.5])
    }

    /// Tied magnitudes over several blocks: the merge pass (its vectorised trim, then the per-block
    /// fix-up of threshold-equal elements) keeps torch's set for TIES, as the band rule does for
    /// Breadcrumbs. One expert of weight 1, so the output is θ₀ plus the kept part of δ.
    @Test func tiedTaskVectorsKeepTorchsSetAcrossBlocks() throws {
        let n = 3 * Kernels.block + 777
        var rng = SeededRandom(seed: 60)
        let levels: [Float] = [0.125, 0.25, 0.375, 0.5]
        let base = randomValues(n, seed: 61).map { ($0 * 256).rounded() / 256 }
        let delta = (0..<n).map { _ in levels[Int(rng.uniform() * 4)] * (rng.uniform() < 0.5 ? -1 : 1) }
        let expert = zip(base, delta).map { $0 + $1 }
        #expect(zip(expert, base).map { $0 - $1 } == delta, "exact task vector")
        let descending = ReferenceIntrosort.order(delta, descending: true)
        let ascending = ReferenceIntrosort.order(delta, descending: false)
        let k = n / 2
        let tiesSet = Set(descending.prefix(k))
        let ties = try merge("ties", experts: [["weight": .number(1), "density": .number(0.5)]], base: base, [expert])
        let tiesKept = Set((0..<n).filter { ties.values[$0] != base[$0] })
        #expect(tiesKept == tiesSet)
        #expect(ties.metrics.keptFraction == [Double(k) / Double(n)])
        #expect(ties.metrics.notes["ties_by_position"] == nil)

        let target = Int(0.5 * Double(n)), nTop = Int(0.1 * Double(n))
        let nBot = n - target - nTop
        let bandSet = Set(ascending[nBot..<(nBot + target)])
        let crumbs = try merge("breadcrumbs", experts: [["weight": .number(1), "density": .number(0.5), "gamma": .number(0.1)]],
                               base: base, [expert])
        let crumbsKept = Set((0..<n).filter { crumbs.values[$0] != base[$0] })
        #expect(crumbsKept == bandSet)
        #expect(crumbs.metrics.keptFraction == [Double(target) / Double(n)])
    }
}
