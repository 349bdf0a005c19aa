import Delta
import Testing

@testable import Merge

/// Command-line settings over a mergekit recipe: what `mrepo merge` merges.
@Suite struct MergeRequestTests {
    let yaml = """
        models:
          - model: math
            parameters: {weight: 0.6}
          - model: code
          - model: main
        merge_method: ties
        base_model: main
        parameters: {density: 0.5}
        out_dtype: bfloat16
        seed: 3
        """

    func message(_ error: MergeError) -> String { error.description }

    @Test func recipeAloneGivesItsModelsBaseAndDtype() throws {
        let assembled = try MergeRequest().assemble(over: try MergekitRecipe.parse(yaml, file: "r.yml"), file: "r.yml")
        #expect(assembled.inputs == ["math", "code"], "the base model leaves the list")
        #expect(assembled.inputsAreExperts, "a recipe's models are the experts")
        #expect(assembled.isExplicit)
        #expect(assembled.base == "main")
        #expect(assembled.outputDType == .bf16)
        #expect(assembled.recipe.method == "ties" && assembled.recipe.seed == 3)
        #expect(assembled.recipe.parameters == ["density": .number(0.5)])
        #expect(assembled.recipe.experts == ["math", "code"], "the recipe's order is the order of the sums")
        #expect(assembled.expertParameters.map(\.name) == ["math"])
        #expect(assembled.expertParameters.first?.parameters == ["weight": .number(0.6)])
    }

    /// mergekit writes its compute dtype when out_dtype is not given; mrepo computes in float32
    /// but writes that dtype, and records the recipe's dtype as written.
    @Test func dtypeIsTheDefaultOutputDtype() throws {
        let text = yaml.replacingOccurrences(of: "out_dtype: bfloat16", with: "dtype: float16")
        let assembled = try MergeRequest().assemble(over: try MergekitRecipe.parse(text, file: "r.yml"), file: "r.yml")
        #expect(assembled.outputDType == .f16)
        #expect(assembled.dtype == "float16")
    }

    @Test func plainBranchesAreNotExplicit() throws {
        var request = MergeRequest()
        request.branches = ["code"]
        let plain = try request.assemble(over: nil)
        #expect(!plain.isExplicit && !plain.inputsAreExperts && plain.recipe.method == "ties")
        request.settings = [("lambda", nil, .number(0.5))]
        #expect(try request.assemble(over: nil).isExplicit, "a parameter makes it a real merge")
    }

    @Test func tokenizerSourceMapsToTheVocabularyPolicy() throws {
        let union = try MergeRequest().assemble(over: try MergekitRecipe.parse(yaml + "\ntokenizer_source: union", file: "r.yml"))
        #expect(union.extensions.vocabulary == .union && union.tokenizerSource == "union")
        let model = try MergekitRecipe.parse(yaml + "\ntokenizer_source: math", file: "r.yml")
        expectThrows(MergeError.invalidRecipe(file: "r.yml", problem: "tokenizer_source 'math' is not supported; use 'base' or 'union' (the --vocab policies)")) {
            try MergeRequest().assemble(over: model, file: "r.yml")
        }
    }

    @Test func commandLineWins() throws {
        var request = MergeRequest()
        request.base = "HEAD~1"
        request.seed = 9
        request.outputDType = .f16
        request.settings = [("density", nil, .number(0.3))]
        request.expertSettings = [("math", "weight", nil, .number(0.9))]
        let assembled = try request.assemble(over: try MergekitRecipe.parse(yaml, file: "r.yml"))
        #expect(assembled.inputs == ["math", "code"] && assembled.base == "HEAD~1" && assembled.outputDType == .f16)
        #expect(assembled.recipe.seed == 9 && assembled.recipe.parameters["density"] == .number(0.3))
        #expect(assembled.expertParameters.first { $0.name == "math" }?.parameters == ["weight": .number(0.9)])
    }

    /// Branches beside a recipe that lists its models are refused: they replaced the models
    /// silently, and the recipe's per-model parameters then named models that were not merged.
    @Test func branchesBesideTheRecipesModelsAreRefused() throws {
        var request = MergeRequest()
        request.branches = ["math"]
        let recipe = try MergekitRecipe.parse(yaml, file: "r.yml")
        expectThrows(MergeError.invalidRecipe(file: "r.yml", problem: "the recipe lists its models (math, code), and the command line names branches too (math); give the experts in one place")) {
            try request.assemble(over: recipe, file: "r.yml")
        }
    }

    /// A recipe without models is a method and its parameters for the branches named on the
    /// command line; with neither, the recipe is refused, saying both ways.
    @Test func aRecipeWithoutModelsTakesTheBranches() throws {
        let recipe = try MergekitRecipe.parse("merge_method: ties\nparameters:\n  density: 0.5\n", file: "r.yml")
        var request = MergeRequest()
        request.branches = ["math", "code"]
        let assembled = try request.assemble(over: recipe, file: "r.yml")
        #expect(assembled.inputs == ["math", "code"] && assembled.recipe.method == "ties" && assembled.inputsAreExperts)
        #expect(assembled.recipe.parameters["density"] == .number(0.5))
        expectThrows(MergeError.invalidRecipe(file: "r.yml", problem: "missing 'models' list; list the models to merge, or name the branches on the command line (mrepo merge A B --config r.yml)")) {
            try MergeRequest().assemble(over: recipe, file: "r.yml")
        }
        // base_model is read against the branches as against a models list: slerp's t = 0 end.
        let slerp = try MergekitRecipe.parse("merge_method: slerp\nbase_model: code\nparameters:\n  t: 0.3\n", file: "s.yml")
        #expect(try request.assemble(over: slerp, file: "s.yml").inputs == ["code", "math"])
        let onlyBase = try MergekitRecipe.parse("merge_method: ties\nbase_model: main\n", file: "b.yml")
        var baseOnly = MergeRequest()
        baseOnly.branches = ["main"]
        expectThrows(MergeError.invalidRecipe(file: "b.yml", problem: "every branch named (main) is the recipe's base_model; name the models to merge")) {
            try baseOnly.assemble(over: onlyBase, file: "b.yml")
        }
        let linear = try MergekitRecipe.parse("merge_method: linear\nbase_model: chat\n", file: "l.yml")
        expectThrows(MergeError.invalidRecipe(file: "l.yml", problem: "linear does not use a merge base, and base_model 'chat' is not among the models (mergekit would add it as one more input); list it under models, or drop base_model")) {
            try request.assemble(over: linear, file: "l.yml")
        }
    }

    /// A glob of the form `*X*` is recorded as mergekit's substring filter X (the same tensors,
    /// and mergekit reads it the same way: it had read `*attention*` as a literal substring that no
    /// name holds, and gave 40 of 84 tensors other values). Other globs stay globs, and the
    /// recorded recipe says mergekit would not apply them.
    @Test func commandLineGlobsAreRecordedInMergekitsFormWherePossible() throws {
        #expect(ParameterCondition.mergekitFilter("*attention*") == "attention")
        #expect(ParameterCondition.mergekitFilter("*layer.1.*") == "layer.1.")
        for kept in ["encoder.layer.*.attention*", "*", "**", "*a?b*", "*[qk]*", "layer.*", "*bias", "*a\\.b*"] {
            #expect(ParameterCondition.mergekitFilter(kept) == kept)
        }
        let names = ["encoder.layer.1.attention.self.query.weight", "encoder.layer.10.output.dense.bias", "pooler.dense.weight"]
        for glob in ["*attention*", "*layer.1.*", "*.dense.*"] {
            let converted = ParameterCondition(filter: ParameterCondition.mergekitFilter(glob), value: .number(1))
            let asGlob = ParameterCondition(filter: glob, value: .number(1))
            #expect(names.map(converted.matches) == names.map(asGlob.matches), "\(glob)")
        }
        var request = MergeRequest()
        request.method = "ties"
        request.branches = ["math", "code"]
        request.settings = [("density", "*attention*", .number(0.3)), ("density", "encoder.layer.*.output*", .number(0.4)), ("density", nil, .number(0.6))]
        let parameters = try request.assemble(over: nil).recipe.parameters
        let yaml = MergekitRecipe(method: "ties", baseModel: "base", models: [.init(name: "math"), .init(name: "code")], parameters: parameters).yaml()
        #expect(yaml.contains("{filter: attention, value: 0.3}"), "\(yaml)")
        #expect(yaml.contains("# filter \"encoder.layer.*.output*\" is a glob for mrepo; mergekit reads filters as substrings and would not apply it\n"), "\(yaml)")
        #expect(!yaml.contains("\"attention\" is a glob"))
        // The recipe reads back to the same parameters (the note is a comment).
        #expect(try MergekitRecipe.parse(yaml, file: "r.yml").parameters == parameters)
    }

    /// A plain --set replaces the default and keeps a glob's override, in either order; an
    /// expert's glob (--expert 'code:density[*.attention.*]=0.3') is kept as a filter (mergekit's
    /// substring `.attention.`), not applied to every tensor.
    @Test func globOverridesSurviveALaterPlainSetting() throws {
        let expected = ParameterValue.conditional([ParameterCondition(filter: ".attention.", value: .number(0.3)),
                                                   ParameterCondition(filter: nil, value: .number(0.8))])
        for settings in [[("density", "*.attention.*", 0.3), ("density", nil, 0.8)], [("density", nil, 0.8), ("density", "*.attention.*", 0.3)]] {
            var request = MergeRequest()
            request.method = "ties"
            request.branches = ["math", "code"]
            request.settings = settings.map { ($0.0, $0.1, .number($0.2)) }
            request.expertSettings = settings.map { ("code", $0.0, $0.1, .number($0.2)) }
            let assembled = try request.assemble(over: nil)
            #expect(assembled.recipe.parameters["density"] == expected)
            #expect(assembled.expertParameters.first { $0.name == "code" }?.parameters["density"] == expected)
        }
        // A later glob comes first (the first matching filter wins); a plain value alone stays plain.
        #expect(MergeRequest.setting(.conditional([ParameterCondition(filter: "a", value: .number(1)), ParameterCondition(filter: nil, value: .number(2))]),
                                     glob: "b", to: .number(3))
                == .conditional([ParameterCondition(filter: "b", value: .number(3)), ParameterCondition(filter: "a", value: .number(1)),
                                 ParameterCondition(filter: nil, value: .number(2))]))
        #expect(MergeRequest.setting(.number(1), glob: nil, to: .number(2)) == .number(2))
        // Over a recipe, a plain value given on the command line replaces the recipe's, filters and all.
        let recipe = try MergekitRecipe.parse("""
            merge_method: ties
            base_model: main
            models:
              - model: math
                parameters: {weight: [{filter: self_attn, value: 2}, {value: 1}]}
              - model: code
            parameters:
              density: [{filter: self_attn, value: 0.3}, {value: 0.5}]
            """, file: "r.yml")
        var request = MergeRequest()
        request.settings = [("density", nil, .number(0.8))]
        request.expertSettings = [("math", "weight", nil, .number(0.7))]
        let assembled = try request.assemble(over: recipe)
        #expect(assembled.recipe.parameters["density"] == .number(0.8))
        #expect(assembled.expertParameters.first { $0.name == "math" }?.parameters["weight"] == .number(0.7))
        // A glob alone is put before the recipe's entries.
        request.settings = [("density", "*.mlp.*", .number(0.9))]
        request.expertSettings = []
        #expect(try request.assemble(over: recipe).recipe.parameters["density"] == .conditional([
            ParameterCondition(filter: ".mlp.", value: .number(0.9)), ParameterCondition(filter: "self_attn", value: .number(0.3)),
            ParameterCondition(filter: nil, value: .number(0.5))]))
    }

    /// SLERP's base model is one of its two models, its t = 0 end (mergekit's pattern).
    @Test func slerpBaseModelIsTheFirstEndpoint() throws {
        let text = """
            merge_method: slerp
            base_model: chat
            models:
              - model: base
              - model: chat
            parameters: {t: 0.3}
            """
        let assembled = try MergeRequest().assemble(over: try MergekitRecipe.parse(text, file: "s.yml"))
        #expect(assembled.inputs == ["chat", "base"])
        #expect(assembled.base == "chat")
        let outside = text.replacingOccurrences(of: "base_model: chat", with: "base_model: other")
        let recipe = try MergekitRecipe.parse(outside, file: "s.yml")
        expectThrows(MergeError.invalidRecipe(file: "recipe", problem: "slerp's base_model 'other' must be one of its two models (the t = 0 end)")) {
            try MergeRequest().assemble(over: recipe)
        }
    }

    /// A glob setting is tried before the plain value already there (latest first).
    @Test func globSettingsBecomeConditionsInFront() throws {
        var request = MergeRequest()
        request.settings = [("density", nil, .number(0.5)), ("density", "*.attention.*", .number(0.2)), ("density", "*.output.*", .number(0.9))]
        let recipe = try request.assemble(over: nil).recipe
        #expect(recipe.parameters["density"] == .conditional([
            ParameterCondition(filter: ".output.", value: .number(0.9)),
            ParameterCondition(filter: ".attention.", value: .number(0.2)),
            ParameterCondition(filter: nil, value: .number(0.5)),
        ]))
    }

    @Test func basisBelongsToRMMAndRMMNeedsIt() throws {
        var ties = MergeRequest()
        ties.basis = 2
        expectThrows(MergeError.invalidParameter(method: "ties", parameter: "basis", problem: "is rmm's basis size; this merge uses ties")) {
            try ties.assemble(over: nil)
        }
        var rmm = MergeRequest()
        rmm.method = RMM.id
        rmm.basis = 2
        #expect(try rmm.assemble(over: nil).recipe.parameters["basis"] == .number(2))
    }

    @Test func unknownOutDtypeIsARecipeError() throws {
        let bad = try MergekitRecipe.parse(yaml.replacingOccurrences(of: "bfloat16", with: "bogus16"), file: "r.yml")
        do {
            _ = try MergeRequest().assemble(over: bad, file: "r.yml")
            Issue.record("accepted out_dtype bogus16")
        } catch {
            #expect(message(error).contains("r.yml") && message(error).contains("bogus16"))
        }
    }
}
