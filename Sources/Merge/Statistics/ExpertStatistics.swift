/// Where the statistics of an expert live in its checkpoint folder (docs/format.md §4.8): one
/// safetensors file per kind, `mrepo_stats/<kind>.safetensors`, committed like any other file.
///
/// Statistics describe one expert, not a model: merges read them but never merge them, and a
/// merge's result carries none (its own statistics would have to be computed on it).
public enum StatisticsLayout {
    /// The folder, at the top of the checkpoint.
    public static let folder = "mrepo_stats"
    /// The diagonal Fisher (`fisher`): the model's tensor names, F32, same shapes.
    public static let fisher = "fisher"
    /// The input Gram of each linear layer (`regmean`): `X.weight.gram`, F32 [in, in].
    public static let regmean = "regmean"
    /// The same Grams, measured on the inputs a merged model feeds each layer (RegMean++).
    public static let regmeanPlusPlus = "regmean_plusplus"

    /// The path of statistics file `kind`.
    public static func path(_ kind: String) -> String { "\(folder)/\(kind).safetensors" }

    /// Whether a checkpoint path lies in the statistics folder.
    public static func isStatistics(_ path: String) -> Bool { path.hasPrefix(folder + "/") }

    /// The suffix of a Gram's name: `X.weight` has its Gram in `X.weight.gram`.
    public static let gramSuffix = ".gram"
}

/// The statistics files of a merge's experts, read tensor by tensor by data-driven methods
/// (``Fisher``, ``RegMean``). The repository implements it over the experts' commits; tests use
/// ``InMemoryStatistics``. Reads happen on the merge's worker threads.
public protocol ExpertStatisticsSource: Sendable {
    /// The experts' names, in merge order (for messages).
    var expertNames: [String] { get }
    /// Whether expert `expert` has statistics file `kind` (``StatisticsLayout/path(_:)``).
    func hasFile(expert: Int, kind: String) -> Bool
    /// Tensor `name` of expert `expert`'s file `kind` as Float32 with its shape; nil when the
    /// file has no such tensor.
    func tensor(expert: Int, kind: String, name: String) throws -> (shape: [Int], values: [Float])?
    /// The file's `__metadata__` (empty when it has none).
    func metadata(expert: Int, kind: String) throws -> [String: String]
    /// √(Σ x²) over every tensor of the file, in Double (Fisher's per-model normalisation).
    func norm(expert: Int, kind: String) throws -> Double
}

/// Statistics held in memory: for tests and for callers that computed them themselves.
public struct InMemoryStatistics: ExpertStatisticsSource {
    public struct File: Sendable {
        public var tensors: [String: (shape: [Int], values: [Float])]
        public var metadata: [String: String]

        public init(tensors: [String: (shape: [Int], values: [Float])], metadata: [String: String] = [:]) {
            self.tensors = tensors
            self.metadata = metadata
        }
    }

    public var expertNames: [String]
    /// Per expert, its files by kind.
    public var files: [[String: File]]

    public init(expertNames: [String], files: [[String: File]]) {
        self.expertNames = expertNames
        self.files = files
    }

    public func hasFile(expert: Int, kind: String) -> Bool { expert < files.count && files[expert][kind] != nil }

    public func tensor(expert: Int, kind: String, name: String) throws -> (shape: [Int], values: [Float])? {
        guard expert < files.count else { return nil }
        return files[expert][kind]?.tensors[name]
    }

    public func metadata(expert: Int, kind: String) throws -> [String: String] {
        expert < files.count ? files[expert][kind]?.metadata ?? [:] : [:]
    }

    public func norm(expert: Int, kind: String) throws -> Double {
        guard expert < files.count, let file = files[expert][kind] else { return 0 }
        var sum = 0.0
        for (_, t) in file.tensors { for x in t.values { sum += Double(x) * Double(x) } }
        return sum.squareRoot()
    }
}

extension TensorMergeInput {
    /// Each expert's statistics tensor `name` of file `kind`, checked to hold `count` values; nil
    /// when any expert lacks it (the method then falls back as documented).
    func expertStatistics(kind: String, name: String, count: Int, method: String) throws -> [[Float]]? {
        guard let source = statistics else {
            throw MergeError.invalidInputs(method: method, problem: "needs the experts' statistics (\(StatisticsLayout.path(kind))), and none were given")
        }
        var out: [[Float]] = []
        for i in experts.indices {
            guard let t = try source.tensor(expert: i, kind: kind, name: name) else { return nil }
            guard t.values.count == count else {
                let who = i < source.expertNames.count ? source.expertNames[i] : "expert \(i + 1)"
                throw MergeError.tensor(name: context.name, problem: "\(who)'s \(StatisticsLayout.path(kind)) holds '\(name)' with \(t.values.count) values (shape \(t.shape)), \(count) expected")
            }
            out.append(t.values)
        }
        return out
    }
}
