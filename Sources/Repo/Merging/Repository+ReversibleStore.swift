import Delta
import Foundation
import Merge

/// The objects and tree of a reversible merge, written but not yet committed.
struct StoredReversible {
    var tree: Tree
    var newObjects: [ObjectInfo]
    var report: ReversibleMergeReport
    var reportObject: ObjectID
}

/// Objects written into one batch, each new one noted once (in write order) for the commit.
private struct ObjectWriter {
    let objects: ObjectStore
    let options: CodecOptions
    let batch: ObjectStore.Batch
    var newObjects: [ObjectInfo] = []

    mutating func note(_ r: ObjectStore.WriteResult) -> ObjectInfo {
        if r.isNew, !newObjects.contains(where: { $0.id == r.info.id }) { newObjects.append(r.info) }
        return r.info
    }

    mutating func tensor(_ bytes: [UInt8], dtype: DType, shape: Shape, reference: (info: ObjectInfo, header: EncodedTensorHeader)? = nil) throws -> ObjectInfo {
        let r = try bytes.withUnsafeBytes {
            try objects.write(kind: .tensor, dtype: dtype, shape: shape, source: $0, reference: reference, options: options, batch: batch)
        }
        return note(r)
    }

    mutating func floats(_ values: [Float], shape: Shape) throws -> ObjectInfo {
        let r = try values.withUnsafeBytes {
            try objects.write(kind: .tensor, dtype: .f32, shape: shape, source: $0, reference: nil, options: options, batch: batch)
        }
        return note(r)
    }

    mutating func blob(_ bytes: [UInt8]) throws -> ObjectInfo {
        note(try objects.writeBlob(bytes, options: options, batch: batch))
    }

    /// A safetensors file of the tree: its header as a blob, its tensors as the objects `ids` (in header order).
    mutating func safetensors(_ path: String, header: (bytes: [UInt8], tensors: [TensorInfo]), ids: [ObjectID]) throws -> TreeFile {
        guard header.tensors.count == ids.count else {
            throw RepoError.failed("\(path): \(ids.count) tensors written for a header of \(header.tensors.count)")
        }
        let blob = try blob(header.bytes)
        let entries = zip(header.tensors, ids).map { TreeTensor(name: $0.name, dtype: $0.dtype, shape: $0.shape, dataOffsets: $0.dataOffsets, objectID: $1) }
        return TreeFile(path: path, kind: .safetensors, objectID: blob.id, byteCount: header.bytes.count + (header.tensors.last?.dataOffsets.upperBound ?? 0),
                        executable: false, tensors: entries)
    }
}

/// What the module loop stored: the basis file and its objects, the view's tensors, and the
/// bytes on both sides (for the report).
private struct StoredModules {
    var basisFile: RMMBasisFile
    /// The basis file's tensor objects, in file order.
    var basisIDs: [ObjectID] = []
    /// Adapter merges: the view adapter's tensors.
    var viewTensors: [(name: String, dtype: DType, shape: Shape, id: ObjectID)] = []
    /// Full fine-tunes: the view's tensors by name (the merged tree's).
    var decided: [String: ObjectID] = [:]
    var storedBytes = 0
    var expertBytes = 0
}

extension Repository {
    /// Fits, measures and stores a planned reversible merge module by module (one module's inputs
    /// in memory at a time), then its view, report, basis file and tree.
    func storeReversible(_ plan: ReversiblePlan, recipe: MergeRecipe, recipeYAML: String, batch: ObjectStore.Batch) throws -> StoredReversible {
        var job = plan.job(seed: recipe.seed)
        var writer = ObjectWriter(objects: objects, options: codecOptions, batch: batch)
        var stored = try storeModules(plan, job: &job, writer: &writer)
        try storePassThrough(plan, job: &job, decided: &stored.decided, writer: &writer)
        let report = job.report(experts: plan.experts.map { ($0.name, $0.commit.hex) }, storedBytes: stored.storedBytes, expertBytes: stored.expertBytes)
        let reportObject = try writer.blob(Array(report.json.serialized().utf8)).id
        let tree = try reversibleTree(plan, stored, report: report, recipe: recipe, recipeYAML: recipeYAML, writer: &writer)
        return StoredReversible(tree: tree, newObjects: writer.newObjects, report: report, reportObject: reportObject)
    }

    /// Runs the job on every module and stores its basis and its part of the view.
    private func storeModules(_ plan: ReversiblePlan, job: inout ReversibleMergeJob, writer: inout ObjectWriter) throws -> StoredModules {
        var stored = StoredModules(basisFile: RMMBasisFile(kind: plan.kind, variant: plan.settings.variant, basis: plan.settings.basis,
                                                           center: plan.settings.center, experts: plan.experts.map(\.name)))
        stored.decided = Dictionary(plan.passThrough.map { ($0.name, $0.base.objectID) }, uniquingKeysWith: { a, _ in a })
        let counter = ProgressCounter(progress, title: "rmm", total: plan.modules.count, unit: .items)
        for module in plan.modules {
            let fitted = try job.run(try reversibleInput(module, plan: plan, job: job))
            for t in try stored.basisFile.append(fitted.module, metadata: fitted.metadata) {
                let info = try writer.floats(t.values, shape: t.shape)
                stored.storedBytes += info.storedByteCount
                stored.basisIDs.append(info.id)
            }
            switch module.source {
            case let .adapters(mods):
                for (a, m) in zip(plan.adapters, mods) {
                    for name in [m.aName, m.bName] {
                        if let t = a.tensor(name), let info = try history.objectInfo(t.objectID) { stored.expertBytes += info.storedByteCount }
                    }
                }
            case .full:
                stored.expertBytes += fitted.report.expertParameters * 4
            }
            let view = fitted.view
            switch (plan.adapterView, module.source) {
            case let (spec?, .adapters(mods)):
                // The first expert's names: PEFT's `lora_embedding_A`/`_B` for an embedding, whose
                // factors are stored the other way round from a linear layer's.
                let names = Repository.viewFactorNames(mods[0])
                for (name, values, shape) in [(names.a, view.right, [view.rank, module.columns]),
                                              (names.b, view.left, [module.rows, view.rank])] {
                    let info = try writer.tensor(Self.bytes(values, as: spec.dtype, name: name), dtype: spec.dtype, shape: shape)
                    stored.viewTensors.append((name, spec.dtype, shape, info.id))
                }
            case (_?, .full):
                throw RepoError.failed("rmm: module \(module.module) of a full fine-tune merge has a view adapter")
            case let (nil, .full(base, _)):
                stored.decided[module.baseTensor] = try storeFullView(view, base: base, writer: &writer)
            case (nil, .adapters):
                throw RepoError.failed("rmm: module \(module.module) of an adapter merge has no view adapter")
            }
            counter.add(1)
        }
        counter.finish()
        return stored
    }

    /// Tensors of full fine-tunes outside the basis: the view takes λ·Σ of their task vectors.
    private func storePassThrough(_ plan: ReversiblePlan, job: inout ReversibleMergeJob, decided: inout [String: ObjectID],
                                  writer: inout ObjectWriter) throws {
        for t in plan.passThrough where t.experts.contains(where: { $0 != t.base.objectID }) {
            guard t.base.dtype.isFloatingPoint else {
                job.remarks.append("'\(t.name)' (\(t.base.dtype.rawValue)) differs between experts; the view keeps the base's value, each expert's own is rebuilt exactly")
                continue
            }
            let values = try job.passThroughView(base: try objects.floats(t.base.objectID)) { i in
                t.experts[i] == t.base.objectID ? nil : try self.objects.floats(t.experts[i])
            }
            let info = try history.objectInfo(t.base.objectID)
            let header = try objects.header(of: t.base.objectID)
            decided[t.name] = try writer.tensor(Self.bytes(values, as: t.base.dtype, name: t.name), dtype: t.base.dtype, shape: t.base.shape,
                                                reference: info.map { ($0, header) }).id
        }
    }

    /// The merge's tree: `rmm.safetensors`, and the view (an adapter, or the merged model) with its model card and recipe.
    private func reversibleTree(_ plan: ReversiblePlan, _ stored: StoredModules, report: ReversibleMergeReport, recipe: MergeRecipe,
                                recipeYAML: String, writer: inout ObjectWriter) throws -> Tree {
        let card = reversibleModelCard(report: report, base: plan.base, experts: plan.experts, recipeYAML: recipeYAML)
        var files = [try writer.safetensors(RMMBasisFile.fileName, header: try stored.basisFile.header(), ids: stored.basisIDs)]
        // Objects become readable under their names (the tree is built from their headers).
        try writer.batch.finish()
        let tree: Tree
        if let spec = plan.adapterView, let first = plan.adapters.first {
            let (header, infos) = SafetensorsHeader.encode(tensors: stored.viewTensors.map { ($0.name, $0.dtype, $0.shape) }, metadata: [("format", "pt")])
            files.append(try writer.safetensors(LoRAConfig.weightsFileName, header: (header, infos), ids: stored.viewTensors.map(\.id)))
            // Other files of the first expert (tokenizer, say) come along.
            files += first.tree.files.filter { $0.kind == .blob && ![LoRAConfig.fileName, "README.md", "merge_recipe.yml"].contains($0.path) }
            let config = LoRAConfig.json(rank: spec.rank, alpha: Double(spec.rank), targetModules: first.adapter.targetModules,
                                         baseModel: spec.config.baseModel, taskType: spec.config.taskType,
                                         fanInFanOut: spec.config.fanInFanOut)
            for (path, bytes) in [(LoRAConfig.fileName, Array(config.utf8)), ("README.md", Array(card.utf8)), ("merge_recipe.yml", Array(recipeYAML.utf8))] {
                let blob = try writer.blob(bytes)
                files.removeAll { $0.path == path }
                files.append(TreeFile(path: path, kind: .blob, objectID: blob.id, byteCount: bytes.count, executable: false,
                                      sha256: SHA256.hash(bytes)))
            }
            tree = Tree(files: files)
        } else {
            let conflict = ConflictReport(method: RMM.id, experts: plan.experts.map(\.name), baseName: plan.base.hex, tensors: [], files: [])
            var built = try plan.context.buildTree(decided: stored.decided, recipe: recipe, report: conflict, recipeYAML: recipeYAML,
                                                   batch: writer.batch, newObjects: &writer.newObjects, card: card).files
            built.removeAll { $0.path == RMMBasisFile.fileName }
            tree = Tree(files: built + files)
        }
        try writer.batch.finish()
        return tree
    }

    /// A full fine-tune's view tensor: the base plus the module's truncated sum, stored low-rank
    /// against the base when the delta chain allows, else dense.
    private func storeFullView(_ view: LowRankFactors, base: TreeTensor, writer: inout ObjectWriter) throws -> ObjectID {
        guard let baseInfo = try history.objectInfo(base.objectID) else {
            throw RepoError.corruptObject(object: base.objectID.short, problem: "base tensor '\(base.name)' is not recorded")
        }
        defer { objects.releasePages(of: base.objectID) }
        let header = try objects.header(of: base.objectID)
        if view.rank > 0, baseInfo.depth < ObjectStore.maxDepth {
            let (r, _) = try objects.writeLowRank(dtype: base.dtype, shape: base.shape, factors: view, reference: (baseInfo, header), batch: writer.batch)
            return writer.note(r).id
        }
        var values = try objects.floats(base.objectID)
        let d = view.rank > 0 ? view.dense() : []
        for j in d.indices { values[j] += d[j] }
        return try writer.tensor(Self.bytes(values, as: base.dtype, name: base.name), dtype: base.dtype, shape: base.shape, reference: (baseInfo, header)).id
    }

    /// The names of a view adapter's factors for a module, after an expert's: `lora_A`/`lora_B`, or
    /// PEFT's `lora_embedding_A`/`_B` for an embedding (whatever the expert's prefixes).
    static func viewFactorNames(_ module: LoRAModule) -> (a: String, b: String) {
        let embedding = module.aName.contains("lora_embedding_A")
        let prefix = "base_model.model." + module.module
        return embedding ? (prefix + ".lora_embedding_A", prefix + ".lora_embedding_B") : (prefix + ".lora_A.weight", prefix + ".lora_B.weight")
    }

    /// The model card of a reversible merge.
    func reversibleModelCard(report: ReversibleMergeReport, base: ObjectID, experts: [(name: String, commit: ObjectID)], recipeYAML: String) -> String {
        var card = """
            ---
            library_name: \(report.kind == .adapter ? "peft" : "transformers")
            tags:
            - merge
            - mrepo
            - rmm
            ---
            # Reversible merge of \(experts.map(\.name).joined(separator: ", "))

            Merged with mrepo \(Repository.toolVersion) by reversible model merging (RMM, arXiv 2510.14163): `rmm.safetensors`
            holds a \(report.variant.rawValue) basis of size K = \(report.basis) from which each expert is rebuilt
            (`mrepo checkout <this commit> --expert NAME`). The model in this folder is the default view: task arithmetic
            (λ = \(ParameterValue.format(report.viewLambda))) of the rebuilt experts, truncated to rank \(report.viewRank)
            (it keeps \(String(format: "%.1f", 100 * report.viewRetainedEnergy)) % of the sum's energy).

            | expert | commit | rank | mean error | max error | retained energy |
            |---|---|---|---|---|---|

            """
        for e in report.experts {
            card += "| \(e.name) | `\(String(e.commit.prefix(12)))` | \(e.rank) | \(String(format: "%.4f", e.meanError)) | \(String(format: "%.4f", e.maxError)) | \(String(format: "%.4f", e.retainedEnergy)) |\n"
        }
        card += String(format: "\nStorage: %d Float32 values against %d for the experts (%.1f %%).\n", report.storedParameters, report.expertParameters,
                       100 * report.parameterRatio)
        if !report.baselines.isEmpty {
            card += "\nOne merged model instead (relative reconstruction error of each expert's task vector):\n\n| method | mean | max |\n|---|---|---|\n"
            for b in report.baselines { card += "| \(b.name) | \(String(format: "%.4f", b.meanError)) | \(String(format: "%.4f", b.maxError)) |\n" }
        }
        card += "\n## Recipe\n\n```yaml\n\(recipeYAML)```\n"
        return card
    }
}
