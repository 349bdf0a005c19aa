import Delta

/// What a merge is asked for on the command line, already parsed: a method, parameters, per-expert
/// settings and options. Over a mergekit recipe file, what is given here wins.
public struct MergeRequest {
    public var method: String?
    /// The revisions to merge (empty: the recipe's models).
    public var branches: [String] = []
    /// The merge base revision (nil: the recipe's `base_model`, or found in the history).
    public var base: String?
    public var outputDType: DType?
    /// `--set NAME=VALUE` and `--set 'NAME[GLOB]=VALUE'`, in the order given.
    public var settings: [(name: String, glob: String?, value: ParameterValue)] = []
    /// `--weight EXPERT=W` and `--expert EXPERT:NAME=VALUE`, in the order given.
    public var expertSettings: [(expert: String, name: String, value: ParameterValue)] = []
    public var seed: UInt64?
    /// rmm's basis size (`--basis K`, the same as `--set basis=K`).
    public var basis: Int?
    public var lines: (alpha: Double, beta: Double)?
    public var consensus: (k: Int, lambda: Double)?

    public init() {}

    /// What to merge, and how.
    public struct Assembled {
        public var recipe: MergeRecipe
        public var branches: [String]
        public var base: String?
        public var outputDType: DType?
    }

    /// The recipe this request makes, over `mergekit` (read from `file`) when one is given.
    ///
    /// The recipe's `base_model` becomes the merge base (and leaves the model list, except for
    /// SLERP, whose two endpoints may include it); a setting with a glob is tried before the ones
    /// already there. Experts are ordered by name; the repository orders them once it knows them.
    public func assemble(over mergekit: MergekitRecipe?, file: String = "recipe") throws(MergeError) -> Assembled {
        var recipe = MergeRecipe(method: method ?? "ties", experts: [])
        var branches = self.branches
        var base = self.base
        var outputDType = self.outputDType
        var expertParameters: [String: [String: ParameterValue]] = [:]
        if let mergekit {
            recipe.method = method ?? mergekit.method
            recipe.parameters = mergekit.parameters
            if let s = mergekit.seed { recipe.seed = s }
            var models = mergekit.models
            if let b = mergekit.baseModel {
                base = base ?? b
                if recipe.method != SLERP.id { models.removeAll { $0.name == b } }
            }
            if branches.isEmpty { branches = models.map(\.name) }
            for m in models { expertParameters[m.name, default: [:]].merge(m.parameters) { _, new in new } }
            if outputDType == nil, let text = mergekit.outDType {
                guard let parsed = DType(parsing: text) else {
                    throw .invalidRecipe(file: file, problem: "out_dtype '\(text)' is not a dtype (F32, BF16, F16, ...)")
                }
                outputDType = parsed
            }
        }
        for (name, glob, value) in settings {
            guard let glob else {
                recipe.parameters[name] = value
                continue
            }
            var conditions: [ParameterCondition] = []
            if case let .conditional(existing)? = recipe.parameters[name] {
                conditions = existing
            } else if let existing = recipe.parameters[name] {
                conditions = [ParameterCondition(filter: nil, value: existing)]
            }
            conditions.insert(ParameterCondition(filter: glob, value: value), at: 0)
            recipe.parameters[name] = .conditional(conditions)
        }
        for (expert, name, value) in expertSettings { expertParameters[expert, default: [:]][name] = value }
        if let seed { recipe.seed = seed }
        if let basis {
            guard recipe.method == RMM.id else {
                throw .invalidParameter(method: recipe.method, parameter: "basis", problem: "is rmm's basis size; this merge uses \(recipe.method)")
            }
            recipe.parameters["basis"] = .number(Double(basis))
        }
        if recipe.method == RMM.id, recipe.parameters["basis"] == nil {
            throw .invalidParameter(method: RMM.id, parameter: "basis",
                                    problem: "is required: --basis K, the basis size (1 ≤ K ≤ N − 1; K = N − 1 rebuilds every expert exactly)")
        }
        recipe.lines = lines
        recipe.consensus = consensus
        recipe.experts = expertParameters.keys.sorted()
        recipe.expertParameters = recipe.experts.map { expertParameters[$0]! }
        return Assembled(recipe: recipe, branches: branches, base: base, outputDType: outputDType)
    }
}
