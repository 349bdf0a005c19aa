import Delta

/// The shape of a transformer, named as Hugging Face's model classes name its tensors.
///
/// A BERT-style encoder uses the tensor names of `sentence-transformers/all-MiniLM-L6-v2`
/// (`embeddings.word_embeddings.weight`, `encoder.layer.3.attention.self.query.weight`, ...), so the
/// generated family and the real MiniLM family (`shared/data/make-real-checkpoints.sh`) can be
/// compared tensor for tensor. A Llama-style decoder (`Family.llama`) uses `LlamaForCausalLM`'s
/// names (`model.layers.3.self_attn.q_proj.weight`, ...), see Architecture+Llama.swift.
public struct Architecture: Sendable, Equatable {
    /// Which model class's tensors and config the architecture has.
    public enum Family: String, Sendable, Equatable {
        case bert, llama
    }

    public var name: String
    public var hidden: Int
    public var layers: Int
    public var vocab: Int
    public var intermediate: Int
    public var maxPositions: Int
    public var family: Family
    /// Attention heads and key/value heads (grouped-query attention when fewer); the head
    /// dimension is hidden / heads.
    public var heads: Int
    public var kvHeads: Int

    public init(name: String, hidden: Int, layers: Int, vocab: Int, intermediate: Int, maxPositions: Int,
                family: Family = .bert, heads: Int? = nil, kvHeads: Int? = nil) {
        self.name = name
        self.hidden = hidden
        self.layers = layers
        self.vocab = vocab
        self.intermediate = intermediate
        self.maxPositions = maxPositions
        self.family = family
        self.heads = heads ?? max(1, hidden / 64)
        self.kvHeads = kvHeads ?? self.heads
    }

    /// A few kilobytes: for unit tests.
    public static let tiny = Architecture(name: "tiny", hidden: 16, layers: 2, vocab: 64, intermediate: 64, maxPositions: 32)
    /// About 6 MB in fp32: for the demo and end-to-end tests.
    public static let small = Architecture(name: "small", hidden: 128, layers: 4, vocab: 4096, intermediate: 512, maxPositions: 128)
    /// all-MiniLM-L6-v2's shape, about 91 MB in fp32.
    public static let minilm = Architecture(name: "minilm", hidden: 384, layers: 6, vocab: 30522, intermediate: 1536, maxPositions: 512)
    /// A BERT-large-like encoder of about 1.2 GB in fp32: the benchmark family.
    public static let bench = Architecture(name: "bench", hidden: 1024, layers: 22, vocab: 30522, intermediate: 4096, maxPositions: 512)

    public static let all: [Architecture] = [.tiny, .small, .minilm, .bench, .llamaTiny, .llama3b]

    /// What a tensor is, which decides how its values are distributed.
    public enum Kind: Sendable, Equatable {
        case embedding, matrix, bias, layerNormWeight, layerNormBias, positionIDs
    }

    /// One tensor of the architecture.
    public struct TensorSpec: Sendable, Equatable {
        public var name: String
        public var shape: Shape
        public var kind: Kind
        public var elementCount: Int { shape.elementCount ?? 0 }
    }

    /// Every tensor, in the order the model's `state_dict()` lists them.
    public var tensors: [TensorSpec] {
        family == .llama ? llamaTensors : bertTensors
    }

    /// `BertModel.state_dict()`'s tensors.
    private var bertTensors: [TensorSpec] {
        var out: [TensorSpec] = [
            TensorSpec(name: "embeddings.position_ids", shape: [1, maxPositions], kind: .positionIDs),
            TensorSpec(name: "embeddings.word_embeddings.weight", shape: [vocab, hidden], kind: .embedding),
            TensorSpec(name: "embeddings.position_embeddings.weight", shape: [maxPositions, hidden], kind: .embedding),
            TensorSpec(name: "embeddings.token_type_embeddings.weight", shape: [2, hidden], kind: .embedding),
            TensorSpec(name: "embeddings.LayerNorm.weight", shape: [hidden], kind: .layerNormWeight),
            TensorSpec(name: "embeddings.LayerNorm.bias", shape: [hidden], kind: .layerNormBias),
        ]
        for l in 0..<layers {
            let p = "encoder.layer.\(l)."
            for proj in ["query", "key", "value"] {
                out.append(TensorSpec(name: p + "attention.self.\(proj).weight", shape: [hidden, hidden], kind: .matrix))
                out.append(TensorSpec(name: p + "attention.self.\(proj).bias", shape: [hidden], kind: .bias))
            }
            out.append(TensorSpec(name: p + "attention.output.dense.weight", shape: [hidden, hidden], kind: .matrix))
            out.append(TensorSpec(name: p + "attention.output.dense.bias", shape: [hidden], kind: .bias))
            out.append(TensorSpec(name: p + "attention.output.LayerNorm.weight", shape: [hidden], kind: .layerNormWeight))
            out.append(TensorSpec(name: p + "attention.output.LayerNorm.bias", shape: [hidden], kind: .layerNormBias))
            out.append(TensorSpec(name: p + "intermediate.dense.weight", shape: [intermediate, hidden], kind: .matrix))
            out.append(TensorSpec(name: p + "intermediate.dense.bias", shape: [intermediate], kind: .bias))
            out.append(TensorSpec(name: p + "output.dense.weight", shape: [hidden, intermediate], kind: .matrix))
            out.append(TensorSpec(name: p + "output.dense.bias", shape: [hidden], kind: .bias))
            out.append(TensorSpec(name: p + "output.LayerNorm.weight", shape: [hidden], kind: .layerNormWeight))
            out.append(TensorSpec(name: p + "output.LayerNorm.bias", shape: [hidden], kind: .layerNormBias))
        }
        out.append(TensorSpec(name: "pooler.dense.weight", shape: [hidden, hidden], kind: .matrix))
        out.append(TensorSpec(name: "pooler.dense.bias", shape: [hidden], kind: .bias))
        return out
    }

    /// Total parameter count (every element of every tensor).
    public var parameterCount: Int { tensors.reduce(0) { $0 + $1.elementCount } }

    /// A Hugging Face `config.json` for this shape.
    public func configJSON(dtype: DType) -> String {
        if family == .llama { return llamaConfigJSON(dtype: dtype) }
        return """
        {
          "architectures": ["BertModel"],
          "attention_probs_dropout_prob": 0.1,
          "hidden_act": "gelu",
          "hidden_dropout_prob": 0.1,
          "hidden_size": \(hidden),
          "initializer_range": 0.02,
          "intermediate_size": \(intermediate),
          "layer_norm_eps": 1e-12,
          "max_position_embeddings": \(maxPositions),
          "model_type": "bert",
          "num_attention_heads": \(heads),
          "num_hidden_layers": \(layers),
          "pad_token_id": 0,
          "torch_dtype": "\(dtype.torchName)",
          "type_vocab_size": 2,
          "vocab_size": \(vocab)
        }

        """
    }
}
