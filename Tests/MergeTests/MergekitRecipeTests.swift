import Testing

@testable import Merge

/// mergekit YAML recipes in the `models:` form.
@Suite struct MergekitRecipeTests {
    /// The one-line error parsing `yaml` gives (a ``MergeError``), or nil.
    func parseError(_ yaml: String, sourceLocation: SourceLocation = #_sourceLocation) -> String? {
        do {
            _ = try MergekitRecipe.parse(yaml, file: "recipe.yaml")
            return nil
        } catch {
            #expect(error is MergeError, "\(type(of: error)): \(error)", sourceLocation: sourceLocation)
            return String(describing: error)
        }
    }

    @Test func modelsForm() throws {
        let yaml = """
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
            """
        let r = try MergekitRecipe.parse(yaml, file: "recipe.yaml")
        #expect(r.method == "ties")
        #expect(r.baseModel == "main")
        #expect(r.models.map(\.name) == ["math", "code", "main"])
        #expect(r.models[0].parameters == ["weight": .number(0.6), "density": .number(0.5)])
        #expect(r.models[1].parameters == ["weight": .number(0.4), "density": .gradient([0.3, 0.7])])
        #expect(r.models[2].parameters.isEmpty)
        #expect(r.parameters == ["normalize": .flag(true), "lambda": .number(1), "rescale": .flag(false)])
        #expect(r.dtype == "float32")
        #expect(r.outDType == "bfloat16")
        #expect(r.seed == 42)
        // The parsed values form a recipe mrepo accepts.
        let experts = r.models.filter { $0.name != r.baseModel }
        let plan = try MergePlan(MergeRecipe(method: r.method, parameters: r.parameters, expertParameters: experts.map(\.parameters),
                                             experts: experts.map(\.name), seed: r.seed ?? 0))
        #expect(plan.method.id == "ties")
    }

    /// §0.5's SLERP example with per-module depth schedules.
    @Test func perModuleScheduleSection05() throws {
        let yaml = """
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
            """
        let r = try MergekitRecipe.parse(yaml, file: "slerp.yaml")
        let t = try #require(r.parameters["t"])
        #expect(t == .conditional([
            ParameterCondition(filter: "self_attn", value: .gradient([0, 0.5, 0.3, 0.7, 1])),
            ParameterCondition(filter: "mlp", value: .gradient([1, 0.5, 0.7, 0.3, 0])),
            ParameterCondition(filter: nil, value: .number(0.5)),
        ]))
        let attention = TensorContext(name: "model.layers.8.self_attn.q_proj.weight", shape: [4, 4], layerCount: 32)
        let value = try #require(t.resolve(for: attention)?.numberValue)
        #expect(abs(value - 0.4935) < 5e-5)
        let norm = TensorContext(name: "model.layers.8.post_attention_layernorm.weight", shape: [4], layerCount: 32)
        #expect(t.resolve(for: norm) == .number(0.5))
        _ = try MergePlan(MergeRecipe(method: r.method, parameters: r.parameters, experts: r.models.map(\.name)))
    }

    @Test func integerModelNamesAndMissingParameters() throws {
        let r = try MergekitRecipe.parse("merge_method: linear\nmodels:\n  - model: 7\n  - model: v2\n", file: "r.yaml")
        #expect(r.models.map(\.name) == ["7", "v2"])
        #expect(r.parameters.isEmpty && r.baseModel == nil && r.seed == nil && r.dtype == nil)
    }

    /// YAML merge keys, which PyYAML (mergekit's reader) expands, were refused as "an unsupported
    /// value": a mapping's own keys win over merged ones, and earlier sources over later ones.
    @Test func mergeKeysAreExpandedAsPyYAMLDoes() throws {
        let text = """
        merge_method: ties
        parameters: {<<: [{density: 0.2, weight: 0.9}, {density: 0.7, normalize: true}]}
        models:
          - model: math
            parameters: &p {weight: 1.0, density: 0.5}
          - model: code
            parameters:
              <<: *p
              weight: 0.5
        """
        let r = try MergekitRecipe.parse(text, file: "r.yml")
        #expect(r.models[0].parameters == ["weight": .number(1), "density": .number(0.5)])
        #expect(r.models[1].parameters == ["weight": .number(0.5), "density": .number(0.5)])
        #expect(r.parameters == ["density": .number(0.2), "weight": .number(0.9), "normalize": .flag(true)])
        #expect(parseError("merge_method: ties\nparameters: {<<: 3}\nmodels:\n  - model: m\n")?.contains("parameters.<< (a merge key) must be a mapping or a list of mappings") == true)
        // An empty list merges nothing, as in PyYAML (two merge keys are duplicate keys, refused
        // as YAML by the parser).
        #expect(try MergekitRecipe.parse("merge_method: ties\nparameters: {<<: [], density: 0.4}\nmodels:\n  - model: m\n", file: "r.yml").parameters == ["density": .number(0.4)])
    }

    /// mergekit's filter is `filter in name`, so the empty filter matches every tensor (it matched
    /// none); a command-line glob must be well formed.
    @Test func anEmptyFilterMatchesEveryTensorAsInMergekit() {
        #expect(ParameterCondition(filter: "", value: .number(1)).matches("model.layers.0.mlp.up_proj.weight"))
        #expect(ParameterCondition(filter: "mlp", value: .number(1)).matches("model.layers.0.mlp.up_proj.weight"))
        #expect(!ParameterCondition(filter: "attn", value: .number(1)).matches("model.layers.0.mlp.up_proj.weight"))
        for glob in ["*mlp*", "layers.[0-3].*", "[]x]", "[!]x]*", "a\\[b"] { #expect(ParameterCondition.isWellFormedGlob(glob), "\(glob)") }
        for glob in ["[", "x[", "layers.[0-3.*", "[]", "[!]"] { #expect(!ParameterCondition.isWellFormedGlob(glob), "\(glob)") }
    }

    /// `mrepo: consensus: {k: K}` takes λ = 1, as `--consensus K` does (it was refused); YAML
    /// syntax errors say where and what in one line (only the context was left).
    @Test func consensusLambdaDefaultsAndYAMLErrorsSayWhat() throws {
        let base = "merge_method: ties\nbase_model: main\nmodels:\n  - model: math\n  - model: code\nmrepo:\n"
        #expect(try MergekitRecipe.parse(base + "  consensus: {k: 1}\n", file: "r.yml").consensus! == (1, 1))
        #expect(try MergekitRecipe.parse(base + "  consensus: {k: 2, lambda: 0.5}\n", file: "r.yml").consensus! == (2, 0.5))
        #expect(parseError(base + "  consensus: {lambda: 0.5}\n")?.contains("must be {k: K, lambda: L}") == true)
        #expect(parseError("merge_method: ties\nmodels:\n  - model: math\n   - model: code\n")
            == "recipe.yaml: not valid YAML: line 4, column 4: did not find expected '-' indicator (while parsing a block collection at line 3, column 3)")
    }

    @Test func rejectsSlices() {
        let yaml = """
            slices:
              - sources:
                  - model: a
                    layer_range: [0, 16]
            merge_method: passthrough
            """
        #expect(parseError(yaml) == "recipe.yaml: 'slices' and 'modules' recipes are not supported; use the 'models' form")
    }

    /// tokenizer_source is read (it maps onto --vocab); chat templates are not merged.
    @Test func tokenizerSourceIsReadAndChatTemplateRefused() throws {
        #expect(try MergekitRecipe.parse("merge_method: linear\nmodels:\n  - model: a\ntokenizer_source: union\n", file: "r").tokenizerSource == "union")
        #expect(try MergekitRecipe.parse("merge_method: linear\nmodels:\n  - model: a\ntokenizer:\n  source: base\n", file: "r").tokenizerSource == "base")
        #expect(parseError("merge_method: linear\nmodels:\n  - model: a\nchat_template: chatml\n")?.contains("chat_template") == true)
    }

    @Test func malformedRecipes() throws {
        #expect(parseError("merge_method: linear\nmodels:\n  - model: a\nmystery: 1\n") == "recipe.yaml: unknown key 'mystery'")
        #expect(parseError("models:\n  - model: a\n") == "recipe.yaml: missing 'merge_method'")
        // Without models, a recipe is a method for the branches named on the command line
        // (MergeRequestTests); it is written back without a models list.
        let method = try #require(try? MergekitRecipe.parse("merge_method: linear\nparameters:\n  weight: 0.5\n", file: "recipe.yaml"))
        #expect(method.models.isEmpty)
        #expect(!method.yaml().contains("models"))
        #expect((try? MergekitRecipe.parse(method.yaml(), file: "recipe.yaml")) == method)
        #expect(parseError("merge_method: linear\nmodels: []\n") == "recipe.yaml: the 'models' list is empty")
        #expect(parseError("merge_method: linear\nmodels: ~\n") == "recipe.yaml: the 'models' list is empty")
        #expect(parseError("merge_method: linear\nmodels: math\n") == "recipe.yaml: 'models' must be a list (- model: NAME)")
        #expect(parseError("merge_method: linear\nmodels:\n  - name: a\n") == "recipe.yaml: models[0] needs 'model: NAME'")
        #expect(parseError("- 1\n- 2\n") == "recipe.yaml: expected a mapping at the top level")
        #expect(parseError("merge_method: linear\nmodels:\n  - model: a\nparameters: 3\n") == "recipe.yaml: parameters must be a mapping")
        #expect(parseError("merge_method: ties\nmodels:\n  - model: a\nparameters:\n  density:\n    - filter: mlp\n")
            == "recipe.yaml: parameters.density[0] must be {filter, value}")
        #expect(parseError("merge_method: ties\nmodels:\n  - model: a\n    parameters: {weight: {x: 1}}\n")
            == "recipe.yaml: models[0].parameters.weight has an unsupported value")
        #expect(parseError("merge_method: [unclosed\n")?.hasPrefix("recipe.yaml: not valid YAML: ") == true)
        // A model listed twice (mergekit: "Duplicate merge inputs"); the last entry's weight won.
        #expect(parseError("merge_method: task_arithmetic\nbase_model: main\nmodels:\n  - model: math\n    parameters: {weight: 1}\n  - model: math\n    parameters: {weight: 3}\n")
            == "recipe.yaml: models[1] lists 'math' again (models[0]); each model may be listed once")
    }
}
