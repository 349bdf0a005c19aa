import Delta
import Foundation

/// A Hugging Face `config.json` brought in line with the merged weights, as mergekit does: the
/// vocabulary size to the merged embedding's rows (after `--vocab base|common|union`), and the
/// dtype to the output dtype (`--dtype`, a recipe's `out_dtype`). Without this, `from_pretrained`
/// refuses the merged embedding (a size mismatch) or loads bf16 weights as float32 (`torch_dtype="auto"`).
public enum ModelConfigText {
    /// The config with its top-level `vocab_size` set to `vocabRows` and its `torch_dtype` and
    /// `dtype` (the newer name) set to `dtype`, where the config has them; nil when nothing changes
    /// or the text is not a JSON object. Only the changed values are rewritten: formatting, key
    /// order and every other byte stay.
    public static func updated(_ text: String, vocabRows: Int?, dtype: DType?) -> String? {
        guard let root = try? JSONValue.parse(Array(text.utf8)), let members = root.objectValue else { return nil }
        var edits: [(key: String, value: JSONValue)] = []
        if let rows = vocabRows, let current = root["vocab_size"], current.intValue != rows, current.intValue != nil {
            edits.append(("vocab_size", .int(rows)))
        }
        if let dtype {
            for key in ["torch_dtype", "dtype"] where root[key]?.stringValue != nil && root[key]?.stringValue != dtype.torchName {
                edits.append((key, .string(dtype.torchName)))
            }
        }
        guard !edits.isEmpty else { return nil }
        var out = text
        for (key, value) in edits {
            // The key's one occurrence in the text is the top-level one; otherwise (a nested
            // config holding the same key) the whole object is written again.
            let pattern = "(\"\(key)\"\\s*:\\s*)(-?[0-9]+|\"(?:[^\"\\\\]|\\\\.)*\")"
            guard let regex = try? NSRegularExpression(pattern: pattern),
                  text.components(separatedBy: "\"\(key)\"").count == 2,
                  let match = regex.firstMatch(in: out, range: NSRange(out.startIndex..., in: out)),
                  let range = Range(match.range(at: 2), in: out) else {
                let replaced = members.map { m in edits.first { $0.key == m.key }.map { JSONMember(m.key, $0.value) } ?? m }
                return JSONValue.object(replaced).prettySerialized() + "\n"
            }
            out.replaceSubrange(range, with: value.serialized())
        }
        return out
    }
}
