import Delta
import Foundation
import Merge

/// What a reversible merge commit records (`extra.rmm`, docs/format.md §3.7; its basis file: §4.7).
public struct ReversibleMergeRecord: Sendable {
    public var kind: String
    public var variant: String
    public var basis: Int
    public var center: Bool
    /// The base model commit (the adapters' base, or the merge base of full fine-tunes).
    public var base: ObjectID
    public var experts: [(name: String, commit: ObjectID)]
    /// The measurements (a blob holding ``ReversibleMergeReport`` JSON).
    public var reportObject: ObjectID?
    /// Reduction rank of full fine-tunes.
    public var rank: Int?

    public static let fileName = "rmm.safetensors"

    var json: JSONMember {
        JSONMember("rmm", .object([
            JSONMember("kind", .string(kind)),
            JSONMember("variant", .string(variant)),
            JSONMember("basis", .int(basis)),
            JSONMember("center", .bool(center)),
            JSONMember("base", .string(base.hex)),
            JSONMember("experts", .array(experts.map { .object([JSONMember("name", .string($0.name)), JSONMember("commit", .string($0.commit.hex))]) })),
            JSONMember("rank", rank.map { .int($0) } ?? .null),
            JSONMember("report_object", reportObject.map { .string($0.hex) } ?? .null),
        ]))
    }

    init(kind: String, variant: String, basis: Int, center: Bool, base: ObjectID, experts: [(name: String, commit: ObjectID)],
         reportObject: ObjectID?, rank: Int?) {
        self.kind = kind
        self.variant = variant
        self.basis = basis
        self.center = center
        self.base = base
        self.experts = experts
        self.reportObject = reportObject
        self.rank = rank
    }

    public init?(commit: Commit) {
        guard let r = commit.extra["rmm"], let base = r["base"]?.stringValue.flatMap(ObjectID.init(hex:)) else { return nil }
        kind = r["kind"]?.stringValue ?? "adapter"
        variant = r["variant"]?.stringValue ?? "position"
        basis = r["basis"]?.intValue ?? 0
        center = r["center"] != .bool(false)
        self.base = base
        experts = (r["experts"]?.arrayValue ?? []).compactMap { e in
            guard let name = e["name"]?.stringValue, let c = e["commit"]?.stringValue.flatMap(ObjectID.init(hex:)) else { return nil }
            return (name, c)
        }
        reportObject = r["report_object"]?.stringValue.flatMap(ObjectID.init(hex:))
        rank = r["rank"]?.intValue
    }
}

/// Settings of a reversible merge, read from the recipe.
struct ReversibleSettings {
    var basis: Int
    var variant: RMMVariant
    var center: Bool
    var rank: Int
    var viewRank: Int
    var viewLambda: Double
    var baselines: Bool

    init(_ recipe: MergeRecipe) throws {
        func number(_ name: String) -> Double? {
            if case let .number(x)? = recipe.parameters[name] { return x }
            return nil
        }
        guard let k = number("basis") else { throw MergeError.missingParameter(method: RMM.id, parameter: "basis") }
        basis = Int(k)
        if case let .text(v)? = recipe.parameters["variant"] {
            guard let parsed = RMMVariant(rawValue: v) else {
                throw MergeError.invalidParameter(method: RMM.id, parameter: "variant", problem: "must be one of \(RMMVariant.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            variant = parsed
        } else {
            variant = .position
        }
        center = recipe.parameters["center"]?.boolValue ?? true
        rank = Int(number("rank") ?? 16)
        viewRank = Int(number("view_rank") ?? 0)
        viewLambda = number("view_lambda") ?? 1
        baselines = recipe.parameters["baselines"]?.boolValue ?? true
    }
}

/// One module's experts as a reversible merge reads them.
private struct ReversibleInput {
    var module: String
    var baseTensor: String
    var rows: Int
    var columns: Int
    /// Per expert: factors (scale folded in), or nil for dense-only inputs.
    var factors: [LowRankFactors]?
    /// Per expert: the dense task vectors (full fine-tunes; the reference for errors).
    var dense: [[Float]]?
    var reductionErrors: [Double]?
}

extension Repository {
    /// Runs a reversible merge (``RMM``) of `experts` and records its commit.
    func mergeReversible(options: MergeOptions, recipe: MergeRecipe, head: Head, headID: ObjectID, mergeBase: ObjectID,
                         branches: [(name: String, commit: ObjectID)], experts: [(name: String, commit: ObjectID)]) throws -> MergeOutcome {
        let settings = try ReversibleSettings(recipe)
        let n = experts.count
        guard n >= 2 else {
            throw RepoError.invalidArgument("rmm: a reversible merge needs at least 2 experts, got \(n) (\(experts.map(\.name).joined(separator: ", ")))")
        }
        guard settings.basis >= 1, settings.basis < n else {
            throw RepoError.invalidArgument("rmm: --basis \(settings.basis) with \(n) experts: the basis must be between 1 and N − 1 = \(n - 1) (K = N − 1 rebuilds every expert exactly; a larger basis would store more than the experts)")
        }
        if options.noCommit { throw RepoError.invalidArgument("rmm: --no-commit is not supported for reversible merges; use --dry-run to plan") }
        let commits = try experts.map { try commit($0.commit) }
        let adapters = commits.map { AdapterRecord(commit: $0) }
        let kind: String
        let base: ObjectID
        if adapters.allSatisfy({ $0 != nil }) {
            kind = "adapter"
            let bases = Set(adapters.compactMap { $0?.base })
            guard bases.count == 1, let b = bases.first else {
                let list = zip(experts, adapters).map { "\($0.0.name) → \($0.1!.base.short)" }.joined(separator: ", ")
                throw RepoError.invalidArgument("rmm: the adapters have different base models (\(list)); a reversible merge needs one base")
            }
            base = b
        } else if adapters.allSatisfy({ $0 == nil }) {
            kind = "full"
            base = mergeBase
        } else {
            let which = zip(experts, adapters).map { "\($0.0.name): \($0.1 == nil ? "full model" : "adapter")" }.joined(separator: ", ")
            throw RepoError.invalidArgument("rmm: the experts mix LoRA adapters and full models (\(which))")
        }
        guard try history.commit(base) != nil else {
            throw RepoError.invalidArgument("rmm: the base model commit \(base.short) is not in the repository")
        }
        let plan = try MergePlan(recipe)
        let context = try MergeContext(repository: self, base: base, experts: experts, plan: plan, options: options)
        let layerCount = TensorContext.layerCount(of: context.allNames)

        // Inputs, module by module (loaded lazily so memory stays at one module).
        var remarks: [String] = []
        var modulePlan: [(module: String, baseTensor: String, elements: Int, load: () throws -> ReversibleInput)] = []
        var loadedAdapters: [LoadedAdapter] = []
        var viewSpec: (rank: Int, dtype: DType, config: LoRAConfig)?
        var passThrough: [String: ObjectID] = [:]   // full fine-tunes: tensors the view takes as they are
        if kind == "adapter" {
            loadedAdapters = try experts.map { try loadAdapter($0.commit) }
            let first = loadedAdapters[0]
            let targets = Set(first.adapter.modules.map(\.baseTensor))
            for (i, a) in loadedAdapters.enumerated().dropFirst() where Set(a.adapter.modules.map(\.baseTensor)) != targets {
                let mine = Set(a.adapter.modules.map(\.baseTensor))
                let extra = mine.subtracting(targets).sorted().prefix(3), missing = targets.subtracting(mine).sorted().prefix(3)
                throw RepoError.invalidArgument("rmm: the adapters adapt different modules: \(experts[i].name) \(extra.isEmpty ? "" : "adds \(extra.joined(separator: ", "))")\(extra.isEmpty || missing.isEmpty ? "" : " and ")\(missing.isEmpty ? "" : "lacks \(missing.joined(separator: ", "))") compared with \(experts[0].name); a reversible merge needs the same target modules")
            }
            let ranks = Set(loadedAdapters.flatMap { $0.adapter.modules.map(\.rank) })
            if ranks.count > 1, settings.variant != .dense {
                remarks.append("the adapters' ranks differ (\(ranks.sorted().map(String.init).joined(separator: ", "))): modules whose ranks differ use the dense variant (their basis is stored dense)")
            }
            let dtype = first.tensor(first.adapter.modules[0].aName)?.dtype ?? .f32
            let viewRank = settings.viewRank > 0 ? settings.viewRank : (ranks.max() ?? 8)
            viewSpec = (viewRank, LowRankCodec.supports(dtype) ? dtype : .f32, first.adapter.config)
            for module in first.adapter.modules {
                modulePlan.append((module.module, module.baseTensor, module.rows * module.columns, {
                    let mods = try loadedAdapters.map { a -> LoRAModule in
                        guard let m = a.adapter.modules.first(where: { $0.baseTensor == module.baseTensor }) else {
                            throw RepoError.failed("module \(module.module) missing")
                        }
                        return m
                    }
                    let factors = try zip(loadedAdapters, mods).map { try self.adapterFactors($0, $1) }
                    return ReversibleInput(module: module.module, baseTensor: module.baseTensor, rows: module.rows, columns: module.columns,
                                           factors: factors, dense: nil, reductionErrors: nil)
                }))
            }
        } else {
            for name in context.allNames {
                guard let b = context.baseTensors[name]?.tensor else {
                    throw RepoError.invalidArgument("rmm: tensor '\(name)' is not in the base model; a reversible merge needs every expert to keep the base's tensors")
                }
                var changed = false
                for (i, t) in context.expertTensors.enumerated() {
                    guard let e = t[name]?.tensor else {
                        throw RepoError.invalidArgument("rmm: \(experts[i].name) has no tensor '\(name)'; a reversible merge needs every expert to keep the base's tensors")
                    }
                    guard e.dtype == b.dtype, e.shape == b.shape else {
                        throw RepoError.invalidArgument("rmm: \(experts[i].name) changed '\(name)' from \(b.dtype.rawValue) \(b.shape.shapeDescription) to \(e.dtype.rawValue) \(e.shape.shapeDescription)")
                    }
                    if e.objectID != b.objectID { changed = true }
                }
                let lowRankable = b.shape.count == 2 && LowRankCodec.supports(b.dtype) && min(b.shape[0], b.shape[1]) > 1
                if !changed || !lowRankable {
                    passThrough[name] = b.objectID
                    continue
                }
                let rows = b.shape[0], columns = b.shape[1]
                modulePlan.append((name, name, rows * columns, {
                    let baseValues = try self.objects.floats(b.objectID)
                    var dense: [[Float]] = []
                    var factors: [LowRankFactors] = []
                    var reduction: [Double] = []
                    for t in context.expertTensors {
                        var d = try self.objects.floats(t[name]!.tensor.objectID)
                        for j in d.indices { d[j] -= baseValues[j] }
                        if settings.variant != .dense {
                            let tr = try LowRank.truncate(d, rows: rows, columns: columns, choice: .rank(settings.rank))
                            var f = tr.factors
                            if f.rank < settings.rank { f = LowRank.padded(f, to: min(settings.rank, min(rows, columns))) }
                            factors.append(f)
                            reduction.append(tr.relativeError)
                        }
                        dense.append(d)
                    }
                    return ReversibleInput(module: name, baseTensor: name, rows: rows, columns: columns,
                                           factors: settings.variant == .dense ? nil : factors, dense: dense,
                                           reductionErrors: settings.variant == .dense ? nil : reduction)
                }))
            }
            if modulePlan.isEmpty { throw RepoError.invalidArgument("rmm: no expert changes a matrix of the base model; nothing to merge") }
            remarks.append(settings.variant == .dense
                ? "full fine-tunes: the dense variant keeps each 2-D task vector's basis dense; other tensors are taken from the experts exactly"
                : "full fine-tunes: each 2-D task vector was reduced to rank \(settings.rank) by a truncated SVD before the merge (see reduction errors); other tensors are taken from the experts exactly")
        }

        if options.dryRun {
            let report = ConflictReport(method: RMM.id, experts: experts.map(\.name), baseName: base.short,
                                        tensors: modulePlan.map { TensorReport(name: $0.baseTensor, mergeClass: .merged, elementCount: $0.elements) }, files: [])
            // Dense task vectors of the largest module: N + 2 with the baselines or for full fine-tunes, 2 otherwise.
            let largest = modulePlan.map(\.elements).max() ?? 0
            let copies = settings.baselines || kind == "full" || settings.variant == .dense ? n + 2 : 2
            return MergeOutcome(status: .planned, report: report, base: base, baseCandidates: [base],
                                estimatedPeakBytes: copies * largest * 4 + 64 << 20,
                                recipeYAML: recordedRecipe(recipe, options: options, base: base, experts: experts.map { MergeInput(name: $0.name, commit: $0.commit) }, resolutions: []).yaml())
        }

        // Fit, measure and store, module by module.
        let batch = objects.makeBatch()
        var newObjects: [ObjectInfo] = []
        func note(_ r: ObjectStore.WriteResult) { if r.isNew, !newObjects.contains(where: { $0.id == r.info.id }) { newObjects.append(r.info) } }
        var rmmTensors: [(name: String, dtype: DType, shape: Shape, id: ObjectID)] = []
        var viewTensors: [(name: String, dtype: DType, shape: Shape, id: ObjectID)] = []
        var decided: [String: ObjectID] = passThrough
        var moduleReports: [ReversibleMergeReport.Module] = []
        var moduleMeta: [JSONValue] = []
        var storedBytes = 0, expertBytes = 0
        var viewKept = 0.0, viewTotal = 0.0
        var expertSq = [[Double]](repeating: [], count: n)   // per expert: (error², ‖ΔW‖²) pairs flattened
        var expertNorms = [[Double]](repeating: [], count: n)
        var energyKept = [Double](repeating: 0, count: n), energyTotal = [Double](repeating: 0, count: n)
        var baselineErrors: [String: [[Double]]] = [:]
        var baselineOrder: [String] = []
        let counter = ProgressCounter(progress, title: "rmm", total: modulePlan.count, unit: .items)
        var recorded: RecordedMerge?
        var finalReport: ReversibleMergeReport?
        var recordedYAML = ""
        do {
            for entry in modulePlan {
                var t0 = Date()
                func lap(_ phase: String) { Timing.add(phase, Date().timeIntervalSince(t0)); t0 = Date() }
                let input = try entry.load()
                lap("rmm load")
                let useDense = input.factors == nil || Set(input.factors!.map(\.rank)).count > 1 || settings.variant == .dense
                let variant: RMMVariant = useDense ? .dense : settings.variant
                let fitInputs: RMMExperts = useDense
                    ? .dense(input.dense ?? input.factors!.map { $0.dense() }, rows: input.rows, columns: input.columns)
                    : .factors(input.factors!)
                let fit = try ReversibleMerge.fit(fitInputs, variant: variant, k: settings.basis, center: settings.center)
                lap("rmm fit")
                // Errors against what was committed: the dense task vector for full fine-tunes, the factors for adapters.
                var errors: [Double] = []
                var rebuilt: [RMMRebuilt] = []
                for i in 0..<n {
                    let r = fit.rebuild(i)
                    rebuilt.append(r)
                    let err: Double
                    switch (r, input.factors) {
                    case let (.factors(f), reference?) where input.dense == nil:
                        err = LowRank.relativeError(f, reference: reference[i])
                    default:
                        let ref = input.dense?[i] ?? input.factors![i].dense()
                        err = LowRank.relativeError(r.dense(), reference: ref)
                    }
                    errors.append(err)
                    let norm = input.dense.map { LowRank.squaredNorm($0[i]) } ?? LowRank.squaredNorm(input.factors![i])
                    expertSq[i].append(err * err * norm)
                    expertNorms[i].append(norm)
                    if i < fit.expertTotals.count {
                        energyTotal[i] += fit.expertTotals[i]
                        energyKept[i] += fit.expertTotals[i] * (i < fit.expertEnergy.count ? fit.expertEnergy[i] : 1)
                    }
                }
                lap("rmm errors")
                var baselines: [(name: String, errors: [Double])] = []
                if settings.baselines {
                    let inputs: RMMExperts = input.factors.map { .factors($0) } ?? fitInputs
                    for b in try RMMBaselines.evaluate(module: input.module, experts: inputs, layerCount: layerCount, seed: recipe.seed) {
                        baselines.append((b.name, b.errors))
                        if baselineErrors[b.name] == nil { baselineOrder.append(b.name) }
                        baselineErrors[b.name, default: []].append(b.errors)
                    }
                }
                lap("rmm baselines")
                // Store the basis.
                for (suffix, shape) in RMMModule.layout(variant: fit.variant, k: fit.k, rows: fit.rows, columns: fit.columns, rank: fit.rank,
                                                       experts: n, center: fit.center) {
                    guard let values = fit.arrays[suffix]?.values else { continue }
                    let r = try values.withUnsafeBytes {
                        try objects.write(kind: .tensor, dtype: .f32, shape: shape, source: $0, reference: nil, options: codecOptions, batch: batch)
                    }
                    note(r)
                    storedBytes += r.info.storedByteCount
                    rmmTensors.append((input.module + "." + suffix, .f32, shape, r.info.id))
                }
                let expertParams = input.factors.map { $0.reduce(0) { $0 + $1.parameterCount } } ?? n * input.rows * input.columns
                if kind == "adapter" {
                    for a in loadedAdapters {
                        let m = a.adapter.modules.first { $0.baseTensor == input.baseTensor }!
                        for name in [m.aName, m.bName] {
                            if let t = a.tensor(name), let info = try history.objectInfo(t.objectID) { expertBytes += info.storedByteCount }
                        }
                    }
                } else {
                    expertBytes += expertParams * 4
                }
                lap("rmm store")
                // The default view: λ·Σ rebuilt experts, truncated.
                let viewRankWanted = settings.viewRank > 0 ? settings.viewRank : (viewSpec?.rank ?? settings.rank)
                let truncation: LowRank.Truncation
                switch RMMRebuilt.weightedSum(rebuilt, lambda: Float(settings.viewLambda), rows: input.rows, columns: input.columns) {
                case let .factors(sum): truncation = try LowRank.truncateProduct(sum, rank: viewRankWanted)
                case let .dense(total): truncation = try LowRank.truncate(total, rows: input.rows, columns: input.columns, choice: .rank(viewRankWanted))
                }
                viewKept += truncation.retainedEnergy * truncation.norm * truncation.norm
                viewTotal += truncation.norm * truncation.norm
                let viewFactors = LowRank.padded(truncation.factors, to: min(viewRankWanted, min(input.rows, input.columns)))
                if let spec = viewSpec {
                    let prefix = "base_model.model." + input.module
                    for (suffix, values, shape) in [(".lora_A.weight", viewFactors.right, [viewFactors.rank, input.columns]),
                                                    (".lora_B.weight", viewFactors.left, [input.rows, viewFactors.rank])] {
                        let bytes = Self.bytes(values, as: spec.dtype)
                        let r = try bytes.withUnsafeBytes {
                            try objects.write(kind: .tensor, dtype: spec.dtype, shape: shape, source: $0, reference: nil, options: codecOptions, batch: batch)
                        }
                        note(r)
                        viewTensors.append((prefix + suffix, spec.dtype, shape, r.info.id))
                    }
                } else {
                    // Full fine-tunes: the view tensor is the base plus the truncated sum, stored low-rank against the base.
                    let baseEntry = context.baseTensors[input.baseTensor]!.tensor
                    guard let baseInfo = try history.objectInfo(baseEntry.objectID) else {
                        throw RepoError.corruptObject(object: baseEntry.objectID.short, problem: "base tensor '\(input.baseTensor)' is not recorded")
                    }
                    let header = try objects.header(of: baseEntry.objectID)
                    if viewFactors.rank > 0, baseInfo.depth < ObjectStore.maxDepth {
                        let (r, _) = try objects.writeLowRank(dtype: baseEntry.dtype, shape: baseEntry.shape, factors: viewFactors,
                                                              reference: (baseInfo, header), batch: batch)
                        note(r)
                        decided[input.baseTensor] = r.info.id
                    } else {
                        var values = try objects.floats(baseEntry.objectID)
                        let d = viewFactors.rank > 0 ? viewFactors.dense() : []
                        for j in d.indices { values[j] += d[j] }
                        let bytes = Self.bytes(values, as: baseEntry.dtype)
                        let r = try bytes.withUnsafeBytes {
                            try objects.write(kind: .tensor, dtype: baseEntry.dtype, shape: baseEntry.shape, source: $0,
                                              reference: (baseInfo, header), options: codecOptions, batch: batch)
                        }
                        note(r)
                        decided[input.baseTensor] = r.info.id
                    }
                    objects.releasePages(of: baseEntry.objectID)
                }
                lap("rmm view")
                moduleReports.append(ReversibleMergeReport.Module(
                    name: input.module, baseTensor: input.baseTensor, rows: input.rows, columns: input.columns, rank: fit.rank, k: fit.k,
                    variant: fit.variant.rawValue, retainedEnergy: fit.retainedEnergy, errors: errors, expertEnergy: fit.expertEnergy,
                    reductionErrors: input.reductionErrors, baselines: baselines, storedParameters: fit.storedParameterCount,
                    expertParameters: expertParams))
                var meta: [JSONMember] = [
                    JSONMember("module", .string(input.module)), JSONMember("base_tensor", .string(input.baseTensor)),
                    JSONMember("rows", .int(input.rows)), JSONMember("columns", .int(input.columns)), JSONMember("rank", .int(fit.rank)),
                    JSONMember("k", .int(fit.k)), JSONMember("variant", .string(fit.variant.rawValue)),
                ]
                if kind == "adapter" {
                    let mods = loadedAdapters.map { a in a.adapter.modules.first { $0.baseTensor == input.baseTensor }! }
                    meta.append(JSONMember("scales", .array(mods.map { .double($0.scale) })))
                    meta.append(JSONMember("transposed", .bool(mods[0].transposed)))
                }
                moduleMeta.append(.object(meta))
                counter.add(1)
            }
            counter.finish()

            // Tensors of full fine-tunes outside the basis: the view takes λ·Σ of their task vectors.
            if kind == "full" {
                for name in context.allNames where passThrough[name] != nil {
                    let b = context.baseTensors[name]!.tensor
                    let ids = context.expertTensors.map { $0[name]!.tensor.objectID }
                    guard ids.contains(where: { $0 != b.objectID }) else { continue }
                    guard b.dtype.isFloatingPoint else {
                        remarks.append("'\(name)' (\(b.dtype.rawValue)) differs between experts; the view keeps the base's value, each expert's own is rebuilt exactly")
                        continue
                    }
                    var values = try objects.floats(b.objectID)
                    let baseValues = values
                    for id in ids where id != b.objectID {
                        let e = try objects.floats(id)
                        for j in values.indices { values[j] += Float(settings.viewLambda) * (e[j] - baseValues[j]) }
                    }
                    let bytes = Self.bytes(values, as: b.dtype)
                    let info = try history.objectInfo(b.objectID)
                    let header = try objects.header(of: b.objectID)
                    let r = try bytes.withUnsafeBytes {
                        try objects.write(kind: .tensor, dtype: b.dtype, shape: b.shape, source: $0, reference: info.map { ($0, header) },
                                          options: codecOptions, batch: batch)
                    }
                    note(r)
                    decided[name] = r.info.id
                }
            }

            // The report.
            let expertSummaries = (0..<n).map { i -> ReversibleMergeReport.Expert in
                let errs = moduleReports.map { $0.errors[i] }
                let normSum = expertNorms[i].reduce(0, +)
                let errSum = expertSq[i].reduce(0, +)
                let rank = kind == "adapter" ? (loadedAdapters[i].adapter.modules.map(\.rank).max() ?? 0) : settings.rank
                return ReversibleMergeReport.Expert(
                    name: experts[i].name, commit: experts[i].commit.hex, rank: rank,
                    meanError: errs.isEmpty ? 0 : errs.reduce(0, +) / Double(errs.count), maxError: errs.max() ?? 0,
                    globalError: normSum > 0 ? (errSum / normSum).squareRoot() : 0,
                    retainedEnergy: energyTotal[i] > 0 ? energyKept[i] / energyTotal[i] : 1)
            }
            let baselineSummaries = baselineOrder.map { name -> ReversibleMergeReport.Baseline in
                let all = baselineErrors[name]!.flatMap { $0 }
                return ReversibleMergeReport.Baseline(name: name, meanError: all.reduce(0, +) / Double(max(all.count, 1)), maxError: all.max() ?? 0)
            }
            let storedParams = moduleReports.reduce(0) { $0 + $1.storedParameters }
            let expertParams = moduleReports.reduce(0) { $0 + $1.expertParameters }
            let ranks = Set(moduleReports.map(\.rank))
            let formula: Double? = settings.variant == .position && ranks.count == 1 && moduleReports.allSatisfy({ $0.variant == "position" })
                ? ReversibleMergeReport.formulaRatio(k: settings.basis, rank: ranks.first!, experts: n, center: settings.center) : nil
            let report = ReversibleMergeReport(
                variant: settings.variant.rawValue, basis: settings.basis, center: settings.center, kind: kind, experts: expertSummaries,
                modules: moduleReports, baselines: baselineSummaries, storedParameters: storedParams, expertParameters: expertParams,
                storedBytes: storedBytes, expertBytes: expertBytes, formulaRatio: formula, viewRank: viewSpec?.rank ?? (settings.viewRank > 0 ? settings.viewRank : settings.rank),
                viewLambda: settings.viewLambda, viewRetainedEnergy: viewTotal > 0 ? viewKept / viewTotal : 1, remarks: remarks)
            finalReport = report
            let reportBlob = try objects.writeBlob(Array(report.json.serialized().utf8), options: codecOptions, batch: batch)
            note(reportBlob)

            // The tree: the view, rmm.safetensors, model card and recipe.
            let yaml = recordedRecipe(recipe, options: options, base: base, experts: experts.map { MergeInput(name: $0.name, commit: $0.commit) },
                                      resolutions: []).yaml()
            recordedYAML = yaml
            let card = reversibleModelCard(report: report, base: base, experts: experts, recipeYAML: yaml)
            let metadata: [(key: String, value: String)] = [
                ("format", "mrepo-rmm"), ("version", "1"), ("kind", kind), ("variant", settings.variant.rawValue),
                ("basis", "\(settings.basis)"), ("center", settings.center ? "true" : "false"),
                ("experts", JSONValue.array(experts.map { .string($0.name) }).serialized()),
                ("modules", JSONValue.array(moduleMeta).serialized()),
            ]
            var files: [TreeFile] = []
            func addSafetensors(_ path: String, _ tensors: [(name: String, dtype: DType, shape: Shape, id: ObjectID)],
                                metadata: [(key: String, value: String)]?) throws {
                let (bytes, infos) = SafetensorsHeader.encode(tensors: tensors.map { ($0.name, $0.dtype, $0.shape) }, metadata: metadata)
                let blob = try objects.writeBlob(bytes, options: codecOptions, batch: batch)
                note(blob)
                let entries = zip(tensors, infos).map { TreeTensor(name: $0.name, dtype: $0.dtype, shape: $0.shape, dataOffsets: $1.dataOffsets, objectID: $0.id) }
                files.append(TreeFile(path: path, kind: .safetensors, objectID: blob.info.id,
                                      byteCount: bytes.count + (infos.last?.dataOffsets.upperBound ?? 0), executable: false, tensors: entries))
            }
            func addBlob(_ path: String, _ bytes: [UInt8]) throws {
                let blob = try objects.writeBlob(bytes, options: codecOptions, batch: batch)
                note(blob)
                files.removeAll { $0.path == path }
                files.append(TreeFile(path: path, kind: .blob, objectID: blob.info.id, byteCount: bytes.count, executable: false,
                                      sha256: SHA256.hash(bytes)))
            }
            try addSafetensors(ReversibleMergeRecord.fileName, rmmTensors, metadata: metadata)
            // Objects become readable under their names (the tree is built from their headers).
            try batch.finish()
            let tree: Tree
            if let spec = viewSpec {
                try addSafetensors(LoRAConfig.weightsFileName, viewTensors, metadata: [("format", "pt")])
                // Other files of the first expert (tokenizer, say) come along.
                for f in loadedAdapters[0].tree.files where f.kind == .blob && ![LoRAConfig.fileName, "README.md", "merge_recipe.yml"].contains(f.path) {
                    files.append(f)
                }
                let targets = loadedAdapters[0].adapter.targetModules
                try addBlob(LoRAConfig.fileName, Array(LoRAConfig.json(rank: spec.rank, alpha: Double(spec.rank), targetModules: targets,
                                                                        baseModel: spec.config.baseModel, taskType: spec.config.taskType).utf8))
                try addBlob("README.md", Array(card.utf8))
                try addBlob("merge_recipe.yml", Array(yaml.utf8))
                tree = Tree(files: files)
            } else {
                let conflict = ConflictReport(method: RMM.id, experts: experts.map(\.name), baseName: base.short, tensors: [], files: [])
                var built = try context.buildTree(decided: decided, recipe: recipe, report: conflict, recipeYAML: yaml, batch: batch,
                                                  newObjects: &newObjects, card: card).files
                built.removeAll { $0.path == ReversibleMergeRecord.fileName }
                tree = Tree(files: built + files)
            }
            try batch.finish()

            let record = ReversibleMergeRecord(kind: kind, variant: settings.variant.rawValue, basis: settings.basis, center: settings.center,
                                               base: base, experts: experts, reportObject: reportBlob.info.id,
                                               rank: kind == "full" && settings.variant != .dense ? settings.rank : nil)
            var extra = [record.json]
            if let spec = viewSpec {
                extra.append(AdapterRecord(base: base, rank: spec.rank, alpha: Double(spec.rank), useRSLoRA: false,
                                           targets: loadedAdapters[0].adapter.targetModules, moduleCount: modulePlan.count).json)
            }
            let message = options.message ?? "Reversible merge of \(experts.map(\.name).joined(separator: ", ")) (rmm, basis \(settings.basis))"
            let state = MergeState(head: headID, branches: branches.map { MergeInput(name: $0.name, commit: $0.commit) },
                                   experts: experts.map { MergeInput(name: $0.name, commit: $0.commit) }, base: base, recipe: recipe.json,
                                   message: message, decided: [:], unresolved: [:], reportObject: reportBlob.info.id, readyTree: nil,
                                   options: RecordedMergeOptions(options), resolutions: nil, metrics: options.metrics)
            let summary = ConflictReport(method: RMM.id, experts: experts.map(\.name), baseName: base.short,
                                         tensors: moduleReports.map { TensorReport(name: $0.baseTensor, mergeClass: .merged, elementCount: $0.rows * $0.columns) },
                                         files: [])
            recorded = try recordMerge(state: state, tree: tree, objects: newObjects, report: summary, extraMembers: extra,
                                       hookReport: report.json)
        } catch {
            batch.rollback()
            throw error
        }
        let tf = Date()
        let warnings = try finishMerge(recorded!)
        Timing.add("checkout", Date().timeIntervalSince(tf))
        Timing.report()
        var outcome = MergeOutcome(status: .committed(recorded!.commit), report: ConflictReport(method: RMM.id, experts: experts.map(\.name), baseName: base.short, tensors: [], files: []),
                                   base: base, baseCandidates: [base], estimatedPeakBytes: 0, recipeYAML: recordedYAML)
        outcome.reversible = finalReport
        outcome.warnings = warnings
        return outcome
    }

    /// The model card of a reversible merge.
    func reversibleModelCard(report: ReversibleMergeReport, base: ObjectID, experts: [(name: String, commit: ObjectID)], recipeYAML: String) -> String {
        var card = """
            ---
            library_name: \(report.kind == "adapter" ? "peft" : "transformers")
            tags:
            - merge
            - mrepo
            - rmm
            base_model: \(base.hex)
            ---
            # Reversible merge of \(experts.map(\.name).joined(separator: ", "))

            Merged with mrepo \(Repository.toolVersion) by reversible model merging (RMM, arXiv 2510.14163): `rmm.safetensors`
            holds a \(report.variant) basis of size K = \(report.basis) from which each expert is rebuilt
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
