import Delta
import Foundation

/// What a reversible merge measured: per module and expert, how well the basis rebuilds each
/// expert; the storage against keeping every expert; the single-model baselines.
public struct ReversibleMergeReport: Sendable {
    public struct Expert: Sendable {
        public var name: String
        public var commit: String
        /// Rank of the expert's factors (the reduction rank for full fine-tunes).
        public var rank: Int
        /// Mean and largest per-tensor relative reconstruction error ‖ΔWᵢ − ΔŴᵢ‖ / ‖ΔWᵢ‖.
        public var meanError: Double
        public var maxError: Double
        /// Relative error of the whole task vector (all modules together).
        public var globalError: Double
        /// Fraction of the expert's centred energy the basis keeps.
        public var retainedEnergy: Double

        public init(name: String, commit: String, rank: Int, meanError: Double, maxError: Double, globalError: Double, retainedEnergy: Double) {
            self.name = name
            self.commit = commit
            self.rank = rank
            self.meanError = meanError
            self.maxError = maxError
            self.globalError = globalError
            self.retainedEnergy = retainedEnergy
        }
    }

    public struct Module: Sendable {
        public var name: String
        public var baseTensor: String
        public var rows: Int
        public var columns: Int
        public var rank: Int
        public var k: Int
        /// The module's own variant (``RMMVariant/dense`` when it fell back).
        public var variant: RMMVariant
        public var retainedEnergy: Double
        /// Per expert.
        public var errors: [Double]
        public var expertEnergy: [Double]
        /// Full fine-tunes: the PT-SVD reduction's own error per expert (included in `errors`).
        public var reductionErrors: [Double]?
        /// Baseline name → per-expert errors.
        public var baselines: [(name: String, errors: [Double])]
        public var storedParameters: Int
        public var expertParameters: Int

        public init(name: String, baseTensor: String, rows: Int, columns: Int, rank: Int, k: Int, variant: RMMVariant, retainedEnergy: Double,
                    errors: [Double], expertEnergy: [Double], reductionErrors: [Double]?, baselines: [(name: String, errors: [Double])],
                    storedParameters: Int, expertParameters: Int) {
            self.name = name
            self.baseTensor = baseTensor
            self.rows = rows
            self.columns = columns
            self.rank = rank
            self.k = k
            self.variant = variant
            self.retainedEnergy = retainedEnergy
            self.errors = errors
            self.expertEnergy = expertEnergy
            self.reductionErrors = reductionErrors
            self.baselines = baselines
            self.storedParameters = storedParameters
            self.expertParameters = expertParameters
        }
    }

    public struct Baseline: Sendable {
        public var name: String
        public var meanError: Double
        public var maxError: Double

        public init(name: String, meanError: Double, maxError: Double) {
            self.name = name
            self.meanError = meanError
            self.maxError = maxError
        }
    }

    public var variant: RMMVariant
    public var basis: Int
    public var center: Bool
    public var kind: RMMExpertKind
    public var experts: [Expert]
    public var modules: [Module]
    public var baselines: [Baseline]
    /// Float32 values the merge stores for the basis, and what the N experts hold.
    public var storedParameters: Int
    public var expertParameters: Int
    /// Bytes of the basis objects on disk, and of the experts' low-rank tensors as committed.
    public var storedBytes: Int
    public var expertBytes: Int
    /// (k(r+N)+r)/(rN) for the position variant (nil for the others).
    public var formulaRatio: Double?
    /// The default view: rank, λ and the energy of the task-arithmetic sum its truncation keeps.
    public var viewRank: Int
    public var viewLambda: Double
    public var viewRetainedEnergy: Double
    public var remarks: [String]

    public init(variant: RMMVariant, basis: Int, center: Bool, kind: RMMExpertKind, experts: [Expert], modules: [Module], baselines: [Baseline],
                storedParameters: Int, expertParameters: Int, storedBytes: Int, expertBytes: Int, formulaRatio: Double?,
                viewRank: Int, viewLambda: Double, viewRetainedEnergy: Double, remarks: [String]) {
        self.variant = variant
        self.basis = basis
        self.center = center
        self.kind = kind
        self.experts = experts
        self.modules = modules
        self.baselines = baselines
        self.storedParameters = storedParameters
        self.expertParameters = expertParameters
        self.storedBytes = storedBytes
        self.expertBytes = expertBytes
        self.formulaRatio = formulaRatio
        self.viewRank = viewRank
        self.viewLambda = viewLambda
        self.viewRetainedEnergy = viewRetainedEnergy
        self.remarks = remarks
    }

    /// stored / experts, in Float32 values.
    public var parameterRatio: Double { expertParameters > 0 ? Double(storedParameters) / Double(expertParameters) : 0 }

    /// The storage formula of the position variant: (k(r+N)+r)/(rN), or (k(r+N))/(rN) uncentred.
    public static func formulaRatio(k: Int, rank r: Int, experts n: Int, center: Bool) -> Double {
        Double(k * (r + n) + (center ? r : 0)) / Double(r * n)
    }
}

// MARK: - JSON

extension ReversibleMergeReport: Codable {
    /// The report as stored with the merge commit and printed by `merge --json`, `experts --json`
    /// and `show --conflicts --json` (its ``Encodable`` form).
    public var json: JSONValue {
        do {
            return try JSONValueCoding.encode(self)
        } catch {
            preconditionFailure("a reversible merge report always encodes (non-finite numbers become null): \(error)")
        }
    }

    private enum Keys: String, CodingKey {
        case method, variant, basis, center, kind, storage, view, experts, baselines, modules, remarks
        case storedParameters = "stored_parameters", expertParameters = "expert_parameters", parameterRatio = "parameter_ratio"
        case storedBytes = "stored_bytes", expertBytes = "expert_bytes", formulaRatio = "formula_ratio"
        case rank, lambda, retainedEnergy = "retained_energy"
    }

    /// Reads a stored report back. Members later versions added (`kind`, `center`, `view`,
    /// `baselines`, `remarks`) take the values reports without them meant; anything else missing
    /// or of the wrong type is an error.
    /// - Throws: `DecodingError` naming the member, also when `method` is not `rmm`.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let method = try c.decode(String.self, forKey: .method)
        guard method == "rmm" else {
            throw DecodingError.dataCorruptedError(forKey: .method, in: c, debugDescription: "'\(method.prefix(40))' is not a reversible merge")
        }
        let storage = try c.nestedContainer(keyedBy: Keys.self, forKey: .storage)
        let view = c.contains(.view) ? try c.nestedContainer(keyedBy: Keys.self, forKey: .view) : nil
        self.init(variant: try c.decode(RMMVariant.self, forKey: .variant), basis: try c.decode(Int.self, forKey: .basis),
                  center: try c.decodeIfPresent(Bool.self, forKey: .center) ?? true,
                  kind: try c.decodeIfPresent(RMMExpertKind.self, forKey: .kind) ?? .adapter,
                  experts: try c.decode([Expert].self, forKey: .experts), modules: try c.decode([Module].self, forKey: .modules),
                  baselines: try c.decodeIfPresent([Baseline].self, forKey: .baselines) ?? [],
                  storedParameters: try storage.decode(Int.self, forKey: .storedParameters),
                  expertParameters: try storage.decode(Int.self, forKey: .expertParameters),
                  storedBytes: try storage.decode(Int.self, forKey: .storedBytes), expertBytes: try storage.decode(Int.self, forKey: .expertBytes),
                  formulaRatio: try storage.decodeIfPresent(Double.self, forKey: .formulaRatio),
                  viewRank: try view?.decode(Int.self, forKey: .rank) ?? 0, viewLambda: try view?.decodeNumber(forKey: .lambda) ?? 1,
                  viewRetainedEnergy: try view?.decodeNumber(forKey: .retainedEnergy) ?? 1,
                  remarks: try c.decodeIfPresent([String].self, forKey: .remarks) ?? [])
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode("rmm", forKey: .method)
        try c.encode(variant, forKey: .variant)
        try c.encode(basis, forKey: .basis)
        try c.encode(center, forKey: .center)
        try c.encode(kind, forKey: .kind)
        var storage = c.nestedContainer(keyedBy: Keys.self, forKey: .storage)
        try storage.encode(storedParameters, forKey: .storedParameters)
        try storage.encode(expertParameters, forKey: .expertParameters)
        try storage.encodeNumber(parameterRatio, forKey: .parameterRatio)
        try storage.encode(storedBytes, forKey: .storedBytes)
        try storage.encode(expertBytes, forKey: .expertBytes)
        try storage.encodeNumber(formulaRatio, forKey: .formulaRatio)
        var view = c.nestedContainer(keyedBy: Keys.self, forKey: .view)
        try view.encode(viewRank, forKey: .rank)
        try view.encodeNumber(viewLambda, forKey: .lambda)
        try view.encodeNumber(viewRetainedEnergy, forKey: .retainedEnergy)
        try c.encode(experts, forKey: .experts)
        try c.encode(baselines, forKey: .baselines)
        try c.encode(modules, forKey: .modules)
        try c.encode(remarks, forKey: .remarks)
    }
}

extension ReversibleMergeReport.Expert: Codable {
    private enum Keys: String, CodingKey {
        case name, commit, rank, meanError = "mean_error", maxError = "max_error", globalError = "global_error"
        case retainedEnergy = "retained_energy"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        self.init(name: try c.decode(String.self, forKey: .name), commit: try c.decode(String.self, forKey: .commit),
                  rank: try c.decode(Int.self, forKey: .rank), meanError: try c.decodeNumber(forKey: .meanError),
                  maxError: try c.decodeNumber(forKey: .maxError), globalError: try c.decodeNumber(forKey: .globalError),
                  retainedEnergy: try c.decodeNumber(forKey: .retainedEnergy))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(name, forKey: .name)
        try c.encode(commit, forKey: .commit)
        try c.encode(rank, forKey: .rank)
        try c.encodeNumber(meanError, forKey: .meanError)
        try c.encodeNumber(maxError, forKey: .maxError)
        try c.encodeNumber(globalError, forKey: .globalError)
        try c.encodeNumber(retainedEnergy, forKey: .retainedEnergy)
    }
}

extension ReversibleMergeReport.Baseline: Codable {
    private enum Keys: String, CodingKey { case name, meanError = "mean_error", maxError = "max_error" }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        self.init(name: try c.decode(String.self, forKey: .name), meanError: try c.decodeNumber(forKey: .meanError),
                  maxError: try c.decodeNumber(forKey: .maxError))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(name, forKey: .name)
        try c.encodeNumber(meanError, forKey: .meanError)
        try c.encodeNumber(maxError, forKey: .maxError)
    }
}

extension ReversibleMergeReport.Module: Codable {
    private enum Keys: String, CodingKey {
        case name, baseTensor = "base_tensor", rows, columns, rank, k, variant, retainedEnergy = "retained_energy"
        case errors, expertEnergy = "expert_energy", storedParameters = "stored_parameters"
        case expertParameters = "expert_parameters", reductionErrors = "reduction_errors", baselines
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        var baselines: [(name: String, errors: [Double])] = []
        if c.contains(.baselines) {
            // Member order is the report's baseline order.
            let b = try c.nestedContainer(keyedBy: JSONKey.self, forKey: .baselines)
            baselines = try b.allKeys.map { ($0.stringValue, try b.decodeNumbers(forKey: $0)) }
        }
        self.init(name: try c.decode(String.self, forKey: .name), baseTensor: try c.decode(String.self, forKey: .baseTensor),
                  rows: try c.decode(Int.self, forKey: .rows), columns: try c.decode(Int.self, forKey: .columns),
                  rank: try c.decode(Int.self, forKey: .rank), k: try c.decode(Int.self, forKey: .k),
                  variant: try c.decode(RMMVariant.self, forKey: .variant), retainedEnergy: try c.decodeNumber(forKey: .retainedEnergy),
                  errors: try c.decodeNumbers(forKey: .errors), expertEnergy: try c.decodeNumbers(forKey: .expertEnergy),
                  reductionErrors: c.contains(.reductionErrors) ? try c.decodeNumbers(forKey: .reductionErrors) : nil,
                  baselines: baselines, storedParameters: try c.decode(Int.self, forKey: .storedParameters),
                  expertParameters: try c.decode(Int.self, forKey: .expertParameters))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(name, forKey: .name)
        try c.encode(baseTensor, forKey: .baseTensor)
        try c.encode(rows, forKey: .rows)
        try c.encode(columns, forKey: .columns)
        try c.encode(rank, forKey: .rank)
        try c.encode(k, forKey: .k)
        try c.encode(variant, forKey: .variant)
        try c.encodeNumber(retainedEnergy, forKey: .retainedEnergy)
        try c.encodeNumbers(errors.map { $0 }, forKey: .errors)
        try c.encodeNumbers(expertEnergy.map { $0 }, forKey: .expertEnergy)
        try c.encode(storedParameters, forKey: .storedParameters)
        try c.encode(expertParameters, forKey: .expertParameters)
        if let reductionErrors { try c.encodeNumbers(reductionErrors.map { $0 }, forKey: .reductionErrors) }
        if !baselines.isEmpty {
            var b = c.nestedContainer(keyedBy: JSONKey.self, forKey: .baselines)
            for (name, errors) in baselines { try b.encodeNumbers(errors.map { $0 }, forKey: JSONKey(name)) }
        }
    }
}

extension ReversibleMergeReport {
    /// The mean and the largest of relative errors, leaving out the undefined ones (NaN: an expert
    /// with nothing to rebuild in a module); NaN when none is defined.
    public static func meanAndMax(_ errors: [Double]) -> (mean: Double, max: Double) {
        let defined = errors.filter { !$0.isNaN }
        guard !defined.isEmpty else { return (.nan, .nan) }
        return (defined.reduce(0, +) / Double(defined.count), defined.max()!)
    }
}
