import ArgumentParser
import Delta
import Foundation
import ModelFactory

struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Generate a synthetic model family (a base and fine-tunes) for demos, tests and benchmarks.",
        discussion: """
            Writes DIR/base and one folder per fine-tune (math and code: light, median relative change 5e-4; \
            chat: heavy, 4e-2), each a Hugging Face style folder with a BERT-shaped checkpoint, config.json \
            and tokenizer files. Values are seeded: the same options give the same bytes.

            --size llama-tiny and llama3b write Llama-style decoders instead (LlamaForCausalLM's tensor \
            names, grouped-query attention, tied embeddings); llama3b has Llama-3.2-3B's shape, about \
            6.4 GB per checkpoint in BF16 (write it with --shards 2).

            --order sets how tensors are laid out: by name (the default), in the model's state_dict() \
            order, or as safetensors' save_file writes them (shards split in state_dict() order, each \
            file sorted by dtype then name, as save_pretrained does). --fine-tune-order lays the \
            fine-tunes out differently from the base, as a trainer's output usually is.

            --adapters N also writes N PEFT LoRA adapters of the base (DIR/lora-math, DIR/lora-code, \
            DIR/lora-chat, then DIR/lora-4, ...), trained-looking: a shared lora_A initialisation with \
            a little drift, independent lora_B. --lora-rank and --lora-targets shape them.
            """)

    enum Size: String, ExpressibleByArgument, CaseIterable {
        case tiny, small, minilm, bench
        case llamaTiny = "llama-tiny"
        case llama3b
    }

    @Argument(help: ArgumentHelp("The folder to write the family into.", valueName: "dir"))
    var directory: String

    @Option(help: "Model size: tiny (KB), small (6 MB fp32), minilm (91 MB), bench (1.2 GB); llama-tiny (KB), llama3b (6.4 GB bf16).")
    var size: Size = .small

    @Option(help: ArgumentHelp("Element type: F32, BF16 or F16.", valueName: "dtype"))
    var dtype = "F32"

    @Option(help: ArgumentHelp("Number of safetensors shards per checkpoint.", valueName: "n"))
    var shards = 1

    @Option(help: ArgumentHelp("Number of layers (default: the size's): fewer keep every tensor's shape in a smaller checkpoint.",
                               valueName: "n"))
    var layers: Int?

    @Option(help: ArgumentHelp("Tensor layout of every checkpoint: name, state-dict or save-file.", valueName: "order"))
    var order: TensorOrder = .name

    @Option(help: ArgumentHelp("Tensor layout of the fine-tunes (default: --order).", valueName: "order"))
    var fineTuneOrder: TensorOrder?

    @Option(help: ArgumentHelp("Which fine-tunes to write, comma-separated, of math, code and chat; 'none' for the base only.", valueName: "list"))
    var fineTunes = "math,code,chat"

    @Option(help: ArgumentHelp("Random seed of the base model.", valueName: "n"))
    var seed: UInt64 = 42

    @Option(help: ArgumentHelp("Also write this many LoRA adapters of the base.", valueName: "n"))
    var adapters = 0

    @Option(help: ArgumentHelp("Rank r of the adapters (lora_alpha is 2r).", valueName: "r"))
    var loraRank = 8

    @Option(help: ArgumentHelp("Modules the adapters adapt, comma-separated suffixes, or 'all' for every attention and MLP projection.", valueName: "list"))
    var loraTargets = "query,value"

    @Flag(help: "Write only the adapters (the base folder must exist).")
    var adaptersOnly = false

    @Flag(name: .shortAndLong, help: "Print nothing on success (the 'Wrote ...' lines).")
    var quiet = false

    func validate() throws {
        guard let d = DType(parsing: dtype), [.f32, .bf16, .f16].contains(d) else {
            throw ValidationError("--dtype must be F32, BF16 or F16")
        }
        if shards < 1 { throw ValidationError("--shards must be at least 1") }
        if let layers, layers < 1 { throw ValidationError("--layers must be at least 1") }
        if adapters < 0 || loraRank < 1 { throw ValidationError("--adapters must be ≥ 0 and --lora-rank ≥ 1") }
        if adapters > 0, size == .llamaTiny || size == .llama3b {
            throw ValidationError("--adapters needs a BERT-shaped --size (tiny, small, minilm or bench)")
        }
        _ = try fineTuneSpecs()
    }

    func fineTuneSpecs() throws -> [FineTune] {
        if fineTunes == "none" { return [] }
        return try fineTunes.split(separator: ",").map { name in
            let n = name.trimmingCharacters(in: .whitespaces)
            guard let ft = FineTune.standardFamily.first(where: { $0.name == n }) else {
                throw ValidationError("--fine-tunes: unknown fine-tune '\(n)' (expected math, code, chat or none)")
            }
            return ft
        }
    }

    func adapterSpecs() -> [LoRASpec] {
        let targets = loraTargets == "all" ? LoRASpec.allProjections : loraTargets.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
        return (0..<adapters).map { i in
            let name = i < LoRASpec.standardAdapters.count ? LoRASpec.standardAdapters[i].name : "lora-\(i + 1)"
            return LoRASpec(name: name, seed: 101 + UInt64(i), rank: loraRank, alpha: Double(2 * loraRank), targets: targets)
        }
    }

    func run() throws {
        var arch = Architecture.all.first { $0.name == size.rawValue }!
        if let layers { arch.layers = layers }
        let factory = ModelFactory(architecture: arch, dtype: DType(parsing: dtype)!, seed: seed)
        if !adaptersOnly {
            let fineTunes = try fineTuneSpecs()
            try factory.writeFamily(to: directory, fineTunes: fineTunes, shards: shards, order: order, fineTuneOrder: fineTuneOrder)
            if !quiet { print("Wrote \(arch.name) family (\(arch.parameterCount) parameters each, \(factory.dtype.rawValue)) to \(directory): "
                + (["base"] + fineTunes.map(\.name)).joined(separator: ", ")) }
        }
        let specs = adapterSpecs()
        for spec in specs { try factory.writeAdapter(spec, to: directory + "/" + spec.name) }
        if !specs.isEmpty, !quiet {
            print("Wrote \(specs.count) LoRA adapters (r = \(loraRank), targets \(specs[0].targets.joined(separator: ", "))): \(specs.map(\.name).joined(separator: ", "))")
        }
    }
}

extension TensorOrder: ExpressibleByArgument {}
