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
        #expect(assembled.branches == ["math", "code"], "the base model leaves the list")
        #expect(assembled.base == "main")
        #expect(assembled.outputDType == .bf16)
        #expect(assembled.recipe.method == "ties" && assembled.recipe.seed == 3)
        #expect(assembled.recipe.parameters == ["density": .number(0.5)])
        #expect(assembled.recipe.experts == ["code", "math"])
        #expect(assembled.recipe.expertParameters == [[:], ["weight": .number(0.6)]])
    }

    @Test func commandLineWins() throws {
        var request = MergeRequest()
        request.branches = ["math"]
        request.base = "HEAD~1"
        request.seed = 9
        request.outputDType = .f16
        request.settings = [("density", nil, .number(0.3))]
        request.expertSettings = [("math", "weight", .number(0.9))]
        let assembled = try request.assemble(over: try MergekitRecipe.parse(yaml, file: "r.yml"))
        #expect(assembled.branches == ["math"] && assembled.base == "HEAD~1" && assembled.outputDType == .f16)
        #expect(assembled.recipe.seed == 9 && assembled.recipe.parameters["density"] == .number(0.3))
        #expect(assembled.recipe.expertParameters[assembled.recipe.experts.firstIndex(of: "math")!] == ["weight": .number(0.9)])
    }

    /// SLERP's endpoints may include the recipe's base model, also when --method says slerp.
    @Test func slerpKeepsTheBaseModelAsAnEndpoint() throws {
        var request = MergeRequest()
        request.method = SLERP.id
        let assembled = try request.assemble(over: try MergekitRecipe.parse(yaml, file: "r.yml"))
        #expect(assembled.branches == ["math", "code", "main"])
    }

    /// A glob setting is tried before the plain value already there (latest first).
    @Test func globSettingsBecomeConditionsInFront() throws {
        var request = MergeRequest()
        request.settings = [("density", nil, .number(0.5)), ("density", "*.attention.*", .number(0.2)), ("density", "*.output.*", .number(0.9))]
        let recipe = try request.assemble(over: nil).recipe
        #expect(recipe.parameters["density"] == .conditional([
            ParameterCondition(filter: "*.output.*", value: .number(0.9)),
            ParameterCondition(filter: "*.attention.*", value: .number(0.2)),
            ParameterCondition(filter: nil, value: .number(0.5)),
        ]))
    }

    @Test func basisBelongsToRMMAndRMMNeedsIt() throws {
        var ties = MergeRequest()
        ties.basis = 2
        #expect(throws: MergeError.self) { try ties.assemble(over: nil) }
        var rmm = MergeRequest()
        rmm.method = RMM.id
        #expect(throws: MergeError.self) { try rmm.assemble(over: nil) }
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
