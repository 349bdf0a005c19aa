import Delta
import Foundation
import Testing
@testable import Merge

// PEFT LoRA configs (adapter_config.json) and adapters resolved against a base model.

@Suite struct LoRAConfigTests {
    func parse(_ json: String) throws(MergeError) -> LoRAConfig {
        try LoRAConfig(json: Array(json.utf8), file: "adapter_config.json")
    }

    func problem(_ json: String) -> String? {
        do throws(MergeError) {
            _ = try parse(json)
            return nil
        } catch {
            guard case let .invalidRecipe(file, problem) = error else { return "unexpected \(error)" }
            #expect(file == "adapter_config.json")
            return problem
        }
    }

    @Test func plainConfig() throws {
        let c = try parse("""
            {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["query", "value"], "fan_in_fan_out": false,
             "use_rslora": false, "use_dora": false, "base_model_name_or_path": "bert-base", "task_type": "SEQ_CLS", "lora_dropout": 0.1}
            """)
        #expect(c.rank == 8 && c.alpha == 16)
        #expect(c.targetModules == ["query", "value"] && c.targetPattern == nil)
        #expect(!c.useRSLoRA && !c.fanInFanOut)
        #expect(c.baseModel == "bert-base" && c.taskType == "SEQ_CLS")
        #expect(c.scale(module: "encoder.layer.0.attention.self.query", rank: 8) == 2)
        #expect(c.rankAndAlpha(module: "anything") == (8, 16) as (Int, Double))
        // peft_type may be absent (older PEFT): LoRA is assumed.
        #expect(try parse(#"{"r": 4, "lora_alpha": 8, "target_modules": ["q"]}"#).rank == 4)
    }

    @Test func targetModulesAsARegularExpression() throws {
        let c = try parse(#"{"r": 4, "lora_alpha": 8, "target_modules": ".*\\.(query|value)$"}"#)
        #expect(c.targetModules.isEmpty)
        #expect(c.targetPattern == #".*\.(query|value)$"#)
    }

    @Test func rsLoRAScalesByTheSquareRootOfTheRank() throws {
        let c = try parse(#"{"r": 16, "lora_alpha": 8, "target_modules": ["q"], "use_rslora": true}"#)
        #expect(c.useRSLoRA)
        #expect(c.scale(module: "x.q", rank: 16) == 2)   // 8 / √16
        #expect(abs(c.scale(module: "x.q", rank: 9) - 8.0 / 3) < 1e-15)
        let plain = try parse(#"{"r": 16, "lora_alpha": 8, "target_modules": ["q"]}"#)
        #expect(plain.scale(module: "x.q", rank: 16) == 0.5)
    }

    @Test func rankAndAlphaPatterns() throws {
        let c = try parse("""
            {"r": 8, "lora_alpha": 16, "target_modules": ["query", "value"],
             "rank_pattern": {"value": 4, "encoder\\\\.layer\\\\.3\\\\..*": 2},
             "alpha_pattern": {"layer.1.attention.self.value": 32}}
            """)
        #expect(c.rankPattern.count == 2 && c.alphaPattern.count == 1)
        func ra(_ m: String) -> (Int, Double) { c.rankAndAlpha(module: m) }
        #expect(ra("encoder.layer.0.attention.self.query") == (8, 16))
        #expect(ra("encoder.layer.0.attention.self.value") == (4, 16))   // suffix key
        #expect(ra("encoder.layer.1.attention.self.value") == (4, 32))   // alpha by a longer suffix
        #expect(ra("encoder.layer.3.attention.self.query") == (2, 16))   // regular-expression key
        // The scale takes the pattern's alpha and the module's actual rank.
        #expect(c.scale(module: "encoder.layer.1.attention.self.value", rank: 4) == 8)
        #expect(c.scale(module: "encoder.layer.0.attention.self.query", rank: 8) == 2)
    }

    @Test func unsupportedAdaptersAreRejected() {
        for (json, fragment) in [
            (#"{"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q"], "use_dora": true}"#, "DoRA"),
            (#"{"peft_type": "IA3", "target_modules": ["q"]}"#, "IA3"),
            (#"{"peft_type": "PREFIX_TUNING", "num_virtual_tokens": 20}"#, "PREFIX_TUNING"),
            (#"{"peft_type": "LORA", "lora_alpha": 16}"#, "'r'"),
            (#"{"peft_type": "LORA", "r": 0}"#, "'r'"),
            (#"{"peft_type": "LORA", "r": "eight"}"#, "'r'"),
            (#"["r", 8]"#, "not a JSON object"),
            (#"{"r": 8,"#, "not valid JSON"),
        ] {
            let p = problem(json)
            #expect(p?.contains(fragment) == true, "\(json): \(String(describing: p))")
        }
    }

    @Test func writtenConfigsParseBack() throws {
        let text = LoRAConfig.json(rank: 12, alpha: 12, targetModules: ["query", "key"], baseModel: "m", taskType: nil)
        let c = try parse(text)
        #expect(c == LoRAConfig(rank: 12, alpha: 12, targetModules: ["query", "key"], baseModel: "m"))
        #expect(c.scale(module: "a.query", rank: 12) == 1)
    }
}

// MARK: - Adapters against a base

@Suite struct LoRAAdapterTests {
    let config = LoRAConfig(rank: 4, alpha: 8, targetModules: ["query", "value"])
    let base: [String: Shape] = [
        "encoder.layer.0.attention.self.query.weight": [16, 16],
        "encoder.layer.0.attention.self.value.weight": [8, 16],   // out 8, in 16
        "encoder.layer.0.attention.self.query.bias": [16],
        "embeddings.word_embeddings.weight": [64, 16],
        "pooler.dense.weight": [16, 16],
    ]

    typealias Entry = (name: String, dtype: DType, shape: Shape)

    func resolve(_ tensors: [Entry], config: LoRAConfig? = nil, base: [String: Shape]? = nil) throws(MergeError) -> LoRAAdapter {
        try LoRAAdapter.resolve(config: config ?? self.config, tensors: tensors, baseTensors: base ?? self.base, file: "adapter_model.safetensors")
    }

    func problem(_ tensors: [Entry], config: LoRAConfig? = nil, base: [String: Shape]? = nil) -> String? {
        do throws(MergeError) {
            _ = try resolve(tensors, config: config, base: base)
            return nil
        } catch {
            guard case let .invalidRecipe(file, problem) = error else { return "unexpected \(error)" }
            #expect(file == "adapter_model.safetensors")
            return problem
        }
    }

    let standard: [Entry] = [
        ("base_model.model.encoder.layer.0.attention.self.query.lora_A.weight", .f32, [4, 16]),
        ("base_model.model.encoder.layer.0.attention.self.query.lora_B.weight", .f32, [16, 4]),
        ("base_model.model.encoder.layer.0.attention.self.value.lora_A.weight", .bf16, [4, 16]),
        ("base_model.model.encoder.layer.0.attention.self.value.lora_B.weight", .bf16, [8, 4]),
    ]

    @Test func pairsTensorsAndFindsTheirBaseWeights() throws {
        let a = try resolve(standard)
        #expect(a.modules.map(\.module) == ["encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.value"])
        let v = a.modules[1]
        #expect(v.aName == "base_model.model.encoder.layer.0.attention.self.value.lora_A.weight")
        #expect(v.bName == "base_model.model.encoder.layer.0.attention.self.value.lora_B.weight")
        #expect(v.baseTensor == "encoder.layer.0.attention.self.value.weight")
        #expect(v.baseShape == [8, 16] && v.rows == 8 && v.columns == 16)
        #expect(v.rank == 4 && v.scale == 2 && !v.transposed)
        #expect(a.targetSuffixes == ["query", "value"])
        #expect(a.replacements.isEmpty)
    }

    @Test func namesWithoutThePrefixOrWithTheAdapterName() throws {
        let a = try resolve([
            ("encoder.layer.0.attention.self.value.lora_B.default.weight", .f16, [8, 4]),
            ("encoder.layer.0.attention.self.value.lora_A.default.weight", .f16, [4, 16]),
        ])
        #expect(a.modules.count == 1 && a.modules[0].baseTensor == "encoder.layer.0.attention.self.value.weight")
    }

    @Test func aTaskHeadPrefixOnTheBaseIsMatched() throws {
        var prefixed: [String: Shape] = [:]
        for (k, v) in base { prefixed["bert." + k] = v }
        let a = try resolve(standard, base: prefixed)
        #expect(a.modules.map(\.baseTensor) == ["bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.0.attention.self.value.weight"])
    }

    @Test func embeddingsAreTransposed() throws {
        let a = try resolve([
            ("base_model.model.embeddings.word_embeddings.lora_embedding_A", .f32, [4, 64]),
            ("base_model.model.embeddings.word_embeddings.lora_embedding_B", .f32, [16, 4]),
        ])
        let m = a.modules[0]
        #expect(m.baseTensor == "embeddings.word_embeddings.weight")
        #expect(m.transposed && m.rows == 16 && m.columns == 64)
    }

    @Test func fanInFanOutIsTransposed() throws {
        var c = config
        c.fanInFanOut = true
        let gpt: [String: Shape] = ["h.0.attn.c_attn.weight": [16, 48]]   // Conv1D: (in, out)
        let tensors: [Entry] = [
            ("base_model.model.h.0.attn.c_attn.lora_A.weight", .f32, [4, 16]),
            ("base_model.model.h.0.attn.c_attn.lora_B.weight", .f32, [48, 4]),
        ]
        let m = try resolve(tensors, config: c, base: gpt).modules[0]
        #expect(m.transposed && m.rows == 48 && m.columns == 16)
        // The same adapter without fan_in_fan_out does not fit the weight.
        #expect(problem(tensors, base: gpt)?.contains("B·A is 48×16") == true)
    }

    @Test func modulesToSaveReplaceBaseTensors() throws {
        let a = try resolve(standard + [("base_model.model.pooler.dense.modules_to_save.default.weight", .f32, [16, 16])])
        #expect(a.replacements.count == 1)
        #expect(a.replacements[0].adapterName == "base_model.model.pooler.dense.modules_to_save.default.weight")
        #expect(a.replacements[0].baseName == "pooler.dense.weight")
    }

    @Test func scaleFollowsTheConfig() throws {
        var c = LoRAConfig(rank: 4, alpha: 8, targetModules: ["query", "value"], useRSLoRA: true)
        #expect(try resolve(standard, config: c).modules.allSatisfy { $0.scale == 4 })   // 8 / √4
        c = try LoRAConfig(json: Array(#"{"r": 4, "lora_alpha": 8, "target_modules": ["query", "value"], "alpha_pattern": {"value": 2}}"#.utf8), file: "c")
        #expect(try resolve(standard, config: c).modules.map(\.scale) == [2, 0.5])
    }

    @Test func brokenAdaptersAreRejected() {
        let q = "base_model.model.encoder.layer.0.attention.self.query"
        let cases: [([Entry], String)] = [
            ([(q + ".lora_B.weight", .f32, [16, 4])], "has lora_B but no lora_A"),
            ([(q + ".lora_A.weight", .f32, [4, 16])], "has lora_A but no lora_B"),
            ([(q + ".lora_A.weight", .f32, [4, 16]), (q + ".lora_B.weight", .f32, [16, 2])], "their ranks differ"),
            ([(q + ".lora_A.weight", .f32, [4, 12]), (q + ".lora_B.weight", .f32, [16, 4])], "B·A is 16×12 but base tensor"),
            ([("base_model.model.encoder.layer.9.attention.self.query.lora_A.weight", .f32, [4, 16]),
              ("base_model.model.encoder.layer.9.attention.self.query.lora_B.weight", .f32, [16, 4])], "the base model has no tensor"),
            ([("base_model.model.encoder.layer.0.attention.self.query.bias.lora_A.weight", .f32, [4, 16]),
              ("base_model.model.encoder.layer.0.attention.self.query.bias.lora_B.weight", .f32, [16, 4])], "the base model has no tensor"),
            ([(q + ".lora_A.weight", .f32, [64]), (q + ".lora_B.weight", .f32, [16, 4])], "expected a 2-D float matrix"),
            ([(q + ".lora_A.weight", .i32, [4, 16]), (q + ".lora_B.weight", .f32, [16, 4])], "expected a 2-D float matrix"),
            ([(q + ".lora_magnitude_vector", .f32, [16])], "DoRA"),
            ([("base_model.model.classifier.weight", .f32, [2, 16])], "neither a lora_A/lora_B tensor"),
            ([("base_model.model.pooler.dense.modules_to_save.default.weight", .f32, [16, 16])], "no lora_A/lora_B tensor pairs"),
            ([], "no lora_A/lora_B tensor pairs"),
        ]
        for (tensors, fragment) in cases {
            let p = problem(tensors)
            #expect(p?.contains(fragment) == true, "\(tensors.map(\.name)): \(String(describing: p))")
        }
        // A base weight that is not a matrix.
        let flat: [String: Shape] = ["encoder.layer.0.attention.self.query.weight": [256]]
        #expect(problem(Array(standard.prefix(2)), base: flat)?.contains("not a matrix") == true)
    }
}
