/// `model.safetensors.index.json`: which shard holds each tensor of a sharded checkpoint.
///
/// ```json
/// {"metadata": {"total_size": 28966928384}, "weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors", ...}}
/// ```
public struct ShardIndex: Sendable, Equatable {
    /// Tensor name → shard file name, in the order of the file.
    public var weightMap: [(tensor: String, file: String)]
    /// The `metadata` object as it was, if any.
    public var metadata: JSONValue?

    public static func == (a: ShardIndex, b: ShardIndex) -> Bool {
        a.weightMap.map(\.tensor) == b.weightMap.map(\.tensor) && a.weightMap.map(\.file) == b.weightMap.map(\.file)
            && a.metadata == b.metadata
    }

    /// Whether a file name is a shard index (`*.safetensors.index.json`).
    public static func isIndexFile(_ name: String) -> Bool {
        name.hasSuffix(".safetensors.index.json")
    }

    public init(weightMap: [(tensor: String, file: String)], metadata: JSONValue?) {
        self.weightMap = weightMap
        self.metadata = metadata
    }

    /// Parses an index file.
    /// - Parameter file: the name used in error messages.
    public static func parse(_ bytes: [UInt8], file: String) throws(DeltaError) -> ShardIndex {
        let root: JSONValue
        do {
            root = try JSONValue.parse(bytes)
        } catch {
            throw .invalidShardIndex(file: file, problem: "not valid JSON: \(error)")
        }
        guard let map = root["weight_map"]?.objectValue else {
            throw .invalidShardIndex(file: file, problem: "missing 'weight_map' object")
        }
        var pairs: [(tensor: String, file: String)] = []
        for member in map {
            guard let shard = member.value.stringValue else {
                throw .invalidShardIndex(file: file, problem: "weight_map entry '\(member.key)' is not a file name")
            }
            // A name the folder cannot hold as written: empty, or with a control character (NUL
            // ends the name a system call sees; a newline splits every listing).
            guard !shard.isEmpty, !shard.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                throw .invalidShardIndex(file: file, problem: "weight_map entry '\(member.key)' names '\(shard)', which is not a file name")
            }
            guard !shard.contains("/"), !shard.hasPrefix(".") else {
                throw .invalidShardIndex(file: file, problem: "weight_map entry '\(member.key)' names '\(shard)', outside the checkpoint folder")
            }
            pairs.append((member.key, shard))
        }
        return ShardIndex(weightMap: pairs, metadata: root["metadata"])
    }

    /// Serializes an index as the Hugging Face libraries write it (two-space indent, sorted keys).
    public func serialized() -> [UInt8] {
        var text = "{\n"
        if let metadata {
            text += "  \"metadata\": \(metadata.serialized()),\n"
        }
        text += "  \"weight_map\": {\n"
        let sorted = weightMap.sorted { $0.tensor < $1.tensor }
        for (i, pair) in sorted.enumerated() {
            text += "    \(JSONValue.string(pair.tensor).serialized()): \(JSONValue.string(pair.file).serialized())"
            text += i + 1 < sorted.count ? ",\n" : "\n"
        }
        text += "  }\n}\n"
        return Array(text.utf8)
    }

    /// The shard file names in first-use order.
    public var shardFiles: [String] {
        var seen = Set<String>()
        return weightMap.compactMap { seen.insert($0.file).inserted ? $0.file : nil }
    }
}
