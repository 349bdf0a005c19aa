import Delta
import Foundation

/// One module of a reversible merge: one weight matrix ΔW (rows × columns, B·A orientation)
/// and each expert's change of it.
public struct RMMModuleInput: Sendable {
    /// The module's name in `rmm.safetensors` (an adapter's module path, or a tensor name).
    public var module: String
    /// The base model's tensor ΔW applies to.
    public var baseTensor: String
    public var rows: Int
    public var columns: Int
    public var experts: Experts

    public enum Experts: Sendable {
        /// LoRA adapters: each expert's factors (its scale folded into L), its scale alpha/r, and
        /// whether the base weight is stored transposed (recorded in the basis file).
        case adapters([LowRankFactors], scales: [Double], transposed: Bool)
        /// Full fine-tunes: each expert's dense task vector θᵢ − θ_base and, unless the variant is
        /// dense, its PT-SVD reduction (see ``ReversibleMergeJob/fullFineTuneInput(tensor:rows:columns:base:expert:)``).
        case fullFineTunes([[Float]], reduction: Reduction?)
    }

    /// Task vectors reduced to one rank by a truncated SVD, and each one's relative error.
    public struct Reduction: Sendable {
        public var factors: [LowRankFactors]
        public var errors: [Double]

        public init(factors: [LowRankFactors], errors: [Double]) {
            self.factors = factors
            self.errors = errors
        }
    }

    public init(module: String, baseTensor: String, rows: Int, columns: Int, experts: Experts) {
        self.module = module
        self.baseTensor = baseTensor
        self.rows = rows
        self.columns = columns
        self.experts = experts
    }
}

/// What a reversible merge keeps of one module.
public struct RMMFittedModule: Sendable {
    /// The basis to store (its tensors: ``RMMBasisFile/tensors(of:metadata:)``).
    public var module: RMMModule
    /// The module's entry in `rmm.safetensors`.
    public var metadata: RMMBasisFile.ModuleMetadata
    /// Per expert: reconstruction errors and energies, and the baselines' errors.
    public var report: ReversibleMergeReport.Module
    /// The default view of this module: λ·Σᵢ ΔŴᵢ truncated to the view rank by SVD, with zero
    /// components appended up to min(view rank, rows, columns).
    public var view: LowRankFactors
}

/// A reversible merge (``RMM``), run module by module so that one module's inputs are in memory
/// at a time: ``run(_:)`` fits each module's basis, measures how well it rebuilds every expert,
/// runs the baselines and computes the module's default view; ``report(experts:storedBytes:expertBytes:)``
/// adds the measurements up. The caller loads the inputs and stores what comes back; nothing
/// here reads or writes files.
public struct ReversibleMergeJob: Sendable {
    public let kind: RMMExpertKind
    public let settings: ReversibleMergeSettings
    public let expertCount: Int
    /// The default view's rank (``ReversibleMergeSettings/viewRank(expertRank:)``).
    public let viewRank: Int
    /// Layers of the model (for the baselines' per-layer parameters).
    public let layerCount: Int
    /// Seed of the baselines' random methods (DARE).
    public let seed: UInt64
    /// Notes for the report, in order; the caller may add its own.
    public var remarks: [String] = []

    /// The modules run so far, and running sums over them (in module order, so that the report's
    /// numbers do not depend on anything but the inputs).
    private var modules: [ReversibleMergeReport.Module] = []
    private var squaredErrors: [Double]
    private var squaredNorms: [Double]
    private var energyKept: [Double]
    private var energyTotal: [Double]
    private var expertRanks: [Int]
    private var baselineErrors: [(name: String, errors: [Double])] = []
    private var viewKept = 0.0, viewTotal = 0.0

    public init(kind: RMMExpertKind, settings: ReversibleMergeSettings, expertCount: Int, viewRank: Int, layerCount: Int, seed: UInt64) {
        self.kind = kind
        self.settings = settings
        self.expertCount = expertCount
        self.viewRank = viewRank
        self.layerCount = layerCount
        self.seed = seed
        let zeros = [Double](repeating: 0, count: expertCount)
        squaredErrors = zeros
        squaredNorms = zeros
        energyKept = zeros
        energyTotal = zeros
        expertRanks = [Int](repeating: kind == .full ? settings.rank : 0, count: expertCount)
        if kind == .full {
            remarks.append(settings.variant == .dense
                ? "full fine-tunes: the dense variant keeps each 2-D task vector's basis dense; other tensors are taken from the experts exactly"
                : "full fine-tunes: each 2-D task vector was reduced to rank \(settings.rank) by a truncated SVD before the merge (see reduction errors); other tensors are taken from the experts exactly")
        }
    }

    // MARK: - Inputs

    /// Whether an input holds NaN or ±inf (an SVD of it would fail without saying why).
    static func holdsNonFinite(_ values: [Float]) -> Bool {
        values.withUnsafeBufferPointer(FloatConversion.holdsNonFinite)
    }

    /// One module of full fine-tunes: each expert's task vector θᵢ − θ_base and, unless the
    /// variant is dense, its reduction to rank R by a truncated SVD (PT-SVD), balanced as
    /// L = U·S^½, R = S^½·Vᵀ, with zero components appended when the change has lower rank.
    /// - Parameter expert: θᵢ (rows × columns), read one expert at a time.
    public func fullFineTuneInput(tensor name: String, rows: Int, columns: Int, base: [Float],
                                  expert: (Int) throws -> [Float]) throws -> RMMModuleInput {
        let reduce = settings.variant != .dense
        var dense: [[Float]] = []
        var factors: [LowRankFactors] = []
        var errors: [Double] = []
        if ReversibleMergeJob.holdsNonFinite(base) {
            throw MergeError.nonFiniteInput(tensor: name, "the merge base")
        }
        for i in 0..<expertCount {
            var d = try expert(i)
            if ReversibleMergeJob.holdsNonFinite(d) {
                throw MergeError.nonFiniteInput(tensor: name, "expert \(i + 1) (in the merge's order)")
            }
            for j in d.indices { d[j] -= base[j] }
            if reduce {
                let tr = try LowRank.truncate(d, rows: rows, columns: columns, choice: .rank(settings.rank))
                var f = tr.factors
                if f.rank < settings.rank { f = LowRank.padded(f, to: min(settings.rank, min(rows, columns))) }
                factors.append(f)
                errors.append(tr.relativeError)
            }
            dense.append(d)
        }
        return RMMModuleInput(module: name, baseTensor: name, rows: rows, columns: columns,
                              experts: .fullFineTunes(dense, reduction: reduce ? .init(factors: factors, errors: errors) : nil))
    }

    // MARK: - Running

    /// Fits one module, measures it and computes its default view.
    /// - Throws: ``MergeError`` when the inputs do not fit the job (count, kind, shapes, ranks).
    public mutating func run(_ input: RMMModuleInput) throws -> RMMFittedModule {
        let n = expertCount, rows = input.rows, columns = input.columns
        // The factors the fit and the baselines use, and the reference each error is measured
        // against: the adapter's factors, or the committed dense task vector of a full fine-tune.
        let fitInputs, baselineInputs: RMMExperts
        let factorReference: [LowRankFactors]?
        let denseReference: (Int) -> [Float]
        let expertParameters: Int
        switch input.experts {
        case let .adapters(f, _, _):
            guard kind == .adapter else { throw MergeError.invalidInputs(method: RMM.id, problem: "module '\(input.module)': adapters in a merge of full fine-tunes") }
            for (i, x) in f.enumerated() where ReversibleMergeJob.holdsNonFinite(x.left) || ReversibleMergeJob.holdsNonFinite(x.right) {
                throw MergeError.nonFiniteInput(tensor: input.module, "expert \(i + 1)'s adapter (in the merge's order)")
            }
            let oneRank = Set(f.map(\.rank)).count <= 1
            fitInputs = settings.variant != .dense && oneRank ? .factors(f) : .dense(f.map { $0.dense() }, rows: rows, columns: columns)
            baselineInputs = .factors(f)
            factorReference = f
            denseReference = { f[$0].dense() }
            expertParameters = f.reduce(0) { $0 + $1.parameterCount }
            for (i, x) in f.enumerated() where i < n { expertRanks[i] = max(expertRanks[i], x.rank) }
        case let .fullFineTunes(d, reduction):
            guard kind == .full else { throw MergeError.invalidInputs(method: RMM.id, problem: "module '\(input.module)': full fine-tunes in a merge of adapters") }
            let dense = RMMExperts.dense(d, rows: rows, columns: columns)
            if let reduction, settings.variant != .dense, Set(reduction.factors.map(\.rank)).count <= 1 {
                fitInputs = .factors(reduction.factors)
            } else {
                fitInputs = dense
            }
            baselineInputs = reduction.map { .factors($0.factors) } ?? dense
            factorReference = nil
            denseReference = { d[$0] }
            expertParameters = reduction.map { $0.factors.reduce(0) { $0 + $1.parameterCount } } ?? n * rows * columns
        }
        guard fitInputs.count == n else {
            throw MergeError.invalidInputs(method: RMM.id, problem: "module '\(input.module)' has \(fitInputs.count) experts, the merge \(n)")
        }
        let variant: RMMVariant
        if case .factors = fitInputs { variant = settings.variant } else { variant = .dense }
        let fit = try ReversibleMerge.fit(fitInputs, variant: variant, k: settings.basis, center: settings.center)

        // Errors against what was committed: the factors for adapters rebuilt as factors, the dense task vector otherwise.
        var errors: [Double] = []
        var rebuilt: [RMMRebuilt] = []
        for i in 0..<n {
            let r = fit.rebuild(i)
            rebuilt.append(r)
            let error: Double
            let norm = factorReference.map { LowRank.squaredNorm($0[i]) } ?? LowRank.squaredNorm(denseReference(i))
            if norm == 0 {
                // An expert that leaves the module as it is (an untrained adapter): nothing to rebuild,
                // so no relative error (NaN, shown as '-' and left out of the means).
                error = .nan
            } else if case let .factors(f) = r, let factorReference {
                error = LowRank.relativeError(f, reference: factorReference[i])
            } else {
                error = LowRank.relativeError(r.dense(), reference: denseReference(i))
            }
            errors.append(error)
            if norm > 0 {
                squaredErrors[i] += error * error * norm
                squaredNorms[i] += norm
            }
            if i < fit.expertTotals.count {
                energyTotal[i] += fit.expertTotals[i]
                energyKept[i] += fit.expertTotals[i] * (i < fit.expertEnergy.count ? fit.expertEnergy[i] : 1)
            }
        }

        var baselines: [(name: String, errors: [Double])] = []
        if settings.baselines {
            for b in try RMMBaselines.evaluate(module: input.module, experts: baselineInputs, layerCount: layerCount, seed: seed) {
                baselines.append((b.name, b.errors))
                if let at = baselineErrors.firstIndex(where: { $0.name == b.name }) {
                    baselineErrors[at].errors += b.errors
                } else {
                    baselineErrors.append((b.name, b.errors))
                }
            }
        }

        let view = try defaultView(rebuilt, rows: rows, columns: columns)
        let reductionErrors: [Double]?
        if case let .fullFineTunes(_, reduction?) = input.experts { reductionErrors = reduction.errors } else { reductionErrors = nil }
        let report = ReversibleMergeReport.Module(
            name: input.module, baseTensor: input.baseTensor, rows: rows, columns: columns, rank: fit.rank, k: fit.k,
            variant: fit.variant, retainedEnergy: fit.retainedEnergy, errors: errors, expertEnergy: fit.expertEnergy,
            reductionErrors: reductionErrors, baselines: baselines, storedParameters: fit.storedParameterCount,
            expertParameters: expertParameters)
        modules.append(report)
        var metadata = RMMBasisFile.ModuleMetadata(module: input.module, baseTensor: input.baseTensor, rows: rows, columns: columns,
                                                   rank: fit.rank, k: fit.k, variant: fit.variant)
        if case let .adapters(_, scales, transposed) = input.experts {
            metadata.scales = scales
            metadata.transposed = transposed
        }
        return RMMFittedModule(module: fit, metadata: metadata, report: report, view: view)
    }

    /// λ·Σ rebuilt experts, truncated to the view rank; adds its kept and total energy to the view's.
    private mutating func defaultView(_ rebuilt: [RMMRebuilt], rows: Int, columns: Int) throws -> LowRankFactors {
        let truncation: LowRank.Truncation
        do {
            switch RMMRebuilt.weightedSum(rebuilt, lambda: Float(settings.viewLambda), rows: rows, columns: columns) {
            case let .factors(sum): truncation = try LowRank.truncateProduct(sum, rank: viewRank)
            case let .dense(total): truncation = try LowRank.truncate(total, rows: rows, columns: columns, choice: .rank(viewRank))
            }
        } catch let MergeError.invalidInputs(method, problem) where method == "linear algebra" && settings.viewLambda.magnitude > 1 {
            // A large λ makes the products the SVD forms overflow float32; say which parameter.
            throw MergeError.invalidParameter(method: RMM.id, parameter: "view_lambda",
                                              problem: "\(ParameterValue.format(settings.viewLambda)) scales the default view beyond what its SVD can take in float32 (\(problem)); use a smaller λ")
        }
        viewKept += truncation.retainedEnergy * truncation.norm * truncation.norm
        viewTotal += truncation.norm * truncation.norm
        return LowRank.padded(truncation.factors, to: min(viewRank, min(rows, columns)))
    }

    /// The view of a tensor outside the basis that the experts change (full fine-tunes): task
    /// arithmetic with the view's λ (see ``taskArithmetic(base:lambda:expertCount:expert:)``).
    public func passThroughView(base: [Float], expert: (Int) throws -> [Float]?) rethrows -> [Float] {
        try Self.taskArithmetic(base: base, lambda: Float(settings.viewLambda), expertCount: expertCount, expert: expert)
    }

    /// θ_base + λ·Σᵢ (θᵢ − θ_base), in Float32, adding the experts in order and holding one at a time.
    /// - Parameter expert: θᵢ, or nil when expert i kept the base's tensor (it adds nothing).
    public static func taskArithmetic(base: [Float], lambda: Float, expertCount: Int, expert: (Int) throws -> [Float]?) rethrows -> [Float] {
        var values = base
        for i in 0..<expertCount {
            guard let e = try expert(i) else { continue }
            precondition(e.count == base.count, "the caller checked that every expert's tensor has the base's shape")
            for j in values.indices { values[j] += lambda * (e[j] - base[j]) }
        }
        return values
    }

    // MARK: - Report

    /// The measurements of the modules run so far.
    /// - Parameters:
    ///   - experts: each expert's name and commit, in expert order.
    ///   - storedBytes: the bytes the stored basis takes on disk.
    ///   - expertBytes: the bytes the experts' inputs take as committed.
    public func report(experts: [(name: String, commit: String)], storedBytes: Int, expertBytes: Int) -> ReversibleMergeReport {
        precondition(experts.count == expertCount, "one name per expert of the job")
        let expertSummaries = experts.enumerated().map { i, e -> ReversibleMergeReport.Expert in
            let (mean, max) = ReversibleMergeReport.meanAndMax(modules.map { $0.errors[i] })
            return ReversibleMergeReport.Expert(
                name: e.name, commit: e.commit, rank: expertRanks[i], meanError: mean, maxError: max,
                globalError: squaredNorms[i] > 0 ? (squaredErrors[i] / squaredNorms[i]).squareRoot() : .nan,
                retainedEnergy: energyTotal[i] > 0 ? energyKept[i] / energyTotal[i] : 1)
        }
        let baselineSummaries = baselineErrors.map { b in
            let (mean, max) = ReversibleMergeReport.meanAndMax(b.errors)
            return ReversibleMergeReport.Baseline(name: b.name, meanError: mean, maxError: max)
        }
        let ranks = Set(modules.map(\.rank))
        var formula: Double?
        if settings.variant == .position, ranks.count == 1, let rank = ranks.first, modules.allSatisfy({ $0.variant == .position }) {
            formula = ReversibleMergeReport.formulaRatio(k: settings.basis, rank: rank, experts: expertCount, center: settings.center)
        }
        return ReversibleMergeReport(
            variant: settings.variant, basis: settings.basis, center: settings.center, kind: kind, experts: expertSummaries,
            modules: modules, baselines: baselineSummaries, storedParameters: modules.reduce(0) { $0 + $1.storedParameters },
            expertParameters: modules.reduce(0) { $0 + $1.expertParameters }, storedBytes: storedBytes, expertBytes: expertBytes,
            formulaRatio: formula, viewRank: viewRank, viewLambda: settings.viewLambda,
            viewRetainedEnergy: viewTotal > 0 ? viewKept / viewTotal : 1, remarks: remarks)
    }
}
