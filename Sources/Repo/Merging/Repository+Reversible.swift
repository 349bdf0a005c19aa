import Delta
import Foundation
import Merge

/// What a reversible merge commit records (`extra.rmm`, docs/format.md §3.7; its basis file: §4.7).
public struct ReversibleMergeRecord: CommitExtraRecord {
    public static let member = "rmm"

    /// One merged expert: its name and commit.
    public struct Expert: Codable, Sendable, Equatable {
        public var name: String
        public var commit: ObjectID
        /// A squashed merge (`merge --squash`): the expert's files, so it is rebuilt without its commit.
        public var files: [SquashedFile]? = nil
    }

    /// What the experts are.
    public var expertKind: RMMExpertKind
    /// The variant the merge asked for (a module may have fallen back to dense).
    public var variant: RMMVariant
    public var basis: Int
    public var center: Bool
    /// The base model commit (the adapters' base, or the merge base of full fine-tunes).
    public var base: ObjectID
    public var experts: [Expert]
    /// The measurements (a blob holding ``ReversibleMergeReport`` JSON).
    public var reportObject: ObjectID?
    /// Reduction rank of full fine-tunes.
    public var rank: Int?
    /// A squashed merge: one parent, the experts' files recorded in ``experts`` (absent otherwise).
    public var squash: Bool?

    /// ``expertKind`` as recorded: `adapter` or `full`.
    public var kind: String { expertKind.rawValue }

    /// The members in the format's order; `rank` and `report_object` are written as null when absent.
    private enum CodingKeys: String, CodingKey {
        case kind, variant, basis, center, base, experts, rank, reportObject = "report_object", squash
    }

    init(expertKind: RMMExpertKind, variant: RMMVariant, basis: Int, center: Bool, base: ObjectID, experts: [(name: String, commit: ObjectID)],
         reportObject: ObjectID?, rank: Int?) {
        self.expertKind = expertKind
        self.variant = variant
        self.basis = basis
        self.center = center
        self.base = base
        self.experts = experts.map { Expert(name: $0.name, commit: $0.commit) }
        self.reportObject = reportObject
        self.rank = rank
    }

    /// Members missing from records of earlier versions read as those versions meant them: an
    /// adapter merge, the position variant, centred. A kind this version does not know throws.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        expertKind = try c.decodeIfPresent(RMMExpertKind.self, forKey: .kind) ?? .adapter
        variant = try c.decodeIfPresent(RMMVariant.self, forKey: .variant) ?? .position
        basis = try c.decodeIfPresent(Int.self, forKey: .basis) ?? 0
        center = try c.decodeIfPresent(Bool.self, forKey: .center) ?? true
        base = try c.decode(ObjectID.self, forKey: .base)
        experts = try c.decodeIfPresent([Expert].self, forKey: .experts) ?? []
        rank = try c.decodeIfPresent(Int.self, forKey: .rank)
        reportObject = try c.decodeIfPresent(ObjectID.self, forKey: .reportObject)
        squash = try c.decodeIfPresent(Bool.self, forKey: .squash)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(expertKind, forKey: .kind)
        try c.encode(variant, forKey: .variant)
        try c.encode(basis, forKey: .basis)
        try c.encode(center, forKey: .center)
        try c.encode(base, forKey: .base)
        try c.encode(experts, forKey: .experts)
        try c.encode(rank, forKey: .rank)
        try c.encode(reportObject, forKey: .reportObject)
        // Only on squashed merges: records (and commit ids) of other merges are unchanged.
        try c.encodeIfPresent(squash, forKey: .squash)
    }
}

/// A reversible merge, planned before any module is read: what the experts are, which modules
/// the basis covers, and (full fine-tunes) which tensors the view takes as they are.
struct ReversiblePlan {
    /// One weight matrix of the basis; its inputs are read when its turn comes.
    struct Module {
        enum Source {
            /// Each expert's LoRA module for this weight, in expert order.
            case adapters([LoRAModule])
            /// The base's tensor and each expert's object of it.
            case full(base: TreeTensor, experts: [ObjectID])
        }

        var module: String
        var baseTensor: String
        var rows: Int
        var columns: Int
        var source: Source
    }

    /// A tensor of full fine-tunes outside the basis (not 2-D, or unchanged): the view takes the
    /// base's, or task arithmetic of the experts' when they differ.
    struct PassThrough {
        var name: String
        var base: TreeTensor
        var experts: [ObjectID]
    }

    /// The adapter a merge of adapters writes its view as.
    struct AdapterView {
        var rank: Int
        var dtype: DType
        var config: LoRAConfig
    }

    var kind: RMMExpertKind
    var settings: ReversibleMergeSettings
    var base: ObjectID
    var experts: [(name: String, commit: ObjectID)]
    var context: MergeContext
    var layerCount: Int
    var modules: [Module]
    /// Adapter merges: the experts' adapters, and the view's adapter.
    var adapters: [LoadedAdapter] = []
    var adapterView: AdapterView?
    /// Full fine-tunes, in tensor order.
    var passThrough: [PassThrough] = []
    var remarks: [String] = []

    /// The default view's rank: the recipe's `view_rank`, else the adapters' largest rank or the reduction rank.
    var viewRank: Int {
        adapterView?.rank ?? settings.viewRank(expertRank: settings.rank)
    }

    func job(seed: UInt64) -> ReversibleMergeJob {
        var job = ReversibleMergeJob(kind: kind, settings: settings, expertCount: experts.count, viewRank: viewRank, layerCount: layerCount, seed: seed)
        job.remarks += remarks
        return job
    }
}

extension Repository {
    /// Runs a reversible merge (``RMM``) of `experts` and records its commit: plan (read and check
    /// the inputs), then fit and store module by module (``ReversibleMergeJob`` does the math),
    /// then record the commit.
    func mergeReversible(options: MergeOptions, recipe: MergeRecipe, head: Head, headID: ObjectID, mergeBase: ObjectID,
                         branches: [(name: String, commit: ObjectID)], experts: [(name: String, commit: ObjectID)]) throws -> MergeOutcome {
        let plan = try planReversible(options: options, recipe: recipe, mergeBase: mergeBase, experts: experts)
        let inputs = experts.map { MergeInput(name: $0.name, commit: $0.commit) }
        let yaml = recordedRecipe(recipe, options: options, base: plan.base, experts: inputs, resolutions: []).yaml()
        if options.dryRun {
            let report = ConflictReport(method: RMM.id, experts: experts.map(\.name), baseName: plan.base.hex,
                                        tensors: plan.modules.map { TensorReport(name: $0.baseTensor, mergeClass: .merged, elementCount: $0.rows * $0.columns) },
                                        files: [])
            // Dense task vectors of the largest module: N + 2 with the baselines or for full fine-tunes, 2 otherwise.
            let largest = plan.modules.map { $0.rows * $0.columns }.max() ?? 0
            let copies = plan.settings.baselines || plan.kind == .full || plan.settings.variant == .dense ? experts.count + 2 : 2
            return MergeOutcome(status: .planned, report: report, base: plan.base, baseCandidates: [plan.base],
                                estimatedPeakBytes: copies * largest * 4 + 64 << 20, recipeYAML: yaml)
        }

        let batch = objects.makeBatch()
        let stored: StoredReversible
        let recorded: RecordedMerge
        do {
            stored = try storeReversible(plan, recipe: recipe, recipeYAML: yaml, batch: batch)
            var record = ReversibleMergeRecord(expertKind: plan.kind, variant: plan.settings.variant, basis: plan.settings.basis,
                                               center: plan.settings.center, base: plan.base, experts: experts, reportObject: stored.reportObject,
                                               rank: plan.kind == .full && plan.settings.variant != .dense ? plan.settings.rank : nil)
            if options.squash {
                // One parent; the experts' files are recorded so the basis replaces their weights.
                record.squash = true
                for (i, files) in try squashedExpertFiles(plan).enumerated() { record.experts[i].files = files }
            }
            var extra = [try record.jsonMember()]
            if let view = plan.adapterView, let first = plan.adapters.first {
                extra.append(try AdapterRecord(base: plan.base, rank: view.rank, alpha: Double(view.rank), useRSLoRA: false,
                                           targets: first.adapter.targetModules, moduleCount: plan.modules.count).jsonMember())
            }
            let message = options.message ?? "Reversible merge of \(experts.map(\.name).joined(separator: ", ")) (rmm, basis \(plan.settings.basis)\(options.squash ? ", squashed" : ""))"
            let parents = options.squash ? [] : branches
            let state = MergeState(head: headID, branches: parents.map { MergeInput(name: $0.name, commit: $0.commit) }, experts: inputs,
                                   base: plan.base, recipe: recipe, message: message, decided: [:], unresolved: [:],
                                   reportObject: stored.reportObject, readyTree: nil, options: RecordedMergeOptions(options), resolutions: nil,
                                   metrics: options.metrics)
            let summary = ConflictReport(method: RMM.id, experts: experts.map(\.name), baseName: plan.base.hex,
                                         tensors: stored.report.modules.map { TensorReport(name: $0.baseTensor, mergeClass: .merged, elementCount: $0.rows * $0.columns) },
                                         files: [])
            recorded = try recordMerge(state: state, tree: stored.tree, objects: stored.newObjects, report: summary, extraMembers: extra,
                                       hookReport: stored.report.json)
        } catch {
            batch.rollback()
            throw error
        }
        let warnings = try finishMerge(recorded)
        var outcome = MergeOutcome(status: .committed(recorded.commit),
                                   report: ConflictReport(method: RMM.id, experts: experts.map(\.name), baseName: plan.base.hex, tensors: [], files: []),
                                   base: plan.base, baseCandidates: [plan.base], estimatedPeakBytes: 0, recipeYAML: yaml)
        outcome.reversible = stored.report
        outcome.warnings = warnings
        return outcome
    }

    // MARK: - Planning

    /// Checks the experts (at least two, one kind, one base) and lists the modules to fit.
    private func planReversible(options: MergeOptions, recipe: MergeRecipe, mergeBase: ObjectID,
                                experts: [(name: String, commit: ObjectID)]) throws -> ReversiblePlan {
        let settings = try ReversibleMergeSettings(recipe: recipe)
        let n = experts.count
        guard n >= 2 else {
            throw RepoError.invalidArgument("rmm: a reversible merge needs at least 2 experts, got \(n) (\(experts.map(\.name).joined(separator: ", ")))")
        }
        // The recipe here names no experts (they are the branches), so the plan could not bound the basis yet.
        try RMM.validate(ParameterSet(global: ["basis": .number(Double(settings.basis))], perExpert: []), experts: experts.map(\.name))
        if options.noCommit { throw RepoError.reversibleMergeNoCommit }
        let records = try experts.map { try commit($0.commit).record(AdapterRecord.self) }
        let kind: RMMExpertKind
        let base: ObjectID
        let adapterRecords = records.compactMap { $0 }
        if adapterRecords.count == n {
            kind = .adapter
            let bases = Set(adapterRecords.map(\.base))
            guard bases.count == 1, let b = bases.first else {
                throw RepoError.adapterBasesDiffer(experts: experts.map(\.name), bases: adapterRecords.map(\.base.short))
            }
            base = b
        } else if adapterRecords.isEmpty {
            kind = .full
            base = mergeBase
        } else {
            throw RepoError.mixedExpertKinds(experts: experts.map(\.name), kinds: records.map { $0 == nil ? .full : .adapter })
        }
        guard try history.commit(base) != nil else {
            throw RepoError.invalidArgument("rmm: the base model commit \(base.short) is not in the repository")
        }
        let context = try MergeContext(repository: self, base: base, experts: experts, plan: try MergePlan(recipe), options: options)
        var plan = ReversiblePlan(kind: kind, settings: settings, base: base, experts: experts, context: context,
                                  layerCount: TensorContext.layerCount(of: context.allNames), modules: [])
        switch kind {
        case .adapter: try planAdapterModules(&plan)
        case .full: try planFullFineTuneModules(&plan)
        }
        return plan
    }

    /// Adapters: one module per adapted weight, the same in every adapter.
    private func planAdapterModules(_ plan: inout ReversiblePlan) throws {
        let experts = plan.experts
        let adapters = try experts.map { try loadAdapter($0.commit) }
        guard let first = adapters.first, let firstModule = first.adapter.modules.first else {
            throw RepoError.invalidArgument("rmm: \(experts.first?.name ?? "the first expert") adapts no module")
        }
        let targets = Set(first.adapter.modules.map(\.baseTensor))
        for (i, a) in adapters.enumerated().dropFirst() where Set(a.adapter.modules.map(\.baseTensor)) != targets {
            let mine = Set(a.adapter.modules.map(\.baseTensor))
            let extra = mine.subtracting(targets).sorted().prefix(3), missing = targets.subtracting(mine).sorted().prefix(3)
            throw RepoError.adapterModulesDiffer(expert: experts[i].name, adds: Array(extra), lacks: Array(missing), reference: experts[0].name)
        }
        // fan_in_fan_out sets which way round every factor is stored (B·A or its transpose); one basis
        // cannot hold both, and the view is written with the experts' common setting.
        for (i, a) in adapters.enumerated().dropFirst() where a.adapter.config.fanInFanOut != first.adapter.config.fanInFanOut {
            throw RepoError.invalidArgument("rmm: \(experts[i].name) has fan_in_fan_out \(a.adapter.config.fanInFanOut) in \(LoRAConfig.fileName) and \(experts[0].name) \(first.adapter.config.fanInFanOut): their factors are stored the other way round from each other; merge adapters of one layout")
        }
        let ranks = Set(adapters.flatMap { $0.adapter.modules.map(\.rank) })
        if ranks.count > 1, plan.settings.variant != .dense {
            plan.remarks.append("the adapters' ranks differ (\(ranks.sorted().map(String.init).joined(separator: ", "))): modules whose ranks differ use the dense variant (their basis is stored dense)")
        }
        let dtype = first.tensor(firstModule.aName)?.dtype ?? .f32
        plan.adapterView = .init(rank: plan.settings.viewRank(expertRank: ranks.max() ?? 8), dtype: LowRankCodec.supports(dtype) ? dtype : .f32,
                                 config: first.adapter.config)
        plan.adapters = adapters
        plan.modules = try first.adapter.modules.map { module in
            let mods = try adapters.enumerated().map { i, a -> LoRAModule in
                guard let m = a.adapter.modules.first(where: { $0.baseTensor == module.baseTensor }) else {
                    throw RepoError.invalidArgument("rmm: \(experts[i].name) does not adapt \(module.module)")
                }
                return m
            }
            return .init(module: module.module, baseTensor: module.baseTensor, rows: module.rows, columns: module.columns, source: .adapters(mods))
        }
    }

    /// Full fine-tunes: every 2-D float tensor some expert changed is a module; the view takes the
    /// others as they are (or task arithmetic of them).
    private func planFullFineTuneModules(_ plan: inout ReversiblePlan) throws {
        let context = plan.context, experts = plan.experts
        for name in context.allNames {
            guard let b = context.baseTensors[name]?.tensor else {
                throw RepoError.invalidArgument("rmm: tensor '\(name)' is not in the base model; a reversible merge needs every expert to keep the base's tensors")
            }
            let ids = try context.expertTensors.enumerated().map { i, t -> ObjectID in
                guard let e = t[name]?.tensor else {
                    throw RepoError.invalidArgument("rmm: \(experts[i].name) has no tensor '\(name)'; a reversible merge needs every expert to keep the base's tensors")
                }
                guard e.dtype == b.dtype, e.shape == b.shape else {
                    throw RepoError.invalidArgument("rmm: \(experts[i].name) changed '\(name)' from \(b.dtype.rawValue) \(b.shape.shapeDescription) to \(e.dtype.rawValue) \(e.shape.shapeDescription)")
                }
                return e.objectID
            }
            let changed = ids.contains { $0 != b.objectID }
            let lowRankable = b.shape.count == 2 && LowRankCodec.supports(b.dtype) && min(b.shape[0], b.shape[1]) > 1
            if changed, lowRankable {
                plan.modules.append(.init(module: name, baseTensor: name, rows: b.shape[0], columns: b.shape[1], source: .full(base: b, experts: ids)))
            } else {
                plan.passThrough.append(.init(name: name, base: b, experts: ids))
            }
        }
        if plan.modules.isEmpty { throw RepoError.invalidArgument("rmm: no expert changes a matrix of the base model; nothing to merge") }
    }

    /// One module's inputs, read now: Float32 factors of the adapters, or the PT-SVD of full fine-tunes.
    func reversibleInput(_ module: ReversiblePlan.Module, plan: ReversiblePlan, job: ReversibleMergeJob) throws -> RMMModuleInput {
        switch module.source {
        case let .adapters(mods):
            let factors = try zip(plan.adapters, mods).map { try adapterFactors($0, $1) }
            return RMMModuleInput(module: module.module, baseTensor: module.baseTensor, rows: module.rows, columns: module.columns,
                                  experts: .adapters(factors, scales: mods.map(\.scale), transposed: mods.first?.transposed ?? false))
        case let .full(base, experts):
            return try job.fullFineTuneInput(tensor: module.module, rows: module.rows, columns: module.columns, base: try objects.floats(base.objectID)) {
                try self.objects.floats(experts[$0])
            }
        }
    }
}
