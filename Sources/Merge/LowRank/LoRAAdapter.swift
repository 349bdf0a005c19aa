import Delta
import Foundation

/// The parts of a PEFT `adapter_config.json` that define the weights of a LoRA adapter.
public struct LoRAConfig: Sendable, Equatable {
    public static let fileName = "adapter_config.json"
    public static let weightsFileName = "adapter_model.safetensors"

    /// `r`: the rank of every module without a `rank_pattern` entry.
    public var rank: Int
    /// `lora_alpha`.
    public var alpha: Double
    /// `target_modules`: module-name suffixes (a list) or one regular expression (a string).
    public var targetModules: [String]
    public var targetPattern: String?
    /// `use_rslora`: the scale is alpha / √r instead of alpha / r.
    public var useRSLoRA: Bool
    /// `fan_in_fan_out`: the base weight is stored (in, out), as GPT-2's Conv1D does.
    public var fanInFanOut: Bool
    /// `rank_pattern` and `alpha_pattern`: per-module overrides, keyed by a module-name suffix or pattern.
    public var rankPattern: [(key: String, value: Int)]
    public var alphaPattern: [(key: String, value: Double)]
    /// `base_model_name_or_path`, informational.
    public var baseModel: String?
    /// `task_type`, informational.
    public var taskType: String?
    /// The pattern keys that are regular expressions, compiled once (`init(json:file:)`).
    var compiled: [String: BoundedRegex] = [:]

    public static func == (a: LoRAConfig, b: LoRAConfig) -> Bool {
        a.rank == b.rank && a.alpha == b.alpha && a.targetModules == b.targetModules && a.targetPattern == b.targetPattern
            && a.useRSLoRA == b.useRSLoRA && a.fanInFanOut == b.fanInFanOut && a.baseModel == b.baseModel
            && a.rankPattern.map(\.key) == b.rankPattern.map(\.key) && a.rankPattern.map(\.value) == b.rankPattern.map(\.value)
            && a.alphaPattern.map(\.key) == b.alphaPattern.map(\.key) && a.alphaPattern.map(\.value) == b.alphaPattern.map(\.value)
    }

    public init(rank: Int, alpha: Double, targetModules: [String], useRSLoRA: Bool = false, fanInFanOut: Bool = false,
                baseModel: String? = nil, taskType: String? = nil) {
        self.rank = rank
        self.alpha = alpha
        self.targetModules = targetModules
        self.useRSLoRA = useRSLoRA
        self.fanInFanOut = fanInFanOut
        rankPattern = []
        alphaPattern = []
        self.baseModel = baseModel
        self.taskType = taskType
    }

    /// Parses `adapter_config.json`; `file` names it in errors.
    ///
    /// PEFT's file is read as a ``JSONValue``, not through `Codable`: its members change type
    /// (`target_modules` is a list or one pattern), its pattern maps are ordered (the first match
    /// wins, and `Codable` dictionaries lose the order), and each bad member gets its own message.
    /// - Parameter committing: a config being committed, where an explicit `lora_alpha: null` is
    ///   refused (PEFT fails on it); one already recorded (by an mrepo that read it as 8) is read so.
    public init(json bytes: [UInt8], file: String, committing: Bool = false) throws(MergeError) {
        func bad(_ problem: String) -> MergeError { .invalidRecipe(file: file, problem: problem) }
        let root: JSONValue
        do { root = try JSONValue.parse(bytes) } catch { throw bad("not valid JSON (\(error))") }
        guard root.objectValue != nil else { throw bad("not a JSON object") }
        let type = root["peft_type"]?.stringValue ?? "LORA"
        guard type.uppercased() == "LORA" else { throw bad("peft_type \(type) is not supported (mrepo understands LoRA adapters)") }
        if root["use_dora"] == .bool(true) { throw bad("DoRA adapters (use_dora: true) are not supported: their magnitude vectors are not a low-rank delta") }
        guard let r = root["r"]?.intValue, r > 0 else { throw bad("'r' must be a positive integer") }
        rank = r
        // Absent: PEFT's default. An explicit null is no default in PEFT, whose layers divide it by r.
        if committing, root["lora_alpha"] == .null { throw bad("'lora_alpha' must be a number, not null (leave it out for PEFT's default, 8)") }
        alpha = try LoRAConfig.alpha(root["lora_alpha"], field: "'lora_alpha'", file: file) ?? 8
        switch root["target_modules"] {
        case let .array(items)?:
            targetModules = items.compactMap(\.stringValue)
            targetPattern = nil
        case let .string(pattern)?:
            targetModules = []
            targetPattern = pattern
        default:
            targetModules = []
            targetPattern = nil
        }
        useRSLoRA = root["use_rslora"] == .bool(true)
        fanInFanOut = root["fan_in_fan_out"] == .bool(true)
        rankPattern = []
        alphaPattern = []
        // Every override is checked here, so that a bad one stops the commit instead of being
        // dropped (or hanging it: see BoundedRegex).
        for (field, value) in [("rank_pattern", root["rank_pattern"]), ("alpha_pattern", root["alpha_pattern"])] {
            guard let value, value != .null else { continue }
            guard let members = value.objectValue else { throw bad("'\(field)' must be an object of module patterns") }
            for m in members {
                let name = "'\(field)' entry '\(DisplayText.escaping(m.key))'"
                if let regex = try LoRAConfig.compilePattern(m.key, field: name, file: file) { compiled[m.key] = regex }
                if field == "rank_pattern" {
                    guard let r = m.value.intValue, r > 0 else { throw bad("\(name) must be a positive integer rank") }
                    rankPattern.append((m.key, r))
                } else {
                    guard let a = try LoRAConfig.alpha(m.value, field: name, file: file) else { throw bad("\(name) must be a number, not null") }
                    alphaPattern.append((m.key, a))
                }
            }
        }
        baseModel = root["base_model_name_or_path"]?.stringValue
        taskType = root["task_type"]?.stringValue
    }

    /// Steps of pattern matching allowed for one adapter (all its modules against all its
    /// patterns): well under a second, and far more than real configs need.
    public static let patternBudget = 20_000_000

    /// An alpha: a number whose scale stays finite in float32; nil when absent (`null` included).
    static func alpha(_ value: JSONValue?, field: String, file: String) throws(MergeError) -> Double? {
        guard let value, value != .null else { return nil }
        guard let a = value.doubleValue else {
            throw .invalidRecipe(file: file, problem: "\(field) must be a number, not \(DisplayText.escaping(value.serialized()))")
        }
        guard a.isFinite, abs(a) <= Double(Float.greatestFiniteMagnitude) else {
            throw .invalidRecipe(file: file, problem: "\(field) is \(DisplayText.escaping(value.serialized())), which is not a finite float32 number")
        }
        return a
    }

    /// A pattern key compiled (nil for a literal key), or an error naming it when mrepo cannot match
    /// it in bounded time (see ``BoundedRegex``).
    static func compilePattern(_ key: String, field: String, file: String) throws(MergeError) -> BoundedRegex? {
        guard !BoundedRegex.isLiteral(key) else { return nil }
        do {
            return try BoundedRegex(key)
        } catch {
            throw .invalidRecipe(file: file, problem: "\(field): \(error.message)")
        }
    }

    /// The rank and alpha PEFT uses for a module: the first `rank_pattern` / `alpha_pattern` key
    /// that equals the module name, is a suffix of it after a `.`, or (as a regular expression)
    /// matches all of it.
    ///
    /// - Parameter budget: matching steps left (``patternBudget`` for a whole adapter); exceeding
    ///   it throws an error naming the file.
    public func rankAndAlpha(module: String, budget: inout Int) throws(MergeError) -> (rank: Int, alpha: Double) {
        let r = try overrides(module: module, budget: &budget)
        return (r.rank ?? rank, r.alpha ?? alpha)
    }

    /// The `rank_pattern` and `alpha_pattern` values for a module, nil where no key matches.
    func overrides(module: String, budget: inout Int) throws(MergeError) -> (rank: Int?, alpha: Double?) {
        var exhausted = false
        func matches(_ key: String) -> Bool {
            if module == key || module.hasSuffix("." + key) { return true }
            guard !exhausted, !BoundedRegex.isLiteral(key), let regex = compiled[key] ?? (try? BoundedRegex(key)) else { return false }
            do {
                return try regex.wholeMatch(module, budget: &budget)
            } catch {
                exhausted = true
                return false
            }
        }
        let r = rankPattern.first { matches($0.key) }?.value
        let a = alphaPattern.first { matches($0.key) }?.value
        if exhausted {
            throw .invalidRecipe(file: LoRAConfig.fileName, problem: "matching 'rank_pattern' and 'alpha_pattern' against the adapter's modules exceeds \(LoRAConfig.patternBudget) steps; use fewer or simpler patterns")
        }
        return (r, a)
    }

    /// ``rankAndAlpha(module:budget:)`` for one module, with a whole adapter's budget (the config's
    /// defaults if even that is exceeded).
    public func rankAndAlpha(module: String) -> (rank: Int, alpha: Double) {
        var budget = LoRAConfig.patternBudget
        return (try? rankAndAlpha(module: module, budget: &budget)) ?? (rank, alpha)
    }

    /// ΔW = scale · B·A with scale = alpha / r (or alpha / √r with rsLoRA).
    public func scale(module: String, rank actual: Int) -> Double {
        scale(alpha: rankAndAlpha(module: module).alpha, rank: actual)
    }

    func scale(alpha a: Double, rank actual: Int) -> Double {
        useRSLoRA ? a / Double(actual).squareRoot() : a / Double(actual)
    }

    /// A minimal PEFT config for an adapter mrepo writes (a merge's view). Built as a ``JSONValue``:
    /// PEFT's format with its nulls spelled out, and its bytes are a file of the commit's tree.
    ///
    /// - Parameter fanInFanOut: the factors are stored for a base weight kept as (in, out), as the
    ///   experts' were (GPT-2's Conv1D layers): PEFT and `export --fold` then add (B·A)ᵀ.
    public static func json(rank: Int, alpha: Double, targetModules: [String], baseModel: String?, taskType: String?,
                            fanInFanOut: Bool = false) -> String {
        let root = JSONValue.object([
            JSONMember("peft_type", .string("LORA")),
            JSONMember("r", .int(rank)),
            JSONMember("lora_alpha", .double(alpha)),
            JSONMember("target_modules", .array(targetModules.map { .string($0) })),
            JSONMember("base_model_name_or_path", baseModel.map { .string($0) } ?? .null),
            JSONMember("task_type", taskType.map { .string($0) } ?? .null),
            JSONMember("bias", .string("none")),
            JSONMember("fan_in_fan_out", .bool(fanInFanOut)),
            JSONMember("use_rslora", .bool(false)),
            JSONMember("use_dora", .bool(false)),
            JSONMember("inference_mode", .bool(true)),
        ])
        return root.prettySerialized() + "\n"
    }
}

/// One adapted module: its `lora_A`/`lora_B` tensors and the base weight they change.
public struct LoRAModule: Sendable, Equatable {
    /// The module path as PEFT names it, without `base_model.model.` (e.g. `encoder.layer.0.attention.self.query`).
    public var module: String
    /// Tensor names in the adapter file.
    public var aName: String
    public var bName: String
    /// The base model tensor ΔW applies to.
    public var baseTensor: String
    /// The base tensor's shape.
    public var baseShape: Shape
    public var rank: Int
    /// ΔW = scale · B·A.
    public var scale: Double
    /// True when the base weight is stored transposed relative to B·A (fan_in_fan_out, embeddings).
    public var transposed: Bool

    /// Output and input features of B·A (rows of B, columns of A).
    public var rows: Int { transposed ? baseShape[1] : baseShape[0] }
    public var columns: Int { transposed ? baseShape[0] : baseShape[1] }
}

/// A PEFT LoRA adapter understood against its base model: which tensors pair up, which base
/// weights they change, and with which scale.
public struct LoRAAdapter: Sendable {
    public var config: LoRAConfig
    /// Adapted modules, in the adapter file's order.
    public var modules: [LoRAModule]
    /// Tensors that replace base tensors whole (`modules_to_save`), adapter name → base name.
    public var replacements: [(adapterName: String, baseName: String)]

    /// The config's `target_modules` as PEFT matches them (a list of suffixes, or one pattern).
    public var targetModules: [String] {
        config.targetPattern.map { [$0] } ?? (config.targetModules.isEmpty ? modules.map(\.module) : config.targetModules)
    }

    /// Last name components of the adapted modules (e.g. `query`, `value`), for display.
    public var targetSuffixes: [String] {
        var seen: [String] = []
        for m in modules {
            let last = String(m.module.split(separator: ".").last ?? "")
            if !seen.contains(last) { seen.append(last) }
        }
        return seen
    }

    /// The adapter file's lora_A/lora_B pairs by module, in file order, and its other tensors (the
    /// names of `modules_to_save` candidates): what the file holds, before any base model is read.
    /// - Throws: what makes the file no LoRA adapter at all, whatever its base (a factor missing,
    ///   ranks that differ, a tensor that is not a matrix, DoRA). A file without pairs is left to
    ///   ``resolve(config:tensors:baseTensors:file:)``, which names its other tensors.
    public static func pairs(_ tensors: [(name: String, dtype: DType, shape: Shape)], file: String) throws(MergeError)
        -> (modules: [(module: String, a: (String, Shape, Bool), b: (String, Shape, Bool))], others: [String]) {
        func bad(_ problem: String) -> MergeError { .invalidRecipe(file: file, problem: problem) }
        var aTensors: [String: (String, Shape, Bool)] = [:]
        var bTensors: [String: (String, Shape, Bool)] = [:]
        var order: [String] = [], seen = Set<String>()
        var others: [String] = []
        for t in tensors {
            var name = t.name
            if name.hasPrefix("base_model.model.") { name.removeFirst("base_model.model.".count) }
            if name.hasSuffix(".weight") { name.removeLast(".weight".count) }
            if name.hasSuffix(".default") { name.removeLast(".default".count) }
            if name.contains("lora_magnitude_vector") { throw bad("'\(t.name)' is a DoRA magnitude vector; DoRA adapters are not supported") }
            let parts: [(suffix: String, isA: Bool, embedding: Bool)] = [
                (".lora_A", true, false), (".lora_B", false, false),
                (".lora_embedding_A", true, true), (".lora_embedding_B", false, true),
            ]
            if let hit = parts.first(where: { name.hasSuffix($0.suffix) }) {
                let module = String(name.dropLast(hit.suffix.count))
                guard t.shape.count == 2, t.dtype.isFloatingPoint else {
                    throw bad("'\(t.name)' is \(t.dtype.rawValue) \(t.shape.shapeDescription), expected a 2-D float matrix")
                }
                if hit.isA { aTensors[module] = (t.name, t.shape, hit.embedding) } else { bTensors[module] = (t.name, t.shape, hit.embedding) }
                if seen.insert(module).inserted { order.append(module) }
            } else {
                others.append(t.name)
            }
        }
        var modules: [(module: String, a: (String, Shape, Bool), b: (String, Shape, Bool))] = []
        for module in order {
            guard let a = aTensors[module] else { throw bad("module '\(module)' has lora_B but no lora_A") }
            guard let b = bTensors[module] else { throw bad("module '\(module)' has lora_A but no lora_B") }
            guard b.1[1] == a.1[0] else {
                throw bad("module '\(module)': lora_A is \(a.1.shapeDescription) and lora_B \(b.1.shapeDescription); their ranks differ")
            }
            modules.append((module, a, b))
        }
        return (modules, others)
    }

    /// What makes the file no LoRA adapter whatever its base (``pairs(_:file:)``), as one line, or nil.
    public static func pairingProblem(_ tensors: [(name: String, dtype: DType, shape: Shape)], file: String) -> String? {
        do {
            _ = try pairs(tensors, file: file)
            return nil
        } catch {
            return error.description
        }
    }

    /// Pairs the tensors of `adapter_model.safetensors` and resolves them against the base model.
    ///
    /// - Parameters:
    ///   - tensors: the adapter file's tensors (name, dtype, shape), in file order.
    ///   - baseTensors: the base model's tensor shapes by name.
    ///   - file: names the adapter in errors.
    public static func resolve(config: LoRAConfig, tensors: [(name: String, dtype: DType, shape: Shape)],
                               baseTensors: [String: Shape], file: String) throws(MergeError) -> LoRAAdapter {
        func bad(_ problem: String) -> MergeError { .invalidRecipe(file: file, problem: problem) }
        let pairing = try pairs(tensors, file: file)
        var replacements: [(String, String)] = []
        for t in pairing.others {
            // modules_to_save: a whole tensor that replaces the base's.
            var plain = t
            if plain.hasPrefix("base_model.model.") { plain.removeFirst("base_model.model.".count) }
            plain = plain.replacingOccurrences(of: ".modules_to_save.default", with: "")
            guard let base = matchBase(plain, in: baseTensors, suffix: "") else {
                throw bad("'\(t)' is neither a lora_A/lora_B tensor nor a tensor of the base model")
            }
            replacements.append((t, base))
        }
        var modules: [LoRAModule] = []
        var budget = LoRAConfig.patternBudget
        for (module, a, b) in pairing.modules {
            let rank = a.1[0]
            guard let baseName = matchBase(module, in: baseTensors, suffix: ".weight"), let baseShape = baseTensors[baseName] else {
                throw bad("module '\(module)': the base model has no tensor '\(module).weight'")
            }
            guard baseShape.count == 2 else { throw bad("module '\(module)': base tensor '\(baseName)' is \(baseShape.shapeDescription), not a matrix") }
            let embedding = a.2
            let transposed = embedding || config.fanInFanOut
            let out = b.1[0], inFeatures = a.1[1]
            let expected: Shape = transposed ? [inFeatures, out] : [out, inFeatures]
            guard baseShape == expected else {
                throw bad("module '\(module)': B·A is \(out)×\(inFeatures) but base tensor '\(baseName)' is \(baseShape.shapeDescription)")
            }
            let overrides = try config.overrides(module: module, budget: &budget)
            let configured = overrides.rank ?? config.rank, alpha = overrides.alpha ?? config.alpha
            // PEFT builds each module with the configured rank and could not load these factors.
            guard configured == rank else {
                let field = overrides.rank != nil ? "'rank_pattern'" : "'r'"
                throw .invalidRecipe(file: LoRAConfig.fileName, problem: "\(field) gives module '\(module)' rank \(configured), but its lora_A in \(file) is \(a.1.shapeDescription) (rank \(rank))")
            }
            modules.append(LoRAModule(module: module, aName: a.0, bName: b.0, baseTensor: baseName, baseShape: baseShape, rank: rank,
                                      scale: config.scale(alpha: alpha, rank: rank), transposed: transposed))
        }
        guard !modules.isEmpty else { throw bad("no lora_A/lora_B tensor pairs") }
        return LoRAAdapter(config: config, modules: modules, replacements: replacements)
    }

    /// The base tensor a PEFT module name refers to: exact, or the unique name that one ends
    /// with the other (a model saved with or without its task head's prefix, e.g. `bert.`).
    static func matchBase(_ module: String, in base: [String: Shape], suffix: String) -> String? {
        let exact = module + suffix
        if base[exact] != nil { return exact }
        let candidates = base.keys.filter { name in
            name.hasSuffix(suffix) && (name.hasSuffix("." + exact) || exact.hasSuffix("." + name))
        }
        return candidates.count == 1 ? candidates[0] : nil
    }
}
