import Delta
import Foundation

/// How a three-way (or octopus) merge treats one tensor.
public enum MergeClass: String, Sendable, Codable, CaseIterable {
    /// Identical on every side: kept as is.
    case unchanged
    /// Changed on exactly one side (or identically on several): that side is taken bit for bit.
    case oneSided = "one-sided"
    /// Changed differently on several sides: the method merged it.
    case merged
    /// New on one side only (or identical on several): taken as is.
    case added
    /// Deleted on one side, unchanged elsewhere: deleted.
    case deleted
    /// Not a floating-point tensor: taken from the merge base.
    case nonFloat = "non-float"
    /// Cannot be merged without a decision: dtype or shape changed, added differently on several
    /// sides, deleted on one side and changed on another, or a threshold tripped.
    case conflict
}

/// One tensor's line in the conflict report.
public struct TensorReport: Sendable {
    public var name: String
    public var mergeClass: MergeClass
    public var elementCount: Int
    public var layer: Int?
    /// The tensor's kind inside its block (`attention.self.query.weight`), for the heatmap.
    public var module: String
    /// For one-sided, added and deleted tensors: which expert's side was taken.
    public var source: String?
    public var metrics: ConflictMetrics?
    /// Why the tensor is an unresolved conflict (nil when resolved).
    public var conflict: String?
    /// How a conflict was settled (`ours`, `theirs:math`, `base`, `method:ties`), when it was.
    public var resolution: String?
    /// Remarks (vocabulary rows added or dropped, non-float disagreement).
    public var remarks: [String] = []

    public init(name: String, mergeClass: MergeClass, elementCount: Int, source: String? = nil) {
        self.name = name
        self.mergeClass = mergeClass
        self.elementCount = elementCount
        self.layer = TensorContext.layerIndex(of: name)
        self.module = TensorReport.module(of: name)
        self.source = source
    }

    /// The part of a tensor name that names its role inside a block.
    public static func module(of name: String) -> String {
        let parts = name.split(separator: ".").map(String.init)
        for (i, p) in parts.enumerated() where i + 1 < parts.count {
            if ["layers", "layer", "h", "blocks", "resblocks", "block"].contains(p), Int(parts[i + 1]) != nil {
                return parts[(i + 2)...].joined(separator: ".")
            }
        }
        return name
    }

    /// A single number for ranking conflicts: the conflicting mass, else the sign conflict.
    public var severity: Double {
        metrics.map { max($0.conflictingMass, $0.signConflict * 0.5) } ?? (mergeClass == .conflict ? 1 : 0)
    }
}

/// Thresholds that turn a merged tensor into an unresolved conflict.
public struct ConflictThresholds: Sendable, Equatable {
    /// Stop when the sign-conflict fraction exceeds this.
    public var maxSignConflict: Double?
    /// Stop when the smallest pairwise cosine of the task vectors falls below this.
    public var minCosine: Double?
    /// Stop when the conflicting mass exceeds this.
    public var maxConflictingMass: Double?

    public init(maxSignConflict: Double? = nil, minCosine: Double? = nil, maxConflictingMass: Double? = nil) {
        self.maxSignConflict = maxSignConflict
        self.minCosine = minCosine
        self.maxConflictingMass = maxConflictingMass
    }

    /// Why `metrics` trips a threshold, or nil.
    public func violation(_ m: ConflictMetrics) -> String? {
        if let t = maxSignConflict, m.signConflict > t {
            return String(format: "sign conflict %.3f > %.3f (--max-sign-conflict)", m.signConflict, t)
        }
        if let t = minCosine, let c = m.minCosine, c < t {
            return String(format: "task-vector cosine %.3f < %.3f (--min-cosine)", c, t)
        }
        if let t = maxConflictingMass, m.conflictingMass > t {
            return String(format: "conflicting mass %.3f > %.3f (--max-conflicting-mass)", m.conflictingMass, t)
        }
        return nil
    }

    public var isEmpty: Bool { maxSignConflict == nil && minCosine == nil && maxConflictingMass == nil }
}

/// The whole merge's report: every tensor, aggregates per layer, and the worst conflicts.
public struct ConflictReport: Sendable {
    public var method: String
    public var experts: [String]
    public var baseName: String
    public var tensors: [TensorReport]
    /// Non-tensor files and how they were merged.
    public var files: [(path: String, outcome: String)]

    public init(method: String, experts: [String], baseName: String, tensors: [TensorReport], files: [(path: String, outcome: String)]) {
        self.method = method
        self.experts = experts
        self.baseName = baseName
        self.tensors = tensors
        self.files = files
    }

    public var unresolved: [TensorReport] { tensors.filter { $0.conflict != nil && $0.resolution == nil } }

    public var classCounts: [MergeClass: Int] {
        Dictionary(grouping: tensors, by: \.mergeClass).mapValues(\.count)
    }

    /// Merged tensors, worst first.
    public func topConflicts(_ n: Int) -> [TensorReport] {
        Array(tensors.filter { $0.metrics != nil || $0.mergeClass == .conflict }.sorted { $0.severity > $1.severity }.prefix(n))
    }

    /// Aggregates over the merged tensors of one layer (weighted by element count).
    public struct LayerSummary: Sendable {
        public var layer: Int?
        public var tensors = 0
        public var merged = 0
        public var elements = 0
        public var signConflict = 0.0
        public var conflictingMass = 0.0
        public var minCosine: Double?
        public var tallNone = 0.0
        public var unresolved = 0
    }

    public var layers: [LayerSummary] {
        var byLayer: [Int: LayerSummary] = [:]
        var outside = LayerSummary(layer: nil)
        for t in tensors {
            var s = t.layer.map { byLayer[$0] ?? LayerSummary(layer: $0) } ?? outside
            s.tensors += 1
            if t.conflict != nil && t.resolution == nil { s.unresolved += 1 }
            if let m = t.metrics {
                s.merged += 1
                let w = Double(t.elementCount)
                s.signConflict = (s.signConflict * Double(s.elements) + m.signConflict * w) / (Double(s.elements) + w)
                s.conflictingMass = (s.conflictingMass * Double(s.elements) + m.conflictingMass * w) / (Double(s.elements) + w)
                s.tallNone = (s.tallNone * Double(s.elements) + m.tallNone * w) / (Double(s.elements) + w)
                if let c = m.minCosine { s.minCosine = min(s.minCosine ?? c, c) }
                s.elements += t.elementCount
            }
            if let l = t.layer { byLayer[l] = s } else { outside = s }
        }
        return byLayer.keys.sorted().map { byLayer[$0]! } + (outside.tensors > 0 ? [outside] : [])
    }

    // MARK: - JSON

    public var json: JSONValue {
        func opt(_ x: Double?) -> JSONValue { x.map { .double($0) } ?? .null }
        func metricsJSON(_ m: ConflictMetrics) -> JSONValue {
            var members = [
                JSONMember("task_vector_norms", .array(m.taskVectorNorms.map { .double($0) })),
                JSONMember("norm_ratio", opt(m.normRatio)),
                JSONMember("cosines", .array(m.cosines.map(opt))),
                JSONMember("min_cosine", opt(m.minCosine)),
                JSONMember("sign_conflict", .double(m.signConflict)),
                JSONMember("conflicting_mass", .double(m.conflictingMass)),
                JSONMember("far_from_expert", .array(m.farFromExpert.map { .double($0) })),
                JSONMember("tall", .object([JSONMember("none", .double(m.tallNone)), JSONMember("one", .double(m.tallOne)),
                                            JSONMember("shared", .double(m.tallShared))])),
                JSONMember("merged_relative_update", opt(m.mergedRelativeUpdate)),
                JSONMember("measured_elements", .int(m.measuredElements)),
            ]
            if let k = m.keptFraction { members.append(JSONMember("kept_fraction", .array(k.map { .double($0) }))) }
            if !m.notes.isEmpty { members.append(JSONMember("notes", .object(m.notes.keys.sorted().map { JSONMember($0, .double(m.notes[$0]!)) }))) }
            return .object(members)
        }
        let counts = classCounts
        return .object([
            JSONMember("method", .string(method)),
            JSONMember("experts", .array(experts.map { .string($0) })),
            JSONMember("base", .string(baseName)),
            JSONMember("classes", .object(MergeClass.allCases.map { JSONMember($0.rawValue, .int(counts[$0] ?? 0)) })),
            JSONMember("unresolved", .array(unresolved.map { .object([JSONMember("tensor", .string($0.name)), JSONMember("reason", .string($0.conflict ?? ""))]) })),
            JSONMember("files", .array(files.map { .object([JSONMember("path", .string($0.path)), JSONMember("outcome", .string($0.outcome))]) })),
            JSONMember("layers", .array(layers.map { l in
                .object([JSONMember("layer", l.layer.map { .int($0) } ?? .null), JSONMember("tensors", .int(l.tensors)),
                         JSONMember("merged", .int(l.merged)), JSONMember("sign_conflict", .double(l.signConflict)),
                         JSONMember("conflicting_mass", .double(l.conflictingMass)), JSONMember("min_cosine", opt(l.minCosine)),
                         JSONMember("tall_none", .double(l.tallNone)), JSONMember("unresolved", .int(l.unresolved))])
            })),
            JSONMember("top_conflicts", .array(topConflicts(10).map { .string($0.name) })),
            JSONMember("tensors", .array(tensors.map { t in
                var members = [
                    JSONMember("name", .string(t.name)), JSONMember("class", .string(t.mergeClass.rawValue)),
                    JSONMember("elements", .int(t.elementCount)), JSONMember("layer", t.layer.map { .int($0) } ?? .null),
                ]
                if let s = t.source { members.append(JSONMember("source", .string(s))) }
                if let m = t.metrics { members.append(JSONMember("metrics", metricsJSON(m))) }
                if let c = t.conflict { members.append(JSONMember("conflict", .string(c))) }
                if let r = t.resolution { members.append(JSONMember("resolution", .string(r))) }
                if !t.remarks.isEmpty { members.append(JSONMember("remarks", .array(t.remarks.map { .string($0) }))) }
                return .object(members)
            })),
        ])
    }
}

extension ConflictThresholds: Codable {
    enum CodingKeys: String, CodingKey {
        case maxSignConflict = "max_sign_conflict"
        case minCosine = "min_cosine"
        case maxConflictingMass = "max_conflicting_mass"
    }
}

extension ConflictReport {
    /// Reads a report back from its JSON form (``json``), as stored with a merge commit.
    /// - Throws: ``MergeError/invalidRecipe(file:problem:)`` naming `source` when a member does not fit.
    public init(json v: JSONValue, source: String = "the merge report") throws {
        func bad(_ problem: String) -> MergeError { .invalidRecipe(file: source, problem: problem) }
        guard let method = v["method"]?.stringValue, let experts = v["experts"]?.arrayValue?.compactMap(\.stringValue),
              let tensors = v["tensors"]?.arrayValue else {
            throw bad("is not a conflict report (method, experts and tensors are required)")
        }
        func doubles(_ j: JSONValue?) -> [Double] { (j?.arrayValue ?? []).compactMap(\.doubleValue) }
        var out: [TensorReport] = []
        for (i, t) in tensors.enumerated() {
            guard let name = t["name"]?.stringValue, let cls = t["class"]?.stringValue.flatMap(MergeClass.init(rawValue:)) else {
                throw bad("tensors[\(i)] needs a name and a class")
            }
            var r = TensorReport(name: name, mergeClass: cls, elementCount: t["elements"]?.intValue ?? 0, source: t["source"]?.stringValue)
            r.conflict = t["conflict"]?.stringValue
            r.resolution = t["resolution"]?.stringValue
            r.remarks = (t["remarks"]?.arrayValue ?? []).compactMap(\.stringValue)
            if let m = t["metrics"] {
                var metrics = ConflictMetrics()
                metrics.elementCount = r.elementCount
                metrics.taskVectorNorms = doubles(m["task_vector_norms"])
                metrics.cosines = (m["cosines"]?.arrayValue ?? []).map(\.doubleValue)
                metrics.signConflict = m["sign_conflict"]?.doubleValue ?? 0
                metrics.conflictingMass = m["conflicting_mass"]?.doubleValue ?? 0
                metrics.farFromExpert = doubles(m["far_from_expert"])
                metrics.tallNone = m["tall"]?["none"]?.doubleValue ?? 0
                metrics.tallOne = m["tall"]?["one"]?.doubleValue ?? 0
                metrics.tallShared = m["tall"]?["shared"]?.doubleValue ?? 0
                metrics.mergedRelativeUpdate = m["merged_relative_update"]?.doubleValue
                metrics.measuredElements = m["measured_elements"]?.intValue ?? 0
                if let k = m["kept_fraction"] { metrics.keptFraction = doubles(k) }
                for n in m["notes"]?.objectValue ?? [] { metrics.notes[n.key] = n.value.doubleValue }
                r.metrics = metrics
            }
            out.append(r)
        }
        let files = (v["files"]?.arrayValue ?? []).compactMap { f -> (String, String)? in
            guard let p = f["path"]?.stringValue, let o = f["outcome"]?.stringValue else { return nil }
            return (p, o)
        }
        self.init(method: method, experts: experts, baseName: v["base"]?.stringValue ?? "", tensors: out, files: files)
    }
}
