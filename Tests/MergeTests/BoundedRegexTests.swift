import Delta
import Foundation
import Merge
import Testing

/// The regular expressions of `rank_pattern` / `alpha_pattern`, matched in bounded time, and the
/// adapter config values that used to be accepted silently.
@Suite struct BoundedRegexTests {
    func matches(_ pattern: String, _ subject: String) throws -> Bool {
        var budget = 1_000_000
        return try BoundedRegex(pattern).wholeMatch(subject, budget: &budget)
    }

    func syntaxError(_ pattern: String) -> String? {
        do {
            _ = try BoundedRegex(pattern)
            return nil
        } catch {
            return error.message
        }
    }

    @Test func matchesAsPythonsFullmatch() throws {
        let cases: [(String, String, Bool)] = [
            ("abc", "abc", true), ("abc", "abcd", false), ("a.c", "abc", true), ("a.c", "a\nc", false),
            (#".*\.(query|value)"#, "encoder.layer.0.attention.self.value", true),
            (#".*\.(query|value)"#, "encoder.layer.0.attention.self.key", false),
            (#"encoder\.layer\.\d+\..*"#, "encoder.layer.12.attention", true),
            (#"encoder\.layer\.\d+\..*"#, "encoder.layer.x.attention", false),
            ("layers?", "layer", true), ("layers?", "layers", true), ("a{2,3}", "aaa", true), ("a{2,3}", "aaaa", false),
            ("a{2}", "aa", true), ("a{2,}", "aaaaa", true), ("a{,2}", "", true), ("x{", "x{", true), ("a{1,2", "a{1,2", true),
            ("[a-c]+z", "abcz", true), ("[^a-c]z", "dz", true), ("[^a-c]z", "az", false), (#"[\d_]+"#, "1_2", true),
            (#"\w+\s\W"#, "ab .", true), ("(?:ab)+", "ababab", true), ("(ab|a)(bc|c)", "abc", true), ("a|", "", true),
            ("^abc$", "abc", true), ("a^b", "ab", false), ("a$b", "ab", false), ("(a*)*b", "aaab", true), ("a*?b", "aab", true),
            ("[]a]", "]", true), ("[a-]", "-", true), (#"\.\*"#, ".*", true), ("é+", "éé", true),
        ]
        for (pattern, subject, expected) in cases {
            #expect(try matches(pattern, subject) == expected, "\(pattern) on \(subject)")
        }
    }

    /// Patterns that take exponential time in a backtracking engine are answered in at most
    /// (subject length + 1) × (program size) steps.
    @Test(arguments: ["(a+)+$", "(a|a)*b", "(a|aa)+c", "(.*a){12}", "((a*)*)*b"])
    func catastrophicPatternsStayLinear(pattern: String) throws {
        let regex = try BoundedRegex(pattern)
        let subject = String(repeating: "a", count: 2_000) + "!"
        var budget = 10_000_000
        #expect(try regex.wholeMatch(subject, budget: &budget) == false)
        #expect(budget > 0)
    }

    @Test func aBudgetStopsMatching() throws {
        var budget = 100
        #expect(throws: BoundedRegex.BudgetExceeded.self) {
            _ = try BoundedRegex("(a|b|c)*d").wholeMatch(String(repeating: "abc", count: 100), budget: &budget)
        }
    }

    @Test func unsupportedAndOversizedPatternsAreRefused() {
        let cases: [(String, String)] = [
            ("(?=a)b", "look-around"), ("(?P<n>a)", "look-around"), ("(?i)a", "flags"), (#"(a)\1"#, "back-references"),
            (#"\bword"#, "back-references"), ("(ab", "missing ')'"), ("ab)", "unbalanced ')'"), ("*a", "nothing to repeat"),
            ("a**", "multiple repeat"), ("[abc", "unterminated"), ("[z-a]", "bad character range"), ("a{3,2}", "min repeat"),
            ("a{5000}", "above 1000"), ("(a{1000}){1000}", "too complex"), ("a\\", "trailing backslash"),
            (String(repeating: "a", count: 501), "longer than 500"),
            (String(repeating: "(", count: 120) + String(repeating: ")", count: 120), "nested more than 100"),
        ]
        for (pattern, fragment) in cases {
            let message = syntaxError(pattern)
            #expect(message?.contains(fragment) == true, "\(pattern.prefix(40)): \(String(describing: message))")
        }
        #expect(BoundedRegex.isLiteral("encoder_layer_0") && !BoundedRegex.isLiteral("layer.0"))
    }
}

@Suite struct HostileAdapterConfigTests {
    /// The problem a config is refused for (an ``MergeError/invalidRecipe(file:problem:)`` naming the file), or nil.
    func problem(_ json: String) -> String? {
        do throws(MergeError) {
            _ = try LoRAConfig(json: Array(json.utf8), file: "adapter_config.json")
            return nil
        } catch {
            guard case let .invalidRecipe(file, problem) = error else { return "unexpected \(error)" }
            #expect(file == "adapter_config.json")
            return problem
        }
    }

    @Test func badValuesAreRefusedNamingTheField() {
        let cases: [(String, String)] = [
            (#"{"r": 8, "lora_alpha": 1e400}"#, "'lora_alpha' is 1e400, which is not a finite float32 number"),
            (#"{"r": 8, "lora_alpha": 1e39}"#, "'lora_alpha' is 1e39, which is not a finite float32 number"),
            (#"{"r": 8, "lora_alpha": "sixteen"}"#, #"'lora_alpha' must be a number, not "sixteen""#),
            (#"{"r": 8, "lora_alpha": [16]}"#, "'lora_alpha' must be a number"),
            (#"{"r": 8, "rank_pattern": {"q": "four"}}"#, "'rank_pattern' entry 'q' must be a positive integer rank"),
            (#"{"r": 8, "rank_pattern": {"q": 0}}"#, "'rank_pattern' entry 'q' must be a positive integer rank"),
            (#"{"r": 8, "rank_pattern": ["q"]}"#, "'rank_pattern' must be an object"),
            (#"{"r": 8, "alpha_pattern": {"q": 1e400}}"#, "'alpha_pattern' entry 'q' is 1e400, which is not a finite float32 number"),
            (#"{"r": 8, "alpha_pattern": {"q": "x"}}"#, "'alpha_pattern' entry 'q' must be a number"),
            (#"{"r": 8, "rank_pattern": {"(?=q)": 4}}"#, "'rank_pattern' entry '(?=q)': '(?' groups"),
        ]
        for (json, fragment) in cases {
            let message = problem(json)
            #expect(message?.hasPrefix(fragment) == true, "\(json): \(String(describing: message))")
        }
        // Absent or null patterns are none; a large finite alpha is fine.
        #expect(problem(#"{"r": 8, "rank_pattern": null, "alpha_pattern": null}"#) == nil)
        #expect(problem(#"{"r": 8, "lora_alpha": 1e30, "alpha_pattern": {"q": -2.5}}"#) == nil)
    }

    /// The pattern that hung `commit` for over two minutes in Python-style backtracking engines.
    @Test func aCatastrophicRankPatternResolvesQuickly() throws {
        let module = String(repeating: "a", count: 3_000)
        let config = try LoRAConfig(json: Array(#"{"r": 4, "rank_pattern": {"(a+)+$": 2, "(a|aa)+x": 3}}"#.utf8), file: "adapter_config.json")
        var budget = LoRAConfig.patternBudget
        #expect(try config.rankAndAlpha(module: module + "!", budget: &budget).rank == 4)
        #expect(try config.rankAndAlpha(module: module, budget: &budget).rank == 2)
    }

    @Test func tooManyCostlyPatternsExhaustTheBudget() throws {
        let keys = (0..<200).map { #""(x|y)*\#($0)z": 2"# }.joined(separator: ", ")
        let config = try LoRAConfig(json: Array(#"{"r": 4, "rank_pattern": {\#(keys)}}"#.utf8), file: "adapter_config.json")
        var budget = 50_000
        let module = String(repeating: "xy", count: 400)
        expectThrows(MergeError.self) { _ = try config.rankAndAlpha(module: module, budget: &budget) } matching: {
            if case .invalidRecipe("adapter_config.json", _) = $0 { true } else { false }
        }
    }

    /// PEFT builds each module with the configured rank; factors of another rank cannot be loaded.
    @Test func aRankThatDisagreesWithTheFactorsIsRefused() throws {
        let base: [String: Shape] = ["l.q.weight": [16, 16], "l.v.weight": [16, 16]]
        let tensors: [(name: String, dtype: DType, shape: Shape)] = [
            ("base_model.model.l.q.lora_A.weight", .f32, [8, 16]), ("base_model.model.l.q.lora_B.weight", .f32, [16, 8]),
            ("base_model.model.l.v.lora_A.weight", .f32, [2, 16]), ("base_model.model.l.v.lora_B.weight", .f32, [16, 2]),
        ]
        func problem(_ json: String) throws -> String? {
            let config = try LoRAConfig(json: Array(json.utf8), file: "adapter_config.json")
            do throws(MergeError) {
                _ = try LoRAAdapter.resolve(config: config, tensors: tensors, baseTensors: base, file: "adapter_model.safetensors")
                return nil
            } catch {
                guard case let .invalidRecipe(file, problem) = error else { return "unexpected \(error)" }
                #expect(file == "adapter_config.json")
                return problem
            }
        }
        #expect(try problem(#"{"r": 8, "rank_pattern": {"v": 2}}"#) == nil)
        #expect(try problem(#"{"r": 4, "rank_pattern": {"v": 2}}"#)
            == "'r' gives module 'l.q' rank 4, but its lora_A in adapter_model.safetensors is 8×16 (rank 8)")
        #expect(try problem(#"{"r": 8, "rank_pattern": {"l\\.v": 4}}"#)?.hasPrefix("'rank_pattern' gives module 'l.v' rank 4") == true)
    }
}
