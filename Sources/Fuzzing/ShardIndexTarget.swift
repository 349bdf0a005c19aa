import Delta
import Foundation

/// `shard-index`: `model.safetensors.index.json` (``ShardIndex/parse(_:file:)``): names that leave
/// the checkpoint folder are refused, the index survives being written back, and one input in 16
/// is checked on disk beside two small shards by ``CheckpointCheck`` (`mrepo check`).
enum ShardIndexTarget {
    static let fileName = "model.safetensors.index.json"

    static let target = FuzzTarget(
        name: "shard-index", summary: "sharded checkpoint index files: parse, path safety, write back, mrepo check",
        dialect: .json, maxInputBytes: 4096, mention: fileName,
        seeds: { seeds.map { Array($0.utf8) } }, hostile: { hostile.map { Array($0.utf8) } }, prepare: prepare)

    static let seeds: [String] = [
        """
        {
          "metadata": {"total_size": 96},
          "weight_map": {
            "a": "model-00001-of-00002.safetensors",
            "b": "model-00001-of-00002.safetensors",
            "c": "model-00002-of-00002.safetensors"
          }
        }
        """,
        #"{"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors", "model.embed_tokens.weight": "model-00001-of-00002.safetensors"}}"#,
        #"{"metadata": {"total_size": 0, "format": "pt", "nested": {"x": [1, 2.5, null, true]}}, "weight_map": {}}"#,
    ]

    /// Names that leave the folder or are no file name at all.
    static let hostile: [String] = ["../model.safetensors", "/etc/passwd", "sub/x.safetensors", ".hidden", "", "a\\u0000b", "a\\nb"].map {
        #"{"weight_map": {"a": "model-00001-of-00002.safetensors", "w": "\#($0)"}}"#
    }

    static func prepare(_ scratch: String) throws -> FuzzRunner {
        // Two shards holding a, b and c, as the first seed says.
        for (name, tensors) in [("model-00001-of-00002.safetensors", ["a", "b"]), ("model-00002-of-00002.safetensors", ["c"])] {
            try SafetensorsWriter.write(path: scratch + "/" + name, tensors: tensors.map { ($0, DType.f32, [2], [UInt8](repeating: 0, count: 8)) },
                                        metadata: nil)
        }
        return FuzzRunner { input in
            let index = try ShardIndex.parse(input, file: fileName)
            for (tensor, file) in index.weightMap {
                try require(!file.isEmpty && !file.contains("/") && !file.hasPrefix(".") && !file.unicodeScalars.contains { $0.value < 0x20 },
                            "'\(tensor)' names '\(file.debugDescription)', outside the folder or not a file name")
            }
            let again = try ShardIndex.parse(index.serialized(), file: fileName)
            try require(Set(again.weightMap.map { $0.tensor + "\u{0}" + $0.file }) == Set(index.weightMap.map { $0.tensor + "\u{0}" + $0.file })
                        && again.metadata == index.metadata, "the index written back reads differently")
            if slowChecks(input, oneIn: 16) {
                try writeScratch(input, to: scratch + "/" + fileName)
                let report = CheckpointCheck.check(paths: [scratch], finite: false)
                for finding in report.findings {
                    try require(!finding.description.contains(where: \.isNewline), "mrepo check finding spans lines: \(finding.description.debugDescription)")
                }
            }
        }
    }
}
