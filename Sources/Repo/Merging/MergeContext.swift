import Delta
import Foundation
import Merge

/// One merge's inputs, loaded: the base and expert trees, the plan and the options.
struct MergeContext {
    let repository: Repository
    let baseID: ObjectID
    let experts: [(name: String, commit: ObjectID)]
    let plan: MergePlan
    let options: MergeOptions
    let baseTree: Tree
    let expertTrees: [Tree]
    /// The statistics files the result keeps (revert and cherry-pick only).
    let statisticsFiles: [TreeFile]
    let baseTensors: [String: InputTensor]
    let expertTensors: [[String: InputTensor]]
    /// Receives each merged tensor's bytes for the checkout (nil: nothing is prepared).
    var prepared: PreparedCheckout?
    /// Where the per-tensor phases add their time (`MREPO_DEBUG_TIMING`).
    var timer = PhaseTimer.disabled
    /// Each tensor's class, decided once.
    private(set) var decisions: [String: Decision] = [:]
    /// Resolutions of a recorded merge to replay, by tensor.
    let resolutions: [String: RecordedResolution]
    /// Working memory reused by every tensor merge.
    let buffers = MergeBuffers()

    /// The tree whose files and tensor order the merge result follows: the first expert's.
    /// Whose files the merged tensors are laid out in: the first expert's (HEAD's, in a merge of
    /// branches), unless it kept the merge base's layout (which tensor is in which file) and the
    /// other experts that changed it agree on theirs: then theirs, so a re-sharding or a renamed
    /// file on one side is not undone (three-way, as git merges a rename).
    let layoutTemplate: Tree

    init(repository: Repository, base: ObjectID, experts: [(name: String, commit: ObjectID)], plan: MergePlan, options: MergeOptions) throws {
        self.repository = repository
        baseID = base
        self.experts = experts
        self.plan = plan
        self.options = options
        // Statistics (mrepo_stats/) describe one expert: they are read by methods, never merged.
        let fullBase = try repository.tree(of: base)
        let fullExperts = try experts.map { try repository.tree(of: $0.commit) }
        baseTree = fullBase.withoutStatistics
        expertTrees = fullExperts.map(\.withoutStatistics)
        // A change applied by revert or cherry-pick keeps HEAD's statistics, with the change's own
        // edits to them (three-way by file); a merge's tree has none.
        statisticsFiles = options.addsMergeFiles ? [] : MergeContext.statisticsOutcome(base: fullBase, sides: fullExperts)
        layoutTemplate = MergeContext.layoutTemplate(base: baseTree, experts: expertTrees)
        func index(_ t: Tree) -> [String: InputTensor] {
            var out: [String: InputTensor] = [:]
            for (path, tensor) in t.allTensors where out[tensor.name] == nil { out[tensor.name] = InputTensor(path: path, tensor: tensor) }
            return out
        }
        baseTensors = index(baseTree)
        expertTensors = expertTrees.map(index)
        resolutions = Dictionary(options.resolutions.map { ($0.tensor, $0) }, uniquingKeysWith: { _, last in last })
        let names = allNames
        // A resolution of a tensor no input holds was ignored: a recipe replayed on other models.
        let held = Set(names)
        if let stray = resolutions.keys.sorted().first(where: { !held.contains($0) }) {
            throw RepoError.invalidArgument("the recipe resolves '\(stray)', which no input of this merge holds")
        }
        for name in names { decisions[name] = decide(name) }
    }

    /// Every tensor name of every input, in the first expert's file order, then the others'.
    var allNames: [String] {
        var seen = Set<String>()
        var out: [String] = []
        for t in expertTrees + [baseTree] {
            for (_, tensor) in t.allTensors where seen.insert(tensor.name).inserted { out.append(tensor.name) }
        }
        return out
    }

    /// The method's working memory on the largest tensor it would merge
    /// (``MergeMethod/workingMemory(elements:experts:)``), plus fixed buffers; and its formula.
    var estimatedPeak: (bytes: Int, formula: String) {
        let largest = allNames.compactMap { name -> Int? in
            guard case .merge = decision(for: name) else { return nil }
            return expertTensors.compactMap { $0[name]?.tensor.shape.elementCount }.max()
        }.max() ?? 0
        let method = try? MethodRegistry.method(named: plan.recipe.method)
        let (bytes, formula) = method?.workingMemory(elements: largest, experts: experts.count)
            ?? MethodRegistry.elementwiseWorkingMemory(elements: largest, experts: experts.count)
        return (bytes + 160 << 20, formula)
    }

    // MARK: - Classification

    enum Decision {
        case take(ObjectID, MergeClass, source: String?)
        case delete(source: String)
        /// Merged by the method; `changedBy` names the expert when only one changed it.
        case merge(changedBy: String?)
        case conflict(String)
        case nonFloat(ObjectID, remark: String?)
        /// Vocabulary rows differ; merge the common rows and settle the rest by policy.
        case vocabulary(VocabularyPolicy)
    }

    func decision(for name: String) -> Decision { decisions[name] ?? .conflict("unknown tensor") }

    /// The tensors the result takes from an input as they are (name → object), for the prepared
    /// checkout to decode before the merge runs; empty when the merge will stop at a conflict.
    /// Tensors a recorded resolution settles, or that the output dtype re-writes (``castIfNeeded``),
    /// are left out.
    var unchangedTakes: [String: ObjectID] {
        var out: [String: ObjectID] = [:]
        for name in allNames where resolutions[name] == nil {
            switch decision(for: name) {
            case let .take(id, _, _), let .nonFloat(id, _):
                // As castIfNeeded decides: only a floating-point tensor of another dtype is re-written.
                let dtype = (baseTensors[name] ?? expertTensors.lazy.compactMap { $0[name] }.first)?.tensor.dtype
                if let target = options.outputDType, let dtype, dtype.isFloatingPoint, dtype != target { continue }
                out[name] = id
            case .conflict:
                return [:]
            default:
                break
            }
        }
        return out
    }

    private func decide(_ name: String) -> Decision {
        let base = baseTensors[name]?.tensor
        let sides = expertTensors.map { $0[name]?.tensor }
        guard let base else {
            // Added: on one side, or identically on several.
            let present = sides.enumerated().compactMap { i, t in t.map { (i, $0) } }
            let distinct = Set(present.map(\.1.objectID))
            if distinct.count == 1, let first = present.first {
                return .take(first.1.objectID, .added, source: experts[first.0].name)
            }
            return .conflict("added differently by \(present.map { experts[$0.0].name }.joined(separator: ", "))")
        }
        var changed: [(Int, TreeTensor)] = []
        var deleted: [Int] = []
        var retyped: [(Int, TreeTensor)] = []
        for (i, side) in sides.enumerated() {
            guard let t = side else { deleted.append(i); continue }
            if t.objectID == base.objectID { continue }
            if t.dtype != base.dtype || t.shape != base.shape { retyped.append((i, t)) } else { changed.append((i, t)) }
        }
        if changed.isEmpty && deleted.isEmpty && retyped.isEmpty { return .take(base.objectID, .unchanged, source: nil) }
        if !deleted.isEmpty {
            if changed.isEmpty && retyped.isEmpty { return .delete(source: deleted.map { experts[$0].name }.joined(separator: ", ")) }
            return .conflict("deleted by \(deleted.map { experts[$0].name }.joined(separator: ", ")), changed by \((changed + retyped).map { experts[$0.0].name }.joined(separator: ", "))")
        }
        if !retyped.isEmpty {
            let vocabShape = retyped.allSatisfy { $0.1.dtype == base.dtype && $0.1.shape.count == 2 && base.shape.count == 2 && $0.1.shape[1] == base.shape[1] }
            let context = TensorContext(name: name, shape: base.shape, layerCount: 0)
            if vocabShape, context.isVocabularyMatrix {
                if let policy = options.vocabulary { return .vocabulary(policy) }
                let rows = ([base] + sides.compactMap { $0 }).map { "\($0.shape[0])" }
                return .conflict("vocabulary sizes differ (rows \(Set(rows).sorted().joined(separator: ", "))); choose --vocab base|union|common")
            }
            let who = retyped.map { "\(experts[$0.0].name) (\($0.1.dtype.rawValue) \($0.1.shape.shapeDescription))" }.joined(separator: ", ")
            return .conflict("dtype or shape changed: base \(base.dtype.rawValue) \(base.shape.shapeDescription), \(who)")
        }
        let distinct = Set(changed.map(\.1.objectID))
        let who = changed.map { experts[$0.0].name }.joined(separator: ", ")
        // Integers are never averaged: a one-sided change is taken, disagreement keeps the base.
        if distinct.count == 1, options.oneSided == .take || !base.dtype.isFloatingPoint {
            return .take(changed[0].1.objectID, .oneSided, source: who)
        }
        if !base.dtype.isFloatingPoint {
            return .nonFloat(base.objectID, remark: "inputs disagree (\(who) changed it); the merge base's value is kept")
        }
        return .merge(changedBy: distinct.count == 1 ? who : nil)
    }

    /// The report of a dry run: classes, no numbers.
    func classify(layerCount: Int) throws -> ConflictReport {
        var tensors: [TensorReport] = []
        for name in allNames {
            let elements = (baseTensors[name] ?? expertTensors.lazy.compactMap { $0[name] }.first)?.tensor.shape.elementCount ?? 0
            var r: TensorReport
            switch decision(for: name) {
            case let .take(_, cls, source): r = TensorReport(name: name, mergeClass: cls, elementCount: elements, source: source)
            case let .delete(source): r = TensorReport(name: name, mergeClass: .deleted, elementCount: elements, source: source)
            case let .merge(changedBy): r = TensorReport(name: name, mergeClass: .merged, elementCount: elements, source: changedBy)
            case .vocabulary: r = TensorReport(name: name, mergeClass: .merged, elementCount: elements)
            case let .conflict(reason):
                r = TensorReport(name: name, mergeClass: .conflict, elementCount: elements)
                r.conflict = reason
            case let .nonFloat(_, remark):
                r = TensorReport(name: name, mergeClass: .nonFloat, elementCount: elements)
                if let remark { r.remarks.append(remark) }
            }
            tensors.append(r)
        }
        return ConflictReport(method: plan.recipe.method, experts: experts.map(\.name), baseName: baseID.hex, tensors: tensors,
                              files: fileOutcomes().map { ($0.path, $0.outcome) })
    }

    // MARK: - Running

    struct RunResult {
        var decided: [String: ObjectID] = [:]
        var unresolved: [String: String] = [:]
        var report: ConflictReport
        var newObjects: [ObjectInfo] = []
        /// Recorded resolutions that were applied.
        var replayed: [RecordedResolution] = []

        mutating func add(_ info: ObjectInfo) {
            if !newObjects.contains(where: { $0.id == info.id }) { newObjects.append(info) }
        }
    }

    func run(layerCount: Int, batch: ObjectStore.Batch, progress: (any ProgressSink)?) throws -> RunResult {
        var result = RunResult(report: try classify(layerCount: layerCount))
        let toMerge = result.report.tensors.filter { $0.mergeClass == .merged }
        let counter = ProgressCounter(progress, title: "merge", total: toMerge.count, unit: .items)
        // Tensors of a method that needs no whole input are merged first, chunk by chunk, several at once.
        let ts = timer.now()
        let streamed = try runStreaming(try streamingJobs(result.report, layerCount: layerCount), batch: batch, counter: counter)
        timer.add("streamed", since: ts)
        for (index, entry) in result.report.tensors.enumerated() {
            let name = entry.name
            if let recorded = resolutions[name] {
                if let chosen = try replay(recorded, name: name, layerCount: layerCount, batch: batch) {
                    result.decided[name] = chosen.id
                    if let new = chosen.new { result.add(new) }
                }
                result.report.tensors[index].resolution = recorded.summary
                result.replayed.append(recorded)
                continue
            }
            switch decision(for: name) {
            case let .take(id, _, _), let .nonFloat(id, _):
                if let cast = try castIfNeeded(id, name: name, batch: batch) {
                    result.decided[name] = cast.id
                    result.add(cast.info)
                    result.report.tensors[index].remarks.append("written as \(cast.dtype.rawValue) (the output dtype)")
                } else {
                    result.decided[name] = id
                }
            case .delete:
                break
            case let .conflict(reason):
                result.unresolved[name] = reason
            case .merge, .vocabulary:
                if let (info, metrics) = streamed[name] {
                    var r = result.report.tensors[index]
                    r.metrics = metrics
                    if let info {
                        result.decided[name] = info.id
                        result.add(info)
                    } else if let violation = options.thresholds.violation(metrics) {
                        r.conflict = violation
                        result.unresolved[name] = violation
                    }
                    result.report.tensors[index] = r
                    continue
                }
                let context = TensorContext(name: name, shape: (baseTensors[name] ?? expertTensors.compactMap { $0[name] }.first!).tensor.shape,
                                            layerCount: layerCount)
                let (info, metrics, remarks) = try mergeTensor(name, context: context, batch: batch, thresholds: options.thresholds)
                var r = result.report.tensors[index]
                r.metrics = metrics
                r.remarks += remarks
                if let info {
                    result.decided[name] = info.id
                    result.add(info)
                } else if let metrics, let violation = options.thresholds.violation(metrics) {
                    r.conflict = violation
                    result.unresolved[name] = violation
                }
                result.report.tensors[index] = r
                counter.add(1)
            }
        }
        counter.finish()
        return result
    }

    /// Decodes a tensor object into Float32 values.
    ///
    /// - Parameter reference: a tensor whose raw bytes the caller holds; an object coded against it
    ///   copies its chunks instead of decoding them again (the merge base, for each expert).
    func floats(_ id: ObjectID, reference: (id: ObjectID, bytes: UnsafeRawBufferPointer)? = nil) throws -> [Float] {
        try repository.objects.floats(id, knownReference: reference)
    }

    /// Decodes the merge base's tensor, keeping its raw bytes (the reference of the experts' deltas).
    func baseTensor(_ id: ObjectID) throws -> (floats: [Float], raw: [UInt8]?) {
        let header = try repository.objects.header(of: id)
        if header.dtype == .f32 {
            // Float32 values are their own raw bytes.
            return (try floats(id), nil)
        }
        var raw = [UInt8]()
        raw.reserveCapacity(header.byteCount)
        try repository.objects.decode(id) { raw.append(contentsOf: $0) }
        var out = [Float](repeating: 0, count: header.byteCount / header.dtype.byteSize)
        raw.withUnsafeBytes { r in out.withUnsafeMutableBufferPointer { FloatConversion.toFloat(header.dtype, r, into: $0) } }
        return (out, raw)
    }

    /// ``mergeTensor(_:context:batch:thresholds:plan:)`` for a vocabulary merge, whose inputs differ
    /// in rows: Float32 arrays brought to common rows, merged, the extra rows appended.
    func mergeTensorArrays(_ name: String, context: TensorContext, batch: ObjectStore.Batch, thresholds: ConflictThresholds,
                           plan override: MergePlan? = nil) throws -> (ObjectInfo?, ConflictMetrics?, [String]) {
        let plan = override ?? self.plan
        guard let baseInput = baseTensors[name] else { throw RepoError.failed("tensor '\(name)' has no merge base") }
        var remarks: [String] = []
        let t0 = timer.now()
        let baseID = baseInput.tensor.objectID
        let (baseValues, baseRaw) = try baseTensor(baseID)
        var expertValues: [[Float]] = try expertTensors.map { tensors in
            let id = (tensors[name] ?? baseInput).tensor.objectID
            if id == baseID { return baseValues }
            if let baseRaw {
                return try baseRaw.withUnsafeBytes { try floats(id, reference: (baseID, $0)) }
            }
            return try baseValues.withUnsafeBytes { try floats(id, reference: (baseID, $0)) }
        }
        timer.add("decode", since: t0)
        var shape = baseInput.tensor.shape
        var extraRows: (rows: Int, values: [Float])?
        if case let .vocabulary(policy) = decision(for: name) {
            (expertValues, shape, extraRows, remarks) = rectifyVocabulary(name, base: baseValues, baseShape: baseInput.tensor.shape,
                                                                         experts: expertValues, policy: policy)
        }
        let columns = shape.count == 2 ? shape[1] : 1
        let commonRows = shape.count == 2 ? shape[0] : 1
        let baseCommon = shape == baseInput.tensor.shape ? baseValues : Array(baseValues.prefix(commonRows * columns))
        var mergedContext = context
        mergedContext.shape = shape
        let t1 = timer.now()
        var (values, metrics) = try plan.merge(mergedContext, base: baseCommon, experts: expertValues)
        timer.add("merge+metrics", since: t1)
        let t2 = timer.now()
        defer { timer.add("encode", since: t2) }
        if override == nil, thresholds.violation(metrics) != nil { return (nil, metrics, remarks) }
        if let extra = extraRows { values += extra.values; shape = [commonRows + extra.rows, columns] }
        let dtype = options.outputDType ?? baseInput.tensor.dtype
        let header = try repository.objects.header(of: baseID)
        let info = try values.withUnsafeMutableBufferPointer { v in
            try withOutputBytes(v, as: dtype, name: name) { output in
                if override == nil, extraRows == nil { prepared?.write(name, output) }
                return try withBaseBytes(baseValues: baseValues, baseRaw: baseRaw) { known in
                    try writeMerged(output, dtype: dtype, shape: shape, base: baseID, baseHeader: header, baseBytes: known, batch: batch)
                }
            }
        }
        return (info, metrics, remarks)
    }

    /// Where a tensor's output bytes are: the front of its Float32 buffer (converted in place for
    /// narrower dtypes), or a buffer of their own for wider ones (F64).
    struct OutputBytes {
        var wide: [UInt8]?
        var byteCount: Int

        func withBytes<T>(of values: [Float], _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
            if let wide { return try wide.withUnsafeBytes(body) }
            return try values.withUnsafeBytes { try body(UnsafeRawBufferPointer(rebasing: $0[0..<byteCount])) }
        }
    }

    /// Converts Float32 values to `dtype`: in place into the front of the same buffer for narrower
    /// dtypes, into a buffer of their own for wider ones.
    static func outputBytes(_ values: inout [Float], as dtype: DType, name: String) throws -> OutputBytes {
        let byteCount = values.count * dtype.byteSize
        if values.withUnsafeBufferPointer({ FloatConversion.narrowingOverflows(dtype, $0) }) {
            throw MergeContext.narrowingOverflow(name, dtype)
        }
        if dtype.byteSize > 4 {
            var out = [UInt8](repeating: 0, count: byteCount)
            values.withUnsafeBufferPointer { v in out.withUnsafeMutableBytes { FloatConversion.fromFloat(dtype, v, into: $0) } }
            return OutputBytes(wide: out, byteCount: byteCount)
        }
        if dtype != .f32 {
            values.withUnsafeMutableBufferPointer { v in
                FloatConversion.fromFloatInPlace(dtype, count: v.count, UnsafeMutableRawBufferPointer(v))
            }
        }
        return OutputBytes(wide: nil, byteCount: byteCount)
    }

    /// A floating-point tensor taken from an input, re-written in the output dtype when one is set
    /// and differs (mergekit casts every tensor it writes); nil when the tensor stays as it is.
    func castIfNeeded(_ id: ObjectID, name: String, batch: ObjectStore.Batch) throws -> (id: ObjectID, dtype: DType, info: ObjectInfo)? {
        guard let target = options.outputDType else { return nil }
        let header = try repository.objects.header(of: id)
        guard header.dtype.isFloatingPoint, header.dtype != target else { return nil }
        var values = try repository.objects.floats(id, knownReference: nil)
        let output = try MergeContext.outputBytes(&values, as: target, name: name)
        let written = try output.withBytes(of: values) { bytes in
            try repository.objects.write(kind: .tensor, dtype: target, shape: header.shape, source: bytes, reference: nil,
                                         options: repository.codecOptions, batch: batch, referenceBytes: nil)
        }
        var info = written.info
        if !written.isNew, let known = try repository.history.objectInfo(info.id) { info = known }
        return (info.id, target, info)
    }

    /// Applies a recorded resolution to one tensor; nil when it leaves the tensor out (the chosen
    /// side deleted it).
    func replay(_ r: RecordedResolution, name: String, layerCount: Int, batch: ObjectStore.Batch) throws -> (id: ObjectID, new: ObjectInfo?)? {
        func known(_ id: ObjectID?) throws -> (id: ObjectID, new: ObjectInfo?)? {
            guard let id else { return nil }
            if let cast = try castIfNeeded(id, name: name, batch: batch) { return (cast.id, cast.info) }
            return (id, nil)
        }
        switch r.how {
        case .base:
            return try known(baseTensors[name]?.tensor.objectID)
        case .expert:
            guard let hex = r.expert, let i = experts.firstIndex(where: { $0.commit.hex.hasPrefix(hex.lowercased()) }) else {
                throw RepoError.invalidArgument("the recipe resolves '\(name)' with the tensor of expert \(r.expert ?? "?"), which is not an expert of this merge")
            }
            return try known(expertTensors[i][name]?.tensor.objectID)
        case .method:
            var recipe = MergeRecipe(method: r.method ?? "", parameters: r.parameters ?? [:], experts: experts.map(\.name), seed: r.seed ?? 0)
            recipe.expertParameters = Array(repeating: [:], count: experts.count)
            let plan = try MergePlan(recipe, statistics: self.plan.statistics)
            guard let base = baseTensors[name], expertTensors.allSatisfy({ $0[name]?.tensor.shape == base.tensor.shape }) else {
                throw RepoError.invalidArgument("the recipe merges '\(name)' with \(recipe.method), but its shapes differ between the inputs")
            }
            let (info, _, _) = try mergeTensor(name, context: TensorContext(name: name, shape: base.tensor.shape, layerCount: layerCount),
                                               batch: batch, thresholds: ConflictThresholds(), plan: plan)
            return info.map { ($0.id, $0) }
        }
    }

    /// The merge base tensor's raw bytes: kept aside for narrow dtypes, the Float32 values themselves otherwise.
    func withBaseBytes<T>(baseValues: [Float], baseRaw: [UInt8]?, _ body: (UnsafeRawBufferPointer) throws -> T) rethrows -> T {
        if let baseRaw { return try baseRaw.withUnsafeBytes(body) }
        return try baseValues.withUnsafeBytes(body)
    }

    /// Brings vocabulary matrices to common rows (``Vocabulary/rectify``); returns the rows to
    /// append after merging.
    func rectifyVocabulary(_ name: String, base: [Float], baseShape: Shape, experts: [[Float]], policy: VocabularyPolicy)
        -> ([[Float]], Shape, (rows: Int, values: [Float])?, [String]) {
        let rows = expertTensors.map { $0[name]?.tensor.shape[0] ?? baseShape[0] }
        let r = Vocabulary.rectify(base: base, baseRows: baseShape[0], columns: baseShape[1], experts: experts, expertRows: rows,
                                   expertNames: self.experts.map(\.name), policy: policy)
        return (r.experts, [r.commonRows, baseShape[1]], r.extra, r.remarks)
    }

    // MARK: - Files

    static func layoutTemplate(base: Tree, experts: [Tree]) -> Tree {
        guard let first = experts.first else { return base }
        func layout(_ t: Tree) -> [String: String] {
            Dictionary(t.files.filter { $0.kind == .safetensors }.flatMap { f in f.tensors.map { ($0.name, f.path) } },
                       uniquingKeysWith: { a, _ in a })
        }
        // Compared over the base's tensors only: a side that only adds a file (an optimizer's
        // state) has not changed where the model's tensors are.
        let original = layout(base)
        func moved(_ t: Tree) -> [String: String?] {
            let l = layout(t)
            return Dictionary(uniqueKeysWithValues: original.keys.map { ($0, l[$0]) })
        }
        let kept = original.mapValues { Optional($0) }
        guard moved(first) == kept else { return first }
        let changed = experts.dropFirst().filter { moved($0) != kept }
        guard let other = changed.first, changed.allSatisfy({ moved($0) == moved(other) }) else { return first }
        return other
    }

    /// The statistics files (mrepo_stats/) three-way by file: a side's change taken, HEAD's (the
    /// first side's) version where the sides changed one differently.
    static func statisticsOutcome(base: Tree, sides: [Tree]) -> [TreeFile] {
        var paths = Set(base.files.map(\.path).filter(StatisticsLayout.isStatistics))
        for t in sides { paths.formUnion(t.files.map(\.path).filter(StatisticsLayout.isStatistics)) }
        var out: [TreeFile] = []
        for path in paths.sorted() {
            let original = base.file(at: path)
            let versions = sides.map { $0.file(at: path) }
            let changed = versions.filter { $0?.identity != original?.identity }
            let kept: TreeFile?
            if changed.isEmpty {
                kept = original
            } else if Set(changed.map { $0?.identity ?? "deleted" }).count == 1 {
                kept = changed[0]
            } else {
                kept = versions.first ?? nil
            }
            if let kept { out.append(kept) }
        }
        return out
    }

    /// Non-tensor files: three-way by content, settled by the file rule on conflict.
    func fileOutcomes() -> [(path: String, file: TreeFile?, outcome: String)] {
        var paths = Set(baseTree.files.filter { $0.kind == .blob }.map(\.path))
        for t in expertTrees { paths.formUnion(t.files.filter { $0.kind == .blob }.map(\.path)) }
        var out: [(String, TreeFile?, String)] = []
        for path in paths.sorted() {
            if options.addsMergeFiles, path == "README.md" || path == "merge_recipe.yml" {
                out.append((path, nil, "replaced by the merge's \(path == "README.md" ? "model card" : "recipe")"))
                continue
            }
            let base = baseTree.file(at: path)
            let sides = expertTrees.map { $0.file(at: path) }
            let changed = sides.enumerated().filter { $0.element?.identity != base?.identity }
            let distinct = Set(changed.map { $0.element?.identity ?? "deleted" })
            if changed.isEmpty {
                if let base { out.append((path, base, "unchanged")) }
            } else if distinct.count == 1 {
                let (i, f) = changed[0]
                out.append((path, f, f == nil ? "deleted by \(experts[i].name)" : "taken from \(experts[i].name)"))
            } else {
                let pick: TreeFile?
                let who: String
                switch options.fileRule {
                case .ours: pick = sides.first ?? nil; who = experts.first?.name ?? "ours"
                case .theirs: pick = sides.last ?? nil; who = experts.last?.name ?? "theirs"
                case .base: pick = base; who = "the merge base"
                }
                out.append((path, pick, "\(ConflictReport.severalSides); kept \(who)'s version (--file-conflict \(options.fileRule.rawValue))"))
            }
        }
        return out
    }
}
