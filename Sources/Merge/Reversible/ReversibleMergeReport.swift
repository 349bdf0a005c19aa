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

    // MARK: - JSON

    public var json: JSONValue {
        func doubles(_ xs: [Double]) -> JSONValue { .array(xs.map { .double($0) }) }
        return .object([
            JSONMember("method", .string("rmm")),
            JSONMember("variant", .string(variant)),
            JSONMember("basis", .int(basis)),
            JSONMember("center", .bool(center)),
            JSONMember("kind", .string(kind)),
            JSONMember("storage", .object([
                JSONMember("stored_parameters", .int(storedParameters)),
                JSONMember("expert_parameters", .int(expertParameters)),
                JSONMember("parameter_ratio", .double(parameterRatio)),
                JSONMember("stored_bytes", .int(storedBytes)),
                JSONMember("expert_bytes", .int(expertBytes)),
                JSONMember("formula_ratio", formulaRatio.map { .double($0) } ?? .null),
            ])),
            JSONMember("view", .object([
                JSONMember("rank", .int(viewRank)), JSONMember("lambda", .double(viewLambda)),
                JSONMember("retained_energy", .double(viewRetainedEnergy)),
            ])),
            JSONMember("experts", .array(experts.map { e in
                .object([
                    JSONMember("name", .string(e.name)), JSONMember("commit", .string(e.commit)), JSONMember("rank", .int(e.rank)),
                    JSONMember("mean_error", .double(e.meanError)), JSONMember("max_error", .double(e.maxError)),
                    JSONMember("global_error", .double(e.globalError)), JSONMember("retained_energy", .double(e.retainedEnergy)),
                ])
            })),
            JSONMember("baselines", .array(baselines.map { b in
                .object([JSONMember("name", .string(b.name)), JSONMember("mean_error", .double(b.meanError)), JSONMember("max_error", .double(b.maxError))])
            })),
            JSONMember("modules", .array(modules.map { m in
                var members = [
                    JSONMember("name", .string(m.name)), JSONMember("base_tensor", .string(m.baseTensor)),
                    JSONMember("rows", .int(m.rows)), JSONMember("columns", .int(m.columns)), JSONMember("rank", .int(m.rank)),
                    JSONMember("k", .int(m.k)), JSONMember("variant", .string(m.variant)),
                    JSONMember("retained_energy", .double(m.retainedEnergy)),
                    JSONMember("errors", doubles(m.errors)), JSONMember("expert_energy", doubles(m.expertEnergy)),
                    JSONMember("stored_parameters", .int(m.storedParameters)), JSONMember("expert_parameters", .int(m.expertParameters)),
                ]
                if let r = m.reductionErrors { members.append(JSONMember("reduction_errors", doubles(r))) }
                if !m.baselines.isEmpty {
                    members.append(JSONMember("baselines", .object(m.baselines.map { JSONMember($0.name, doubles($0.errors)) })))
                }
                return .object(members)
            })),
            JSONMember("remarks", .array(remarks.map { .string($0) })),
        ])
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
