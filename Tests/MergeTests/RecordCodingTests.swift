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

    @Test func aConflictReportReadsBackAndWritesTheSameBytes() throws {
        var merged = TensorReport(name: "layers.1.mlp.weight", mergeClass: .merged, elementCount: 6)
        var metrics = ConflictMetrics()
        metrics.taskVectorNorms = [1, 2]
        metrics.cosines = [0.5, nil]
        metrics.signConflict = 0.25
        metrics.conflictingMass = 0.125
        metrics.notes = ["ties_kept": 0.5]
        merged.metrics = metrics
        var conflict = TensorReport(name: "embed.weight", mergeClass: .conflict, elementCount: 4)
        conflict.conflict = "shape changed"
        conflict.remarks = ["rows added"]
        let report = ConflictReport(method: "ties", experts: ["a", "b"], baseName: "base", tensors: [merged, conflict],
                                    files: [(path: "config.json", outcome: "ours")])
        let text = report.json.serialized()
        let back = try ConflictReport(json: try JSONValue.parse(Array(text.utf8)), source: "r")
        #expect(back.json.serialized() == text)
        #expect(back.tensors.map(\.name) == ["layers.1.mlp.weight", "embed.weight"] && back.unresolved.map(\.name) == ["embed.weight"])
        #expect(back.tensors[0].metrics?.elementCount == 6 && back.tensors[0].layer == 1 && back.files.first?.outcome == "ours")
        // A null share (NaN when written) reads as zero, as it always did.
        var nan = report
        nan.tensors[0].metrics?.conflictingMass = .nan
        #expect(try ConflictReport(json: nan.json, source: "r").tensors[0].metrics?.conflictingMass == 0)
    }

    @Test func anUndecodableReportIsANamedError() throws {
        for text in [#"{"experts":[],"tensors":[]}"#, #"{"method":"ties","experts":[],"tensors":[{"name":"w","class":"sideways"}]}"#,
                     #"{"method":"ties","experts":[],"tensors":[{"name":"w","class":"merged","metrics":{"sign_conflict":"high"}}]}"#] {
            let error = mergeError { _ = try ConflictReport(json: try JSONValue.parse(Array(text.utf8)), source: "the report") }
            guard case let .corruptRecord(what, _)? = error else {
                Issue.record("\(text): \(String(describing: error))")
                continue
            }
            #expect(what == "the report")
        }
        let bytes = Array(#"{"method":"rmm","variant":"position","basis":2}"#.utf8)
        let error = mergeError { _ = try StoredRecord.decode(ReversibleMergeReport.self, fromJSON: bytes, what: "the rmm report") }
        #expect(error?.description.hasPrefix("the rmm report is unreadable (storage: missing") == true, "\(String(describing: error))")
    }

    @Test func aNullAlphaPatternIsAnErrorNotACrash() {
        let text = #"{"r": 4, "lora_alpha": 8, "target_modules": ["query"], "alpha_pattern": {"query": null}}"#
        let error = mergeError { _ = try LoRAConfig(json: Array(text.utf8), file: "adapter_config.json") }
        #expect(error?.description.contains("must be a number, not null") == true, "\(String(describing: error))")
    }
}
