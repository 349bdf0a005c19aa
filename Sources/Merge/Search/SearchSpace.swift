import Delta
import Foundation
import Yams

/// What `merge --search` may choose: the candidate methods, the balance options and a range (or a
/// fixed value) per parameter. `--space FILE` narrows or fixes the defaults (docs/merging.md,
/// "Recipe search"); ``SearchLayout`` turns it into the optimiser's coordinates once the experts
/// are known.
public struct SearchSpace: Sendable, Equatable {
    /// How one parameter is searched.
    public enum Setting: Sendable, Equatable {
        /// Any value the method takes (numbers, flags, text), not searched.
        case fixed(ParameterValue)
        /// A number in [min, max]; with `points` > 1, a gradient of that many values over depth
        /// (mergekit's list form, interpolated over the layers).
        case range(min: Double, max: Double, points: Int)
    }

    public var methods: [String]
    /// Whether `methods` came from the space file or `--method` (false: the built-in list, which a
    /// search extends by the data-driven methods every expert has statistics for).
    public var methodsGiven: Bool
    public var balances: [TaskVectorBalance]
    /// By parameter name; a per-expert parameter (weight, density, ...) applies to each expert.
    public var parameters: [String: Setting]
    /// Per named expert, settings that replace ``parameters`` for that expert.
    public var experts: [String: [String: Setting]]

    /// The methods a search may pick when neither `--method` nor the space names them.
    public static let defaultMethods = ["task_arithmetic", "ties", "dare_ties", "tsv", "iso_c", "iso_cts"]
    /// Data-driven methods a search adds to the built-in list when every expert carries the
    /// statistics they read (``offeringStatisticsMethods(where:)``).
    public static let statisticsMethods = ["regmean", "fisher"]
    /// Searched when the space does not mention them and the chosen method takes them.
    public static let defaultRanges: [String: Setting] = [
        "lambda": .range(min: 0.2, max: 1.5, points: 1),
        "weight": .range(min: 0.1, max: 1.0, points: 1),
        "density": .range(min: 0.1, max: 1.0, points: 1),
    ]
    static let maximumPoints = 8
    static let maximumParameters = 64

    public init(methods: [String]? = nil, balances: [TaskVectorBalance] = [.none, .norm],
                parameters: [String: Setting] = [:], experts: [String: [String: Setting]] = [:]) {
        self.methods = methods ?? SearchSpace.defaultMethods
        methodsGiven = methods != nil
        self.balances = balances
        self.parameters = parameters
        self.experts = experts
    }

    /// Methods a search can drive: tensor by tensor, with λ or per-expert weights to tune, no commit
    /// metrics to read (MWA's weights are the metrics), and not the LoRA-only KnOTS. Methods without
    /// a merge base are searched without balance (``MergeMethod/takesBalance``); data-driven ones
    /// need every expert's statistics.
    public static func isSearchable(_ m: any MergeMethod.Type) -> Bool {
        m.mergesTensorByTensor && m.expertMetrics(m.defaultParameters).isEmpty && m.id != "knots"
            && m.allParameterNames.contains { $0 == "lambda" || $0 == "weight" }
    }

    /// The space with ``statisticsMethods`` appended, those for which `available` says every expert
    /// has the statistics files, when the methods are the built-in list; otherwise unchanged.
    public func offeringStatisticsMethods(where available: (any MergeMethod.Type) -> Bool) -> SearchSpace {
        guard !methodsGiven else { return self }
        var out = self
        for id in SearchSpace.statisticsMethods where !out.methods.contains(id) {
            if let m = try? MethodRegistry.method(named: id), SearchSpace.isSearchable(m), available(m) { out.methods.append(id) }
        }
        return out
    }

    /// Applies `--method` and `--balance` from the command line, then checks every method and
    /// parameter against the registry.
    public func fixing(method: String?, balance: TaskVectorBalance?, file: String) throws(MergeError) -> SearchSpace {
        var out = self
        if let method {
            if methodsGiven, !methods.contains(method) {
                throw .invalidRecipe(file: file, problem: "methods does not include --method \(method)")
            }
            out.methods = [method]
            out.methodsGiven = true
        } else if !methodsGiven {
            // The built-in list keeps what this build can search; a list the user gave is checked as given.
            out.methods = methods.filter { (try? MethodRegistry.method(named: $0)).map { SearchSpace.isSearchable($0) } ?? false }
        }
        if let balance { out.balances = [balance] }
        if let problem = out.problem() { throw .invalidRecipe(file: file, problem: problem) }
        return out
    }

    /// The first problem of the space, or nil.
    func problem() -> String? {
        if methods.isEmpty { return "methods is empty" }
        let searchable = MethodRegistry.all.filter { SearchSpace.isSearchable($0) }.map { $0.id }.joined(separator: ", ")
        var types: [any MergeMethod.Type] = []
        for id in methods {
            guard let m = MethodRegistry.all.first(where: { $0.id == id }) else {
                return "unknown method '\(id)'; searchable methods: \(searchable)"
            }
            if !SearchSpace.isSearchable(m) {
                return "\(id) cannot be searched (a search needs a tensor-by-tensor task-vector method with lambda or weights); searchable methods: \(searchable)"
            }
            types.append(m)
        }
        if balances.isEmpty { return "balance is empty" }
        var all: [(String, [String: Setting])] = [("parameters", parameters)]
        for name in experts.keys.sorted() { all.append(("experts.\(name)", experts[name] ?? [:])) }
        for (at, settings) in all {
            for name in settings.keys.sorted() {
                let setting = settings[name]!
                let specs = types.flatMap { $0.parameters + $0.expertParameters }.filter { $0.name == name }
                guard let first = specs.first else {
                    return "\(at).\(name): none of \(methods.joined(separator: ", ")) has a parameter '\(name)'"
                }
                if at != "parameters", !types.contains(where: { t in t.expertParameters.contains { $0.name == name } }) {
                    return "\(at).\(name) is not a per-expert parameter"
                }
                switch setting {
                case let .fixed(v):
                    for spec in specs { if let p = Self.problem(spec, v) { return "\(at).\(name) \(p)" } }
                case let .range(lo, hi, points):
                    if !(lo.isFinite && hi.isFinite && lo < hi) { return "\(at).\(name) needs finite min < max, got \(lo) and \(hi)" }
                    if points < 1 || points > SearchSpace.maximumPoints {
                        return "\(at).\(name).points must be 1 to \(SearchSpace.maximumPoints), got \(points)"
                    }
                    if !first.isNumber { return "\(at).\(name) is not a number; give it a fixed value" }
                    for spec in specs {
                        for x in [lo, hi] { if let p = Self.problem(spec, .number(x)) { return "\(at).\(name) \(p)" } }
                    }
                }
            }
        }
        return nil
    }

    /// Why `value` does not suit `spec` (nil: it does).
    private static func problem(_ spec: ParameterSpec, _ value: ParameterValue) -> String? {
        let error: MergeError
        do {
            try spec.validate(value, method: "")
            return nil
        } catch let e {
            error = e
        }
        if case let .invalidParameter(_, _, problem) = error { return problem }
        return error.description
    }

    /// The setting of a parameter for an expert (nil: not searched, the method's default applies).
    func setting(_ name: String, expert: String?) -> Setting? {
        if let expert, let s = experts[expert]?[name] { return s }
        return parameters[name] ?? SearchSpace.defaultRanges[name]
    }
}

extension ParameterSpec {
    var isNumber: Bool {
        switch kind {
        case .number: return true
        default: return false
        }
    }
}

extension SearchSpace {
    /// Reads a `--space` YAML file, bounded like a recipe (size, values, depth), every problem a
    /// one-line error naming the file.
    public static func parse(_ text: String, file: String) throws(MergeError) -> SearchSpace {
        var reader = MergekitRecipe.Reader(file: file)
        do {
            return try reader.space(text)
        } catch let e as MergeError {
            throw e
        } catch {
            throw .invalidRecipe(file: file, problem: "\(error)")
        }
    }
}

extension MergekitRecipe.Reader {
    mutating func space(_ text: String) throws -> SearchSpace {
        let document = try compose(text, what: "a search space")
        guard let document, let root = try mapping(document, at: "the top level", depth: 0) else {
            throw bad("expected a mapping at the top level (methods, balance, parameters, experts)")
        }
        for key in root.keys.sorted() where !["methods", "balance", "parameters", "experts"].contains(key) {
            throw bad("unknown key '\(key)' (known: methods, balance, parameters, experts)")
        }
        var space = SearchSpace()
        if let node = root["methods"] {
            space.methods = try words(node, at: "methods")
            if let twice = space.methods.enumerated().first(where: { i, m in space.methods[..<i].contains(m) })?.element {
                throw bad("methods: '\(twice)' is listed twice")
            }
            space.methodsGiven = true
        }
        if let node = root["balance"] {
            space.balances = try words(node, at: "balance").map { w in
                guard let b = TaskVectorBalance(rawValue: w) else { throw bad("balance must be none or norm, got '\(w)'") }
                return b
            }
        }
        space.parameters = try settings(root["parameters"], at: "parameters", depth: 1)
        if let node = root["experts"] {
            guard let map = try mapping(node, at: "experts", depth: 1) else { throw bad("experts must be a mapping of expert names") }
            for (name, value) in map { space.experts[name] = try settings(value, at: "experts.\(name)", depth: 2) }
        }
        let count = space.parameters.count + space.experts.values.map(\.count).reduce(0, +)
        if count > SearchSpace.maximumParameters { throw bad("sets \(count) parameters; at most \(SearchSpace.maximumParameters)") }
        return space
    }

    /// A word or a list of words.
    mutating func words(_ node: Node, at: String) throws -> [String] {
        if let s = try? string(node, at: at) { return [s] }
        guard let items = try sequence(node, at: at, depth: 1), !items.isEmpty else { throw bad("\(at) must be a name or a list of names") }
        return try items.enumerated().map { i, item in
            try count(2)
            guard let s = try string(item, at: "\(at)[\(i)]") else { throw bad("\(at)[\(i)] is empty") }
            return s
        }
    }

    mutating func settings(_ node: Node?, at: String, depth: Int) throws -> [String: SearchSpace.Setting] {
        guard let node, kind(node) != .null else { return [:] }
        guard let map = try mapping(node, at: at, depth: depth) else { throw bad("\(at) must be a mapping of parameter names") }
        var out: [String: SearchSpace.Setting] = [:]
        for (name, value) in map {
            let here = "\(at).\(name)"
            if let range = value.mapping {
                guard let entries = try mapping(value, at: here, depth: depth + 1) else { throw bad("\(here) must be a mapping") }
                for key in entries.keys.sorted() where !["min", "max", "points"].contains(key) {
                    throw bad("\(here) has an unknown key '\(key)' (known: min, max, points)")
                }
                guard let lo = entries["min"]?.float, let hi = entries["max"]?.float else {
                    throw bad("\(here) needs numbers min and max")
                }
                var points = 1
                if let p = entries["points"] {
                    guard let n = p.int else { throw bad("\(here).points must be an integer") }
                    points = n
                }
                _ = range
                out[name] = .range(min: lo, max: hi, points: points)
            } else {
                out[name] = .fixed(try self.value(value, at: here, depth: depth + 1))
            }
        }
        return out
    }
}
