import ArgumentParser
import Delta
import Foundation
import ModelFactory

struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate checkpoint files without a repository: headers, shard indexes, and optionally NaN/Inf.",
        discussion: "Exits 0 when everything is valid, 1 when a problem was found (one line each). The sample pre-commit hook runs 'mrepo check --finite' on the folder being committed.")

    @Argument(help: ArgumentHelp("Files or folders to check (folders are searched for *.safetensors and *.safetensors.index.json).", valueName: "path"))
    var paths: [String] = ["."]

    @Flag(help: "Also scan every floating-point tensor for NaN and infinite values.")
    var finite = false

    @Flag(name: .shortAndLong, help: "Print only problems.")
    var quiet = false

    func run() throws {
        let report = CheckpointCheck.check(paths: paths, finite: finite)
        for f in report.findings { print("error: \(f)") }
        if !quiet && report.findings.isEmpty {
            print("ok: \(report.files) safetensors files, \(report.tensors) tensors, \(Format.bytes(report.bytes))" + (finite ? ", all finite" : ""))
        }
        if !report.findings.isEmpty { throw ExitCode(1) }
    }
}

struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Generate a synthetic model family (a base and fine-tunes) for demos, tests and benchmarks.",
        discussion: """
            Writes DIR/base and one folder per fine-tune (math and code: light, median relative change 5e-4; \
            chat: heavy, 4e-2), each a Hugging Face style folder with a BERT-shaped checkpoint, config.json \
            and tokenizer files. Values are seeded: the same options give the same bytes.
            """)

    enum Size: String, ExpressibleByArgument, CaseIterable {
        case tiny, small, minilm, bench
    }

    @Argument(help: ArgumentHelp("The folder to write the family into.", valueName: "dir"))
    var directory: String

    @Option(help: "Model size: tiny (KB), small (6 MB fp32), minilm (91 MB), bench (1.2 GB).")
    var size: Size = .small

    @Option(help: ArgumentHelp("Element type: F32, BF16 or F16.", valueName: "dtype"))
    var dtype = "F32"

    @Option(help: ArgumentHelp("Number of safetensors shards per checkpoint.", valueName: "n"))
    var shards = 1

    @Option(help: ArgumentHelp("Random seed of the base model.", valueName: "n"))
    var seed: UInt64 = 42

    func validate() throws {
        guard let d = DType(parsing: dtype), [.f32, .bf16, .f16].contains(d) else {
            throw ValidationError("--dtype must be F32, BF16 or F16")
        }
        if shards < 1 { throw ValidationError("--shards must be at least 1") }
    }

    func run() throws {
        let arch = Architecture.all.first { $0.name == size.rawValue }!
        let factory = ModelFactory(architecture: arch, dtype: DType(parsing: dtype)!, seed: seed)
        try factory.writeCheckpoint(to: directory + "/base", shards: shards)
        for ft in FineTune.standardFamily {
            try factory.writeCheckpoint(to: directory + "/" + ft.name, fineTune: ft, shards: shards)
        }
        print("Wrote \(arch.name) family (\(arch.parameterCount) parameters each, \(factory.dtype.rawValue)) to \(directory): base, "
            + FineTune.standardFamily.map(\.name).joined(separator: ", "))
    }
}
