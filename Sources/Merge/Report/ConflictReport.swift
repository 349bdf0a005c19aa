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
    /// The merge base: its full commit id (reports recorded before 2026-12-07 hold 12 digits).
    public var baseName: String
    public var tensors: [TensorReport]
    /// Non-tensor files and how they were merged.
    public var files: [(path: String, outcome: String)]

    /// How a file's outcome begins when the sides changed it differently and the file rule chose.
    public static let severalSides = "changed on several sides"
    /// The files changed differently on several sides, settled by the file rule.
    public var filesChangedOnSeveralSides: [String] { files.filter { $0.outcome.hasPrefix(Self.severalSides) }.map(\.path) }

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
}

// MARK: - JSON

extension ConflictReport: Codable {
    /// The report as stored with a merge commit and printed by `merge --json` and
    /// `show --conflicts --json` (its ``Encodable`` form; the derived members, classes, layers and
    /// top conflicts, are written for readers and recomputed by ``init(json:source:)``).
    public var json: JSONValue {
        do {
            return try JSONValueCoding.encode(self)
        } catch {
            preconditionFailure("a conflict report always encodes (non-finite numbers become null): \(error)")
        }
    }

    private enum Keys: String, CodingKey {
        case method, experts, base, classes, unresolved, files, layers, topConflicts = "top_conflicts", tensors
    }

    /// The stored members; the derived ones (classes, layers, top conflicts) are recomputed, and
    /// `unresolved` is the tensors' own `conflict` without a `resolution`.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let files = try c.decodeIfPresent([FileOutcome].self, forKey: .files) ?? []
        self.init(method: try c.decode(String.self, forKey: .method), experts: try c.decode([String].self, forKey: .experts),
                  baseName: try c.decodeIfPresent(String.self, forKey: .base) ?? "", tensors: try c.decode([TensorReport].self, forKey: .tensors),
                  files: files.map { ($0.path, $0.outcome) })
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(method, forKey: .method)
        try c.encode(experts, forKey: .experts)
        try c.encode(baseName, forKey: .base)
        let counts = classCounts
        var classes = c.nestedContainer(keyedBy: JSONKey.self, forKey: .classes)
        for cls in MergeClass.allCases { try classes.encode(counts[cls] ?? 0, forKey: JSONKey(cls.rawValue)) }
        try c.encode(unresolved.map { Unresolved(tensor: $0.name, reason: $0.conflict ?? "") }, forKey: .unresolved)
        try c.encode(files.map { FileOutcome(path: $0.path, outcome: $0.outcome) }, forKey: .files)
        try c.encode(layers, forKey: .layers)
        try c.encode(topConflicts(10).map(\.name), forKey: .topConflicts)
        try c.encode(tensors, forKey: .tensors)
    }

    private struct Unresolved: Encodable { var tensor: String, reason: String }
    private struct FileOutcome: Codable { var path: String, outcome: String }
}

extension ConflictReport.LayerSummary: Encodable {
    private enum Keys: String, CodingKey {
        case layer, tensors, merged, signConflict = "sign_conflict", conflictingMass = "conflicting_mass", minCosine = "min_cosine"
        case tallNone = "tall_none", unresolved
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        if let layer { try c.encode(layer, forKey: .layer) } else { try c.encodeNil(forKey: .layer) }
        try c.encode(tensors, forKey: .tensors)
        try c.encode(merged, forKey: .merged)
        try c.encodeNumber(signConflict, forKey: .signConflict)
        try c.encodeNumber(conflictingMass, forKey: .conflictingMass)
        try c.encodeNumber(minCosine, forKey: .minCosine)
        try c.encodeNumber(tallNone, forKey: .tallNone)
        try c.encode(unresolved, forKey: .unresolved)
    }
}

extension TensorReport: Codable {
    private enum Keys: String, CodingKey {
        case name, mergeClass = "class", elements, layer, source, metrics, conflict, resolution, remarks
    }

    /// `layer` and `module` are recomputed from the name; `metrics` read back with the element count.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        self.init(name: try c.decode(String.self, forKey: .name), mergeClass: try c.decode(MergeClass.self, forKey: .mergeClass),
                  elementCount: try c.decodeIfPresent(Int.self, forKey: .elements) ?? 0, source: try c.decodeIfPresent(String.self, forKey: .source))
        conflict = try c.decodeIfPresent(String.self, forKey: .conflict)
        resolution = try c.decodeIfPresent(String.self, forKey: .resolution)
        remarks = try c.decodeIfPresent([String].self, forKey: .remarks) ?? []
        metrics = try c.decodeIfPresent(ConflictMetrics.self, forKey: .metrics)
        metrics?.elementCount = elementCount
    }

    /// Optional members are left out when absent (`layer` is `null`), as readers of stored reports expect.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(name, forKey: .name)
        try c.encode(mergeClass.rawValue, forKey: .mergeClass)
        try c.encode(elementCount, forKey: .elements)
        if let layer { try c.encode(layer, forKey: .layer) } else { try c.encodeNil(forKey: .layer) }
        try c.encodeIfPresent(source, forKey: .source)
        try c.encodeIfPresent(metrics, forKey: .metrics)
        try c.encodeIfPresent(conflict, forKey: .conflict)
        try c.encodeIfPresent(resolution, forKey: .resolution)
        if !remarks.isEmpty { try c.encode(remarks, forKey: .remarks) }
    }
}

extension ConflictMetrics: Codable {
    private enum Keys: String, CodingKey {
        case taskVectorNorms = "task_vector_norms", normRatio = "norm_ratio", cosines, minCosine = "min_cosine"
        case signConflict = "sign_conflict", conflictingMass = "conflicting_mass", farFromExpert = "far_from_expert", tall
        case mergedRelativeUpdate = "merged_relative_update", measuredElements = "measured_elements"
        case keptFraction = "kept_fraction", notes
    }

    /// Members missing from reports of earlier versions read as "not measured" (zero, empty), and
    /// a null share (a non-finite value) as zero, as before; a member of the wrong type is an
    /// error. `norm_ratio` and `min_cosine` are recomputed.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        func number(_ key: Keys) throws -> Double { try c.decodeIfPresent(Double.self, forKey: key) ?? 0 }
        func numbers(_ key: Keys) throws -> [Double] { c.contains(key) ? try c.decodeNumbers(forKey: key) : [] }
        self.init()
        taskVectorNorms = try numbers(.taskVectorNorms)
        cosines = try c.decodeIfPresent([Double?].self, forKey: .cosines) ?? []
        signConflict = try number(.signConflict)
        conflictingMass = try number(.conflictingMass)
        farFromExpert = try numbers(.farFromExpert)
        if c.contains(.tall) {
            let tall = try c.nestedContainer(keyedBy: JSONKey.self, forKey: .tall)
            func share(_ name: String) throws -> Double { try tall.decodeIfPresent(Double.self, forKey: JSONKey(name)) ?? 0 }
            (tallNone, tallOne, tallShared) = (try share("none"), try share("one"), try share("shared"))
        }
        mergedRelativeUpdate = try c.decodeIfPresent(Double.self, forKey: .mergedRelativeUpdate)
        measuredElements = try c.decodeIfPresent(Int.self, forKey: .measuredElements) ?? 0
        keptFraction = c.contains(.keptFraction) ? try c.decodeNumbers(forKey: .keptFraction) : nil
        if c.contains(.notes) {
            let notes = try c.nestedContainer(keyedBy: JSONKey.self, forKey: .notes)
            for key in notes.allKeys { self.notes[key.stringValue] = try notes.decodeIfPresent(Double.self, forKey: key) }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encodeNumbers(taskVectorNorms.map { $0 }, forKey: .taskVectorNorms)
        try c.encodeNumber(normRatio, forKey: .normRatio)
        try c.encodeNumbers(cosines, forKey: .cosines)
        try c.encodeNumber(minCosine, forKey: .minCosine)
        try c.encodeNumber(signConflict, forKey: .signConflict)
        try c.encodeNumber(conflictingMass, forKey: .conflictingMass)
        try c.encodeNumbers(farFromExpert.map { $0 }, forKey: .farFromExpert)
        try c.encodeNumbers([("none", tallNone), ("one", tallOne), ("shared", tallShared)], forKey: .tall)
        try c.encodeNumber(mergedRelativeUpdate, forKey: .mergedRelativeUpdate)
        try c.encode(measuredElements, forKey: .measuredElements)
        if let keptFraction { try c.encodeNumbers(keptFraction.map { $0 }, forKey: .keptFraction) }
        if !notes.isEmpty { try c.encodeNumbers(notes.keys.sorted().map { ($0, notes[$0]) }, forKey: .notes) }
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
    /// - Throws: ``MergeError/corruptRecord(_:problem:)`` naming `source` when a member does not fit.
    public init(json: JSONValue, source: String = "the merge report") throws(MergeError) {
        self = try StoredRecord.decode(ConflictReport.self, from: json, what: source)
    }
}
