import ArgumentParser
import Delta
import Foundation
import ModelFactory

// mrepo-bench: storage, speed and memory of mrepo against in-run references (the zstd CLI on the
// same bytes, a plain file copy, mergekit, ZipNN). Run `scripts/bench.sh` (or build mrepo in release
// mode, then `swift run -c release mrepo-bench`). Prints Markdown; docs/benchmarks.md records the figures.

/// The benchmark's sections, in the order they run.
enum Section: String, CaseIterable, ExpressibleByArgument {
    case storage, merge, rmm, codec, real, mergekit, zipnn, scale3b, network

    /// What runs when --sections is not given: everything but the 40 GB scale run and the network
    /// run (which needs the project venv and SeaweedFS, and starts servers on loopback).
    static let defaults: [Section] = allCases.filter { $0 != .scale3b && $0 != .network }
}

@main
struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mrepo-bench",
        abstract: "Storage, speed and memory of mrepo, each figure next to a reference measured in the same run.",
        discussion: """
            Prints Markdown (progress goes to standard error); docs/benchmarks.md records the figures and says how \
            to read them. The sections (--sections, comma-separated; default: all but scale3b and network):

            storage: commit and export through the mrepo binary against zstd -T2 -3 and zstd -d of the same file, \
            for each layout (--layouts), re-commits of tensors that are already stored, and the real MiniLM family \
            of --realdata when present (--no-real-storage leaves it out).

            merge: ties and dare_ties of the three fine-tunes (runs storage too: its exports are the reference).

            rmm: reversible merges of 8 LoRA adapters (r = 16) for K = 1..7, and one revert.

            codec: encodings, zstd levels and chunk sizes, in process, on the generated minilm family.

            real: the same codec figures on the real MiniLM checkpoints, if present (--realdata).

            mergekit: six merge methods on the real MiniLM fine-tunes through mrepo and through mergekit \
            (needs --realdata and a mergekit venv: $MERGEKIT_VENV, default ~/.cache/mergekit-venv).

            zipnn: what mrepo stores for base checkpoints against ZipNN and zstd -3 (needs a venv with zipnn: \
            $ZIPNN_VENV, default ~/.cache/zipnn-venv).

            scale3b: a Llama-3.2-3B-shaped bf16 family (base and two fine-tunes, two shards each): commit, export \
            and a ties merge; needs about 43 GB of scratch disk (--scale-size llama-tiny for a quick check).

            network: clone, fetch and push over `mrepo serve` and a SeaweedFS S3 store on 127.0.0.1 against parallel \
            curl of the same object files, incremental push bytes, snapshot_download against curl of the same files, \
            and the server's peak RSS under 32 concurrent downloads; on the real MiniLM family (--realdata) and the \
            generated F32 family of --size. Needs the project venv with huggingface_hub and weed ($MREPO_VENV, default \
            ~/.cache/mrepo-venv; $MREPO_WEED), curl and python3; skipped with a one-line reason otherwise.
            """)

    @Option(help: ArgumentHelp("Generated family of storage, merge and rmm: tiny, small, minilm or bench (about 1.2 GB per fp32 checkpoint).", valueName: "size"))
    var size = "bench"

    @Option(help: ArgumentHelp("Families to generate and measure, comma-separated (default: F32,BF16).", valueName: "list"),
            transform: { text in
                try text.split(separator: ",").map { d in
                    guard let t = DType(parsing: String(d)), [.f32, .bf16, .f16].contains(t) else {
                        throw ValidationError("unknown dtype '\(d)' (F32, BF16 or F16)")
                    }
                    return t
                }
            })
    var dtypes: [DType] = [.f32, .bf16]

    @Option(help: ArgumentHelp("Sections to run, comma-separated (default: all but scale3b and network).", valueName: "list"),
            transform: { text in
                try text.split(separator: ",").map { s in
                    guard let section = Section(rawValue: String(s)) else {
                        throw ValidationError("unknown section '\(s)' (\(Section.allCases.map(\.rawValue).joined(separator: ", ")))")
                    }
                    return section
                }
            })
    var sections: [Section] = Section.defaults

    @Option(help: ArgumentHelp("Layouts of the storage section: aligned (fine-tunes in their base's tensor order) and reordered (base in state_dict() order, fine-tunes as safetensors' save_file writes them). Default: both.", valueName: "list"),
            transform: { text in
                try text.split(separator: ",").map { s in
                    guard let layout = FamilyLayout(rawValue: String(s)) else { throw ValidationError("unknown layout '\(s)' (aligned, reordered)") }
                    return layout
                }
            })
    var layouts: [FamilyLayout] = FamilyLayout.allCases

    @Option(help: ArgumentHelp("Scratch folder (about 25 GB for --size bench; scale3b needs about 43 GB more).", valueName: "dir"))
    var work = FileManager.default.currentDirectoryPath + "/.bench"

    @Option(help: ArgumentHelp("Folder made by shared/data/make-real-checkpoints.sh (default $REALDATA, else ~/.cache/mrepo-realdata).", valueName: "dir"))
    var realdata: String?

    @Option(help: ArgumentHelp("Shape of the scale3b section: llama3b (6.4 GB per bf16 checkpoint) or llama-tiny (a quick check).", valueName: "size"))
    var scaleSize = "llama3b"

    @Flag(help: "Keep the scratch folder.")
    var keep = false

    @Flag(inversion: .prefixedNo, help: "With the storage section, also the real MiniLM family of --realdata (when present), in each of --dtypes F32 and BF16.")
    var realStorage = true

    @Flag(help: "Run mrepo with MREPO_FSYNC=0 (no disk barriers, like the zstd CLI).")
    var noFsync = false

    @Flag(help: "Run mrepo with MREPO_VERIFY_WRITES=1 (every new object decoded and re-hashed before it is renamed into place): run twice, with and without, to price it.")
    var verifyWrites = false

    @Option(name: .customLong("repeat"), help: ArgumentHelp("Run each timed command this many times and report the median (storage) or the fastest (other sections).", valueName: "n"))
    var repeats = 3

    func validate() throws {
        guard Architecture.all.contains(where: { $0.name == size }) else {
            throw ValidationError("unknown --size '\(size)' (\(Architecture.all.map(\.name).joined(separator: ", ")))")
        }
        guard let scale = Architecture.all.first(where: { $0.name == scaleSize }), scale.family == .llama else {
            throw ValidationError("--scale-size must be llama3b or llama-tiny")
        }
        if repeats < 1 { throw ValidationError("--repeat must be at least 1") }
        if dtypes.isEmpty || layouts.isEmpty { throw ValidationError("--dtypes and --layouts need at least one value") }
    }

    func run() throws {
        do {
            try runSections()
        } catch {
            // One line, as mrepo's own errors; exit 2 as a runtime failure.
            FileHandle.standardError.write(Data("mrepo-bench: error: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }

    func runSections() throws {
        let o = Options(self)
        try FileManager.default.createDirectory(atPath: o.work, withIntermediateDirectories: true)
        print("# mrepo-bench \(ISO8601DateFormatter().string(from: Date()))\n")
        let mrepoVersion = (try? mrepoBinary()).map { toolVersion([$0, "--version"]) } ?? "not built"
        print("Machine: \(machineLine()). zstd: \(toolVersion(["zstd", "-V"])). mrepo: \(mrepoVersion).\n")
        let run = Set(sections)
        if run.contains(.storage) || run.contains(.merge) {
            let mrepo = try mrepoBinary()
            var merges: [MergeRow] = []
            for dtype in o.dtypes {
                let result = try storageSection(o, dtype: dtype, mrepo: mrepo, merge: run.contains(.merge))
                merges += result.merges
            }
            printMerges(merges, arch: o.arch)
        }
        if run.contains(.rmm) { try rmmSection(o, arch: o.arch, mrepo: try mrepoBinary()) }
        if run.contains(.codec) { try codecSection(o) }
        if run.contains(.real) { try realSection(o) }
        if run.contains(.mergekit) { try mergekitSection(o, mrepo: try mrepoBinary()) }
        if run.contains(.zipnn) { try zipnnSection(o, mrepo: try mrepoBinary()) }
        if run.contains(.scale3b) { try scaleSection(o, mrepo: try mrepoBinary()) }
        if run.contains(.network) { try networkSection(o, mrepo: try mrepoBinary()) }
    }
}

/// The parsed options, as the sections use them.
struct Options {
    var arch: Architecture
    var scaleArch: Architecture
    var dtypes: [DType]
    var layouts: [FamilyLayout]
    var work: String
    var realData: String?
    var keep: Bool
    /// Each timed command runs this many times; the median run (storage) or the fastest is reported.
    var repeats: Int
    /// Run mrepo with MREPO_FSYNC=0 (no disk barriers), to compare compute with the zstd CLI, which does not sync.
    var noSync: Bool
    /// Run mrepo with MREPO_VERIFY_WRITES=1 (verify-after-write).
    var verifyWrites: Bool
    /// The storage section also measures the real MiniLM family of `realData`.
    var realStorage: Bool

    init(_ b: Bench) {
        arch = Architecture.all.first { $0.name == b.size }!
        scaleArch = Architecture.all.first { $0.name == b.scaleSize }!
        dtypes = b.dtypes
        layouts = b.layouts
        work = URL(fileURLWithPath: b.work).standardizedFileURL.path
        let real = b.realdata ?? ProcessInfo.processInfo.environment["REALDATA"] ?? (NSHomeDirectory() + "/.cache/mrepo-realdata")
        realData = FileManager.default.fileExists(atPath: real + "/base/model.safetensors") ? real : nil
        keep = b.keep
        repeats = b.repeats
        noSync = b.noFsync
        verifyWrites = b.verifyWrites
        realStorage = b.realStorage
    }

    /// The environment of every timed mrepo command.
    var mrepoEnvironment: [String: String] {
        var env = ["MREPO_AUTHOR": "bench <bench@example.com>"]
        if noSync { env["MREPO_FSYNC"] = "0" }
        if verifyWrites { env["MREPO_VERIFY_WRITES"] = "1" }
        return env
    }

    /// How mrepo's writes were made, for table titles.
    var syncNote: String {
        (noSync ? "mrepo with MREPO_FSYNC=0" : "mrepo syncing every file to disk") + (verifyWrites ? ", verifying every new object (MREPO_VERIFY_WRITES=1)" : "")
    }
}
