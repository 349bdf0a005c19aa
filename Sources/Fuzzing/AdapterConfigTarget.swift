import Delta
import Merge

/// `adapter-config`: PEFT `adapter_config.json` (``LoRAConfig/init(json:file:)``), then the adapter
/// resolved against a small base model as a commit of an adapter folder does, with every
/// module's rank, alpha and scale.
enum AdapterConfigTarget {
    static let fileName = LoRAConfig.fileName

    static let target = FuzzTarget(
        name: "adapter-config", summary: "PEFT adapter_config.json: parse, resolve against a base, ranks and scales",
        dialect: .json, maxInputBytes: 4096, mention: fileName,
        seeds: { seeds.map { Array($0.utf8) } }, hostile: { hostile.map { Array($0.utf8) } }, prepare: { _ in FuzzRunner(run) })

    static let seeds: [String] = [
        #"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["query", "value"], "fan_in_fan_out": false, "use_rslora": false, "use_dora": false, "base_model_name_or_path": "bert-base", "task_type": "SEQ_CLS", "lora_dropout": 0.1, "bias": "none", "inference_mode": true}"#,
        #"{"r": 4, "lora_alpha": 16, "target_modules": ".*\\.(query|value)$", "use_rslora": true}"#,
        #"{"r": 8, "lora_alpha": 16, "target_modules": ["query", "value"], "rank_pattern": {"value": 4, "encoder\\.layer\\.0\\..*": 2}, "alpha_pattern": {"layer.0.attention.self.value": 32}}"#,
        #"{"peft_type": "LORA", "r": 4, "lora_alpha": 4, "target_modules": ["word_embeddings", "query"], "modules_to_save": ["pooler.dense"], "fan_in_fan_out": true}"#,
        LoRAConfig.json(rank: 4, alpha: 4, targetModules: ["query", "value"], baseModel: "base", taskType: nil),
    ]

    /// Malformed configs: an infinite alpha, a zero rank, a non-positive pattern rank, DoRA, a
    /// type with a carriage return.
    static let hostile: [String] = [
        #"{"r": 8, "lora_alpha": 1e999, "target_modules": ["query"]}"#,
        #"{"r": 0, "lora_alpha": 8}"#,
        #"{"r": 8, "rank_pattern": {"value": -1}}"#,
        #"{"r": 8, "lora_alpha": 16, "use_dora": true}"#,
        #"{"peft_type": "\r", "r": 8}"#,
    ]

    static let base: [String: Shape] = [
        "encoder.layer.0.attention.self.query.weight": [16, 16],
        "encoder.layer.0.attention.self.value.weight": [8, 16],
        "embeddings.word_embeddings.weight": [64, 16],
        "pooler.dense.weight": [16, 16],
    ]

    /// Adapter files as PEFT writes them: plain modules, an embedding, a saved module.
    static let adapterFiles: [[(name: String, dtype: DType, shape: Shape)]] = [
        [("base_model.model.encoder.layer.0.attention.self.query.lora_A.weight", .f32, [4, 16]),
         ("base_model.model.encoder.layer.0.attention.self.query.lora_B.weight", .f32, [16, 4]),
         ("base_model.model.encoder.layer.0.attention.self.value.lora_A.weight", .f32, [4, 16]),
         ("base_model.model.encoder.layer.0.attention.self.value.lora_B.weight", .f32, [8, 4])],
        [("base_model.model.embeddings.word_embeddings.lora_embedding_A", .f32, [4, 64]),
         ("base_model.model.embeddings.word_embeddings.lora_embedding_B", .f32, [16, 4]),
         ("base_model.model.pooler.dense.modules_to_save.default.weight", .bf16, [16, 16])],
    ]

    static func run(_ input: [UInt8]) throws {
        let config = try LoRAConfig(json: input, file: fileName)
        try require(config.rank > 0, "rank \(config.rank) accepted")
        try require(config.alpha.isFinite, "lora_alpha \(config.alpha) accepted")
        for (_, rank) in config.rankPattern { try require(rank > 0, "rank_pattern rank \(rank) accepted") }
        for (_, alpha) in config.alphaPattern { try require(alpha.isFinite, "alpha_pattern alpha \(alpha) accepted") }
        for tensors in adapterFiles {
            let adapter: LoRAAdapter
            do {
                adapter = try LoRAAdapter.resolve(config: config, tensors: tensors, baseTensors: base, file: fileName)
            } catch {
                continue  // an adapter that does not fit this base: a typed refusal, nothing more to check
            }
            _ = adapter.targetModules
            _ = adapter.targetSuffixes
            for module in adapter.modules {
                let (rank, alpha) = config.rankAndAlpha(module: module.module)
                try require(rank > 0 && alpha.isFinite, "module '\(module.module)' gets rank \(rank), alpha \(alpha)")
                try require(module.scale.isFinite, "module '\(module.module)' gets scale \(module.scale)")
                try require(module.rows * module.columns == module.baseShape[0] * module.baseShape[1], "module '\(module.module)' has the wrong size")
            }
        }
    }
}
