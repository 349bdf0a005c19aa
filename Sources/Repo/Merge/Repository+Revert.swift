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
    /// `rmm.safetensors`: module metadata and tensors by name.
    var modules: [JSONValue]
    var tensors: [String: TreeTensor]
    var expertCount: Int { record.experts.count }

    func meta(forBaseTensor name: String) -> JSONValue? {
        modules.first { $0["base_tensor"]?.stringValue == name }
    }
}

extension Repository {
    /// The record and measurements of a reversible merge commit (`mrepo experts`).
    public func reversibleReport(_ revision: String) throws -> (commit: Commit, record: ReversibleMergeRecord, report: ReversibleMergeReport) {
        try withReadLock { try reversibleReportLocked(revision) }
    }

    private func reversibleReportLocked(_ revision: String) throws -> (commit: Commit, record: ReversibleMergeRecord, report: ReversibleMergeReport) {
        let c = try commit(try resolve(revision))
        guard let record = ReversibleMergeRecord(commit: c) else {
            throw RepoError.invalidArgument("\(revision) (\(c.id.short)) is not a reversible merge (merge with --method rmm)")
        }
        guard let object = record.reportObject, let v = try? JSONValue.parse(try objects.read(object)),
              let report = ReversibleMergeReport(json: v) else {
            throw RepoError.corruptObject(object: c.id.short, problem: "the reversible merge's report is missing or unreadable")
        }
        return (c, record, report)
    }

    func loadReversible(_ id: ObjectID) throws -> LoadedReversible {
        let c = try commit(id)
        guard let record = ReversibleMergeRecord(commit: c) else {
            throw RepoError.invalidArgument("commit \(id.short) is not a reversible merge; --expert and --view apply to merges made with --method rmm")
        }
        let tree = try history.tree(c.treeID)
        guard let file = tree.file(at: ReversibleMergeRecord.fileName), file.kind == .safetensors else {
            throw RepoError.corruptObject(object: id.short, problem: "reversible merge without \(ReversibleMergeRecord.fileName)")
        }
        let header = try objects.read(file.objectID)
        guard header.count > 8, let root = try? JSONValue.parse(Array(header[8...])),
              let text = root["__metadata__"]?["modules"]?.stringValue, let modules = try? JSONValue.parse(Array(text.utf8)).arrayValue
        else {
            throw RepoError.corruptObject(object: id.short, problem: "\(ReversibleMergeRecord.fileName) has no module metadata")
        }
        return LoadedReversible(commit: c, record: record, tree: tree, modules: modules,
                                tensors: Dictionary(file.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }))
    }

    /// The stored basis of one module.
    func storedModule(_ loaded: LoadedReversible, meta: JSONValue) throws -> RMMModule {
        guard let name = meta["module"]?.stringValue, let variant = meta["variant"]?.stringValue.flatMap(RMMVariant.init(rawValue:)),
              let rows = meta["rows"]?.intValue, let columns = meta["columns"]?.intValue, let rank = meta["rank"]?.intValue,
              let k = meta["k"]?.intValue else {
            throw RepoError.corruptObject(object: loaded.commit.id.short, problem: "bad module metadata in \(ReversibleMergeRecord.fileName)")
        }
        var arrays: [String: (shape: Shape, values: [Float])] = [:]
        for (suffix, shape) in RMMModule.layout(variant: variant, k: k, rows: rows, columns: columns, rank: rank,
                                                experts: loaded.expertCount, center: loaded.record.center) {
            guard let t = loaded.tensors[name + "." + suffix], t.shape == shape else {
                throw RepoError.corruptObject(object: loaded.commit.id.short, problem: "\(ReversibleMergeRecord.fileName) lacks '\(name).\(suffix)' \(shape.shapeDescription)")
            }
            arrays[suffix] = (shape, try objects.floats(t.objectID))
        }
        return RMMModule(variant: variant, k: k, rows: rows, columns: columns, rank: rank, expertCount: loaded.expertCount,
                         center: loaded.record.center, arrays: arrays)
    }

    /// Which expert `name` is: a name as the merge recorded it, a commit id prefix, or any revision
    /// that resolves to an expert's commit.
    func expertIndex(_ loaded: LoadedReversible, _ name: String) throws -> Int {
        if let i = loaded.record.experts.firstIndex(where: { $0.name == name }) { return i }
        let lower = name.lowercased()
        if lower.count >= 4, let i = loaded.record.experts.firstIndex(where: { $0.commit.hex.hasPrefix(lower) }) { return i }
        // Any revision that resolves to an expert's commit (a branch at it, a tag, HEAD~2, ...).
        if let id = try? resolve(name), let i = loaded.record.experts.firstIndex(where: { $0.commit == id }) { return i }
        throw RepoError.invalidArgument("'\(name)' is not an expert of the merge \(loaded.commit.id.short) (experts: \(loaded.record.experts.map(\.name).joined(separator: ", ")))")
    }

    // MARK: - Outputs

    /// The files of an expert rebuilt from a reversible merge, or of one of its views.
    func reversibleOutputs(_ id: ObjectID, expert: String?, view: ReversibleView?, fold: Bool) throws -> (outputs: [OutputFile], description: String) {
        let (outputs, what) = try reversibleOutputsLocked(id, expert: expert, view: view, fold: fold)
        return (outputs, "\(what) of the reversible merge \(id.short)")
    }

    private func reversibleOutputsLocked(_ id: ObjectID, expert: String?, view: ReversibleView?, fold: Bool) throws -> (outputs: [OutputFile], description: String) {
        let loaded = try loadReversible(id)
        // One module's task vector, in B·A orientation, for `which` (an expert index, or a view).
        enum Which { case expert(Int), view(ReversibleView) }
        func rebuilt(_ meta: JSONValue, _ which: Which) throws -> RMMRebuilt {
            let module = try storedModule(loaded, meta: meta)
            switch which {
            case let .expert(i):
                return module.rebuild(i)
            case let .view(v):
                let parts = (0..<module.expertCount).map { module.rebuild($0) }
                let lambda: Float = v == .mean ? 1 / Float(parts.count) : Float(try viewLambda(loaded))
                let fs = parts.compactMap(\.factors)
                if fs.count == parts.count, v == .mean {
                    // The mean of the factors: the basis with zero coefficients (separate averaging).
                    var left = [Float](repeating: 0, count: fs[0].left.count), right = [Float](repeating: 0, count: fs[0].right.count)
                    for f in fs {
                        for j in left.indices { left[j] += f.left[j] / Float(fs.count) }
                        for j in right.indices { right[j] += f.right[j] / Float(fs.count) }
                    }
                    return .factors(LowRankFactors(rows: fs[0].rows, columns: fs[0].columns, rank: fs[0].rank, left: left, right: right))
                }
                if fs.count == parts.count, v == .taFull { return .factors(LowRank.concatenate(fs, scale: lambda)) }
                return .dense(RMMRebuilt.denseSum(parts, lambda: lambda, count: module.rows * module.columns))
            }
        }

        if loaded.record.kind == "adapter" {
            // The adapter whose layout and config the output takes.
            let which: Which
            let template: LoadedAdapter
            let description: String
            if let expert {
                let i = try expertIndex(loaded, expert)
                which = .expert(i)
                template = try loadAdapter(loaded.record.experts[i].commit)
                description = "expert \(loaded.record.experts[i].name)"
            } else {
                let v = view ?? .ta
                which = .view(v)
                template = try loadAdapter(id)
                description = "view \(v.rawValue)"
                if v == .ta {
                    if fold { return (try foldAdapterOutputs(template, factors: nil), "view ta, folded") }
                    return (loaded.tree.files.map { .stored($0) }, "view ta")
                }
            }
            // Factors per module, computed once per module when its tensors are written.
            var cache: [String: LowRankFactors] = [:]
            func factors(_ module: LoRAModule) throws -> LowRankFactors {
                if let f = cache[module.baseTensor] { return f }
                guard let meta = loaded.meta(forBaseTensor: module.baseTensor) else {
                    throw RepoError.corruptObject(object: id.short, problem: "no basis for module '\(module.module)'")
                }
                let f: LowRankFactors
                switch try rebuilt(meta, which) {
                case let .factors(x): f = x
                case let .dense(d):
                    let rank: Int
                    if case .view(.taFull) = which { rank = min(module.rows, module.columns) } else { rank = module.rank }
                    f = LowRank.padded(try LowRank.truncate(d, rows: module.rows, columns: module.columns, choice: .rank(rank)).factors, to: rank)
                }
                cache = [module.baseTensor: f]
                return f
            }
            if fold {
                return (try foldAdapterOutputs(template, factors: factors), description + ", folded")
            }
            if case .expert = which {
                // The expert's own files, with its lora_A / lora_B tensors rebuilt (lora_B = L / scale).
                var outputs: [OutputFile] = []
                let byA = Dictionary(template.adapter.modules.map { ($0.aName, $0) }, uniquingKeysWith: { a, _ in a })
                let byB = Dictionary(template.adapter.modules.map { ($0.bName, $0) }, uniquingKeysWith: { a, _ in a })
                for file in template.tree.files {
                    guard file.path == LoRAConfig.weightsFileName else { outputs.append(.stored(file)); continue }
                    let header = try objects.read(file.objectID)
                    let tensors = file.tensors.sorted { $0.dataOffsets.lowerBound < $1.dataOffsets.lowerBound }.map { t -> GeneratedTensor in
                        let source: GeneratedTensor.Source
                        if let m = byA[t.name] {
                            source = .computed { Self.bytes(try factors(m).right, as: t.dtype) }
                        } else if let m = byB[t.name] {
                            source = .computed {
                                let s = Float(m.scale)
                                return Self.bytes(try factors(m).left.map { $0 / s }, as: t.dtype)
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
            var layout: [(name: String, dtype: DType, shape: Shape, module: LoRAModule, isA: Bool)] = []
            var viewRank = 0
            for m in modules {
                guard let meta = loaded.meta(forBaseTensor: m.baseTensor), let r = meta["rank"]?.intValue else { continue }
                let rank: Int
                switch (meta["variant"]?.stringValue, view ?? .ta) {
                case ("dense", .taFull): rank = min(m.rows, m.columns)
                case ("dense", _): rank = modules.map(\.rank).max() ?? r
                case (_, .taFull): rank = r * loaded.expertCount
                default: rank = r
                }
                viewRank = max(viewRank, rank)
            }
            let dtype = template.tensor(modules[0].aName)?.dtype ?? .f32
            for m in modules {
                layout.append(("base_model.model.\(m.module).lora_A.weight", dtype, [viewRank, m.columns], m, true))
                layout.append(("base_model.model.\(m.module).lora_B.weight", dtype, [m.rows, viewRank], m, false))
            }
            let (header, infos) = SafetensorsHeader.encode(tensors: layout.map { ($0.name, $0.dtype, $0.shape) }, metadata: [("format", "pt")])
            let tensors = zip(layout, infos).map { entry, info -> GeneratedTensor in
                GeneratedTensor(name: entry.name, dtype: entry.dtype, shape: entry.shape, dataOffsets: info.dataOffsets) {
                    let f = LowRank.padded(try factors(entry.module), to: viewRank)
                    // Scale 1: lora_B carries the whole product.
                    return Self.bytes(entry.isA ? f.right : f.left, as: entry.dtype)
                }
            }
            var outputs: [OutputFile] = loaded.tree.files.filter { ![LoRAConfig.weightsFileName, LoRAConfig.fileName].contains($0.path) }.map { .stored($0) }
            outputs.append(.safetensors(path: LoRAConfig.weightsFileName, header: header, tensors: tensors))
            outputs.append(.bytes(path: LoRAConfig.fileName, Array(LoRAConfig.json(rank: viewRank, alpha: Double(viewRank), targetModules: template.adapter.targetModules,
                                                                                    baseModel: template.adapter.config.baseModel, taskType: template.adapter.config.taskType).utf8)))
            return (outputs, description)
        }

        // Full fine-tunes: dense models in the layout of the expert (or of the merge's view).
        let which: Which
        let layoutTree: Tree
        let description: String
        if let expert {
            let i = try expertIndex(loaded, expert)
            which = .expert(i)
            layoutTree = try tree(of: loaded.record.experts[i].commit)
            description = "expert \(loaded.record.experts[i].name)"
        } else {
            let v = view ?? .ta
            if v == .ta { return (loaded.tree.files.map { .stored($0) }, "view ta") }
            which = .view(v)
            layoutTree = loaded.tree
            description = "view \(v.rawValue)"
        }
        let baseTensors = try tree(of: loaded.record.base).tensorsByName
        // The mean view averages the task vectors outside the basis too (the stored view sums them with λ).
        let expertTensors = view == .mean ? try loaded.record.experts.map { try tree(of: $0.commit).tensorsByName } : []
        var outputs: [OutputFile] = []
        for file in layoutTree.files {
            guard file.kind == .safetensors,
                  !expertTensors.isEmpty || file.tensors.contains(where: { loaded.meta(forBaseTensor: $0.name) != nil }) else {
                outputs.append(.stored(file))
                continue
            }
            let header = try objects.read(file.objectID)
            let tensors = file.tensors.sorted { $0.dataOffsets.lowerBound < $1.dataOffsets.lowerBound }.map { t -> GeneratedTensor in
                let source: GeneratedTensor.Source
                if let meta = loaded.meta(forBaseTensor: t.name), let base = baseTensors[t.name] {
                    source = .computed {
                        var values = try self.objects.floats(base.objectID)
                        let d = try rebuilt(meta, which).dense()
                        for j in values.indices { values[j] += d[j] }
                        self.objects.releasePages(of: base.objectID)
                        return Self.bytes(values, as: t.dtype)
                    }
                } else if !expertTensors.isEmpty, t.dtype.isFloatingPoint, let base = baseTensors[t.name],
                          expertTensors.allSatisfy({ $0[t.name]?.dtype == t.dtype && $0[t.name]?.shape == t.shape }),
                          expertTensors.contains(where: { $0[t.name]?.objectID != base.objectID }) {
                    source = .computed {
                        let baseValues = try self.objects.floats(base.objectID)
                        var values = baseValues
                        let c = 1 / Float(expertTensors.count)
                        for e in expertTensors {
                            let x = try self.objects.floats(e[t.name]!.objectID)
                            for j in values.indices { values[j] += c * (x[j] - baseValues[j]) }
                        }
                        return Self.bytes(values, as: t.dtype)
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
        if case let .number(x)? = loaded.commit.extra["merge"]?["recipe"].flatMap(MergeRecipe.init(json:))?.parameters["view_lambda"] { return x }
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

    /// `export MERGE DIR --expert NAME | --view V [--fold]`.
    public func exportReversible(_ revision: String, view: ReversibleView?, expert: String?, fold: Bool, to directory: String) throws -> ExportResult {
        try withReadLock {
            let id = try resolve(revision)
            let (outputs, _) = try reversibleOutputs(id, expert: expert, view: view, fold: fold)
            let result = try exportOutputs(outputs, to: directory)
            return ExportResult(commit: id, directory: result.directory, fileCount: result.fileCount, byteCount: result.byteCount)
        }
    }

    /// `checkout MERGE --expert NAME | --view V [--fold]`: the working tree holds the rebuilt model;
    /// HEAD is detached at the merge, and `status` compares against what was written.
    public func checkoutReversible(_ revision: String, view: ReversibleView?, expert: String?, fold: Bool, force: Bool = false,
                                   wait: Bool = false) throws -> (CheckoutResult, description: String) {
        try withWriteLock(wait: wait) {
            let id = try resolve(revision)
            if fold, expert == nil, view == nil, ReversibleMergeRecord(commit: try commit(id)) == nil {
                // A plain adapter, folded into its base.
                let outputs = try foldAdapterOutputs(try loadAdapter(id), factors: nil)
                let description = "adapter \(id.short) folded into its base"
                return (try checkoutOutputs(outputs, commit: id, description: description, force: force), description)
            }
            let (outputs, description) = try reversibleOutputs(id, expert: expert, view: view, fold: fold)
            if view == nil || view == .ta, expert == nil, !fold {
                let head = try history.head()
                let result = try moveHead(to: id, newHead: .detached(id), from: head, force: force, message: "checkout: moving to \(id.short)")
                return (result, description)
            }
            return (try checkoutOutputs(outputs, commit: id, description: description, force: force), description)
        }
    }

}
