import Delta
import Foundation

/// How a synthetic fine-tune departs from its base.
///
/// Calibrated against real full fine-tunes of all-MiniLM-L6-v2 (docs/benchmarks.md,
/// "Calibration"): the update is additive (its size does not depend on the weight's size), about
/// Gaussian, and of a per-tensor scale; AdamW's decoupled weight decay shrinks every trained
/// tensor a little; only a fraction of the embedding rows (the tokens the data used) get real
/// updates; tensors the loss never touches (the pooler, position ids, token types) stay bit-identical.
public struct FineTune: Sendable, Equatable {
    /// The expert's name, e.g. `math`.
    public var name: String
    /// Seed of the update's random stream.
    public var seed: UInt64
    /// Median over trained elements of |θ_ft − θ_base| / |θ_base|.
    public var relativeChange: Double
    /// Multiplicative shrink from decoupled weight decay (lr × weight decay × steps).
    public var decay: Double
    /// Fraction of embedding rows that get updates beyond decay.
    public var embeddingRowFraction: Double

    public init(name: String, seed: UInt64, relativeChange: Double, decay: Double, embeddingRowFraction: Double = 0.1) {
        self.name = name
        self.seed = seed
        self.relativeChange = relativeChange
        self.decay = decay
        self.embeddingRowFraction = embeddingRowFraction
    }

    /// A few hundred AdamW steps at lr 2e-5: median relative change 5e-4.
    public static func light(_ name: String, seed: UInt64) -> FineTune {
        FineTune(name: name, seed: seed, relativeChange: 5e-4, decay: 4e-5)
    }

    /// A long MLM run: median relative change 4e-2.
    public static func heavy(_ name: String, seed: UInt64) -> FineTune {
        FineTune(name: name, seed: seed, relativeChange: 4e-2, decay: 4e-4, embeddingRowFraction: 0.5)
    }

    /// The standard family: two light fine-tunes and one heavy one.
    public static let standardFamily: [FineTune] = [.light("math", seed: 11), .light("code", seed: 12), .heavy("chat", seed: 13)]

    /// Tensors no fine-tune changes.
    public static func isUntouched(_ name: String) -> Bool {
        name.hasPrefix("pooler.") || name == "embeddings.position_ids" || name == "embeddings.token_type_embeddings.weight"
    }
}

/// Generates seeded, transformer-shaped safetensors checkpoints: a base and its fine-tunes.
///
/// Every tensor comes from its own random stream (seed, tensor name), so tensors can be generated
/// in any order, one at a time, and a fine-tune can regenerate its base tensor instead of reading it.
public struct ModelFactory: Sendable {
    public var architecture: Architecture
    public var dtype: DType
    public var seed: UInt64

    public init(architecture: Architecture, dtype: DType = .f32, seed: UInt64 = 42) {
        precondition(dtype == .f32 || dtype == .bf16 || dtype == .f16, "families are generated in float32, bfloat16 or float16")
        self.architecture = architecture
        self.dtype = dtype
        self.seed = seed
    }

    /// Values of a base tensor.
    public func baseValues(_ spec: Architecture.TensorSpec) -> [Float] {
        let n = spec.elementCount
        if spec.kind == .positionIDs { return (0..<n).map { Float($0 % architecture.maxPositions) } }
        var scaleRandom = SeededRandom(seed: seed, stream: "scale:" + spec.name)
        let unit = scaleRandom.uniform()
        let (center, scale): (Double, Double)
        switch spec.kind {
        case .matrix: (center, scale) = (0, 0.04 + 0.05 * unit)
        case .embedding: (center, scale) = (0, 0.03 + 0.03 * unit)
        case .bias: (center, scale) = (0, 0.03 + 0.1 * unit)
        case .layerNormWeight: (center, scale) = (0.55 + 0.2 * unit, 0.08)
        case .layerNormBias: (center, scale) = (0, 0.03 + 0.1 * unit)
        case .positionIDs: (center, scale) = (0, 0)
        }
        return fill(n, stream: "base:" + spec.name) { rng in
            let (z, t) = rng.normalPair()
            // A Gaussian scale mixture: one element in ten is twice as wide (kurtosis about 4.4,
            // as the real MiniLM weight matrices have).
            let widen = t > 1.2816 ? 2.0 : 1.0
            return Float(center + scale * z * widen)
        }
    }

    /// Values of a fine-tuned tensor.
    public func fineTunedValues(_ spec: Architecture.TensorSpec, _ ft: FineTune) -> [Float] {
        var values = baseValues(spec)
        if FineTune.isUntouched(spec.name) || spec.kind == .positionIDs { return values }
        // Typical |w| of the tensor, so that median |δ| / |w| ≈ relativeChange.
        let typical: Double = spec.kind == .layerNormWeight ? 0.6 : medianMagnitude(values)
        let sigma = ft.relativeChange * typical / 0.6745
        let columns = spec.shape.count == 2 ? spec.shape[1] : max(1, spec.elementCount)
        let isEmbedding = spec.kind == .embedding
        let rowSeed = SeededRandom.fnv1a("rows:\(ft.name):\(spec.name)") ^ ft.seed
        let keep = 1 - ft.decay
        let delta = fill(values.count, stream: "delta:\(ft.name):\(ft.seed):" + spec.name) { rng in
            Float(sigma * rng.normalPair().0)
        }
        values.withUnsafeMutableBufferPointer { v in
            for i in 0..<v.count {
                var x = Double(v[i]) * keep
                if !isEmbedding || rowIsUpdated(i / columns, seed: rowSeed, fraction: ft.embeddingRowFraction) {
                    x += Double(delta[i])
                }
                v[i] = Float(x)
            }
        }
        return values
    }

    /// The bytes of a tensor in this factory's dtype (or int64 for position ids).
    public func tensorBytes(_ spec: Architecture.TensorSpec, fineTune: FineTune?) -> (DType, [UInt8]) {
        let values = fineTune.map { fineTunedValues(spec, $0) } ?? baseValues(spec)
        if spec.kind == .positionIDs {
            var out = [UInt8](repeating: 0, count: values.count * 8)
            out.withUnsafeMutableBytes { p in
                for (i, v) in values.enumerated() { p.storeBytes(of: Int64(v).littleEndian, toByteOffset: 8 * i, as: Int64.self) }
            }
            return (.i64, out)
        }
        var out = [UInt8](repeating: 0, count: values.count * dtype.byteSize)
        values.withUnsafeBufferPointer { v in
            out.withUnsafeMutableBytes { FloatConversion.fromFloat(dtype, v, into: $0) }
        }
        return (dtype, out)
    }

    /// Writes a checkpoint folder as the Hugging Face libraries lay it out.
    ///
    /// - Parameters:
    ///   - directory: created if missing.
    ///   - fineTune: nil for the base model.
    ///   - shards: 1 writes `model.safetensors`; more write `model-0000k-of-0000n.safetensors`
    ///     and `model.safetensors.index.json`.
    ///   - order: how tensors are split into shards and laid out in each file (the default, by
    ///     name, is what every existing generated family was written with).
    ///   - progress: called after each tensor with the bytes written so far.
    public func writeCheckpoint(to directory: String, fineTune: FineTune? = nil, shards: Int = 1, order: TensorOrder = .name,
                                progress: ((Int) -> Void)? = nil) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let specs = architecture.tensors
        let declaredTypes = specs.map { $0.kind == .positionIDs ? DType.i64 : dtype }
        let total = zip(specs, declaredTypes).reduce(0) { $0 + $1.0.elementCount * $1.1.byteSize }
        let groups = order.layout(zip(specs, declaredTypes).map { ($0.name, $1, $0.elementCount * $1.byteSize) }, shards: shards)
        let names = groups.count == 1 ? ["model.safetensors"] : (1...groups.count).map {
            "model-\(String(format: "%05d", $0))-of-\(String(format: "%05d", groups.count)).safetensors"
        }
        var written = 0
        var weightMap: [(tensor: String, file: String)] = []
        for (g, members) in groups.enumerated() {
            let declared = members.map { i -> (name: String, dtype: DType, shape: Shape) in (specs[i].name, declaredTypes[i], specs[i].shape) }
            let writer = try SafetensorsWriter(path: directory + "/" + names[g], tensors: declared, metadata: [("format", "pt")])
            for i in members {
                let (_, bytes) = tensorBytes(specs[i], fineTune: fineTune)
                try writer.write(bytes)
                written += bytes.count
                weightMap.append((specs[i].name, names[g]))
                progress?(written)
            }
            try writer.finish()
        }
        if groups.count > 1 {
            let index = ShardIndex(weightMap: weightMap, metadata: .object([JSONMember("total_size", .int(total))]))
            try AtomicFileWriter.write(index.serialized(), to: directory + "/model.safetensors.index.json")
        }
        try AtomicFileWriter.write(Array(architecture.configJSON(dtype: dtype).utf8), to: directory + "/config.json")
        try AtomicFileWriter.write(Array(tokenizerJSON().utf8), to: directory + "/tokenizer.json")
        try AtomicFileWriter.write(Array(tokenizerConfigJSON().utf8) + [10], to: directory + "/tokenizer_config.json")
        let title = fineTune.map { "fine-tune '\($0.name)' (median relative change \($0.relativeChange))" } ?? "base model"
        try AtomicFileWriter.write(Array("# Synthetic \(architecture.name) \(title)\n\nGenerated by mrepo's ModelFactory (seed \(seed), \(dtype.rawValue)).\n".utf8),
                                   to: directory + "/README.md")
    }

    /// The base and `fineTunes`, one folder each, the base written in `order` and the fine-tunes
    /// in `fineTuneOrder` (default: the same).
    public func writeFamily(to folder: String, fineTunes: [FineTune] = FineTune.standardFamily, shards: Int = 1,
                            order: TensorOrder = .name, fineTuneOrder: TensorOrder? = nil) throws {
        try writeCheckpoint(to: folder + "/base", shards: shards, order: order)
        for ft in fineTunes {
            try writeCheckpoint(to: folder + "/" + ft.name, fineTune: ft, shards: shards, order: fineTuneOrder ?? order)
        }
    }

    /// The base and the standard fine-tunes laid out as `layout` says.
    public func writeFamily(to folder: String, layout: FamilyLayout, shards: Int = 1) throws {
        try writeFamily(to: folder, shards: shards, order: layout.baseOrder, fineTuneOrder: layout.fineTuneOrder)
    }

    func tokenizerConfigJSON() -> String {
        if architecture.family == .llama {
            return #"{"bos_token": "[CLS]", "eos_token": "[SEP]", "model_max_length": \#(architecture.maxPositions), "tokenizer_class": "PreTrainedTokenizerFast"}"#
        }
        return #"{"do_lower_case": true, "model_max_length": \#(architecture.maxPositions), "tokenizer_class": "BertTokenizer"}"#
    }

    /// A WordPiece-style tokenizer file with a synthetic vocabulary of the architecture's size.
    public func tokenizerJSON() -> String {
        let special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        var entries: [String] = []
        entries.reserveCapacity(architecture.vocab)
        for i in 0..<architecture.vocab {
            let token = i < special.count ? special[i] : "tok\(i)"
            entries.append("\"\(token)\": \(i)")
        }
        return "{\"version\": \"1.0\", \"model\": {\"type\": \"WordPiece\", \"unk_token\": \"[UNK]\", \"vocab\": {"
            + entries.joined(separator: ", ") + "}}}\n"
    }

    // MARK: - Helpers

    /// Fills `n` values from a per-block random stream, in parallel. Blocks are seeded by index,
    /// so the result does not depend on the number of threads.
    private func fill(_ n: Int, stream: String, _ draw: @Sendable (inout SeededRandom) -> Float) -> [Float] {
        let block = 1 << 16
        var out = [Float](repeating: 0, count: n)
        let seed = self.seed
        out.withUnsafeMutableBufferPointer { buffer in
            let base = UnsafeSendable(buffer)
            try? Parallel.forEach((n + block - 1) / block) { b, _ in
                var rng = SeededRandom(seed: seed, stream: stream, index: UInt64(b))
                let end = min(n, (b + 1) * block)
                for i in (b * block)..<end { base.value[i] = draw(&rng) }
            }
        }
        return out
    }

    private func medianMagnitude(_ values: [Float]) -> Double {
        guard !values.isEmpty else { return 0 }
        let stride = max(1, values.count / 4096)
        var sample = Swift.stride(from: 0, to: values.count, by: stride).map { abs(Double(values[$0])) }
        sample.sort()
        return sample[sample.count / 2]
    }

    private func rowIsUpdated(_ row: Int, seed: UInt64, fraction: Double) -> Bool {
        var rng = SeededRandom(seed: seed, stream: "row", index: UInt64(row))
        return rng.uniform() < fraction
    }
}

