import Delta
import Foundation
import Merge

/// Everything about a merge: its inputs, the recipe, and the policies around it.
public struct MergeOptions: Sendable {
    /// Whether a merge that could move HEAD forward does (git's `--ff`, `--no-ff`, `--ff-only`).
    public enum FastForward: String, Sendable, CaseIterable {
        /// Move HEAD forward when the only branch contains it and nothing asks for a method.
        case allowed
        /// Always record a merge commit (`--no-ff`).
        case never
        /// Only move HEAD forward; refuse anything else (`--ff-only`).
        case only
    }

    /// Revisions to merge into HEAD, in order.
    public var branches: [String]
    /// True when `branches` are exactly the experts (a recipe's models); false when HEAD is an
    /// expert too unless it is the merge base (branches named on the command line, as in git).
    public var inputsAreExperts = false
    /// Record the result with HEAD as its only parent (`revert` and `cherry-pick` apply a change
    /// through the merge machinery; the experts' histories are not merged).
    public var singleParent = false
    public var recipe: MergeRecipe
    /// Per-expert parameters by the name (any revision) that gave them. When empty, the recipe's
    /// `expertParameters` are taken, aligned with its `experts`.
    public var expertParameters: [(name: String, parameters: [String: ParameterValue])] = []
    /// Use this revision as the merge base instead of the common ancestor.
    public var base: String?
    public var message: String?
    /// Write every floating-point tensor in this dtype (default: each tensor keeps its dtype).
    public var outputDType: DType?
    /// The recipe's `dtype` as written (mergekit's compute dtype; mrepo computes in float32).
    public var dtype: String?
    public var tokenizerSource: String?
    public var vocabulary: VocabularyPolicy?
    public var thresholds: ConflictThresholds
    public var fileRule: FileConflictRule
    /// Whether tensors changed by only some experts are merged by the method (the default) or taken.
    public var oneSided: OneSidedRule = .merge
    /// Resolutions of a recorded merge, replayed when its recipe runs again.
    public var resolutions: [RecordedResolution] = []
    public var fastForward: FastForward = .allowed
    /// Bytes of whole inputs (each input and its Float32 copy) above which a tensor whose method
    /// reads whole inputs is decided by passes over its chunks instead (TIES' thresholds:
    /// ``StreamingSelection``), when its method allows. Same result, bounded memory, more decoding.
    /// `MREPO_MERGE_WHOLE_MB` sets it in MiB (default 256).
    public var wholeTensorBudget = MergeOptions.defaultWholeTensorBudget
    /// Whether such a tensor's first pass keeps its decoded inputs in an unnamed temporary file for
    /// the later passes and the merge (``PassSpill``), instead of each pass decoding them again.
    /// Same result either way; off only to compare (`MREPO_MERGE_SPILL=0`).
    public var spillPasses = ProcessInfo.processInfo.environment["MREPO_MERGE_SPILL"] != "0"
    /// Bytes of a tensor's inputs (as stored, without Float32 copies) up to which that spill is
    /// kept in memory rather than in a file (``PassSpill``): the whole-tensor budget by default.
    public var residentSpillBudget = MergeOptions.defaultWholeTensorBudget

    public static let defaultWholeTensorBudget: Int = {
        guard let text = ProcessInfo.processInfo.environment["MREPO_MERGE_WHOLE_MB"], let mib = Int(text), mib >= 0, mib < 1 << 40 else { return 256 << 20 }
        return mib << 20
    }()
    /// Whether a method, parameters or a recipe were given: such a merge is never a fast-forward.
    public var isExplicit = true
    /// Metrics recorded on the merge commit (`--metric`).
    public var metrics: [Commit.Metric] = []
    /// A reversible merge that replaces its experts: one parent, the experts' files recorded,
    /// so `gc` can drop their weights once their branches are gone (`merge --squash`).
    public var squash = false
    /// Stop before committing; the merged model is written to the working tree for inspection.
    public var noCommit: Bool
    /// Plan only: classify, estimate memory, write nothing.
    public var dryRun: Bool
    /// More members of the merge commit's `extra` (a search's record, `extra.search`).
    public var extraMembers: [JSONMember] = []
    /// What a refusal to overwrite a local change names: "merging", or the command that applies
    /// a change through the merge machinery ("revert", "cherry-pick").
    public var operation = "merging"
    /// Where the command writes the merge's HTML page once it is recorded (`--report`): checked
    /// against the merged tree's files before anything is recorded.
    public var reportPath: String?
    /// Whether the merged tree gets a model card (README.md) and the recipe (merge_recipe.yml), as
    /// merge tools on the Hub write them. False for `revert` and `cherry-pick`: their result is a
    /// change applied to HEAD, whose own files (a README.md included) are merged three-way like any
    /// other file.
    public var addsMergeFiles = true

    public init(branches: [String], recipe: MergeRecipe, base: String? = nil, message: String? = nil, outputDType: DType? = nil,
                vocabulary: VocabularyPolicy? = nil, thresholds: ConflictThresholds = ConflictThresholds(),
                fileRule: FileConflictRule = .ours, noCommit: Bool = false, dryRun: Bool = false) {
        self.branches = branches
        self.recipe = recipe
        self.base = base
        self.message = message
        self.outputDType = outputDType
        self.vocabulary = vocabulary
        self.thresholds = thresholds
        self.fileRule = fileRule
        self.noCommit = noCommit
        self.dryRun = dryRun
    }

    /// The options of an assembled request (command line over a recipe file).
    public init(_ assembled: MergeRequest.Assembled, message: String? = nil, fastForward: FastForward = .allowed,
                metrics: [Commit.Metric] = [], noCommit: Bool = false, dryRun: Bool = false) {
        let e = assembled.extensions
        self.init(branches: assembled.inputs, recipe: assembled.recipe, base: assembled.base, message: message,
                  outputDType: assembled.outputDType, vocabulary: e.vocabulary, thresholds: e.thresholds,
                  fileRule: e.fileConflict ?? .ours, noCommit: noCommit, dryRun: dryRun)
        inputsAreExperts = assembled.inputsAreExperts
        expertParameters = assembled.expertParameters
        dtype = assembled.dtype
        tokenizerSource = assembled.tokenizerSource
        oneSided = e.oneSided ?? .merge
        resolutions = e.resolutions
        self.fastForward = fastForward
        isExplicit = assembled.isExplicit
        self.metrics = metrics
    }
}

/// A named input of a merge: an expert or a merged branch.
struct MergeInput: Sendable, Codable, Equatable {
    var name: String
    var commit: ObjectID

    /// The name for messages: a full commit id (a replayed recipe names its models so) shortened.
    var shownName: String { ObjectID(hex: name) != nil ? commit.short : name }
}

/// The options of a merge that shape its result beyond the recipe, as recorded in the merge
/// state and in the merge commit (`extra.merge.options`).
struct RecordedMergeOptions: Sendable, Codable, Equatable {
    var vocabulary: VocabularyPolicy?
    var fileRule: FileConflictRule
    /// The dtype every floating-point tensor was written in (nil: each kept its dtype).
    var dtype: String?
    var oneSided: OneSidedRule?
    var thresholds: ConflictThresholds?
    /// The recipe's own `dtype` (mergekit's compute dtype), as written.
    var recipeDType: String?
    var tokenizerSource: String?
    /// True when the merge added no model card or recipe file (`revert`, `cherry-pick`); absent
    /// otherwise, so merges record what they always did.
    var noMergeFiles: Bool?

    enum CodingKeys: String, CodingKey {
        case vocabulary, fileRule = "file_rule", dtype, oneSided = "one_sided", thresholds
        case recipeDType = "recipe_dtype", tokenizerSource = "tokenizer_source", noMergeFiles = "no_merge_files"
    }

    init(_ options: MergeOptions) {
        vocabulary = options.vocabulary
        fileRule = options.fileRule
        dtype = options.outputDType?.rawValue
        oneSided = options.oneSided
        thresholds = options.thresholds.isEmpty ? nil : options.thresholds
        recipeDType = options.dtype
        tokenizerSource = options.tokenizerSource
        noMergeFiles = options.addsMergeFiles ? nil : true
    }
}

/// A merge that stopped before its commit (conflicts, or `--no-commit`), kept in the database
/// until `merge --continue` or `merge --abort`.
struct MergeState: Sendable, Codable {
    /// HEAD when the merge started.
    var head: ObjectID
    /// The other parents, in order, with the names they were given.
    var branches: [MergeInput]
    /// The experts, in order (absent in states written before experts were recorded: HEAD unless
    /// it is the merge base, then the branches).
    var experts: [MergeInput]?
    var base: ObjectID
    var recipe: MergeRecipe
    var message: String
    /// The merged tree so far: tensor name → object (resolved tensors).
    var decided: [String: ObjectID]
    /// Unresolved tensors: name → why.
    var unresolved: [String: String]
    /// The full conflict report (a blob object).
    var reportObject: ObjectID?
    /// Set when the merge finished but waits for `--continue` (`--no-commit`); the working tree then holds it.
    var readyTree: ObjectID?
    var options: RecordedMergeOptions
    /// How tensors were settled by `resolve` (or replayed from a recipe), in order.
    var resolutions: [RecordedResolution]?
    /// Metrics to record on the merge commit.
    var metrics: [Commit.Metric]?
    /// Members the merge commit's `extra` gets beside its own (a search's record, `extra.search`),
    /// kept for `merge --continue`.
    var extra: JSONValue?
    /// The command that stopped: "revert" or "cherry-pick" (nil: a merge, or a state written before
    /// it was recorded).
    var operation: String?

    enum CodingKeys: String, CodingKey {
        case head, branches, experts, base, recipe, message, decided, unresolved
        case reportObject = "report_object", readyTree = "ready_tree", options, resolutions, metrics, extra, operation
    }

    /// ``extra``'s members.
    var extraMembers: [JSONMember] { extra?.objectValue ?? [] }

    /// The experts, as recorded or as older states imply them.
    var expertList: [MergeInput] {
        experts ?? ((head == base ? [] : [MergeInput(name: "HEAD", commit: head)]) + branches)
    }

    /// Objects the state keeps alive (gc must not remove them).
    var objects: Set<ObjectID> {
        Set(decided.values).union([reportObject].compactMap { $0 })
    }

    var commits: [ObjectID] { [head, base] + branches.map(\.commit) + (experts ?? []).map(\.commit) }
}
