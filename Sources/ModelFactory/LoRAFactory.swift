import Delta
import Foundation

/// A synthetic PEFT LoRA adapter of a generated base model.
///
/// Calibrated on three real MiniLM adapters (shared/data/make-real-checkpoints.sh, r = 8):
/// adapters trained from one seed share their `lora_A` initialisation (Kaiming-uniform, std
/// 1/√(3·in)) and drift about 12 % from it; their `lora_B` start at zero and end nearly
/// independent (cosine ≈ 0.01–0.1), with entries of about 0.003 and a moderately decaying
/// spectrum.
public struct LoRASpec: Sendable, Equatable {
    public var name: String
    /// The task's own random stream.
    public var seed: UInt64
    public var rank: Int
    public var alpha: Double
    /// Module-name suffixes to adapt (PEFT's `target_modules`), e.g. `query`, `value`, `intermediate.dense`.
    public var targets: [String]
    /// Seed of the shared `lora_A` initialisation (adapters trained from one seed share it).
    public var initSeed: UInt64
    /// How far `lora_A` moves from its initialisation, relative to its size.
    public var drift: Double
    /// Standard deviation of `lora_B` entries.
    public var bScale: Double

    public init(name: String, seed: UInt64, rank: Int = 8, alpha: Double = 16, targets: [String] = ["query", "value"],
                initSeed: UInt64 = 7, drift: Double = 0.12, bScale: Double = 0.003) {
        self.name = name
        self.seed = seed
        self.rank = rank
        self.alpha = alpha
        self.targets = targets
        self.initSeed = initSeed
        self.drift = drift
        self.bScale = bScale
    }

    /// Every attention and MLP projection of a BERT layer.
    public static let allProjections = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]

    /// The demo's three adapters.
    public static let standardAdapters: [LoRASpec] = [
        LoRASpec(name: "lora-math", seed: 101), LoRASpec(name: "lora-code", seed: 102), LoRASpec(name: "lora-chat", seed: 103),
    ]
}

extension ModelFactory {
    /// The adapted modules of the architecture: (module path, out, in), in state-dict order.
    public func loraModules(_ spec: LoRASpec) -> [(module: String, rows: Int, columns: Int)] {
        architecture.tensors.compactMap { t in
            guard t.kind == .matrix, t.name.hasSuffix(".weight") else { return nil }
            let module = String(t.name.dropLast(".weight".count))
            guard module.hasPrefix("encoder."), spec.targets.contains(where: { module.hasSuffix("." + $0) }) else { return nil }
            return (module, t.shape[0], t.shape[1])
        }
    }

    /// `lora_A` (rank × in) and `lora_B` (out × rank) of one module.
    public func loraFactors(_ spec: LoRASpec, module: String, rows: Int, columns: Int) -> (a: [Float], b: [Float]) {
        let r = spec.rank
        let bound = 1 / Double(columns).squareRoot()
        var initRandom = SeededRandom(seed: spec.initSeed, stream: "lora-init:" + module)
        var taskRandom = SeededRandom(seed: spec.seed, stream: "lora:" + spec.name + ":" + module)
        let drift = spec.drift * bound / 3.0.squareRoot()
        var a = [Float](repeating: 0, count: r * columns)
        for i in a.indices {
            let initial = (2 * initRandom.uniform() - 1) * bound
            a[i] = Float(initial + drift * taskRandom.normalPair().0)
        }
        var b = [Float](repeating: 0, count: rows * r)
        for i in 0..<rows {
            for c in 0..<r {
                // Later components are weaker, as a trained adapter's spectrum decays.
                let decay = 1 - 0.6 * Double(c) / Double(max(r, 1))
                b[i * r + c] = Float(spec.bScale * decay * taskRandom.normalPair().0)
            }
        }
        return (a, b)
    }

    /// Writes a PEFT adapter folder: `adapter_config.json` and `adapter_model.safetensors`.
    public func writeAdapter(_ spec: LoRASpec, to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let modules = loraModules(spec)
        var declared: [(name: String, dtype: DType, shape: Shape)] = []
        for m in modules {
            declared.append(("base_model.model.\(m.module).lora_A.weight", dtype, [spec.rank, m.columns]))
            declared.append(("base_model.model.\(m.module).lora_B.weight", dtype, [m.rows, spec.rank]))
        }
        let writer = try SafetensorsWriter(path: directory + "/adapter_model.safetensors", tensors: declared, metadata: [("format", "pt")])
        for m in modules {
            let (a, b) = loraFactors(spec, module: m.module, rows: m.rows, columns: m.columns)
            for values in [a, b] {
                var bytes = [UInt8](repeating: 0, count: values.count * dtype.byteSize)
                values.withUnsafeBufferPointer { v in bytes.withUnsafeMutableBytes { FloatConversion.fromFloat(dtype, v, into: $0) } }
                try writer.write(bytes)
            }
        }
        try writer.finish()
        let targets = spec.targets.map { JSONValue.string($0).serialized() }.joined(separator: ", ")
        let alpha = JSONValue.double(spec.alpha).serialized()
        let config = """
            {
              "peft_type": "LORA",
              "base_model_name_or_path": "mrepo-synthetic-\(architecture.name)",
              "task_type": "FEATURE_EXTRACTION",
              "r": \(spec.rank),
              "lora_alpha": \(alpha),
              "lora_dropout": 0.05,
              "target_modules": [\(targets)],
              "bias": "none",
              "fan_in_fan_out": false,
              "use_rslora": false,
              "use_dora": false,
              "inference_mode": true
            }

            """
        try AtomicFileWriter.write(Array(config.utf8), to: directory + "/adapter_config.json")
        try AtomicFileWriter.write(Array("# Synthetic LoRA adapter '\(spec.name)' (r = \(spec.rank), alpha = \(alpha))\n\nGenerated by mrepo's ModelFactory for the \(architecture.name) base (seed \(seed)).\n".utf8),
                                   to: directory + "/README.md")
    }
}

