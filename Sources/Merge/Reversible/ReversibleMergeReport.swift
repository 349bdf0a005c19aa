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
        public var variant: String
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

        public init(name: String, baseTensor: String, rows: Int, columns: Int, rank: Int, k: Int, variant: String, retainedEnergy: Double,
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

    public var variant: String
    public var basis: Int
    public var center: Bool
    /// `adapter` or `full`.
    public var kind: String
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

    public init(variant: String, basis: Int, center: Bool, kind: String, experts: [Expert], modules: [Module], baselines: [Baseline],
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

    public init?(json v: JSONValue) {
        guard v["method"]?.stringValue == "rmm", let variant = v["variant"]?.stringValue, let basis = v["basis"]?.intValue else { return nil }
        func doubles(_ x: JSONValue?) -> [Double] { x?.arrayValue?.compactMap(\.doubleValue) ?? [] }
        self.variant = variant
        self.basis = basis
        center = v["center"] != .bool(false)
        kind = v["kind"]?.stringValue ?? "adapter"
        let s = v["storage"]
        storedParameters = s?["stored_parameters"]?.intValue ?? 0
        expertParameters = s?["expert_parameters"]?.intValue ?? 0
        storedBytes = s?["stored_bytes"]?.intValue ?? 0
        expertBytes = s?["expert_bytes"]?.intValue ?? 0
        formulaRatio = s?["formula_ratio"]?.doubleValue
        viewRank = v["view"]?["rank"]?.intValue ?? 0
        viewLambda = v["view"]?["lambda"]?.doubleValue ?? 1
        viewRetainedEnergy = v["view"]?["retained_energy"]?.doubleValue ?? 1
        experts = (v["experts"]?.arrayValue ?? []).map { e in
            Expert(name: e["name"]?.stringValue ?? "", commit: e["commit"]?.stringValue ?? "", rank: e["rank"]?.intValue ?? 0,
                   meanError: e["mean_error"]?.doubleValue ?? 0, maxError: e["max_error"]?.doubleValue ?? 0,
                   globalError: e["global_error"]?.doubleValue ?? 0, retainedEnergy: e["retained_energy"]?.doubleValue ?? 0)
        }
        baselines = (v["baselines"]?.arrayValue ?? []).map { b in
            Baseline(name: b["name"]?.stringValue ?? "", meanError: b["mean_error"]?.doubleValue ?? 0, maxError: b["max_error"]?.doubleValue ?? 0)
        }
        modules = (v["modules"]?.arrayValue ?? []).map { m in
            Module(name: m["name"]?.stringValue ?? "", baseTensor: m["base_tensor"]?.stringValue ?? "", rows: m["rows"]?.intValue ?? 0,
                   columns: m["columns"]?.intValue ?? 0, rank: m["rank"]?.intValue ?? 0, k: m["k"]?.intValue ?? 0,
                   variant: m["variant"]?.stringValue ?? "", retainedEnergy: m["retained_energy"]?.doubleValue ?? 0,
                   errors: doubles(m["errors"]), expertEnergy: doubles(m["expert_energy"]),
                   reductionErrors: m["reduction_errors"].map { doubles($0) },
                   baselines: (m["baselines"]?.objectValue ?? []).map { ($0.key, doubles($0.value)) },
                   storedParameters: m["stored_parameters"]?.intValue ?? 0, expertParameters: m["expert_parameters"]?.intValue ?? 0)
        }
        remarks = v["remarks"]?.arrayValue?.compactMap(\.stringValue) ?? []
    }
}

// MARK: - JSON

extension ReversibleMergeReport: Encodable {
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

extension ReversibleMergeReport.Expert: Encodable {
    private enum Keys: String, CodingKey {
        case name, commit, rank, meanError = "mean_error", maxError = "max_error", globalError = "global_error"
        case retainedEnergy = "retained_energy"
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

extension ReversibleMergeReport.Baseline: Encodable {
    private enum Keys: String, CodingKey { case name, meanError = "mean_error", maxError = "max_error" }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(name, forKey: .name)
        try c.encodeNumber(meanError, forKey: .meanError)
        try c.encodeNumber(maxError, forKey: .maxError)
    }
}

extension ReversibleMergeReport.Module: Encodable {
    private enum Keys: String, CodingKey {
        case name, baseTensor = "base_tensor", rows, columns, rank, k, variant, retainedEnergy = "retained_energy"
        case errors, expertEnergy = "expert_energy", storedParameters = "stored_parameters"
        case expertParameters = "expert_parameters", reductionErrors = "reduction_errors", baselines
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
