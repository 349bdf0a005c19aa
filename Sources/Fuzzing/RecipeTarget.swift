import Delta
import Merge

/// `recipe`: mergekit YAML recipes (`mrepo merge --config`): ``MergekitRecipe/parse(_:file:)``,
/// the recipe written back by ``MergekitRecipe/yaml()`` (it must read back equal), and what
/// `merge` does next with it: assembling the request and planning the method.
enum RecipeTarget {
    static let fileName = "recipe.yaml"

    static let target = FuzzTarget(
        name: "recipe", summary: "mergekit YAML recipes: parse, write back, assemble, plan",
        dialect: .yaml, maxInputBytes: 8192, mention: fileName,
        seeds: { seeds.map { Array($0.utf8) } }, hostile: { hostile.map { Array($0.utf8) } }, prepare: { _ in FuzzRunner(run) })

    static let seeds: [String] = [
        """
        models:
          - model: math
            parameters: {weight: 0.6, density: 0.5}
          - model: code
            parameters: {weight: 0.4, density: [0.3, 0.7]}
          - model: main
        merge_method: ties
        base_model: main
        parameters: {normalize: true, lambda: 1.0, rescale: false}
        dtype: float32
        out_dtype: bfloat16
        seed: 42
        name: my-merge
        """,
        """
        merge_method: slerp
        base_model: base
        models:
          - model: base
          - model: chat
        parameters:
          t:
            - filter: self_attn
              value: [0, 0.5, 0.3, 0.7, 1]
            - filter: mlp
              value: [1, 0.5, 0.7, 0.3, 0]
            - value: 0.5
        dtype: bfloat16
        """,
        "merge_method: linear\nmodels:\n  - model: 7\n  - model: v2\n",
        """
        merge_method: dare_ties
        base_model: main
        models:
          - model: a
            parameters:
              weight: 0.5
              density: 0.7
          - model: b
            parameters:
              weight: 0.5
              density: 0.7
        tokenizer:
          source: base
        mrepo:
          merge_base: main
          one_sided: take
          vocab: union
          thresholds: {max_sign_conflict: 0.4, min_cosine: 0.1}
          lines: {alpha: 0.3, beta: 0.7}
          consensus: {k: 2, lambda: 0.6}
          resolutions:
            - tensor: encoder.layer.0.attention.self.query.weight
              how: expert
              option: a
              expert: a
            - tensor: pooler.dense.weight
              how: method
              option: linear
              method: linear
              parameters: {weight: 0.5}
              seed: 3
        """,
        """
        merge_method: task_arithmetic
        base_model: main
        models:
          - model: a
            parameters: &same {weight: 0.5}
          - model: b
            parameters: *same
        tokenizer_source: union
        """,
    ]

    /// An alias bomb (9⁹ values in under 2 KB), the bomb as a mapping key, nesting past the reader's
    /// limit, a key with a newline.
    static let hostile: [String] = {
        var list = "&c0 [" + [String](repeating: "{value: 1}", count: 9).joined(separator: ", ") + "]"
        for level in 1...9 {
            list = "&c\(level) [{value: \(list)}, " + [String](repeating: "{value: *c\(level - 1)}", count: 8).joined(separator: ", ") + "]"
        }
        return [
            "merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: \(list)}\n",
            "merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: \(list)}\n  - {*c9 : 1}\n",
            "merge_method: linear\nmodels:\n  - model: a\n    parameters:\n      weight: "
                + String(repeating: "[{value: ", count: 40) + "1" + String(repeating: "}]", count: 40) + "\n",
            "merge_method: linear\nmodels:\n  - model: a\n\"bad\\nkey\": 1\n",
        ]
    }()

    /// A resolution's `parameters: ~` (or `{}`) reads as empty parameters and is written as none:
    /// the same thing, spelled two ways.
    static func normalized(_ recipe: MergekitRecipe) -> MergekitRecipe {
        var r = recipe
        for i in r.extensions.resolutions.indices where r.extensions.resolutions[i].parameters?.isEmpty == true {
            r.extensions.resolutions[i].parameters = nil
        }
        return r
    }

    static func run(_ input: [UInt8]) throws {
        let text = String(decoding: input, as: UTF8.self)
        let recipe = try MergekitRecipe.parse(text, file: fileName)
        let written = recipe.yaml()
        let again: MergekitRecipe
        do {
            again = try MergekitRecipe.parse(written, file: fileName)
        } catch {
            throw FuzzViolation("the recipe written back does not parse (\(error)): \(written.debugDescription.prefix(200))")
        }
        try require(again == normalized(recipe), "the recipe written back reads differently: \(written.debugDescription.prefix(200))")
        // What `mrepo merge --config` does next.
        // Their errors name the method and parameter, not the file (the merge layer knows no
        // file): they count as the recipe's refusal.
        let assembled: MergeRequest.Assembled
        let plan: MergePlan
        do {
            assembled = try MergeRequest().assemble(over: recipe, file: fileName)
            plan = try MergePlan(assembled.recipe)
        } catch {
            if case .invalidRecipe = error { throw error }
            throw MergeError.invalidRecipe(file: fileName, problem: error.description)
        }
        let tensors = [
            TensorContext(name: "model.layers.3.self_attn.q_proj.weight", shape: [8, 8], layerCount: 8),
            TensorContext(name: "model.embed_tokens.weight", shape: [64, 8], layerCount: 8),
            TensorContext(name: "lm_head.weight", shape: [], layerCount: 0),
        ]
        for t in tensors {
            for value in assembled.recipe.parameters.values { _ = value.resolve(for: t) }
            for expert in assembled.expertParameters { for value in expert.parameters.values { _ = value.resolve(for: t) } }
        }
        _ = plan
    }
}
