import Delta
import Foundation
import Merge

/// The views of a reversible merge, besides its experts.
public enum ReversibleView: String, Sendable, CaseIterable {
    /// The stored default: task arithmetic of the rebuilt experts, truncated to the view rank.
    case ta
    /// Task arithmetic of the rebuilt experts, exact (rank N·r for adapters).
    case taFull = "ta-full"
    /// The experts' mean (the basis with every coefficient zero).
    case mean
}

/// A reversible merge commit, loaded for rebuilding.
struct LoadedReversible {
    var commit: Commit
    var record: ReversibleMergeRecord
    var tree: Tree
    /// `rmm.safetensors`: its header, and its tensors by name.
    var basis: RMMBasisFile
    var tensors: [String: TreeTensor]
    var modules: [RMMBasisFile.ModuleMetadata] { basis.modules }
    var expertCount: Int { record.experts.count }

    func meta(forBaseTensor name: String) -> RMMBasisFile.ModuleMetadata? { basis.module(forBaseTensor: name) }
}

/// What a rebuild computes per module: one expert, or a view of them all.
private enum RebuiltPart {
    case expert(Int)
    /// The experts' mean.
    case mean
    /// λ·Σ of the experts, exact.
    case sum(lambda: Float)
}

extension Repository {
    /// The record and measurements of a reversible merge commit (`mrepo experts`).
    public func reversibleReport(_ revision: String) throws -> (commit: Commit, record: ReversibleMergeRecord, report: ReversibleMergeReport) {
        try withReadLock { try reversibleReportLocked(revision) }
    }

    private func reversibleReportLocked(_ revision: String) throws -> (commit: Commit, record: ReversibleMergeRecord, report: ReversibleMergeReport) {
        let c = try commit(try resolve(revision))
        guard let record = try c.record(ReversibleMergeRecord.self) else {
            throw RepoError.notAReversibleMerge(commit: c.id.short, revision: revision)
        }
        guard let object = record.reportObject else {
            throw RepoError.corruptObject(object: c.id.short, problem: "the reversible merge records no report")
        }
        let report: ReversibleMergeReport
        do {
            report = try StoredRecord.decode(ReversibleMergeReport.self, fromJSON: try objects.read(object), what: "the report of merge \(c.id.short)")
        } catch let error as MergeError {
            throw RepoError.corruptObject(object: object.short, problem: error.description)
        }
        return (c, record, report)
    }

    func loadReversible(_ id: ObjectID) throws -> LoadedReversible {
        try loadReversible(commit: try commit(id))
    }

    /// A reversible merge commit with its basis file's header, checked against the commit's record.
    func loadReversible(commit c: Commit) throws -> LoadedReversible {
        let id = c.id
        guard let record = try c.record(ReversibleMergeRecord.self) else {
            throw RepoError.notAReversibleMerge(commit: id.short, revision: nil)
        }
        let tree = try history.tree(c.treeID)
        guard let file = tree.file(at: RMMBasisFile.fileName), file.kind == .safetensors else {
            throw RepoError.corruptObject(object: id.short, problem: "reversible merge without \(RMMBasisFile.fileName)")
        }
        let basis: RMMBasisFile
        do {
            basis = try RMMBasisFile(header: try objects.read(file.objectID))
        } catch let error as MergeError {
            throw RepoError.corruptObject(object: id.short, problem: error.description)
        }
        guard basis.experts.count == record.experts.count, basis.center == record.center else {
            throw RepoError.corruptObject(object: id.short, problem: "\(RMMBasisFile.fileName) does not match the commit's rmm record (experts, center)")
        }
        return LoadedReversible(commit: c, record: record, tree: tree, basis: basis,
                                tensors: Dictionary(file.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }))
    }

    /// The stored basis of one module.
    func storedModule(_ loaded: LoadedReversible, meta: RMMBasisFile.ModuleMetadata) throws -> RMMModule {
        do {
            return try loaded.basis.module(meta) { name, shape in
                guard let t = loaded.tensors[name], t.shape == shape else {
                    throw RepoError.corruptObject(object: loaded.commit.id.short, problem: "\(RMMBasisFile.fileName) lacks '\(name)' \(shape.shapeDescription)")
                }
                return try objects.floats(t.objectID)
            }
        } catch let error as MergeError {
            throw RepoError.corruptObject(object: loaded.commit.id.short, problem: "\(RMMBasisFile.fileName): module '\(meta.module)': \(error.description)")
        }
    }

    /// Which expert `name` is: a name as the merge recorded it, a commit id prefix, or any revision
    /// that resolves to an expert's commit.
    func expertIndex(_ loaded: LoadedReversible, _ name: String) throws -> Int {
        if let i = loaded.record.experts.firstIndex(where: { $0.name == name }) { return i }
        let lower = name.lowercased()
        if lower.count >= 4, let i = loaded.record.experts.firstIndex(where: { $0.commit.hex.hasPrefix(lower) }) { return i }
        // Any revision that resolves to an expert's commit (a branch at it, a tag, HEAD~2, ...).
        if let id = try? resolve(name), let i = loaded.record.experts.firstIndex(where: { $0.commit == id }) { return i }
        throw RepoError.unknownExpert(name, merge: loaded.commit.id.short, experts: loaded.record.experts.map(\.name))
    }

    // MARK: - Outputs

    /// The files `checkout` and `export` write for `--expert`, `--view` or `--fold`, and what they
    /// hold. The one place that tells a plain adapter (folded into its base) from a reversible
    /// merge (an expert or a view rebuilt from its basis).
    func rebuiltOutputs(_ id: ObjectID, expert: String?, view: ReversibleView?, fold: Bool) throws -> (outputs: [OutputFile], description: String) {
        if fold, expert == nil, view == nil, try commit(id).record(ReversibleMergeRecord.self) == nil {
            return (try foldAdapterOutputs(try loadAdapter(id), factors: nil), "adapter \(id.short) folded into its base")
        }
        let loaded = try loadReversible(id)
        let (outputs, what): ([OutputFile], String)
        switch loaded.record.expertKind {
        case .adapter: (outputs, what) = try adapterMergeOutputs(loaded, expert: expert, view: view, fold: fold)
        case .full: (outputs, what) = try fullMergeOutputs(loaded, expert: expert, view: view)
        }
        return (outputs, "\(what) of the reversible merge \(id.short)")
    }

    /// One module's task vector for `part`, in B·A orientation.
    private func rebuilt(_ loaded: LoadedReversible, _ meta: RMMBasisFile.ModuleMetadata, _ part: RebuiltPart) throws -> RMMRebuilt {
        let module = try storedModule(loaded, meta: meta)
        switch part {
        case let .expert(i): return module.rebuild(i)
        case .mean: return module.meanView()
        case let .sum(lambda): return module.sumView(lambda: lambda)
        }
    }

    /// The part a view asks for (``ReversibleView/ta`` is stored, not rebuilt).
    private func rebuiltPart(_ view: ReversibleView, _ loaded: LoadedReversible) throws -> RebuiltPart {
        view == .mean ? .mean : .sum(lambda: Float(try viewLambda(loaded)))
    }

    /// An adapter merge: the expert as its own adapter, or a view as an adapter of its own rank
    /// (or either folded into the base model).
    private func adapterMergeOutputs(_ loaded: LoadedReversible, expert: String?, view: ReversibleView?, fold: Bool) throws -> (outputs: [OutputFile], description: String) {
        let id = loaded.commit.id
        // The adapter whose layout and config the output takes.
        let part: RebuiltPart
        let template: LoadedAdapter
        let description: String
        if let expert {
            let i = try expertIndex(loaded, expert)
            part = .expert(i)
            template = try expertAdapter(loaded, i)
            description = "expert \(loaded.record.experts[i].name)"
        } else {
            let v = view ?? .ta
            template = try loadAdapter(id)
            if v == .ta {
                if fold { return (try foldAdapterOutputs(template, factors: nil), "view ta, folded") }
                return (loaded.tree.files.map { .stored($0) }, "view ta")
            }
            part = try rebuiltPart(v, loaded)
            description = "view \(v.rawValue)"
        }
        // Factors per module, computed once per module when its tensors are written.
        var cache: [String: LowRankFactors] = [:]
        func factors(_ module: LoRAModule) throws -> LowRankFactors {
            if let f = cache[module.baseTensor] { return f }
            guard let meta = loaded.meta(forBaseTensor: module.baseTensor) else {
                throw RepoError.corruptObject(object: id.short, problem: "no basis for module '\(module.module)'")
            }
            let rank: Int
            if case .sum = part { rank = min(module.rows, module.columns) } else { rank = module.rank }
            let f = try rebuilt(loaded, meta, part).factors(rows: module.rows, columns: module.columns, rank: rank)
            cache = [module.baseTensor: f]
            return f
        }
        if fold {
            return (try foldAdapterOutputs(template, factors: factors), description + ", folded")
        }
        if case .expert = part {
            // The expert's own files, with its lora_A / lora_B tensors rebuilt (lora_B = L / scale).
            var outputs: [OutputFile] = []
            let byA = Dictionary(template.adapter.modules.map { ($0.aName, $0) }, uniquingKeysWith: { a, _ in a })
            let byB = Dictionary(template.adapter.modules.map { ($0.bName, $0) }, uniquingKeysWith: { a, _ in a })
            for file in template.tree.files {
                guard file.path == LoRAConfig.weightsFileName else { outputs.append(.stored(file)); continue }
                let header = try objects.read(file.objectID)
                let tensors = file.tensors.inDataOrder().map { t -> GeneratedTensor in
                    let source: GeneratedTensor.Source
                    if let m = byA[t.name] {
                        source = .computed { try Self.bytes(try factors(m).right, as: t.dtype, name: t.name) }
                    } else if let m = byB[t.name] {
                        source = .computed {
                            let s = Float(m.scale)
                            return try Self.bytes(try factors(m).left.map { $0 / s }, as: t.dtype, name: t.name)
                        }
                    } else {
                        source = .stored(t.objectID)
                    }
                    return GeneratedTensor(name: t.name, dtype: t.dtype, shape: t.shape, dataOffsets: t.dataOffsets, source: source)
                }
                outputs.append(.safetensors(path: file.path, header: header, tensors: tensors))
            }
            return (outputs, description)
        }
        // A view as an adapter of its own rank, scale 1 (alpha = r).
        let modules = template.adapter.modules
        var viewRank = 0
        for m in modules {
            guard let meta = loaded.meta(forBaseTensor: m.baseTensor) else { continue }
            let rank: Int
            switch (meta.variant, part) {
            case (.dense, .sum): rank = min(m.rows, m.columns)
            case (.dense, _): rank = modules.map(\.rank).max() ?? meta.rank
            case (_, .sum): rank = meta.rank * loaded.expertCount
            default: rank = meta.rank
            }
            viewRank = max(viewRank, rank)
        }
        let dtype = modules.first.flatMap { template.tensor($0.aName)?.dtype } ?? .f32
        var layout: [(name: String, dtype: DType, shape: Shape, module: LoRAModule, isA: Bool)] = []
        for m in modules {
            let names = Repository.viewFactorNames(m)
            layout.append((names.a, dtype, [viewRank, m.columns], m, true))
            layout.append((names.b, dtype, [m.rows, viewRank], m, false))
        }
        let (header, infos) = SafetensorsHeader.encode(tensors: layout.map { ($0.name, $0.dtype, $0.shape) }, metadata: [("format", "pt")])
        let tensors = zip(layout, infos).map { entry, info -> GeneratedTensor in
            GeneratedTensor(name: entry.name, dtype: entry.dtype, shape: entry.shape, dataOffsets: info.dataOffsets) {
                let f = LowRank.padded(try factors(entry.module), to: viewRank)
                // Scale 1: lora_B carries the whole product.
                return try Self.bytes(entry.isA ? f.right : f.left, as: entry.dtype, name: entry.name)
            }
        }
        var outputs: [OutputFile] = loaded.tree.files.filter { ![LoRAConfig.weightsFileName, LoRAConfig.fileName].contains($0.path) }.map { .stored($0) }
        outputs.append(.safetensors(path: LoRAConfig.weightsFileName, header: header, tensors: tensors))
        outputs.append(.bytes(path: LoRAConfig.fileName, Array(LoRAConfig.json(rank: viewRank, alpha: Double(viewRank), targetModules: template.adapter.targetModules,
                                                                                baseModel: template.adapter.config.baseModel, taskType: template.adapter.config.taskType,
                                                                                fanInFanOut: template.adapter.config.fanInFanOut).utf8)))
        return (outputs, description)
    }

    /// Full fine-tunes: dense models in the layout of the expert (or of the merge's view).
    private func fullMergeOutputs(_ loaded: LoadedReversible, expert: String?, view: ReversibleView?) throws -> (outputs: [OutputFile], description: String) {
        let part: RebuiltPart
        let layoutTree: Tree
        let description: String
        if let expert {
            let i = try expertIndex(loaded, expert)
            part = .expert(i)
            layoutTree = try expertTree(loaded, i)
            description = "expert \(loaded.record.experts[i].name)"
        } else {
            let v = view ?? .ta
            if v == .ta { return (loaded.tree.files.map { .stored($0) }, "view ta") }
            part = try rebuiltPart(v, loaded)
            layoutTree = loaded.tree
            description = "view \(v.rawValue)"
        }
        let baseTensors = try tree(of: loaded.record.base).tensorsByName
        // The mean view averages the task vectors outside the basis too (the stored view sums them with λ).
        let expertTensors = view == .mean ? try loaded.record.experts.indices.map { try expertTree(loaded, $0).tensorsByName } : []
        /// A tensor outside the basis whose mean the mean view takes: the base's and each expert's object.
        func averaged(_ t: TreeTensor) -> (base: ObjectID, experts: [ObjectID])? {
            guard !expertTensors.isEmpty, t.dtype.isFloatingPoint, let base = baseTensors[t.name] else { return nil }
            let others = expertTensors.compactMap { $0[t.name] }
            guard others.count == expertTensors.count, others.allSatisfy({ $0.dtype == t.dtype && $0.shape == t.shape }),
                  others.contains(where: { $0.objectID != base.objectID }) else { return nil }
            return (base.objectID, others.map(\.objectID))
        }
        var outputs: [OutputFile] = []
        for file in layoutTree.files {
            guard file.kind == .safetensors,
                  !expertTensors.isEmpty || file.tensors.contains(where: { loaded.meta(forBaseTensor: $0.name) != nil }) else {
                outputs.append(.stored(file))
                continue
            }
            let header = try objects.read(file.objectID)
            let tensors = file.tensors.inDataOrder().map { t -> GeneratedTensor in
                let source: GeneratedTensor.Source
                if let meta = loaded.meta(forBaseTensor: t.name), let base = baseTensors[t.name] {
                    source = .computed {
                        var values = try self.objects.floats(base.objectID)
                        let d = try self.rebuilt(loaded, meta, part).dense()
                        for j in values.indices { values[j] += d[j] }
                        self.objects.releasePages(of: base.objectID)
                        return try Self.bytes(values, as: t.dtype, name: t.name)
                    }
                } else if case let (base, experts)? = averaged(t) {
                    source = .computed {
                        let values = try ReversibleMergeJob.taskArithmetic(base: try self.objects.floats(base), lambda: 1 / Float(experts.count),
                                                                           expertCount: experts.count) { try self.objects.floats(experts[$0]) }
                        return try Self.bytes(values, as: t.dtype, name: t.name)
                    }
                } else {
                    source = .stored(t.objectID)
                }
                return GeneratedTensor(name: t.name, dtype: t.dtype, shape: t.shape, dataOffsets: t.dataOffsets, source: source)
            }
            outputs.append(.safetensors(path: file.path, header: header, tensors: tensors))
        }
        return (outputs, description)
    }

    private func viewLambda(_ loaded: LoadedReversible) throws -> Double {
        if case let .number(x)? = try loaded.commit.record(MergeRecord.self)?.recipe.parameters["view_lambda"] { return x }
        return 1
    }

    /// An adapter folded into its base: with its stored factors, or with `factors` (rebuilt ones).
    func foldAdapterOutputs(_ loaded: LoadedAdapter, factors: ((LoRAModule) throws -> LowRankFactors)?) throws -> [OutputFile] {
        var replacements: [String: ObjectID] = [:]
        for r in loaded.adapter.replacements {
            if let t = loaded.tensor(r.adapterName) { replacements[r.baseName] = t.objectID }
        }
        return try foldedOutputs(baseTree: loaded.baseTree, modules: loaded.adapter.modules, replacements: replacements) { module in
            let f = try factors?(module) ?? self.adapterFactors(loaded, module)
            return try LinearAlgebra.multiply(f.left, f.right, m: f.rows, n: f.columns, k: f.rank)
        }
    }

    /// `export MERGE DIR --expert NAME | --view V [--fold]`, and `export ADAPTER DIR --fold`.
    public func exportReversible(_ revision: String, view: ReversibleView?, expert: String?, fold: Bool, to directory: String,
                                 clean: Bool = false) throws -> ExportResult {
        try withReadLock {
            let id = try resolve(revision)
            var (outputs, _) = try rebuiltOutputs(id, expert: expert, view: view, fold: fold)
            // A view is exported as a model folder to load: without the basis, which loaders that read
            // every safetensors file of a folder would take for weights (plain `export MERGE` keeps it).
            if view != nil { outputs.removeAll { $0.path == RMMBasisFile.fileName } }
            let result = try exportOutputs(outputs, to: directory, clean: clean)
            return ExportResult(commit: id, directory: result.directory, fileCount: result.fileCount, byteCount: result.byteCount)
        }
    }

    /// `checkout MERGE --expert NAME | --view V [--fold]`, and `checkout ADAPTER --fold`: the
    /// working tree holds the rebuilt model; HEAD is detached at the merge, and `status` compares
    /// against what was written.
    public func checkoutReversible(_ revision: String, view: ReversibleView?, expert: String?, fold: Bool, force: Bool = false,
                                   wait: Bool = false) throws -> (CheckoutResult, description: String) {
        try withWriteLock(wait: wait) {
            let id = try resolve(revision)
            let (outputs, description) = try rebuiltOutputs(id, expert: expert, view: view, fold: fold)
            if view == nil || view == .ta, expert == nil, !fold {
                let head = try history.head()
                let result = try moveHead(to: id, newHead: .detached(id), from: head, force: force, message: "checkout: moving to \(id.short)",
                                          operation: "checkout")
                return (result, description)
            }
            return (try checkoutOutputs(outputs, commit: id, description: description, force: force), description)
        }
    }
}
