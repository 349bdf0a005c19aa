import Foundation
import Yams

/// A mergekit YAML recipe (`models:` form), with models named by branch, tag or commit.
///
/// ```yaml
/// models:
///   - model: math
///     parameters: {weight: 0.6, density: 0.5}
///   - model: code
///     parameters: {weight: 0.4, density: [0.3, 0.7]}
/// merge_method: ties
/// base_model: main
/// parameters: {normalize: true, lambda: 1.0}
/// dtype: float32
/// ```
/// `slices:` recipes and tokenizer surgery (`tokenizer_source`) are not supported.
public struct MergekitRecipe: Sendable {
    public var method: String
    public var baseModel: String?
    public var models: [(name: String, parameters: [String: ParameterValue])]
    public var parameters: [String: ParameterValue]
    /// `dtype` (mergekit's compute dtype; mrepo always computes in float32 and records it).
    public var dtype: String?
    /// `out_dtype`: the dtype written.
    public var outDType: String?
    public var seed: UInt64?

    /// Parses a recipe's YAML text.
    /// - Parameter file: the name used in error messages.
    public static func parse(_ text: String, file: String) throws -> MergekitRecipe {
        func bad(_ problem: String) -> MergeError { .invalidRecipe(file: file, problem: problem) }
        let loaded: Any?
        do {
            loaded = try Yams.load(yaml: text)
        } catch {
            throw bad("not valid YAML: \(String(describing: error).split(separator: "\n").first ?? "")")
        }
        guard let root = loaded as? [String: Any] else { throw bad("expected a mapping at the top level") }
        if root["slices"] != nil { throw bad("'slices' recipes are not supported; use the 'models' form") }
        for key in ["tokenizer_source", "tokenizer", "chat_template"] where root[key] != nil {
            throw bad("'\(key)' (tokenizer surgery) is not supported; merge models that share a vocabulary, or choose --vocab")
        }
        let known: Set<String> = ["models", "merge_method", "base_model", "parameters", "dtype", "out_dtype", "seed", "name"]
        for key in root.keys where !known.contains(key) { throw bad("unknown key '\(key)'") }
        guard let method = root["merge_method"] as? String else { throw bad("missing 'merge_method'") }
        guard let list = root["models"] as? [Any], !list.isEmpty else { throw bad("missing 'models' list") }
        var models: [(String, [String: ParameterValue])] = []
        for (i, item) in list.enumerated() {
            guard let entry = item as? [String: Any], let name = (entry["model"] as? String) ?? (entry["model"] as? Int).map(String.init) else {
                throw bad("models[\(i)] needs 'model: NAME'")
            }
            let params = try convert(entry["parameters"] ?? [String: Any](), file: file, at: "models[\(i)].parameters")
            models.append((name, params))
        }
        let seed: UInt64? = (root["seed"] as? Int).map { UInt64(truncatingIfNeeded: $0) }
        return MergekitRecipe(method: method, baseModel: root["base_model"] as? String, models: models,
                              parameters: try convert(root["parameters"] ?? [String: Any](), file: file, at: "parameters"),
                              dtype: root["dtype"] as? String, outDType: root["out_dtype"] as? String, seed: seed)
    }

    static func convert(_ any: Any, file: String, at path: String) throws -> [String: ParameterValue] {
        guard let dict = any as? [String: Any] else {
            throw MergeError.invalidRecipe(file: file, problem: "\(path) must be a mapping")
        }
        var out: [String: ParameterValue] = [:]
        for (k, v) in dict { out[k] = try value(v, file: file, at: "\(path).\(k)") }
        return out
    }

    static func value(_ v: Any, file: String, at path: String) throws -> ParameterValue {
        switch v {
        case let b as Bool: return .flag(b)
        case let i as Int: return .number(Double(i))
        case let d as Double: return .number(d)
        case let s as String: return .text(s)
        case let list as [Any]:
            if list.allSatisfy({ $0 is Int || $0 is Double }) {
                return .gradient(list.map { ($0 as? Double) ?? Double($0 as! Int) })
            }
            var conditions: [ParameterCondition] = []
            for (i, item) in list.enumerated() {
                guard let entry = item as? [String: Any], let inner = entry["value"] else {
                    throw MergeError.invalidRecipe(file: file, problem: "\(path)[\(i)] must be {filter, value}")
                }
                conditions.append(ParameterCondition(filter: entry["filter"] as? String, value: try value(inner, file: file, at: "\(path)[\(i)].value")))
            }
            return .conditional(conditions)
        default:
            throw MergeError.invalidRecipe(file: file, problem: "\(path) has an unsupported value")
        }
    }
}
