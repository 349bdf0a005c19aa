import Delta
import Testing

@testable import Merge

/// Validating a recipe into a plan (with its exact error messages), the registry, LiNeS and
/// consensus post-processing, seeds, and the recipe's JSON form.
@Suite struct MergePlanTests {
    // MARK: - Registry

    @Test func registryListsMergekitIdsInDocumentationOrder() throws {
        #expect(MethodRegistry.ids == ["linear", "task_arithmetic", "ties", "dare_linear", "dare_ties", "breadcrumbs",
                                       "breadcrumbs_ties", "della", "della_linear", "slerp", "model_stock", "mwa", "layer_swap", "rmm",
                                       "tsv", "iso_c", "iso_cts", "wudi", "cart", "pcb", "knots", "fisher", "regmean"])
        #expect(try MethodRegistry.method(named: "ties").id == "ties")
        for method in MethodRegistry.all {
            #expect(!method.displayName.isEmpty && !method.summary.isEmpty && method.paper.hasPrefix("https://"), "\(method.id)")
        }
    }

    @Test func taskVectorMethodsNeedTheBase() {
        let needBase = MethodRegistry.all.filter { $0.requiresBase }.map { $0.id }
        #expect(needBase == ["task_arithmetic", "ties", "dare_linear", "dare_ties", "breadcrumbs", "breadcrumbs_ties",
                             "della", "della_linear", "model_stock", "rmm", "tsv", "iso_c", "iso_cts", "wudi", "pcb", "knots"])
    }

    /// §2.1: mergekit's defaults for normalize and rescale per task-arithmetic method.
    @Test func taskArithmeticDefaultsFollowMergekit() {
        let expected: [String: (normalize: Bool, rescale: Bool)] = [
            "task_arithmetic": (false, false), "ties": (true, false), "dare_ties": (false, true), "dare_linear": (false, true),
            "breadcrumbs": (false, false), "breadcrumbs_ties": (false, false), "della": (true, true), "della_linear": (false, true),
        ]
        for (id, defaults) in expected {
            let method = try? MethodRegistry.method(named: id)
            let specs = (method?.parameters ?? [])
            #expect(specs.first { $0.name == "normalize" }?.defaultValue == .flag(defaults.normalize), "\(id)")
            #expect(specs.first { $0.name == "rescale" }?.defaultValue == .flag(defaults.rescale), "\(id)")
            #expect(specs.first { $0.name == "lambda" }?.defaultValue == .number(1), "\(id)")
        }
        let breadcrumbs = (try? MethodRegistry.method(named: "breadcrumbs"))?.expertParameters ?? []
        #expect(breadcrumbs.first { $0.name == "gamma" }?.defaultValue == .number(0.01))
        let della = (try? MethodRegistry.method(named: "della"))?.expertParameters ?? []
        #expect(della.first { $0.name == "epsilon" }?.defaultValue == .number(0.15))
    }

    /// Every method builds a plan from its defaults with the smallest expert count it takes.
    @Test func everyMethodBuildsFromDefaults() throws {
        for method in MethodRegistry.all {
            let n = method.expertCount.lowerBound
            var params: [String: ParameterValue] = [:]
            if method.id == "slerp" { params["t"] = .number(0.5) }
            if method.id == "rmm" { params["basis"] = .number(1) }
            // MWA declares the metric it reads from each expert's commit.
            let metrics = (0..<n).map { i in Dictionary(uniqueKeysWithValues: method.expertMetrics(ParameterSet(global: params, perExpert: [])).map { ($0, 1.0 + Double(i)) }) }
            // fisher and regmean declare the statistics files they read (empty ones: every tensor falls back).
            let kinds = method.expertStatistics(ParameterSet(global: params, perExpert: [], defaults: method.defaultParameters.defaults))
            let files = (0..<n).map { _ in Dictionary(uniqueKeysWithValues: kinds.map { ($0, InMemoryStatistics.File(tensors: [:])) }) }
            let plan = try MergePlan(MergeRecipe(method: method.id, parameters: params, experts: (0..<n).map { "e\($0)" }),
                                     expertMetrics: metrics, statistics: InMemoryStatistics(expertNames: (0..<n).map { "e\($0)" }, files: files))
            let ctx = TensorContext(name: "model.layers.1.mlp.weight", shape: [2, 4], layerCount: 3)
            // A reversible merge works on whole adapters; tensor by tensor it explains itself.
            if method.id == "rmm" {
                expectThrows(MergeError.invalidInputs(method: "rmm", problem: "merges whole models, not tensor by tensor")) {
                    _ = try plan.merge(ctx, base: [0], experts: [[0], [0]])
                }
                continue
            }
            let base = randomValues(8, seed: 1)
            let experts = (0..<n).map { randomValues(8, seed: 2 + UInt64($0)) }
            let out = try plan.merge(ctx, base: base, experts: experts)
            #expect(out.values.count == 8 && out.values.allSatisfy { $0.isFinite }, "\(method.id)")
        }
    }

    // MARK: - Validation errors

    @Test func unknownMethodListsTheValidOnes() {
        #expect(planError(MergeRecipe(method: "frankenmerge", experts: ["a", "b"]))
            == "unknown merge method 'frankenmerge'; valid methods: linear, task_arithmetic, ties, dare_linear, dare_ties, breadcrumbs, breadcrumbs_ties, della, della_linear, slerp, model_stock, mwa, layer_swap, rmm, tsv, iso_c, iso_cts, wudi, cart, pcb, knots, fisher, regmean")
        #expect(throws: MergeError.unknownMethod("x", known: MethodRegistry.ids)) { try MethodRegistry.method(named: "x") }
    }

    @Test func unknownParameterListsTheValidOnes() {
        #expect(planError(MergeRecipe(method: "ties", parameters: ["gamma": .number(0.1)], experts: ["a", "b"]))
            == "ties has no parameter 'gamma'; valid parameters: lambda, normalize, int8_mask, rescale, weight, density")
        #expect(planError(MergeRecipe(method: "linear", parameters: ["lambda": .number(1)], experts: ["a", "b"]))
            == "linear has no parameter 'lambda'; valid parameters: normalize, weight")
        #expect(planError(MergeRecipe(method: "breadcrumbs", parameters: ["epsilon": .number(0.1)], experts: ["a"]))
            == "breadcrumbs has no parameter 'epsilon'; valid parameters: lambda, normalize, int8_mask, rescale, weight, density, gamma")
        #expect(planError(MergeRecipe(method: "della", parameters: ["gamma": .number(0.1)], experts: ["a"]))
            == "della has no parameter 'gamma'; valid parameters: lambda, normalize, int8_mask, rescale, weight, density, epsilon")
        #expect(planError(MergeRecipe(method: "model_stock", parameters: ["t": .number(0.5)], experts: ["a", "b"]))
            == "model_stock has no parameter 't'; valid parameters: filter_wise")
    }

    /// A per-expert entry may only name per-expert parameters; the message lists those.
    @Test func unknownPerExpertParameterListsThePerExpertOnes() {
        #expect(planError(MergeRecipe(method: "ties", expertParameters: [["lambda": .number(2)]], experts: ["a"]))
            == "ties has no parameter 'lambda'; valid parameters: weight, density")
        #expect(planError(MergeRecipe(method: "slerp", parameters: ["t": .number(0.5)], expertParameters: [["weight": .number(1)], [:]],
                                      experts: ["a", "b"]))
            == "slerp has no parameter 'weight'; valid parameters: none")
    }

    @Test func densityOutOfRange() {
        #expect(planError(MergeRecipe(method: "ties", parameters: ["density": .number(0)], experts: ["a", "b"]))
            == "ties: parameter 'density' must be in (0, 1], got 0")
        #expect(planError(MergeRecipe(method: "dare_ties", expertParameters: [["density": .number(1.5)], [:]], experts: ["a", "b"]))
            == "dare_ties: parameter 'density' must be in (0, 1], got 1.5")
        #expect(throws: MergeError.invalidParameter(method: "ties", parameter: "density", problem: "must be in (0, 1], got 0")) {
            try MergePlan(MergeRecipe(method: "ties", parameters: ["density": .number(0)], experts: ["a"]))
        }
    }

    @Test func otherRangeErrors() {
        #expect(planError(MergeRecipe(method: "slerp", parameters: ["t": .number(1.2)], experts: ["a", "b"]))
            == "slerp: parameter 't' must be in [0, 1], got 1.2")
        #expect(planError(MergeRecipe(method: "della", parameters: ["epsilon": .number(0.6)], experts: ["a"]))
            == "della: parameter 'epsilon' must be in [0, 0.5], got 0.6")
        #expect(planError(MergeRecipe(method: "breadcrumbs", parameters: ["gamma": .number(-0.1)], experts: ["a"]))
            == "breadcrumbs: parameter 'gamma' must be in [0, 1], got -0.1")
        #expect(planError(MergeRecipe(method: "ties", parameters: ["normalize": .text("maybe")], experts: ["a"]))
            == "ties: parameter 'normalize' must be true or false, got 'maybe'")
        #expect(planError(MergeRecipe(method: "task_arithmetic", parameters: ["lambda": .number(.nan)], experts: ["a"]))
            == "task_arithmetic: parameter 'lambda' must be a finite number, got nan")
    }

    @Test func slerpRequiresT() {
        #expect(planError(MergeRecipe(method: "slerp", experts: ["a", "b"])) == "slerp: parameter 't' is required")
        #expect(throws: MergeError.missingParameter(method: "slerp", parameter: "t")) {
            try MergePlan(MergeRecipe(method: "slerp", experts: ["a", "b"]))
        }
    }

    @Test func wrongExpertCount() {
        #expect(planError(MergeRecipe(method: "slerp", parameters: ["t": .number(0.5)], experts: ["a", "b", "c"]))
            == "slerp: takes exactly 2 experts, got 3")
        #expect(planError(MergeRecipe(method: "model_stock", experts: ["a"])) == "model_stock: takes 2 to 64 experts, got 1")
        #expect(planError(MergeRecipe(method: "ties", experts: [])) == "ties: takes 1 to 64 experts, got 0")
        #expect(planError(MergeRecipe(method: "layer_swap", experts: ["a"])) == "layer_swap: takes exactly 2 experts, got 1")
        #expect(planError(MergeRecipe(method: "linear", experts: (0..<65).map { "e\($0)" })) == "linear: takes 1 to 64 experts, got 65")
    }

    /// The plan is the one validation point: rmm's basis is checked against the experts there.
    @Test func rmmBasisIsCheckedAgainstTheExperts() throws {
        #expect(planError(MergeRecipe(method: "rmm", parameters: ["basis": .number(2)], experts: ["a", "b", "c"])) == nil)
        #expect(planError(MergeRecipe(method: "rmm", parameters: ["basis": .number(3)], experts: ["a", "b", "c"]))?
            .hasPrefix("rmm: parameter 'basis' is 3 with 3 experts: it must be between 1 and N − 1 = 2") == true)
        #expect(planError(MergeRecipe(method: "rmm", experts: ["a", "b"])) == "rmm: parameter 'basis (--basis K)' is required")
        let plan = try MergePlan(MergeRecipe(method: "rmm", parameters: ["basis": .number(1)], experts: ["a", "b"]))
        let byTensor = plan.method.mergesTensorByTensor
        #expect(!byTensor)
        let merged = mergeError { _ = try plan.merge(TensorContext(name: "w", shape: [1], layerCount: 1), base: [0], experts: [[1], [2]]) }
        #expect(merged?.description == "rmm: merges whole models, not tensor by tensor")
    }

    // MARK: - LiNeS and consensus

    @Test func linesScalesTheMergedTaskVectorByDepth() throws {
        let base: [Float] = [1, 1], expert: [Float] = [3, -1]  // τ = [2, −2]
        func run(_ name: String) throws -> [Float] {
            let plan = try MergePlan(MergeRecipe(method: "task_arithmetic", experts: ["e"], lines: (alpha: 0.5, beta: 0.5)))
            return try plan.merge(TensorContext(name: name, shape: [2], layerCount: 3), base: base, experts: [expert]).values
        }
        #expect(try run("model.layers.0.mlp.weight") == [2, 0])  // 0.5
        #expect(try run("model.layers.1.mlp.weight") == [2.5, -0.5])  // 0.75
        #expect(try run("model.layers.2.mlp.weight") == [3, -1])  // 1.0
        #expect(try run("lm_head.weight") == [2, 0])  // α outside blocks
    }

    /// Consensus keeps only elements that at least k experts' TALL masks select.
    @Test func consensusDropsElementsFewExpertsSupport() throws {
        // τ₁ = [1, 1, 0], τ₂ = [1, 0, −1]; TIES (mean over agreeing) gives τ_M = [1, 1, −1].
        // TALL (λ = 1): element 0 both (1 > 0), element 1 only τ₁, element 2 only τ₂.
        let base: [Float] = [0, 0, 0]
        let experts: [[Float]] = [[1, 1, 0], [1, 0, -1]]
        let ctx = TensorContext(name: "w", shape: [3], layerCount: 0)
        let plain = try MergePlan(MergeRecipe(method: "ties", experts: ["a", "b"])).merge(ctx, base: base, experts: experts)
        #expect(plain.values == [1, 1, -1])
        let k2 = try MergePlan(MergeRecipe(method: "ties", experts: ["a", "b"], consensus: (k: 2, lambda: 1)))
            .merge(ctx, base: base, experts: experts)
        #expect(k2.values == [1, 0, 0])
        let k1 = try MergePlan(MergeRecipe(method: "ties", experts: ["a", "b"], consensus: (k: 1, lambda: 1)))
            .merge(ctx, base: base, experts: experts)
        #expect(k1.values == [1, 1, -1])
    }

    /// What would fail at the first tensor fails before any is read (a dry run said nothing):
    /// linear weights that sum to 0, and DELLA's window density ± epsilon outside (0, 1).
    @Test func parameterCombinationsAreCheckedUpFront() {
        #expect(planError(MergeRecipe(method: "linear", expertParameters: [["weight": .number(1)], ["weight": .number(-1)]], experts: ["a", "b"]))
            == "linear: the weights sum to 0; an average is undefined (use normalize=false)")
        // Summed as the merge sums them, in Float32: 0.1 + 0.2 − 0.3 is 0 there.
        #expect(planError(MergeRecipe(method: "linear", expertParameters: [["weight": .number(0.1)], ["weight": .number(0.2)], ["weight": .number(-0.3)]],
                                      experts: ["a", "b", "c"])) == "linear: the weights sum to 0; an average is undefined (use normalize=false)")
        #expect(planError(MergeRecipe(method: "linear", parameters: ["normalize": .flag(false)],
                                      expertParameters: [["weight": .number(1)], ["weight": .number(-1)]], experts: ["a", "b"])) == nil)
        #expect(planError(MergeRecipe(method: "della_linear", parameters: ["density": .number(0.1), "epsilon": .number(0.15)], experts: ["a"]))
            == "della_linear: parameter 'density' 0.1 with epsilon 0.15 (expert 'a'): DELLA needs 0 < density − epsilon and density + epsilon < 1")
        #expect(planError(MergeRecipe(method: "della", expertParameters: [[:], ["density": .number(0.9)]], experts: ["a", "b"]))?
            .hasSuffix("(expert 'b'): DELLA needs 0 < density − epsilon and density + epsilon < 1") == true)
        #expect(planError(MergeRecipe(method: "della", parameters: ["density": .number(0.5)], experts: ["a", "b"])) == nil)
    }

    /// A window that only some tensors get (a filtered density) is checked as each is merged, and
    /// the error names the tensor and the expert.
    @Test func aPerTensorDellaWindowNamesTheExpert() throws {
        let density = ParameterValue.conditional([ParameterCondition(filter: "mlp", value: .number(0.1)), ParameterCondition(filter: nil, value: .number(0.5))])
        let plan = try MergePlan(MergeRecipe(method: "della", expertParameters: [[:], ["density": density]], experts: ["a", "code"]))
        let ctx = TensorContext(name: "layers.0.mlp.w", shape: [4], layerCount: 1)
        let base: [Float] = [0, 0, 0, 0]
        let experts: [[Float]] = [[1, 2, 3, 4], [4, 3, 2, 1]]
        let message = mergeError { _ = try plan.merge(ctx, base: base, experts: experts) }?.description
        #expect(message == "tensor 'layers.0.mlp.w': DELLA needs 0 < density − epsilon and density + epsilon < 1 (expert 'code', density 0.1, epsilon 0.15)")
    }

    @Test func linesAndConsensusNeedATaskVectorMethod() {
        #expect(planError(MergeRecipe(method: "linear", experts: ["a", "b"], lines: (alpha: 1, beta: 0)))
            == "linear: LiNeS and consensus masks apply to task-vector methods only")
        #expect(planError(MergeRecipe(method: "ties", experts: ["a", "b"], consensus: (k: -1, lambda: 1)))
            == "ties: parameter 'consensus' needs k ≥ 0 and a finite λ ≥ 0")
        #expect(planError(MergeRecipe(method: "ties", experts: ["a", "b"], consensus: (k: 3, lambda: 1)))
            == "ties: parameter 'consensus' k = 3 exceeds the 2 experts: no element could be kept, and the merge would be the base")
    }

    // MARK: - Base handling and seeds

    /// Methods that do not use a base never see it, but the metrics still measure against it.
    @Test func methodsWithoutABaseStillGetMetrics() throws {
        let s = Section7.self
        let out = try merge("linear", base: s.base, s.experts)
        #expect(out.metrics.taskVectorNorms.count == 3)
        let none = try merge("linear", base: nil, s.experts)
        #expect(none.metrics.taskVectorNorms.isEmpty && none.metrics.elementCount == 6)
    }

    @Test func taskVectorMethodWithoutBaseIsAnError() {
        let error = mergeError { _ = try merge("ties", base: nil, [[1, 2]]) }
        #expect(error?.description == "ties: needs the merge base")
    }

    // MARK: - Recipe JSON

    @Test func recipeRoundTripsThroughJSON() throws {
        let recipe = MergeRecipe(
            method: "ties",
            parameters: ["lambda": .number(0.8), "normalize": .flag(false),
                         "density": .conditional([ParameterCondition(filter: "mlp", value: .gradient([0.2, 0.6])),
                                                  ParameterCondition(filter: nil, value: .number(0.5))])],
            expertParameters: [["weight": .number(0.7)], ["weight": .number(0.3), "density": .number(0.9)]],
            experts: ["math", "code"], seed: UInt64.max - 5, lines: (alpha: 0.3, beta: 0.7), consensus: (k: 2, lambda: 0.5))
        let text = recipe.json.serialized()
        let parsed = try JSONValue.parse(Array(text.utf8))
        let back = try JSONValueCoding.decode(MergeRecipe.self, from: parsed)
        #expect(back == recipe)
        #expect(parsed["method"]?.stringValue == "ties")
        #expect(parsed["seed"] == .number(String(UInt64.max - 5)))
        // The JSON form lists every expert with its (possibly empty) parameters, so a recipe without
        // per-expert parameters reads back with one empty map per expert: the same plan.
        let plain = MergeRecipe(method: "linear", experts: ["a", "b"])
        let plainBack = try JSONValueCoding.decode(MergeRecipe.self, from: plain.json)
        #expect(plainBack.expertParameters == [[:], [:]])
        var normalized = plain
        normalized.expertParameters = [[:], [:]]
        #expect(plainBack == normalized)
        #expect(thrownError { _ = try JSONValueCoding.decode(MergeRecipe.self, from: .object([])) } is DecodingError)
    }
}
