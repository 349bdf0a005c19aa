import Foundation
import Yams

/// A mergekit YAML recipe (`models:` form), with models named by branch, tag or commit: read
/// from a file by ``parse(_:file:)`` and written back by ``yaml()``, so a recorded merge re-runs
/// with `mrepo merge --config`.
///
/// ```yaml
/// models:
///   - model: math
///     parameters: {weight: 0.6, density: 0.5}
///   - model: code
///     parameters: {weight: 0.4, density: [0.3, 0.7]}
/// merge_method: ties
/// base_model: main
/// parameters: {normalize: true, lambda: 1.0, int8_mask: true}
/// dtype: float32
/// ```
/// mergekit's keys are read as mergekit reads them; options mergekit does not have live in an
/// `mrepo:` mapping (mergekit ignores it). `slices:` recipes are not supported.
public struct MergekitRecipe: Sendable, Equatable {
    public struct Model: Sendable, Equatable {
        public var name: String
        public var parameters: [String: ParameterValue]

        public init(name: String, parameters: [String: ParameterValue] = [:]) {
            self.name = name
            self.parameters = parameters
        }
    }

    public var method: String
    public var baseModel: String?
    public var models: [Model]
    public var parameters: [String: ParameterValue]
    /// mergekit's compute dtype. mrepo computes in float32 whatever it says, and writes this dtype
    /// when `out_dtype` is not given (mergekit's output dtype is its compute dtype).
    public var dtype: String?
    /// `out_dtype`: the dtype every floating-point tensor is written in.
    public var outDType: String?
    public var seed: UInt64?
    /// `tokenizer_source` (or `tokenizer.source`): `base`, `union`, or a model.
    public var tokenizerSource: String?
    public var name: String?
    /// `lines` and `consensus` (mrepo's post-processing of the merged task vector).
    public var lines: (alpha: Double, beta: Double)?
    public var consensus: (k: Int, lambda: Double)?
    /// `mrepo: {balance: norm}`: task vectors rescaled to a common norm before the method.
    public var balance: TaskVectorBalance?
    /// Everything under `mrepo:`.
    public var extensions: MergeExtensions
    /// Comment lines written above the recipe (not read back).
    public var header: [String] = []

    public init(method: String, baseModel: String? = nil, models: [Model], parameters: [String: ParameterValue] = [:],
                dtype: String? = nil, outDType: String? = nil, seed: UInt64? = nil, tokenizerSource: String? = nil,
                name: String? = nil, extensions: MergeExtensions = MergeExtensions()) {
        self.method = method
        self.baseModel = baseModel
        self.models = models
        self.parameters = parameters
        self.dtype = dtype
        self.outDType = outDType
        self.seed = seed
        self.tokenizerSource = tokenizerSource
        self.name = name
        self.extensions = extensions
    }

    public static func == (a: MergekitRecipe, b: MergekitRecipe) -> Bool {
        a.method == b.method && a.baseModel == b.baseModel && a.models == b.models && a.parameters == b.parameters
            && a.dtype == b.dtype && a.outDType == b.outDType && a.seed == b.seed && a.tokenizerSource == b.tokenizerSource
            && a.name == b.name && a.lines?.alpha == b.lines?.alpha && a.lines?.beta == b.lines?.beta
            && a.consensus?.k == b.consensus?.k && a.consensus?.lambda == b.consensus?.lambda && a.extensions == b.extensions
            && (a.balance ?? TaskVectorBalance.none) == (b.balance ?? TaskVectorBalance.none)
    }

    // MARK: - Reading

    /// Limits on what a recipe may hold, so a small hostile file (an alias bomb, deep nesting)
    /// is refused instead of exhausting memory.
    public static let maximumBytes = 1 << 20
    static let maximumNodes = 100_000
    static let maximumDepth = 32

    /// Parses a recipe's YAML text.
    /// - Parameter file: the name used in error messages.
    public static func parse(_ text: String, file: String) throws -> MergekitRecipe {
        var reader = Reader(file: file)
        return try reader.recipe(text)
    }

    /// Walks the YAML document with a node budget (aliases are followed, and counted each time).
    struct Reader {
        let file: String
        var visited = 0

        init(file: String) { self.file = file }

        func bad(_ problem: String) -> MergeError { .invalidRecipe(file: file, problem: problem) }

        /// The resolved YAML tag of a node (str, int, float, bool, null, seq, map).
        func kind(_ node: Node) -> Tag.Name { Tag.Name(rawValue: node.tag.rawValue) }

        /// The YAML document of `text` after the bounds every file this reader reads shares: its
        /// size, no alias keys, valid syntax (`what` names the kind of file in the size error).
        mutating func compose(_ text: String, what: String) throws -> Node? {
            guard text.utf8.count <= MergekitRecipe.maximumBytes else {
                throw bad("is \(text.utf8.count) bytes; \(what) is at most \(MergekitRecipe.maximumBytes >> 20) MiB")
            }
            do {
                try refuseAliasKeys(text)
                return try Yams.compose(yaml: text)
            } catch let error as MergeError {
                throw error
            } catch {
                throw bad("not valid YAML: " + MergekitRecipe.yamlProblem(error))
            }
        }

        mutating func recipe(_ text: String) throws -> MergekitRecipe {
            let document = try compose(text, what: "a recipe")
            guard let document, let root = try mapping(document, at: "the top level", depth: 0) else {
                throw bad("expected a mapping at the top level")
            }
            if root["slices"] != nil || root["modules"] != nil {
                throw bad("'slices' and 'modules' recipes are not supported; use the 'models' form")
            }
            if root["chat_template"] != nil { throw bad("'chat_template' is not supported; edit tokenizer_config.json and commit it") }
            let known: Set<String> = ["models", "merge_method", "base_model", "parameters", "dtype", "out_dtype", "seed", "name",
                                      "tokenizer_source", "tokenizer", "mrepo"]
            for key in root.keys.sorted() where !known.contains(key) { throw bad("unknown key '\(key)'") }
            guard let method = try string(root["merge_method"], at: "merge_method") else { throw bad("missing 'merge_method'") }
            // Without `models`, a recipe is a method and its parameters for the branches named on
            // the command line (`mrepo merge math code --config ties.yml`); MergeRequest checks that.
            var list: [Node] = []
            if let listNode = root["models"] {
                guard let items = try sequence(listNode, at: "models", depth: 1) else {
                    throw bad(kind(listNode) == .null ? "the 'models' list is empty" : "'models' must be a list (- model: NAME)")
                }
                guard !items.isEmpty else { throw bad("the 'models' list is empty") }
                list = items
            }
            var models: [Model] = []
            for (i, item) in list.enumerated() {
                guard let entry = try mapping(item, at: "models[\(i)]", depth: 2), let name = try string(entry["model"], at: "models[\(i)].model") else {
                    throw bad("models[\(i)] needs 'model: NAME'")
                }
                for key in entry.keys.sorted() where key != "model" && key != "parameters" {
                    throw bad("models[\(i)] has an unknown key '\(key)'")
                }
                // mergekit refuses this ("Duplicate merge inputs"); taking the last entry's parameters
                // would merge something else than the recipe reads as.
                if let first = models.firstIndex(where: { $0.name == name }) {
                    throw bad("models[\(i)] lists '\(name)' again (models[\(first)]); each model may be listed once")
                }
                models.append(Model(name: name, parameters: try parameterMap(entry["parameters"], at: "models[\(i)].parameters", depth: 3)))
            }
            var seed: UInt64?
            if let node = root["seed"] {
                guard let s = node.int, s >= 0 else { throw bad("seed must be a non-negative integer") }
                seed = UInt64(s)
            }
            var tokenizerSource = try string(root["tokenizer_source"], at: "tokenizer_source")
            if let t = root["tokenizer"] {
                guard let map = try mapping(t, at: "tokenizer", depth: 1) else { throw bad("tokenizer must be a mapping") }
                for key in map.keys.sorted() where key != "source" {
                    throw bad("tokenizer.\(key) is not supported (only tokenizer.source)")
                }
                tokenizerSource = try string(map["source"], at: "tokenizer.source") ?? tokenizerSource
            }
            var recipe = MergekitRecipe(method: method, baseModel: try string(root["base_model"], at: "base_model"), models: models,
                                        parameters: try parameterMap(root["parameters"], at: "parameters", depth: 1),
                                        dtype: try string(root["dtype"], at: "dtype"), outDType: try string(root["out_dtype"], at: "out_dtype"),
                                        seed: seed, tokenizerSource: tokenizerSource, name: try string(root["name"], at: "name"))
            if let m = root["mrepo"] { try readExtensions(m, into: &recipe) }
            return recipe
        }

        mutating func readExtensions(_ node: Node, into recipe: inout MergekitRecipe) throws {
            guard let map = try mapping(node, at: "mrepo", depth: 1) else { throw bad("mrepo must be a mapping") }
            var ext = MergeExtensions()
            for key in map.keys.sorted() {
                let value = map[key]!
                let at = "mrepo.\(key)"
                switch key {
                case "merge_base":
                    ext.mergeBase = try string(value, at: at)
                case "one_sided":
                    guard let s = try string(value, at: at), let rule = OneSidedRule(rawValue: s) else {
                        throw bad("\(at) must be \(OneSidedRule.allCases.map(\.rawValue).joined(separator: " or "))")
                    }
                    ext.oneSided = rule
                case "vocab":
                    guard let s = try string(value, at: at), let v = VocabularyPolicy(rawValue: s) else {
                        throw bad("\(at) must be \(VocabularyPolicy.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    ext.vocabulary = v
                case "file_conflict":
                    guard let s = try string(value, at: at), let v = FileConflictRule(rawValue: s) else {
                        throw bad("\(at) must be \(FileConflictRule.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    ext.fileConflict = v
                case "thresholds":
                    guard let t = try mapping(value, at: at, depth: 2) else { throw bad("\(at) must be a mapping") }
                    for (name, v) in t {
                        guard let x = v.float, x.isFinite else { throw bad("\(at).\(name) must be a finite number") }
                        switch name {
                        case "max_sign_conflict": ext.thresholds.maxSignConflict = x
                        case "min_cosine": ext.thresholds.minCosine = x
                        case "max_conflicting_mass": ext.thresholds.maxConflictingMass = x
                        default: throw bad("\(at) has an unknown key '\(name)'")
                        }
                    }
                case "lines":
                    guard let l = try mapping(value, at: at, depth: 2), let a = l["alpha"]?.float, let b = l["beta"]?.float,
                          a.isFinite, b.isFinite, l.count == 2 else {
                        throw bad("\(at) must be {alpha: A, beta: B}")
                    }
                    recipe.lines = (a, b)
                case "consensus":
                    // λ defaults to 1, as `--consensus K` takes it.
                    guard let c = try mapping(value, at: at, depth: 2), let k = c["k"]?.int, let lambda = c["lambda"] == nil ? 1 : c["lambda"]?.float,
                          k >= 0, lambda >= 0, lambda.isFinite, c.count == (c["lambda"] == nil ? 1 : 2) else {
                        throw bad("\(at) must be {k: K, lambda: L} with K ≥ 0 and L ≥ 0 (lambda defaults to 1)")
                    }
                    recipe.consensus = (k, lambda)
                case "balance":
                    guard let text = try string(value, at: at), let b = TaskVectorBalance(rawValue: text) else {
                        throw bad("\(at) must be \(TaskVectorBalance.allCases.map(\.rawValue).joined(separator: " or "))")
                    }
                    recipe.balance = b
                case "resolutions":
                    guard let items = try sequence(value, at: at, depth: 2) else { throw bad("\(at) must be a list") }
                    for (i, item) in items.enumerated() {
                        ext.resolutions.append(try resolution(item, at: "\(at)[\(i)]"))
                    }
                default:
                    throw bad("mrepo has an unknown key '\(key)'")
                }
            }
            recipe.extensions = ext
        }

        mutating func resolution(_ node: Node, at: String) throws -> RecordedResolution {
            guard let map = try mapping(node, at: at, depth: 3) else { throw bad("\(at) must be a mapping") }
            guard let tensor = try string(map["tensor"], at: "\(at).tensor"),
                  let howText = try string(map["how"], at: "\(at).how"), let how = RecordedResolution.How(rawValue: howText),
                  let option = try string(map["option"], at: "\(at).option") else {
                throw bad("\(at) needs tensor, how (\(RecordedResolution.How.allCases.map(\.rawValue).joined(separator: ", "))) and option")
            }
            for key in map.keys.sorted() where !["tensor", "how", "option", "expert", "method", "parameters", "seed"].contains(key) {
                throw bad("\(at) has an unknown key '\(key)'")
            }
            var r = RecordedResolution(tensor: tensor, how: how, option: option)
            r.expert = try string(map["expert"], at: "\(at).expert")
            r.method = try string(map["method"], at: "\(at).method")
            if map["parameters"] != nil { r.parameters = try parameterMap(map["parameters"], at: "\(at).parameters", depth: 4) }
            if let s = map["seed"] {
                guard let v = s.int, v >= 0 else { throw bad("\(at).seed must be a non-negative integer") }
                r.seed = UInt64(v)
            }
            if how == .expert, r.expert == nil { throw bad("\(at) takes an expert's tensor but names no expert") }
            if how == .method, r.method == nil { throw bad("\(at) merges with a method but names none") }
            return r
        }

        // MARK: Nodes

        mutating func count(_ depth: Int) throws {
            visited += 1
            if visited > MergekitRecipe.maximumNodes { throw bad("has more than \(MergekitRecipe.maximumNodes) values (aliases count each time they are used)") }
            if depth > MergekitRecipe.maximumDepth { throw bad("nests deeper than \(MergekitRecipe.maximumDepth) levels") }
        }

        mutating func mapping(_ node: Node, at: String, depth: Int) throws -> [String: Node]? {
            try count(depth)
            guard let m = node.mapping else { return nil }
            var out: [String: Node] = [:]
            // YAML 1.1 merge keys (`<<: *defaults`, or a list of such), which PyYAML's safe_load
            // (mergekit's reader) expands: the mapping's own keys win, then the earlier sources of
            // a `<<` list (the YAML parser refuses a second `<<` key, as any duplicate key).
            var merged: [String: Node] = [:]
            for (k, v) in m {
                try count(depth + 1)
                guard let key = k.string else { throw bad("\(at) has a key that is not text") }
                if key == "<<", k.scalar?.style == .plain {
                    guard let sources = v.mapping != nil ? [v] : v.sequence.map(Array.init), sources.allSatisfy({ $0.mapping != nil }) else {
                        throw bad("\(at).<< (a merge key) must be a mapping or a list of mappings")
                    }
                    for source in sources {
                        for (mk, mv) in try mapping(source, at: at, depth: depth + 1) ?? [:] where merged[mk] == nil { merged[mk] = mv }
                    }
                    continue
                }
                guard out[key] == nil else { throw bad("\(at) has the key '\(key)' twice") }
                out[key] = v
            }
            for (key, value) in merged where out[key] == nil { out[key] = value }
            return out
        }

        mutating func sequence(_ node: Node, at: String, depth: Int) throws -> [Node]? {
            try count(depth)
            return node.sequence.map(Array.init)
        }

        func string(_ node: Node?, at: String) throws -> String? {
            guard let node else { return nil }
            guard let s = node.scalar else { throw bad("\(at) must be a single value") }
            if kind(node) == .null { return nil }
            return s.string
        }

        mutating func parameterMap(_ node: Node?, at: String, depth: Int) throws -> [String: ParameterValue] {
            guard let node else { return [:] }
            if kind(node) == .null { return [:] }
            guard let dict = try mapping(node, at: at, depth: depth) else { throw bad("\(at) must be a mapping") }
            var out: [String: ParameterValue] = [:]
            for (k, v) in dict { out[k] = try value(v, at: "\(at).\(k)", depth: depth + 1) }
            return out
        }

        mutating func value(_ v: Node, at: String, depth: Int) throws -> ParameterValue {
            try count(depth)
            switch v {
            case let .scalar(s):
                switch kind(v) {
                case .bool: return .flag(v.bool ?? false)
                case .int, .float:
                    guard let x = v.float else { throw bad("\(at) is not a number") }
                    guard x.isFinite else { throw bad("\(at) is \(s.string); numbers must be finite") }
                    return .number(x)
                case .null: throw bad("\(at) has no value")
                default: return .text(s.string)
                }
            case let .sequence(items):
                if items.allSatisfy({ kind($0) == .int || kind($0) == .float }) {
                    var xs: [Double] = []
                    for item in items {
                        try count(depth + 1)
                        guard let x = item.float, x.isFinite else { throw bad("\(at) holds a value that is not a finite number") }
                        xs.append(x)
                    }
                    return .gradient(xs)
                }
                var conditions: [ParameterCondition] = []
                for (i, item) in items.enumerated() {
                    guard let entry = try mapping(item, at: "\(at)[\(i)]", depth: depth + 1), let inner = entry["value"] else {
                        throw bad("\(at)[\(i)] must be {filter, value}")
                    }
                    for key in entry.keys.sorted() where key != "filter" && key != "value" {
                        throw bad("\(at)[\(i)] has an unknown key '\(key)'")
                    }
                    conditions.append(ParameterCondition(filter: try string(entry["filter"], at: "\(at)[\(i)].filter"),
                                                         value: try value(inner, at: "\(at)[\(i)].value", depth: depth + 2)))
                }
                return .conditional(conditions)
            default:
                throw bad("\(at) has an unsupported value")
            }
        }
    }

    // MARK: - Writing

    /// The recipe as YAML that ``parse(_:file:)`` reads back to an equal recipe (and mergekit
    /// reads too, when the models are paths it knows). Strings are quoted, so names that look like
    /// numbers stay names.
    public func yaml() -> String {
        // Words that read back as themselves are plain; anything else (hex ids that may look like
        // numbers, names with spaces or YAML's special words) is double-quoted.
        func text(_ s: String) -> Node {
            let special: Set<String> = ["true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"]
            let plain = s.first.map { $0.isLetter || $0 == "_" } == true && !special.contains(s.lowercased())
                && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_-.".contains($0)) }
            return Node(s, Tag(.str), plain ? .plain : .doubleQuoted)
        }
        func number(_ x: Double) -> Node { Node(ParameterValue.format(x), Tag(.float), .plain) }
        func integer<T: BinaryInteger>(_ x: T) -> Node { Node(String(x), Tag(.int), .plain) }
        func value(_ v: ParameterValue) -> Node {
            switch v {
            case let .number(x): return number(x)
            case let .gradient(xs): return Node(xs.map(number), Tag(.seq), .flow)
            case let .flag(b): return Node(b ? "true" : "false", Tag(.bool), .plain)
            case let .text(t): return text(t)
            case let .conditional(cs):
                return Node(cs.map { c in
                    Node((c.filter.map { [(text("filter"), text($0))] } ?? []) + [(text("value"), value(c.value))], Tag(.map), .flow)
                }, Tag(.seq), .block)
            }
        }
        func map(_ d: [String: ParameterValue]) -> Node {
            Node(d.keys.sorted().map { (Node($0), value(d[$0]!)) }, Tag(.map), .block)
        }
        var pairs: [(Node, Node)] = [(Node("merge_method"), text(method))]
        if let baseModel { pairs.append((Node("base_model"), text(baseModel))) }
        if !models.isEmpty {
            pairs.append((Node("models"), Node(models.map { m in
                Node([(Node("model"), text(m.name))] + (m.parameters.isEmpty ? [] : [(Node("parameters"), map(m.parameters))]), Tag(.map), .block)
            }, Tag(.seq), .block)))
        }
        if !parameters.isEmpty { pairs.append((Node("parameters"), map(parameters))) }
        if let dtype { pairs.append((Node("dtype"), text(dtype))) }
        if let outDType { pairs.append((Node("out_dtype"), text(outDType))) }
        if let tokenizerSource { pairs.append((Node("tokenizer_source"), text(tokenizerSource))) }
        if let seed { pairs.append((Node("seed"), integer(seed))) }
        if let name { pairs.append((Node("name"), text(name))) }
        var ext: [(Node, Node)] = []
        if let b = extensions.mergeBase { ext.append((Node("merge_base"), text(b))) }
        if let r = extensions.oneSided { ext.append((Node("one_sided"), text(r.rawValue))) }
        if let v = extensions.vocabulary { ext.append((Node("vocab"), text(v.rawValue))) }
        if let f = extensions.fileConflict { ext.append((Node("file_conflict"), text(f.rawValue))) }
        let t = extensions.thresholds
        let thresholds = [("max_sign_conflict", t.maxSignConflict), ("min_cosine", t.minCosine), ("max_conflicting_mass", t.maxConflictingMass)]
            .compactMap { k, v in v.map { (Node(k), number($0)) } }
        if !thresholds.isEmpty { ext.append((Node("thresholds"), Node(thresholds, Tag(.map), .flow))) }
        if let l = lines { ext.append((Node("lines"), Node([(Node("alpha"), number(l.alpha)), (Node("beta"), number(l.beta))], Tag(.map), .flow))) }
        if let c = consensus { ext.append((Node("consensus"), Node([(Node("k"), integer(c.k)), (Node("lambda"), number(c.lambda))], Tag(.map), .flow))) }
        if let b = balance, b != .none { ext.append((Node("balance"), text(b.rawValue))) }
        if !extensions.resolutions.isEmpty {
            ext.append((Node("resolutions"), Node(extensions.resolutions.map { r in
                var p: [(Node, Node)] = [(Node("tensor"), text(r.tensor)), (Node("how"), text(r.how.rawValue)), (Node("option"), text(r.option))]
                if let e = r.expert { p.append((Node("expert"), text(e))) }
                if let m = r.method { p.append((Node("method"), text(m))) }
                if let ps = r.parameters, !ps.isEmpty { p.append((Node("parameters"), Node(ps.keys.sorted().map { (Node($0), value(ps[$0]!)) }, Tag(.map), .flow))) }
                if let s = r.seed { p.append((Node("seed"), integer(s))) }
                return Node(p, Tag(.map), .block)
            }, Tag(.seq), .block)))
        }
        if !ext.isEmpty { pairs.append((Node("mrepo"), Node(ext, Tag(.map), .block))) }
        let body = (try? Yams.serialize(node: Node(pairs, Tag(.map), .block), width: -1, allowUnicode: true)) ?? ""
        return (header + globNotes()).map { "# " + $0 + "\n" }.joined() + body
    }
}

extension MergekitRecipe {
    /// One comment line per filter that mrepo reads as a glob: mergekit reads every filter as a
    /// substring, which no tensor name holding the glob's wildcards contains, so it would not apply
    /// that condition (`--set 'NAME[*X*]'` is recorded as the substring X and needs no note).
    func globNotes() -> [String] {
        var globs: [String] = []
        func collect(_ v: ParameterValue) {
            guard case let .conditional(cs) = v else { return }
            for c in cs { if let f = c.filter, f != "*", ParameterCondition.isGlob(f), !globs.contains(f) { globs.append(f) } }
        }
        for (_, v) in parameters.sorted(by: { $0.key < $1.key }) { collect(v) }
        for m in models { for (_, v) in m.parameters.sorted(by: { $0.key < $1.key }) { collect(v) } }
        return globs.map { "filter \"\($0)\" is a glob for mrepo; mergekit reads filters as substrings and would not apply it" }
    }
}

extension MergekitRecipe {
    /// A YAML syntax error in one line: where, what is wrong, and what it was reading (Yams's
    /// description spreads these over several lines and the first held only the context).
    static func yamlProblem(_ error: any Error) -> String {
        guard let yaml = error as? YamlError else {
            return String(describing: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
        }
        switch yaml {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            return "line \(mark.line), column \(mark.column): \(problem)"
                + (context.map { " (\($0.text) at line \($0.mark.line), column \($0.mark.column))" } ?? "")
        case let .reader(problem, offset, _, _):
            return problem + (offset.map { " at byte \($0)" } ?? "")
        default:
            return String(describing: yaml).split(separator: "\n").joined(separator: "; ")
        }
    }
}
