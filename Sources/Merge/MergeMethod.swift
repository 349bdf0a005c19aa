/// The inputs of one tensor's merge: the merge base and each expert, as `Float` (Float32).
public struct TensorMergeInput: Sendable {
    public var context: TensorContext
    /// The merge base's values; nil for methods that do not use one.
    public var base: [Float]?
    /// Each expert's values, in the merge's input order.
    public var experts: [[Float]]
    public var parameters: ParameterSet
    /// Seed of this tensor's random streams (the merge seed mixed with the tensor name).
    public var seed: UInt64
    /// Per expert, the commit metrics the method declared it needs (``MergeMethod/expertMetrics(_:)``).
    public var expertMetrics: [[String: Double]]
    /// The experts' committed statistics, for methods that declare some (``MergeMethod/expertStatistics(_:)``).
    public var statistics: (any ExpertStatisticsSource)?

    public init(context: TensorContext, base: [Float]?, experts: [[Float]], parameters: ParameterSet, seed: UInt64,
                expertMetrics: [[String: Double]] = [], statistics: (any ExpertStatisticsSource)? = nil) {
        self.context = context
        self.base = base
        self.experts = experts
        self.parameters = parameters
        self.seed = seed
        self.expertMetrics = expertMetrics
        self.statistics = statistics
    }

    public var elementCount: Int { experts.first?.count ?? base?.count ?? 0 }
}

/// What a method produced for one tensor.
public struct TensorMergeOutput: Sendable {
    public var values: [Float]
    /// Per expert, the fraction of its task vector's elements kept after sparsification (nil: no sparsification).
    public var keptFraction: [Double]?
    /// Free-form facts for the report (e.g. Model Stock's `t`).
    public var notes: [String: Double]

    public init(values: [Float], keptFraction: [Double]? = nil, notes: [String: Double] = [:]) {
        self.values = values
        self.keptFraction = keptFraction
        self.notes = notes
    }
}

/// What a model-merging method is: its id, its parameters, and what it needs from the repository.
///
/// How it runs is a separate conformance: ``TensorMergeMethod`` merges one tensor at a time (every
/// method but ``RMM``); a whole-model method (``RMM``) is run by the repository over every adapted
/// module at once. Parameter names and method ids are mergekit's, so recipes carry over.
public protocol MergeMethod: Sendable {
    /// mergekit's id, e.g. `ties`.
    static var id: String { get }
    static var displayName: String { get }
    /// Where the method is described.
    static var paper: String { get }
    /// One paragraph for `mrepo merge --help-method` and docs/merging.md.
    static var summary: String { get }
    /// Parameters that apply to the whole merge (`--set NAME=VALUE`).
    static var parameters: [ParameterSpec] { get }
    /// Parameters given per expert (`--weight NAME=VALUE`, `--expert NAME:PARAM=VALUE`).
    static var expertParameters: [ParameterSpec] { get }
    /// Whether the method needs the merge base (task-vector methods do).
    static var requiresBase: Bool { get }
    /// How many experts the method accepts.
    static var expertCount: ClosedRange<Int> { get }
    /// Whether the result depends on the random seed.
    static var usesSeed: Bool { get }
    /// Commit metrics (`commit --metric NAME=VALUE`) every expert must record, given the merge's
    /// parameters: MWA weighs experts by one. Values must be finite and positive.
    static func expertMetrics(_ parameters: ParameterSet) -> [String]
    /// Statistics files (``StatisticsLayout``, e.g. `fisher`) every expert must have committed
    /// beside its weights, given the merge's parameters.
    static func expertStatistics(_ parameters: ParameterSet) -> [String]
    /// Checks what parameter specs cannot say alone (ranges that depend on the experts, named in
    /// the recipe's order).
    static func validate(_ parameters: ParameterSet, experts: [String]) throws(MergeError)
    /// Checks what depends on the model's shape, once its tensor names are known and before any
    /// tensor is read (a dry run included): `layerCount` blocks (0 when the names show none).
    static func validate(_ parameters: ParameterSet, layerCount: Int) throws(MergeError)
    /// The working memory of merging a tensor of `n` elements from `k` experts (for `--dry-run`'s
    /// estimate), and how it is counted, in words.
    static func workingMemory(elements n: Int, experts k: Int) -> (bytes: Int, formula: String)
}

/// A method that merges one floating-point tensor at a time.
public protocol TensorMergeMethod: MergeMethod {
    init()

    /// Merges one floating-point tensor.
    func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput
}

extension MergeMethod {
    public static var usesSeed: Bool { false }
    public static var expertParameters: [ParameterSpec] { [] }
    public static func expertMetrics(_ parameters: ParameterSet) -> [String] { [] }
    public static func expertStatistics(_ parameters: ParameterSet) -> [String] { [] }
    public static func validate(_ parameters: ParameterSet, experts: [String]) throws(MergeError) {}
    public static func validate(_ parameters: ParameterSet, layerCount: Int) throws(MergeError) {}
    public static func workingMemory(elements n: Int, experts k: Int) -> (bytes: Int, formula: String) {
        MethodRegistry.elementwiseWorkingMemory(elements: n, experts: k)
    }

    /// Every parameter name, global and per expert.
    static var allParameterNames: [String] {
        (parameters + expertParameters).map(\.name)
    }

    /// The parameters with nothing given: every default.
    public static var defaultParameters: ParameterSet {
        var defaults: [String: ParameterValue] = [:]
        for spec in parameters + expertParameters { if let d = spec.defaultValue { defaults[spec.name] = d } }
        return ParameterSet(global: [:], perExpert: [], defaults: defaults)
    }

    /// Whether the method merges tensor by tensor (false: a whole-model job, run by the repository).
    public static var mergesTensorByTensor: Bool { self is any TensorMergeMethod.Type }

    /// Whether `--balance norm` applies: it rescales task vectors tensor by tensor, so the method
    /// needs the merge base and merges tensor by tensor (``MergePlan`` refuses it otherwise).
    public static var takesBalance: Bool { requiresBase && mergesTensorByTensor }
}

/// Every merge method mrepo knows, in documentation order. A static list: adding a method is one
/// file plus one line here, and nothing registers itself as a side effect of loading.
public enum MethodRegistry {
    public static let all: [any MergeMethod.Type] = [
        Linear.self, TaskArithmetic.self, TIES.self, DARELinear.self, DARETIES.self,
        Breadcrumbs.self, BreadcrumbsTIES.self, DELLA.self, DELLALinear.self,
        SLERP.self, ModelStock.self, MWA.self, LayerSwap.self, RMM.self,
        TSV.self, IsoC.self, IsoCTS.self, WUDI.self, CART.self, PCB.self, KnOTS.self,
        Fisher.self, RegMean.self,
    ]

    public static var ids: [String] { all.map { $0.id } }

    /// A tensor-by-tensor method's working memory: the inputs and the result in float32, plus one
    /// more tensor's scratch (``MergeMethod/workingMemory(elements:experts:)``'s default).
    public static func elementwiseWorkingMemory(elements n: Int, experts k: Int) -> (bytes: Int, formula: String) {
        ((k + 2) * n * 4, "(experts + 2) × the largest merged tensor in float32")
    }

    /// The method with this id.
    /// - Throws: ``MergeError/unknownMethod(_:known:)`` listing the valid ids.
    public static func method(named id: String) throws(MergeError) -> any MergeMethod.Type {
        guard let m = all.first(where: { $0.id == id }) else { throw MergeError.unknownMethod(id, known: ids) }
        return m
    }
}
