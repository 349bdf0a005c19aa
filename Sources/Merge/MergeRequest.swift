import Delta

/// What a merge is asked for on the command line, already parsed: a method, parameters, per-expert
/// settings and options. Over a mergekit recipe file, what is given here wins.
public struct MergeRequest: Sendable {
    public var method: String?
    /// The revisions to merge (empty: the recipe's models).
    public var branches: [String] = []
    /// The merge base revision (nil: the recipe's `base_model`, or found in the history).
    public var base: String?
    public var outputDType: DType?
    /// `--set NAME=VALUE` and `--set 'NAME[GLOB]=VALUE'`, in the order given.
    public var settings: [(name: String, glob: String?, value: ParameterValue)] = []
    /// `--weight EXPERT=W`, `--expert EXPERT:NAME=VALUE` and `--expert 'EXPERT:NAME[GLOB]=VALUE'`, in
    /// the order given.
    public var expertSettings: [(expert: String, name: String, glob: String?, value: ParameterValue)] = []
    public var seed: UInt64?
    /// rmm's basis size (`--basis K`, the same as `--set basis=K`).
    public var basis: Int?
    public var lines: (alpha: Double, beta: Double)?
    public var consensus: (k: Int, lambda: Double)?
    /// `--balance norm|none` (nil: the recipe's, else none).
    public var balance: TaskVectorBalance?
    /// Options over the recipe's `mrepo:` block (nil or empty: the recipe's, else the defaults).
    public var oneSided: OneSidedRule?
    public var vocabulary: VocabularyPolicy?
    public var fileConflict: FileConflictRule?
    public var thresholds = ConflictThresholds()

    public init() {}

    /// What to merge, and how.
    public struct Assembled: Sendable {
        /// The method, parameters, seed and post-processing. `experts` are the names as given (the
        /// recipe's models, or the branches), in order; per-expert parameters are in
        /// ``expertParameters``, keyed by the name that gave them.
        public var recipe: MergeRecipe
        /// The revisions to merge, in order.
        public var inputs: [String]
        /// True when the inputs are exactly the experts (a recipe's `models:`); false for branches
        /// named on the command line, where the current branch is an expert too (as in git).
        public var inputsAreExperts: Bool
        /// Per-expert parameters by the name that gave them, in the order given.
        public var expertParameters: [(name: String, parameters: [String: ParameterValue])]
        public var base: String?
        /// The dtype every floating-point tensor is written in (`--dtype`, `out_dtype`, else `dtype`).
        public var outputDType: DType?
        /// The recipe's `dtype` as written (mergekit's compute dtype), recorded as given.
        public var dtype: String?
        public var tokenizerSource: String?
        public var extensions: MergeExtensions
        /// Whether a method, a parameter or a recipe was given: such a merge is never a fast-forward.
        public var isExplicit: Bool
    }

    /// Whether anything beyond the branches was asked for (a method, parameters, a seed, options).
    public var asksForMethod: Bool {
        method != nil || !settings.isEmpty || !expertSettings.isEmpty || seed != nil || basis != nil || lines != nil
            || consensus != nil || outputDType != nil || balance != nil
    }

    /// The recipe this request makes, over `mergekit` (read from `file`) when one is given.
    ///
    /// The recipe's `base_model` becomes the merge base. It leaves the model list for methods that
    /// use a merge base (its task vector is zero); for the others (SLERP, linear) it stays an input,
    /// and SLERP's base model is its `t = 0` end. A setting with a glob is tried before the ones
    /// already there. The order of the experts is the recipe's (or the command line's): it is the
    /// order of the sums, so it is kept.
    public func assemble(over mergekit: MergekitRecipe?, file: String = "recipe") throws(MergeError) -> Assembled {
        var recipe = MergeRecipe(method: method ?? mergekit?.method ?? "ties", experts: [])
        var inputs = branches
        // A recipe without models: the branches named beside it are its models, exactly (HEAD is
        // not added), so that it merges as the same recipe listing them would.
        var modelsFromBranches = false
        var base = self.base
        var outputDType = self.outputDType
        var perExpert: [(name: String, parameters: [String: ParameterValue])] = []
        var dtype: String?
        var extensions = MergeExtensions()
        func addExpertParameter(_ name: String, _ key: String, _ value: ParameterValue) {
            if let i = perExpert.firstIndex(where: { $0.name == name }) {
                perExpert[i].parameters[key] = value
            } else {
                perExpert.append((name, [key: value]))
            }
        }
        let methodType = try MethodRegistry.method(named: recipe.method)
        if let mergekit {
            recipe.parameters = mergekit.parameters
            if let s = mergekit.seed { recipe.seed = s }
            recipe.lines = mergekit.lines
            recipe.consensus = mergekit.consensus
            recipe.balance = mergekit.balance
            extensions = mergekit.extensions
            var models = mergekit.models
            // A recipe without models takes the branches named beside it as its models.
            modelsFromBranches = models.isEmpty && !inputs.isEmpty
            if modelsFromBranches { models = inputs.map { MergekitRecipe.Model(name: $0, parameters: [:]) } }
            if let b = mergekit.baseModel {
                base = base ?? b
                if methodType.requiresBase {
                    models.removeAll { $0.name == b }
                } else if let i = models.firstIndex(where: { $0.name == b }) {
                    // SLERP's base model is its t = 0 end (mergekit's pattern), whatever its place in the list.
                    if recipe.method == SLERP.id { models.insert(models.remove(at: i), at: 0) }
                } else {
                    throw .invalidRecipe(file: file, problem: recipe.method == SLERP.id
                        ? "slerp's base_model '\(b)' must be one of its two models (the t = 0 end)"
                        : "\(recipe.method) does not use a merge base, and base_model '\(b)' is not among the models (mergekit would add it as one more input); list it under models, or drop base_model")
                }
            }
            if base == nil { base = mergekit.extensions.mergeBase }
            // The recipe's models are the experts; branches given beside them would replace them
            // silently (and its per-model parameters would name models that are not merged).
            if modelsFromBranches {
                inputs = models.map(\.name)
            } else if !inputs.isEmpty && !models.isEmpty {
                throw .invalidRecipe(file: file, problem: "the recipe lists its models (\(models.map(\.name).joined(separator: ", "))), and the command line names branches too (\(inputs.joined(separator: ", "))); give the experts in one place")
            }
            if modelsFromBranches && models.isEmpty {
                throw .invalidRecipe(file: file, problem: "every branch named (\(branches.joined(separator: ", "))) is the recipe's base_model; name the models to merge")
            }
            if inputs.isEmpty && models.isEmpty {
                throw .invalidRecipe(file: file, problem: "missing 'models' list; list the models to merge, or name the branches on the command line (mrepo merge A B --config \(file))")
            }
            if inputs.isEmpty { inputs = models.map(\.name) }
            for m in models { for (k, v) in m.parameters { addExpertParameter(m.name, k, v) } }
            dtype = mergekit.dtype
            if outputDType == nil, let text = mergekit.outDType ?? mergekit.dtype {
                guard let parsed = DType(parsing: text) else {
                    throw .invalidRecipe(file: file, problem: "\(mergekit.outDType != nil ? "out_dtype" : "dtype") '\(text)' is not a dtype (float32, bfloat16, float16, ...)")
                }
                guard parsed.isFloatingPoint else {
                    throw .invalidRecipe(file: file, problem: "\(mergekit.outDType != nil ? "out_dtype" : "dtype") '\(text)' is not a floating-point dtype")
                }
                outputDType = parsed
            }
            if let d = mergekit.dtype, DType(parsing: d) == nil {
                throw .invalidRecipe(file: file, problem: "dtype '\(d)' is not a dtype (float32, bfloat16, float16, ...)")
            }
        }
        // A plain value given here replaces the recipe's (its filters included): the command line
        // wins. Among the command line's own, the order does not matter (``setting(_:glob:to:)``).
        for name in Set(settings.filter { $0.glob == nil }.map(\.name)) { recipe.parameters[name] = nil }
        for (name, glob, value) in settings {
            recipe.parameters[name] = MergeRequest.setting(recipe.parameters[name], glob: glob, to: value)
        }
        for (expert, name) in Set(expertSettings.filter { $0.glob == nil }.map { ExpertKey(expert: $0.expert, name: $0.name) }).map({ ($0.expert, $0.name) }) {
            if let i = perExpert.firstIndex(where: { $0.name == expert }) { perExpert[i].parameters[name] = nil }
        }
        for (expert, name, glob, value) in expertSettings {
            let current = perExpert.first { $0.name == expert }?.parameters[name]
            addExpertParameter(expert, name, MergeRequest.setting(current, glob: glob, to: value))
        }
        if let seed { recipe.seed = seed }
        if let basis {
            guard recipe.method == RMM.id else {
                throw .invalidParameter(method: recipe.method, parameter: "basis", problem: "is rmm's basis size; this merge uses \(recipe.method)")
            }
            recipe.parameters["basis"] = .number(Double(basis))
        }
        if let lines {
            guard lines.alpha.isFinite, lines.beta.isFinite else {
                throw .invalidParameter(method: recipe.method, parameter: "lines", problem: "needs finite α and β, got \(lines.alpha),\(lines.beta)")
            }
            recipe.lines = lines
        }
        if let consensus {
            guard consensus.lambda.isFinite else {
                throw .invalidParameter(method: recipe.method, parameter: "consensus", problem: "needs a finite λ, got \(consensus.lambda)")
            }
            recipe.consensus = consensus
        }
        if let balance { recipe.balance = balance == .none ? nil : balance }
        if let oneSided { extensions.oneSided = oneSided }
        if let vocabulary { extensions.vocabulary = vocabulary }
        if let fileConflict { extensions.fileConflict = fileConflict }
        for (option, value) in [("max-sign-conflict", thresholds.maxSignConflict), ("min-cosine", thresholds.minCosine),
                                ("max-conflicting-mass", thresholds.maxConflictingMass)] {
            if let value, !value.isFinite {
                throw .invalidParameter(method: recipe.method, parameter: option, problem: "must be a finite number, got \(value)")
            }
        }
        if let t = thresholds.maxSignConflict { extensions.thresholds.maxSignConflict = t }
        if let t = thresholds.minCosine { extensions.thresholds.minCosine = t }
        if let t = thresholds.maxConflictingMass { extensions.thresholds.maxConflictingMass = t }
        if let outputDType, !outputDType.isFloatingPoint {
            throw .invalidParameter(method: recipe.method, parameter: "dtype", problem: "'\(outputDType.rawValue)' is not a floating-point dtype")
        }
        let tokenizerSource = mergekit?.tokenizerSource
        if tokenizerSource == "base" || tokenizerSource == "union" {
            // Applied to vocabulary matrices when their rows differ (--vocab); a no-op otherwise.
            if extensions.vocabulary == nil { extensions.vocabulary = VocabularyPolicy(rawValue: tokenizerSource!) }
        } else if let source = tokenizerSource {
            throw .invalidRecipe(file: file, problem: "tokenizer_source '\(source)' is not supported; use 'base' or 'union' (the --vocab policies)")
        }
        recipe.experts = inputs
        return Assembled(recipe: recipe, inputs: inputs, inputsAreExperts: mergekit != nil && (branches.isEmpty || modelsFromBranches),
                         expertParameters: perExpert, base: base, outputDType: outputDType, dtype: dtype,
                         tokenizerSource: tokenizerSource, extensions: extensions,
                         isExplicit: mergekit != nil || asksForMethod)
    }
}

/// An expert's parameter, as a set member.
private struct ExpertKey: Hashable {
    var expert: String
    var name: String
}

extension MergeRequest {
    /// A parameter after `--set NAME=VALUE` (`glob` nil) or `--set 'NAME[GLOB]=VALUE'`, whatever the
    /// order they come in: a glob's value is put first (the first matching filter wins, as in
    /// mergekit, so a later glob overrides an earlier one), and a plain value replaces the default
    /// (the entry without a filter) and keeps every filtered one.
    static func setting(_ current: ParameterValue?, glob: String?, to value: ParameterValue) -> ParameterValue {
        var conditions: [ParameterCondition]
        switch current {
        case let .conditional(existing)?: conditions = existing
        case let existing?: conditions = [ParameterCondition(filter: nil, value: existing)]
        case nil: conditions = []
        }
        guard let glob else {
            conditions.removeAll { $0.filter == nil }
            guard !conditions.isEmpty else { return value }
            return .conditional(conditions + [ParameterCondition(filter: nil, value: value)])
        }
        conditions.insert(ParameterCondition(filter: ParameterCondition.mergekitFilter(glob), value: value), at: 0)
        return .conditional(conditions)
    }
}
