import Delta
import Testing

@testable import Merge

/// config.json follows the merged weights: the vocabulary's rows and the output dtype, every other
/// byte kept.
@Suite struct ModelConfigTextTests {
    let config = """
        {
          "architectures": ["BertModel"],
          "hidden_size": 16,
          "torch_dtype": "float32",
          "vocab_size": 70
        }

        """

    @Test func changesOnlyTheValuesThatDiffer() {
        let updated = ModelConfigText.updated(config, vocabRows: 64, dtype: .bf16)
        #expect(updated == config.replacingOccurrences(of: "70", with: "64").replacingOccurrences(of: "\"float32\"", with: "\"bfloat16\""))
        #expect(ModelConfigText.updated(config, vocabRows: 70, dtype: .f32) == nil)
        #expect(ModelConfigText.updated(config, vocabRows: nil, dtype: nil) == nil)
        // The newer `dtype` key is set too; a config without either key is left alone.
        #expect(ModelConfigText.updated(#"{"dtype": "float32"}"#, vocabRows: nil, dtype: .f16) == #"{"dtype": "float16"}"#)
        #expect(ModelConfigText.updated(#"{"hidden_size": 16}"#, vocabRows: 64, dtype: .f16) == nil)
        #expect(ModelConfigText.updated("not json", vocabRows: 64, dtype: .f16) == nil)
    }

    /// A nested config with the same key (a multimodal model's text_config): only the top level
    /// changes, and the object is written again rather than the wrong occurrence edited.
    @Test func aNestedKeyIsNotTheOneChanged() throws {
        let nested = #"{"text_config": {"vocab_size": 32}, "vocab_size": 70}"#
        let updated = try #require(ModelConfigText.updated(nested, vocabRows: 64, dtype: nil))
        let parsed = try JSONValue.parse(Array(updated.utf8))
        #expect(parsed["vocab_size"]?.intValue == 64)
        #expect(parsed["text_config"]?["vocab_size"]?.intValue == 32)
    }
}
