import Delta
import Foundation
import Merge

/// What a commit records about the LoRA adapter it holds (`extra.adapter`, docs/format.md §3.7).
public struct AdapterRecord: CommitExtraRecord, Equatable {
    public static let member = "adapter"
    /// The base model commit the adapter applies to.
    public var base: ObjectID
    public var rank: Int
    public var alpha: Double
    public var useRSLoRA: Bool
    /// Adapted module-name suffixes (`query`, `value`, ...).
    public var targets: [String]
    /// Number of adapted modules.
    public var moduleCount: Int

    /// The members in the format's order; `format` is always `peft-lora`.
    private enum CodingKeys: String, CodingKey {
        case format, base, rank = "r", alpha, useRSLoRA = "rslora", targets, moduleCount = "modules"
    }

    init(base: ObjectID, rank: Int, alpha: Double, useRSLoRA: Bool, targets: [String], moduleCount: Int) {
        self.base = base
        self.rank = rank
        self.alpha = alpha
        self.useRSLoRA = useRSLoRA
        self.targets = targets
        self.moduleCount = moduleCount
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        base = try c.decode(ObjectID.self, forKey: .base)
        rank = try c.decodeIfPresent(Int.self, forKey: .rank) ?? 0
        alpha = try c.decodeIfPresent(Double.self, forKey: .alpha) ?? 0
        useRSLoRA = try c.decodeIfPresent(Bool.self, forKey: .useRSLoRA) ?? false
        targets = try c.decodeIfPresent([String].self, forKey: .targets) ?? []
        moduleCount = try c.decodeIfPresent(Int.self, forKey: .moduleCount) ?? 0
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode("peft-lora", forKey: .format)
        try c.encode(base, forKey: .base)
        try c.encode(rank, forKey: .rank)
        try c.encode(alpha, forKey: .alpha)
        try c.encode(useRSLoRA, forKey: .useRSLoRA)
        try c.encode(targets, forKey: .targets)
        try c.encode(moduleCount, forKey: .moduleCount)
    }
}

/// An adapter commit, understood against its base model commit.
struct LoadedAdapter {
    var commit: ObjectID
    var tree: Tree
    var adapter: LoRAAdapter
    var base: ObjectID
    var baseTree: Tree
    /// `adapter_model.safetensors` in `tree`.
    var weights: TreeFile

    func tensor(_ name: String) -> TreeTensor? { weights.tensors.first { $0.name == name } }
}

extension Repository {
    // MARK: - Reading adapters

    /// The adapter a commit holds.
    /// - Throws: when the commit is not an adapter commit, or its base is gone.
    func loadAdapter(_ id: ObjectID) throws -> LoadedAdapter {
        let c = try commit(id)
        guard let record = try c.record(AdapterRecord.self) else {
            throw RepoError.notAnAdapter(commit: id.short)
        }
        return try loadAdapter(commit: id, tree: try history.tree(c.treeID), base: record.base)
    }

    /// The adapter in `tree` (an adapter commit's, or an expert of a squashed reversible merge) on `base`.
    func loadAdapter(commit id: ObjectID, tree: Tree, base: ObjectID) throws -> LoadedAdapter {
        guard try history.commit(base) != nil else {
            throw RepoError.invalidArgument("adapter \(id.short): its base model commit \(base.short) is not in the repository")
        }
        guard let configFile = tree.file(at: LoRAConfig.fileName), let weights = tree.file(at: LoRAConfig.weightsFileName) else {
            throw RepoError.corruptObject(object: id.short, problem: "adapter commit without \(LoRAConfig.fileName) or \(LoRAConfig.weightsFileName)")
        }
        let config = try wrapAdapterError { try LoRAConfig(json: try objects.read(configFile.objectID), file: LoRAConfig.fileName) }
        let baseTree = try self.tree(of: base)
        let adapter = try resolveAdapter(config: config, tensors: weights.tensors.map { ($0.name, $0.dtype, $0.shape) }, baseTree: baseTree, base: base)
        return LoadedAdapter(commit: id, tree: tree, adapter: adapter, base: base, baseTree: baseTree, weights: weights)
    }

    func resolveAdapter(config: LoRAConfig, tensors: [(name: String, dtype: DType, shape: Shape)], baseTree: Tree, base: ObjectID) throws -> LoRAAdapter {
        // A file that is no adapter whatever its base (a factor missing, ranks that differ): said
        // as such, without pointing at --adapter-of.
        if let problem = LoRAAdapter.pairingProblem(tensors, file: LoRAConfig.weightsFileName) {
            throw RepoError.invalidArgument(problem)
        }
        let shapes = baseTree.tensorsByName.mapValues(\.shape)
        let result: Result<LoRAAdapter, MergeError>
        do {
            result = .success(try LoRAAdapter.resolve(config: config, tensors: tensors, baseTensors: shapes, file: LoRAConfig.weightsFileName))
        } catch {
            result = .failure(error)
        }
        switch result {
        case let .success(adapter): return adapter
        case let .failure(.invalidRecipe(file, problem)) where file == LoRAConfig.fileName:
            // The config itself is wrong (a rank that disagrees with the factors, patterns too costly to match).
            throw RepoError.invalidArgument("\(file): \(problem)")
        case let .failure(.invalidRecipe(file, problem)):
            throw RepoError.adapterBaseMismatch(file: file, base: base.short, problem: problem)
        case let .failure(error): throw error
        }
    }

    /// A module's factors with the scale folded into L: L = scale·lora_B (out × r), R = lora_A (r × in).
    func adapterFactors(_ loaded: LoadedAdapter, _ module: LoRAModule) throws -> LowRankFactors {
        guard let a = loaded.tensor(module.aName), let b = loaded.tensor(module.bName) else {
            throw RepoError.corruptObject(object: loaded.commit.short, problem: "adapter tensors of '\(module.module)' are missing")
        }
        var left = try objects.floats(b.objectID)
        let right = try objects.floats(a.objectID)
        let s = Float(module.scale)
        for i in left.indices { left[i] *= s }
        return LowRankFactors(rows: module.rows, columns: module.columns, rank: module.rank, left: left, right: right)
    }

    func wrapAdapterError<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            if case let MergeError.invalidRecipe(file, problem) = error { throw RepoError.invalidArgument("\(file): \(problem)") }
            throw error
        }
    }

    // MARK: - Committing adapters

    /// The `adapter` record of a folder being committed, or nil when it holds no LoRA adapter.
    ///
    /// The base is `--adapter-of`, else the base of the adapter the parent commit holds, else the
    /// parent commit itself (an adapter committed on a branch of its base model).
    func adapterRecord(for prepared: [Snapshotter.PreparedFile], sourceRoot: String, adapterOf: String?,
                       parent: Commit?) throws -> (AdapterRecord?, note: String?) {
        guard let configFile = prepared.first(where: { $0.scanned.path == LoRAConfig.fileName }),
              let weights = prepared.first(where: { $0.scanned.path == LoRAConfig.weightsFileName })
        else {
            if adapterOf != nil {
                throw RepoError.notAnAdapterFolder
            }
            return (nil, nil)
        }
        let bytes: [UInt8]
        do {
            bytes = try Array(Data(contentsOf: URL(fileURLWithPath: configFile.scanned.absolutePath)))
        } catch {
            throw RepoError.io(path: configFile.scanned.path, reason: "cannot read: \(error.localizedDescription)")
        }
        let parsed: Result<LoRAConfig, MergeError>
        do {
            parsed = .success(try LoRAConfig(json: bytes, file: LoRAConfig.fileName, committing: true))
        } catch {
            parsed = .failure(error)
        }
        let config: LoRAConfig
        switch parsed {
        case let .success(c): config = c
        case let .failure(error):
            let text = error.description
            if text.contains("not supported"), adapterOf == nil { return (nil, "\(text); committed as plain files") }
            throw RepoError.invalidAdapterConfig(error)
        }
        let base: ObjectID
        if let rev = adapterOf {
            base = try resolve(rev)
            if let record = try commit(base).record(AdapterRecord.self) {
                throw RepoError.invalidArgument("--adapter-of \(rev): commit \(base.short) is itself a LoRA adapter (of \(record.base.short)); name the base model's commit")
            }
        } else if let parent, let record = try parent.record(AdapterRecord.self) {
            base = record.base
        } else if let parent {
            base = parent.id
        } else {
            throw RepoError.adapterWithoutBase(file: LoRAConfig.weightsFileName)
        }
        let tensors: [(name: String, dtype: DType, shape: Shape)]
        if let st = weights.safetensors {
            // In data order, as the stat cache gives them: the record must not depend on a warm cache.
            tensors = st.tensors.inDataOrder().map { ($0.name, $0.dtype, $0.shape) }
        } else if let cached = weights.cached {
            tensors = cached.tensors.inDataOrder().map { ($0.name, $0.dtype, $0.shape) }
        } else {
            throw RepoError.invalidArgument("\(LoRAConfig.weightsFileName): not a safetensors file")
        }
        let adapter = try resolveAdapter(config: config, tensors: tensors, baseTree: try tree(of: base), base: base)
        return (AdapterRecord(base: base, rank: config.rank, alpha: config.alpha, useRSLoRA: config.useRSLoRA,
                              targets: adapter.targetModules, moduleCount: adapter.modules.count), nil)
    }

    // MARK: - Folding

    /// The base model's files with each adapted weight replaced by θ + ΔW (and `modules_to_save`
    /// tensors replaced whole). `delta` gives ΔW of a module in B·A orientation (rows × columns).
    func foldedOutputs(baseTree: Tree, modules: [LoRAModule], replacements: [String: ObjectID],
                       delta: @escaping (LoRAModule) throws -> [Float]) throws -> [OutputFile] {
        let byBase = Dictionary(modules.map { ($0.baseTensor, $0) }, uniquingKeysWith: { a, _ in a })
        var outputs: [OutputFile] = []
        for file in baseTree.files {
            guard file.kind == .safetensors, file.tensors.contains(where: { byBase[$0.name] != nil || replacements[$0.name] != nil }) else {
                outputs.append(.stored(file))
                continue
            }
            let header = try objects.read(file.objectID)
            var tensors: [GeneratedTensor] = []
            for t in file.tensors.inDataOrder() {
                let source: GeneratedTensor.Source
                if let module = byBase[t.name] {
                    guard t.dtype.isFloatingPoint else { throw RepoError.invalidArgument("cannot fold into '\(t.name)': it is \(t.dtype.rawValue)") }
                    source = .computed { [objects] in
                        var values = try self.objects.floats(t.objectID)
                        let d = try delta(module)
                        if module.transposed {
                            let rows = module.rows, cols = module.columns
                            for i in 0..<rows { for j in 0..<cols { values[j * rows + i] += d[i * cols + j] } }
                        } else {
                            for i in values.indices { values[i] += d[i] }
                        }
                        objects.releasePages(of: t.objectID)
                        return try Self.bytes(values, as: t.dtype, name: t.name)
                    }
                } else if let replacement = replacements[t.name] {
                    let h = try objects.header(of: replacement)
                    guard h.dtype == t.dtype, h.shape == t.shape else {
                        throw RepoError.invalidArgument("cannot fold: the adapter's replacement for '\(t.name)' is \(h.dtype.rawValue) \(h.shape.shapeDescription), the base's \(t.dtype.rawValue) \(t.shape.shapeDescription)")
                    }
                    source = .stored(replacement)
                } else {
                    source = .stored(t.objectID)
                }
                tensors.append(GeneratedTensor(name: t.name, dtype: t.dtype, shape: t.shape, dataOffsets: t.dataOffsets, source: source))
            }
            outputs.append(.safetensors(path: file.path, header: header, tensors: tensors))
        }
        return outputs
    }

    /// Float32 values in a floating-point dtype's bytes (round to nearest even); refuses values the
    /// dtype would write as ±inf (a fold or a rebuilt expert past F16's range, say).
    static func bytes(_ values: [Float], as dtype: DType, name: String) throws -> [UInt8] {
        if values.withUnsafeBufferPointer({ FloatConversion.narrowingOverflows(dtype, $0) }) {
            throw RepoError.invalidArgument("tensor '\(name)': its values lie beyond \(dtype.rawValue)'s range and would be written as \(FloatConversion.overflowResult(dtype)); nothing was written")
        }
        var out = [UInt8](repeating: 0, count: values.count * dtype.byteSize)
        values.withUnsafeBufferPointer { v in
            out.withUnsafeMutableBytes { FloatConversion.fromFloat(dtype, v, into: $0) }
        }
        return out
    }

    /// Writes an adapter commit (or a reversible merge's view) as a dense model: its base with θ + ΔW (`export --fold`).
    public func exportFolded(_ revision: String, to directory: String, clean: Bool = false) throws -> ExportResult {
        try withReadLock {
            let id = try resolve(revision)
            let (outputs, _) = try rebuiltOutputs(id, expert: nil, view: nil, fold: true)
            let result = try exportOutputs(outputs, to: directory, clean: clean)
            return ExportResult(commit: id, directory: result.directory, fileCount: result.fileCount, byteCount: result.byteCount)
        }
    }

    // MARK: - Diff

    /// Compares two adapter commits module by module, from their factors (no ΔW is formed).
    public func adapterDiff(old: String, new: String) throws -> AdapterDiffReport {
        try withReadLock { try adapterDiffLocked(old: old, new: new) }
    }

    private func adapterDiffLocked(old: String, new: String) throws -> AdapterDiffReport {
        let a = try loadAdapter(try resolve(old))
        let b = try loadAdapter(try resolve(new))
        var rows: [AdapterDiffReport.Row] = []
        let modulesB = Dictionary(b.adapter.modules.map { ($0.baseTensor, $0) }, uniquingKeysWith: { x, _ in x })
        var seen = Set<String>()
        for m in a.adapter.modules + b.adapter.modules where seen.insert(m.baseTensor).inserted {
            let ma = a.adapter.modules.first { $0.baseTensor == m.baseTensor }
            let mb = modulesB[m.baseTensor]
            // Both in the base weight's orientation: a module stored transposed (fan_in_fan_out,
            // an embedding) changes the base by (B·A)ᵀ, so one side's flag must not skew the other.
            let fa = try ma.map { m in try adapterFactors(a, m).orientedAsBase(m) }
            let fb = try mb.map { m in try adapterFactors(b, m).orientedAsBase(m) }
            let na = fa.map { LowRank.squaredNorm($0).squareRoot() } ?? 0
            let nb = fb.map { LowRank.squaredNorm($0).squareRoot() } ?? 0
            var cosine: Double?
            var difference: Double?
            // Adapters of bases that differ in this tensor's shape (a resized embedding) do not compare.
            if let fa, let fb, fa.rows == fb.rows, fa.columns == fb.columns {
                let dot = LowRank.innerProduct(fa, fb)
                if na > 0, nb > 0 { cosine = dot / (na * nb) }
                difference = max(0, na * na + nb * nb - 2 * dot).squareRoot()
            }
            rows.append(AdapterDiffReport.Row(
                module: m.module, baseTensor: m.baseTensor, oldRank: ma?.rank, newRank: mb?.rank, oldNorm: na, newNorm: nb,
                cosine: cosine, differenceNorm: difference,
                oldEffectiveRank: try fa.map { LowRank.effectiveRank(try LowRank.singularValues($0)) },
                newEffectiveRank: try fb.map { LowRank.effectiveRank(try LowRank.singularValues($0)) }))
        }
        objects.releaseMappings()
        return AdapterDiffReport(oldName: old, newName: new, oldCommit: a.commit, newCommit: b.commit, oldBase: a.base, newBase: b.base, rows: rows)
    }

    /// Whether a revision holds a LoRA adapter.
    public func isAdapter(_ revision: String) throws -> Bool {
        try commit(try resolve(revision)).record(AdapterRecord.self) != nil
    }
}

/// `diff` between two adapters: per module, from the factors.
public struct AdapterDiffReport: Sendable {
    public struct Row: Sendable {
        public var module: String
        public var baseTensor: String
        public var oldRank: Int?
        public var newRank: Int?
        /// ‖ΔW‖_F on each side (0 when the module is not adapted there).
        public var oldNorm: Double
        public var newNorm: Double
        /// cos(ΔW_old, ΔW_new) = ⟨ΔW_old, ΔW_new⟩ / (‖ΔW_old‖‖ΔW_new‖), nil when a side is missing or zero.
        public var cosine: Double?
        /// ‖ΔW_new − ΔW_old‖_F.
        public var differenceNorm: Double?
        /// exp(entropy of the normalised singular values) of each ΔW.
        public var oldEffectiveRank: Double?
        public var newEffectiveRank: Double?
    }

    public var oldName: String
    public var newName: String
    public var oldCommit: ObjectID
    public var newCommit: ObjectID
    public var oldBase: ObjectID
    public var newBase: ObjectID
    public var rows: [Row]
}

private extension LowRankFactors {
    /// The factors of the change to the base weight, in its layout: (B·A)ᵀ for a transposed module.
    func orientedAsBase(_ module: LoRAModule) -> LowRankFactors { module.transposed ? transposed() : self }
}
