import Delta
import Testing

@testable import Merge

/// Hostile adapter configs and recipes: the ones the fuzzing issue lists and the ones
/// `scripts/fuzz.sh` found (docs/fuzzing.md), each refused with a one-line error.
@Suite struct MergeFuzzRegressionTests {
    func adapterProblem(_ json: String, committing: Bool = false) -> String? {
        do throws(MergeError) {
            _ = try LoRAConfig(json: Array(json.utf8), file: "adapter_config.json", committing: committing)
            return nil
        } catch {
            return error.description
        }
    }

    func recipeProblem(_ yaml: String) -> String? {
        do {
            _ = try MergekitRecipe.parse(yaml, file: "recipe.yaml")
            return nil
        } catch {
            return String(describing: error)
        }
    }

    // MARK: - Adapter configs

    /// Found by the fuzzer: `lora_alpha: 1e999` parsed as infinity, and every folded weight
    /// became infinite or NaN.
    @Test(arguments: [("1e999", "'lora_alpha' is 1e999, which is not a finite float32 number"),
                      ("-1e999", "'lora_alpha' is -1e999, which is not a finite float32 number"),
                      ("\"16\"", "'lora_alpha' must be a number, not \"16\""),
                      ("[16]", "'lora_alpha' must be a number, not [16]")])
    func loraAlphaMustBeAFiniteNumber(_ alpha: String, _ problem: String) {
        #expect(adapterProblem(#"{"r": 8, "lora_alpha": \#(alpha), "target_modules": ["q"]}"#) == "adapter_config.json: " + problem)
    }

    /// `lora_alpha: null` is refused at commit: PEFT takes it as given (no default) and fails
    /// dividing it by r. One already recorded (read as 8 before) is still read so.
    @Test func nullAlphaIsRefusedAtCommit() throws {
        let json = #"{"r": 8, "lora_alpha": null, "target_modules": ["q"]}"#
        #expect(adapterProblem(json, committing: true)
            == "adapter_config.json: 'lora_alpha' must be a number, not null (leave it out for PEFT's default, 8)")
        #expect(try LoRAConfig(json: Array(json.utf8), file: "c").alpha == 8)
    }

    @Test func missingAlphaIsPEFTsDefault() throws {
        #expect(try LoRAConfig(json: Array(#"{"r": 8, "target_modules": ["q"]}"#.utf8), file: "c").alpha == 8)
    }

    /// Pattern entries that are not what PEFT writes were dropped silently; now they are refused.
    @Test func malformedPatternsAreRefused() {
        #expect(adapterProblem(#"{"r": 8, "rank_pattern": {"value": 0}}"#)
            == "adapter_config.json: 'rank_pattern' entry 'value' must be a positive integer rank")
        #expect(adapterProblem(#"{"r": 8, "rank_pattern": {"value": -4}}"#)
            == "adapter_config.json: 'rank_pattern' entry 'value' must be a positive integer rank")
        #expect(adapterProblem(#"{"r": 8, "rank_pattern": {"value": "4"}}"#)
            == "adapter_config.json: 'rank_pattern' entry 'value' must be a positive integer rank")
        #expect(adapterProblem(#"{"r": 8, "alpha_pattern": {"query": 1e999}}"#)
            == "adapter_config.json: 'alpha_pattern' entry 'query' is 1e999, which is not a finite float32 number")
    }

    @Test(arguments: ["9223372036854775808", "-1", "0", "4.5", "1e2"])
    func rankMustBeAPositiveInteger(_ r: String) {
        #expect(adapterProblem(#"{"r": \#(r), "lora_alpha": 8}"#) == "adapter_config.json: 'r' must be a positive integer")
    }

    /// Found by the fuzzer: a `peft_type` holding a carriage return or a newline made a
    /// two-line error.
    @Test func unsupportedTypeWithControlCharactersStaysOneLine() {
        #expect(adapterProblem(#"{"peft_type": "\r", "r": 8}"#)
            == #"adapter_config.json: peft_type \r is not supported (mrepo understands LoRA adapters)"#)
        #expect(adapterProblem("{\"r\":\u{0C}8}") == #"adapter_config.json: not valid JSON (unexpected character '\u{C}' at byte 5)"#)
    }

    // MARK: - Recipes

    /// Billion laughs: nine levels of nine aliases name 9⁹ values in a few hundred bytes. The
    /// node budget counts every use of an alias, so the recipe is refused at once.
    @Test func aliasBombIsRefused() {
        // Each level is a list of nine conditions whose values are the level below: 9⁹ values.
        var list = "&c0 [" + [String](repeating: "{value: 1}", count: 9).joined(separator: ", ") + "]"
        for level in 1...9 {
            list = "&c\(level) [{value: \(list)}, " + [String](repeating: "{value: *c\(level - 1)}", count: 8).joined(separator: ", ") + "]"
        }
        let yaml = "merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: \(list)}\n"
        #expect(yaml.utf8.count < 2000)
        #expect(recipeProblem(yaml) == "recipe.yaml: has more than 100000 values (aliases count each time they are used)")
    }

    /// Found by the fuzzer (as a hang): a mapping key that is an alias of the bomb above. Yams
    /// looks for duplicate keys by hashing each key in full, aliases followed (9⁹ values), before
    /// the reader counts anything.
    @Test func aliasAsAMappingKeyIsRefusedBeforeItIsExpanded() {
        var list = "&c0 [" + [String](repeating: "{value: 1}", count: 9).joined(separator: ", ") + "]"
        for level in 1...9 {
            list = "&c\(level) [{value: \(list)}, " + [String](repeating: "{value: *c\(level - 1)}", count: 8).joined(separator: ", ") + "]"
        }
        let prefix = "merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: \(list)}\n"
        #expect(recipeProblem(prefix + "  - {*c9 : 1}\n") == "recipe.yaml: has a mapping key that starts with '*' (an alias)")
        #expect(recipeProblem(prefix + "  - ? *c9\n    : 1\n") == "recipe.yaml: has a mapping key that starts with '*' (an alias)")
        #expect(recipeProblem(prefix + "  - {[*c9]: 1}\n") == "recipe.yaml: has a mapping key that is not a single value")
        // A syntax error after such a key is reported without parsing the aliases.
        #expect(recipeProblem(prefix + "  - {*c9 : 1}\n  - [unclosed\n")?.hasPrefix("recipe.yaml: not valid YAML: ") == true)
        // Aliases as values, and '*' inside names, are fine.
        let fine = "merge_method: linear\nmodels:\n  - model: a\n    parameters: &p {weight: 0.5}\n  - model: b*\n    parameters: *p\n"
        #expect(recipeProblem(fine) == nil)
    }

    @Test func deepNestingIsRefused() {
        let flow = "merge_method: linear\nmodels:\n  - model: a\n    parameters: {weight: " + String(repeating: "[", count: 5000) + "]\n"
        #expect(recipeProblem(flow)?.hasPrefix("recipe.yaml: not valid YAML") == true)
        // Within YAML's own limit, the reader's depth limit applies.
        let nested = "merge_method: linear\nmodels:\n  - model: a\n    parameters:\n      weight: "
            + String(repeating: "[{value: ", count: 40) + "1" + String(repeating: "}]", count: 40) + "\n"
        #expect(recipeProblem(nested) == "recipe.yaml: nests deeper than 32 levels")
    }

    @Test func oversizedRecipeIsRefused() {
        let yaml = "merge_method: linear\nmodels:\n  - model: a\n# " + String(repeating: "x", count: 1 << 20) + "\n"
        #expect(recipeProblem(yaml) == "recipe.yaml: is \(yaml.utf8.count) bytes; a recipe is at most 1 MiB")
    }

    @Test func keysWithControlCharactersStayOneLine() {
        #expect(recipeProblem("merge_method: linear\nmodels:\n  - model: a\n\"bad\\nkey\": 1\n") == #"recipe.yaml: unknown key 'bad\nkey'"#)
    }
}
