import Delta
import Testing

@testable import Merge

/// The Merge module's records (recipe, reports) through their `Codable` forms: what they encode is
/// byte for byte what earlier versions wrote by hand (a recipe is hashed into a merge commit's id),
/// and what does not decode is an error, never a default.
@Suite struct RecordCodingTests {
    /// Every shape a parameter takes, LiNeS, consensus and balance: the text mrepo 0.2's hand-built
    /// JSON gave for it (members in format order, parameter names sorted).
    static let fullRecipeText = #"{"method":"ties","parameters":{"density":[{"filter":"mlp","value":[0.2,0.6]},{"value":0.5}],"#
        + #""lambda":0.8,"normalize":false,"tag":"x"},"experts":[{"name":"math","parameters":{"weight":0.7}},"#
        + #"{"name":"code","parameters":{"density":0.9,"weight":0.3}}],"seed":18446744073709551610,"#
        + #""lines":{"alpha":0.3,"beta":0.7},"consensus":{"k":2,"lambda":0.5},"balance":"norm"}"#

    static var fullRecipe: MergeRecipe {
        var r = MergeRecipe(
            method: "ties",
            parameters: ["lambda": .number(0.8), "normalize": .flag(false), "tag": .text("x"),
                         "density": .conditional([ParameterCondition(filter: "mlp", value: .gradient([0.2, 0.6])),
                                                  ParameterCondition(filter: nil, value: .number(0.5))])],
            expertParameters: [["weight": .number(0.7)], ["weight": .number(0.3), "density": .number(0.9)]],
            experts: ["math", "code"], seed: UInt64.max - 5, lines: (alpha: 0.3, beta: 0.7), consensus: (k: 2, lambda: 0.5))
        r.balance = .norm
        return r
    }

    @Test func recipeEncodesTheRecordedBytes() throws {
        #expect(Self.fullRecipe.json.serialized() == Self.fullRecipeText)
        // A recipe without the optional members writes none of them (balance `none` included).
        var plain = MergeRecipe(method: "linear", experts: ["a"])
        plain.balance = TaskVectorBalance.none
        #expect(plain.json.serialized() == #"{"method":"linear","parameters":{},"experts":[{"name":"a","parameters":{}}],"seed":0}"#)
    }

    @Test func storedRecipeTextReadsBackAndWritesTheSameBytes() throws {
        let stored = try JSONValue.parse(Array(Self.fullRecipeText.utf8))
        let recipe = try JSONValueCoding.decode(MergeRecipe.self, from: stored)
        #expect(recipe == Self.fullRecipe)
        #expect(recipe.json.serialized() == Self.fullRecipeText)
    }

    @Test func anUndecodableRecipeIsAnError() throws {
        for text in [#"{"experts":[]}"#, #"{"method":"ties","experts":[{"parameters":{}}]}"#,
                     #"{"method":"ties","experts":[],"parameters":{"lambda":null}}"#,
                     #"{"method":"ties","experts":[],"balance":"sideways"}"#, #"{"method":"ties","experts":[],"lines":{"alpha":1}}"#] {
            let json = try JSONValue.parse(Array(text.utf8))
            #expect(thrownError { _ = try JSONValueCoding.decode(MergeRecipe.self, from: json) } is DecodingError, "\(text)")
        }
    }
}
