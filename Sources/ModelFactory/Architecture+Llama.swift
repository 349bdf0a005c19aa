import Delta

// Llama-style decoders (`LlamaForCausalLM`): the 3B-scale benchmark family and a tiny one for tests.
// Grouped-query attention (k and v have kvHeads × headDim rows), a gated MLP, RMSNorm weights and no
// biases; the input embeddings are tied to the output head, so there is no `lm_head.weight`.

extension Architecture {
    /// Llama-3.2-3B's shape: hidden 3072, 28 layers, 24 heads and 8 key/value heads, MLP 8192,
    /// vocabulary 128256, tied embeddings. 3 212 749 824 parameters: about 6.4 GB in bf16.
    public static let llama3b = Architecture(name: "llama3b", hidden: 3072, layers: 28, vocab: 128_256, intermediate: 8192,
                                             maxPositions: 131_072, family: .llama, heads: 24, kvHeads: 8)
    /// The same layout in a few hundred kilobytes: for tests and quick runs of the scale benchmark.
    public static let llamaTiny = Architecture(name: "llama-tiny", hidden: 64, layers: 2, vocab: 256, intermediate: 128,
                                               maxPositions: 128, family: .llama, heads: 4, kvHeads: 2)

    /// Width of one attention head.
    public var headDimension: Int { hidden / max(1, heads) }

    /// `LlamaForCausalLM.state_dict()`'s tensors (tied embeddings: no `lm_head.weight`).
    var llamaTensors: [TensorSpec] {
        let kv = kvHeads * headDimension
        var out = [TensorSpec(name: "model.embed_tokens.weight", shape: [vocab, hidden], kind: .embedding)]
        for l in 0..<layers {
            let p = "model.layers.\(l)."
            out.append(TensorSpec(name: p + "self_attn.q_proj.weight", shape: [hidden, hidden], kind: .matrix))
            out.append(TensorSpec(name: p + "self_attn.k_proj.weight", shape: [kv, hidden], kind: .matrix))
            out.append(TensorSpec(name: p + "self_attn.v_proj.weight", shape: [kv, hidden], kind: .matrix))
            out.append(TensorSpec(name: p + "self_attn.o_proj.weight", shape: [hidden, hidden], kind: .matrix))
            out.append(TensorSpec(name: p + "mlp.gate_proj.weight", shape: [intermediate, hidden], kind: .matrix))
            out.append(TensorSpec(name: p + "mlp.up_proj.weight", shape: [intermediate, hidden], kind: .matrix))
            out.append(TensorSpec(name: p + "mlp.down_proj.weight", shape: [hidden, intermediate], kind: .matrix))
            out.append(TensorSpec(name: p + "input_layernorm.weight", shape: [hidden], kind: .layerNormWeight))
            out.append(TensorSpec(name: p + "post_attention_layernorm.weight", shape: [hidden], kind: .layerNormWeight))
        }
        out.append(TensorSpec(name: "model.norm.weight", shape: [hidden], kind: .layerNormWeight))
        return out
    }

    func llamaConfigJSON(dtype: DType) -> String {
        """
        {
          "architectures": ["LlamaForCausalLM"],
          "attention_bias": false,
          "bos_token_id": 0,
          "eos_token_id": 1,
          "head_dim": \(headDimension),
          "hidden_act": "silu",
          "hidden_size": \(hidden),
          "initializer_range": 0.02,
          "intermediate_size": \(intermediate),
          "max_position_embeddings": \(maxPositions),
          "mlp_bias": false,
          "model_type": "llama",
          "num_attention_heads": \(heads),
          "num_hidden_layers": \(layers),
          "num_key_value_heads": \(kvHeads),
          "rms_norm_eps": 1e-05,
          "rope_theta": 500000.0,
          "tie_word_embeddings": true,
          "torch_dtype": "\(dtype.torchName)",
          "vocab_size": \(vocab)
        }

        """
    }
}
