import Delta

/// Everything that determines a merge's result: the method, its parameters, the seed and the
/// options that apply to any task-vector method. Recorded in the merge commit.
public struct MergeRecipe: Sendable, Equatable {
    public var method: String
    /// Parameters that apply to every expert and tensor (`--set`).
    public var parameters: [String: ParameterValue]
    /// Per-expert parameters, in expert order (`--weight`, `--expert`).
    public var expertParameters: [[String: ParameterValue]]
    /// The experts' names as given (branches, tags or commits), in order.
    public var experts: [String]
    public var seed: UInt64
    /// LiNeS: scale the merged task vector by α + β·ℓ/(L−1) (α outside blocks).
    public var lines: (alpha: Double, beta: Double)?
    /// Consensus (TALL masks): keep only elements that at least `k` experts' TALL masks select.
    public var consensus: (k: Int, lambda: Double)?
    /// `--balance norm`: task vectors rescaled to a common norm per tensor before the method (nil: none).
    public var balance: TaskVectorBalance?

    public init(method: String, parameters: [String: ParameterValue] = [:], expertParameters: [[String: ParameterValue]] = [],
                experts: [String], seed: UInt64 = 0, lines: (alpha: Double, beta: Double)? = nil,
                consensus: (k: Int, lambda: Double)? = nil) {
        self.method = method
        self.parameters = parameters
        self.expertParameters = expertParameters
        self.experts = experts
        self.seed = seed
        self.lines = lines
        self.consensus = consensus
    }

    public static func == (a: MergeRecipe, b: MergeRecipe) -> Bool {
        a.method == b.method && a.parameters == b.parameters && a.expertParameters == b.expertParameters
            && a.experts == b.experts && a.seed == b.seed && a.lines?.alpha == b.lines?.alpha && a.lines?.beta == b.lines?.beta
            && a.consensus?.k == b.consensus?.k && a.consensus?.lambda == b.consensus?.lambda
            && (a.balance ?? TaskVectorBalance.none) == (b.balance ?? TaskVectorBalance.none)
    }
}

/// A validated recipe, ready to merge tensors: the one place where a recipe is checked.
public struct MergePlan: Sendable {
    public let recipe: MergeRecipe
    public let method: any MergeMethod.Type
    let parameterSet: ParameterSet
    /// The tensor-by-tensor implementation (nil for a whole-model method such as rmm).
    let instance: (any TensorMergeMethod)?
    /// Per expert, the commit metrics the method needs.
    let expertMetrics: [[String: Double]]
    /// The experts' committed statistics (data-driven methods).
    public let statistics: (any ExpertStatisticsSource)?

    /// Checks the method, every parameter's name and range, required parameters, the expert count,
    /// the method's own rules (rmm's basis against the experts) and the expert metrics it needs.
    ///
    /// - Parameter expertMetrics: per expert (in recipe order), the metrics recorded on its commit.
    /// - Parameter statistics: the experts' statistics files, checked against what the method needs.
    public init(_ recipe: MergeRecipe, expertMetrics: [[String: Double]] = [], statistics: (any ExpertStatisticsSource)? = nil) throws(MergeError) {
        let method = try MethodRegistry.method(named: recipe.method)
        let id = method.id
        let global = method.parameters, perExpert = method.expertParameters
        for (name, value) in recipe.parameters {
            // A per-expert parameter given globally applies to every expert (mergekit allows it).
            guard let spec = (global + perExpert).first(where: { $0.name == name }) else {
                throw .unknownParameter(method: id, parameter: name, known: method.allParameterNames)
            }
            try spec.validate(value, method: id)
        }
        for params in recipe.expertParameters {
            for (name, value) in params {
                guard let spec = perExpert.first(where: { $0.name == name }) else {
                    throw .unknownParameter(method: id, parameter: name, known: perExpert.map(\.name))
                }
                try spec.validate(value, method: id)
            }
        }
        for spec in global where spec.defaultValue == nil && recipe.parameters[spec.name] == nil {
            throw .missingParameter(method: id, parameter: spec.name + (spec.name == "basis" ? " (--basis K)" : ""))
        }
        for spec in perExpert where spec.defaultValue == nil {
            for i in 0..<recipe.experts.count where recipe.parameters[spec.name] == nil
                && (i >= recipe.expertParameters.count || recipe.expertParameters[i][spec.name] == nil) {
                throw .missingParameter(method: id, parameter: "\(spec.name) (for \(recipe.experts[i]))")
            }
        }
        if recipe.lines != nil || recipe.consensus != nil, !method.requiresBase {
            throw .invalidInputs(method: id, problem: "LiNeS and consensus masks apply to task-vector methods only")
        }
        if recipe.balance == .norm, !method.requiresBase {
            throw .invalidInputs(method: id, problem: "--balance norm rescales task vectors, and \(id) does not use a merge base; use it with a task-vector method")
        }
        if recipe.balance == .norm, !method.mergesTensorByTensor {
            throw .invalidInputs(method: id, problem: "--balance norm rescales task vectors tensor by tensor, and \(id) merges whole models; use it with a tensor-by-tensor method")
        }
        if let c = recipe.consensus, c.k < 0 || !(c.lambda >= 0) || !c.lambda.isFinite {
            throw .invalidParameter(method: id, parameter: "consensus", problem: "needs k ≥ 0 and a finite λ ≥ 0")
        }
        if let l = recipe.lines, !l.alpha.isFinite || !l.beta.isFinite {
            throw .invalidParameter(method: id, parameter: "lines", problem: "needs finite α and β")
        }
        // k above the number of experts keeps no element (the merge would be the base); k = 0 keeps
        // every one (no mask), which mergekit-style recipes may say.
        if let c = recipe.consensus, c.k > recipe.experts.count {
            throw .invalidParameter(method: id, parameter: "consensus",
                                    problem: "k = \(c.k) exceeds the \(recipe.experts.count) experts: no element could be kept, and the merge would be the base")
        }
        guard method.expertCount.contains(recipe.experts.count) else {
            let range = method.expertCount
            let wanted = range.lowerBound == range.upperBound ? "exactly \(range.lowerBound)" : "\(range.lowerBound) to \(range.upperBound)"
            throw .invalidInputs(method: id, problem: "takes \(wanted) experts, got \(recipe.experts.count)")
        }
        var defaults: [String: ParameterValue] = [:]
        for spec in method.parameters + method.expertParameters { if let d = spec.defaultValue { defaults[spec.name] = d } }
        let parameterSet = ParameterSet(global: recipe.parameters, perExpert: recipe.expertParameters, defaults: defaults)
        try method.validate(parameterSet, experts: recipe.experts)
        for metric in method.expertMetrics(parameterSet) {
            for (i, name) in recipe.experts.enumerated() {
                let value = i < expertMetrics.count ? expertMetrics[i][metric] : nil
                guard let value, value.isFinite, value > 0 else {
                    throw .missingExpertMetric(method: id, metric: metric, expert: name)
                }
            }
        }
        for kind in method.expertStatistics(parameterSet) {
            for (i, name) in recipe.experts.enumerated() where statistics?.hasFile(expert: i, kind: kind) != true {
                throw .missingExpertStatistics(method: id, file: StatisticsLayout.path(kind), expert: name)
            }
        }
        self.recipe = recipe
        self.method = method
        self.parameterSet = parameterSet
        self.statistics = statistics
        self.instance = (method as? any TensorMergeMethod.Type)?.init()
        self.expertMetrics = expertMetrics
    }

    /// Merges one floating-point tensor and measures its conflicts.
    ///
    /// - Parameters:
    ///   - base: the merge base's values (needed by task-vector methods and for the metrics).
    ///   - experts: each expert's values, in recipe order.
    public func merge(_ context: TensorContext, base: [Float]?, experts: [[Float]]) throws -> (values: [Float], metrics: ConflictMetrics) {
        guard instance != nil else {
            throw MergeError.invalidInputs(method: method.id, problem: "merges whole models, not tensor by tensor")
        }
        let n = experts.first?.count ?? base?.count ?? 0
        guard experts.allSatisfy({ $0.count == n }), base.map({ $0.count == n }) ?? true else {
            throw MergeError.invalidInputs(method: method.id, problem: "the inputs of tensor '\(context.name)' differ in element count")
        }
        var values = [Float](repeating: 0, count: n)
        let metrics = try BlockMergeRun.withPointers(experts) { pointers in
            try BlockMergeRun.withOptionalPointer(base) { b in
                try values.withUnsafeMutableBufferPointer { out in
                    try merge(context, base: b, experts: pointers, into: out)
                }
            }
        }
        return (values, metrics)
    }
}

extension MergePlan {
    /// Checks the parameters against the model's shape (``MergeMethod/validate(_:layerCount:)``):
    /// called once the tensor names are known, before any tensor is read.
    public func validate(layerCount: Int) throws(MergeError) {
        try method.validate(parameterSet, layerCount: layerCount)
    }
}
