import Foundation

/// The value of a merge parameter, as a recipe or the command line gives it.
///
/// Numbers may vary with depth (a *gradient*, mergekit's list form) or by tensor (conditions with a
/// filter, first match wins), so one recipe can give attention and MLP tensors, or early and late
/// layers, different densities.
public indirect enum ParameterValue: Sendable, Equatable, CustomStringConvertible {
    case number(Double)
    /// Values interpolated linearly over depth: layer ℓ of L gets position ℓ/(L−1) in the list.
    case gradient([Double])
    case flag(Bool)
    case text(String)
    /// The first condition whose filter matches the tensor name wins; a nil filter matches all.
    case conditional([ParameterCondition])

    public var description: String {
        switch self {
        case let .number(x): return ParameterValue.format(x)
        case let .gradient(xs): return "[" + xs.map(ParameterValue.format).joined(separator: ", ") + "]"
        case let .flag(b): return b ? "true" : "false"
        case let .text(s): return s
        case let .conditional(cs):
            return "{" + cs.map { "\($0.filter ?? "*"): \($0.value)" }.joined(separator: "; ") + "}"
        }
    }

    public static func format(_ x: Double) -> String {
        x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : "\(x)"
    }

    /// Parses command-line text: `0.5`, `[0, 0.5, 1]`, `true`, or any other word.
    public static func parse(_ text: String) -> ParameterValue {
        let t = text.trimmingCharacters(in: .whitespaces)
        if let x = Double(t) { return .number(x) }
        if t == "true" || t == "false" { return .flag(t == "true") }
        if t.hasPrefix("["), t.hasSuffix("]") {
            let items = t.dropFirst().dropLast().split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            if !items.isEmpty, items.allSatisfy({ $0 != nil }) { return .gradient(items.map { $0! }) }
        }
        return .text(t)
    }

    /// Every number in the value, for range checks.
    var numbers: [Double] {
        switch self {
        case let .number(x): return [x]
        case let .gradient(xs): return xs
        case let .conditional(cs): return cs.flatMap(\.value.numbers)
        default: return []
        }
    }

    /// The value for one tensor, or nil when no condition matches it (the default applies then).
    public func resolve(for tensor: TensorContext) -> ParameterValue? {
        switch self {
        case let .gradient(xs):
            return .number(ParameterValue.interpolate(xs, at: tensor.depthPosition))
        case let .conditional(cs):
            for c in cs where c.matches(tensor.name) { return c.value.resolve(for: tensor) }
            return nil
        default:
            return self
        }
    }

    /// mergekit's gradient: `s = t·(K−1)`, linear between the two neighbouring entries.
    public static func interpolate(_ xs: [Double], at t: Double) -> Double {
        guard xs.count > 1 else { return xs.first ?? 0 }
        let s = min(max(t, 0), 1) * Double(xs.count - 1)
        let i0 = Int(s.rounded(.down))
        let i1 = min(xs.count - 1, i0 + 1)
        let f = s - Double(i0)
        return (1 - f) * xs[i0] + f * xs[i1]
    }

    public var numberValue: Double? {
        if case let .number(x) = self { return x }
        return nil
    }

    public var boolValue: Bool? {
        switch self {
        case let .flag(b): return b
        case let .number(x): return x != 0
        default: return nil
        }
    }
}

/// One `filter: value` entry of a conditional parameter.
public struct ParameterCondition: Sendable, Equatable {
    /// A substring of the tensor name (mergekit's rule), or a glob when it holds `*`, `?` or `[`.
    public var filter: String?
    public var value: ParameterValue

    public init(filter: String?, value: ParameterValue) {
        self.filter = filter
        self.value = value
    }

    public func matches(_ name: String) -> Bool {
        // mergekit's `filter in name`: the empty filter is in every name (Swift's `contains` says
        // no, which made `filter: ""` match nothing).
        guard let filter, filter != "*", !filter.isEmpty else { return true }
        if Self.isGlob(filter) { return fnmatch(filter, name, 0) == 0 }
        return name.contains(filter)
    }

    /// Whether every `[` of a glob opens a bracket expression that a `]` closes (`[]a]` and
    /// `[!]a]` hold a `]`), so that fnmatch reads it as the user meant.
    public static func isWellFormedGlob(_ glob: String) -> Bool {
        let c = Array(glob)
        var i = 0
        while i < c.count {
            if c[i] == "\\" {
                i += 2
                continue
            }
            if c[i] == "[" {
                var j = i + 1
                if j < c.count, c[j] == "!" || c[j] == "^" { j += 1 }
                if j < c.count, c[j] == "]" { j += 1 }
                while j < c.count, c[j] != "]" { j += 1 }
                guard j < c.count else { return false }
                i = j
            }
            i += 1
        }
        return true
    }

    /// Whether mrepo reads `filter` as a glob (mergekit reads every filter as a substring).
    public static func isGlob(_ filter: String) -> Bool { filter.contains(where: { "*?[".contains($0) }) }

    /// A glob of the command line in mergekit's form where it has one: `*X*` (X free of
    /// wildcards) matches exactly the names holding X, mergekit's substring filter `X`. Other
    /// globs stay globs, which mergekit cannot read (``MergekitRecipe/yaml()`` says so).
    public static func mergekitFilter(_ glob: String) -> String {
        guard glob.count > 2, glob.hasPrefix("*"), glob.hasSuffix("*") else { return glob }
        let inner = String(glob.dropFirst().dropLast())
        // A backslash escapes in a glob and is itself in a substring: `*a\.b*` stays a glob.
        return isGlob(inner) || inner.contains("\\") ? glob : inner
    }
}

/// Declares one parameter of a merge method: its name, kind, default and help text.
public struct ParameterSpec: Sendable {
    public enum Kind: Sendable, Equatable {
        /// A number in `range`; `lowerOpen`/`upperOpen` exclude the ends.
        case number(range: ClosedRange<Double>, lowerOpen: Bool = false, upperOpen: Bool = false)
        case integer(range: ClosedRange<Int>)
        case flag
        case choice([String])
        /// Any text (a metric name, say).
        case text
    }

    public var name: String
    public var kind: Kind
    /// nil: the parameter is required.
    public var defaultValue: ParameterValue?
    public var help: String

    public init(_ name: String, _ kind: Kind, default defaultValue: ParameterValue?, help: String) {
        self.name = name
        self.kind = kind
        self.defaultValue = defaultValue
        self.help = help
    }

    /// The range as text, e.g. `(0, 1]`.
    public var rangeDescription: String {
        switch kind {
        case let .number(r, lo, hi):
            let a = r.lowerBound == -.infinity ? "-inf" : ParameterValue.format(r.lowerBound)
            let b = r.upperBound == .infinity ? "inf" : ParameterValue.format(r.upperBound)
            return "\(lo ? "(" : "[")\(a), \(b)\(hi ? ")" : "]")"
        case let .integer(r): return "[\(r.lowerBound), \(r.upperBound)]"
        case .flag: return "true or false"
        case let .choice(cs): return cs.joined(separator: " | ")
        case .text: return "text"
        }
    }

    /// Checks a value against the kind and range.
    func validate(_ value: ParameterValue, method: String) throws(MergeError) {
        func bad(_ problem: String) -> MergeError { .invalidParameter(method: method, parameter: name, problem: problem) }
        switch kind {
        case let .number(r, lo, hi):
            if case .text = value { throw bad("must be a number, got '\(value)'") }
            if case .flag = value { throw bad("must be a number, got '\(value)'") }
            for x in value.numbers {
                let ok = x.isFinite
                let below = lo ? x <= r.lowerBound : x < r.lowerBound
                let above = hi ? x >= r.upperBound : x > r.upperBound
                if !ok { throw bad("must be a finite number, got \(x)") }
                // The arithmetic is Float32's: a larger number turns every product with it into ±inf.
                if abs(x) > Double(Float.greatestFiniteMagnitude) {
                    throw bad("must be within float32's range (±3.4e38, the merge computes in float32), got \(ParameterValue.format(x))")
                }
                if below || above { throw bad("must be in \(rangeDescription), got \(ParameterValue.format(x))") }
            }
        case let .integer(r):
            for x in value.numbers where x != x.rounded() || x < Double(r.lowerBound) || x > Double(r.upperBound) {
                throw bad("must be an integer in \(rangeDescription), got \(ParameterValue.format(x))")
            }
            if value.numbers.isEmpty { throw bad("must be an integer, got '\(value)'") }
        case .flag:
            if value.boolValue == nil, !(value.isConditional) { throw bad("must be true or false, got '\(value)'") }
        case let .choice(cs):
            guard case let .text(t) = value, cs.contains(t) else { throw bad("must be one of \(cs.joined(separator: ", ")), got '\(value)'") }
        case .text:
            guard case .text = value else { throw bad("must be text, got '\(value)'") }
        }
    }
}

extension ParameterValue {
    var isConditional: Bool {
        if case .conditional = self { return true }
        return false
    }
}

/// Where a tensor sits in the model: its name and, for tensors inside a transformer block, the block.
public struct TensorContext: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    /// The block index parsed from the name (`layers.3.`, `layer.3.`, `h.3.`, `blocks.3.`), or nil.
    public var layer: Int?
    /// Number of blocks in the model.
    public var layerCount: Int

    public init(name: String, shape: [Int], layerCount: Int) {
        self.name = name
        self.shape = shape
        self.layer = TensorContext.layerIndex(of: name)
        self.layerCount = layerCount
    }

    /// Position in depth for gradients: ℓ/(L−1) inside blocks; 0 outside them (mergekit ≥ 0.1.2).
    public var depthPosition: Double {
        guard let layer, layerCount > 1 else { return layer == nil ? 0 : 1 }
        return Double(layer) / Double(layerCount - 1)
    }

    /// The block index in a tensor name, for the common naming schemes.
    public static func layerIndex(of name: String) -> Int? {
        let parts = name.split(separator: ".")
        for (i, p) in parts.enumerated() where i + 1 < parts.count {
            if ["layers", "layer", "h", "blocks", "resblocks", "block"].contains(p), let n = Int(parts[i + 1]) { return n }
        }
        return nil
    }

    /// Number of blocks in a model, from its tensor names (0 when none is inside a block).
    public static func layerCount(of names: some Sequence<String>) -> Int {
        names.compactMap(layerIndex(of:)).max().map { $0 + 1 } ?? 0
    }

    /// Whether the tensor is an input embedding or an output head (the tensors whose rows are the vocabulary).
    public var isVocabularyMatrix: Bool {
        let n = name.lowercased()
        return shape.count == 2 && (n.contains("embed_tokens") || n.contains("word_embeddings") || n.contains("wte.")
            || n.hasPrefix("lm_head") || n.contains(".lm_head") || n.contains("embed_out") || n.hasSuffix("output.weight") && !n.contains("layer"))
    }
}

/// Parameters of one merge, resolved per tensor: given values (global and per expert) over defaults.
public struct ParameterSet: Sendable {
    public var global: [String: ParameterValue]
    public var perExpert: [[String: ParameterValue]]
    public var defaults: [String: ParameterValue]

    public init(global: [String: ParameterValue], perExpert: [[String: ParameterValue]], defaults: [String: ParameterValue] = [:]) {
        self.global = global
        self.perExpert = perExpert
        self.defaults = defaults
    }

    private func value(_ name: String, expert: Int?, _ tensor: TensorContext) -> ParameterValue? {
        if let expert, expert < perExpert.count, let v = perExpert[expert][name]?.resolve(for: tensor) { return v }
        if let v = global[name]?.resolve(for: tensor) { return v }
        return defaults[name]?.resolve(for: tensor)
    }

    /// A global number at a tensor.
    public func number(_ name: String, _ tensor: TensorContext) -> Double? {
        value(name, expert: nil, tensor)?.numberValue
    }

    public func flag(_ name: String, _ tensor: TensorContext) -> Bool? {
        value(name, expert: nil, tensor)?.boolValue
    }

    public func text(_ name: String) -> String? {
        for v in [global[name], defaults[name]] {
            if case let .text(t) = v { return t }
        }
        return nil
    }

    /// An expert's number at a tensor (falling back to a global value, then the default).
    public func number(_ name: String, expert: Int, _ tensor: TensorContext) -> Double? {
        value(name, expert: expert, tensor)?.numberValue
    }

    /// A value the same at every tensor, for checks before any tensor is read (`nil` expert: the
    /// global one): the expert's own, else the global one, else the default; nil when a filter or
    /// a gradient makes it depend on the tensor (checked as each tensor is merged instead).
    public func uniform(_ name: String, expert: Int? = nil) -> ParameterValue? {
        let given = (expert.flatMap { $0 < perExpert.count ? perExpert[$0][name] : nil }) ?? global[name] ?? defaults[name]
        switch given {
        case .number?, .flag?: return given
        default: return nil
        }
    }
}

extension ParameterCondition: Codable {
    enum CodingKeys: String, CodingKey { case filter, value }
}
