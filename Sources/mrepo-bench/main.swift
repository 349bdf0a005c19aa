import Delta
import Foundation
import ModelFactory

// mrepo-bench: storage, speed and memory of mrepo against in-run references (the zstd CLI on the
// same bytes, a plain file copy). Run `scripts/bench.sh` (or build mrepo in release mode, then
// `swift run -c release mrepo-bench`). Prints Markdown; docs/benchmarks.md records the figures.

struct Options {
    var size = "bench"
    var dtypes: [DType] = [.f32, .bf16]
    var work = FileManager.default.currentDirectoryPath + "/.bench"
    var sections: Set<String> = ["storage", "merge", "rmm", "codec", "real"]
    var realData: String? = {
        let env = ProcessInfo.processInfo.environment["REALDATA"] ?? (NSHomeDirectory() + "/.cache/mrepo-realdata")
        return FileManager.default.fileExists(atPath: env + "/base/model.safetensors") ? env : nil
    }()
    var keep = false
    /// Each timed command runs this many times; the fastest run is reported.
    var repeats = 3
    /// Run mrepo with MREPO_FSYNC=0 (no disk barriers), to compare compute with the zstd CLI, which does not sync.
    var noSync = false

    /// The environment of every timed mrepo command.
    var mrepoEnvironment: [String: String] {
        var env = ["MREPO_AUTHOR": "bench <bench@example.com>"]
        if noSync { env["MREPO_FSYNC"] = "0" }
        return env
    }

    static func parse(_ args: [String]) throws -> Options {
        var o = Options()
        var i = 0
        func value() throws -> String {
            i += 1
            guard i < args.count else { throw BenchError("\(args[i - 1]) needs a value") }
            return args[i]
        }
        while i < args.count {
            switch args[i] {
            case "--size": o.size = try value()
            case "--dtypes": o.dtypes = try value().split(separator: ",").map { d in
                guard let t = DType(parsing: String(d)) else { throw BenchError("unknown dtype \(d)") }
                return t
            }
            case "--work": o.work = try value()
            case "--sections": o.sections = Set(try value().split(separator: ",").map(String.init))
            case "--realdata": o.realData = try value()
            case "--keep": o.keep = true
            case "--no-fsync": o.noSync = true
            case "--repeat": o.repeats = max(1, Int(try value()) ?? 3)
            case "-h", "--help":
                print("""
                    usage: mrepo-bench [--size bench|minilm|small] [--dtypes F32,BF16] [--work DIR]
                                       [--sections storage,merge,rmm,codec,real] [--realdata DIR] [--keep] [--no-fsync] [--repeat N]
                      --size      generated family: bench is about 1.2 GB per fp32 checkpoint (default)
                      --dtypes    which families to generate and measure (default F32,BF16)
                      --work      scratch folder (default ./.bench; needs about 12 GB for --size bench)
                      --sections  storage: commit/export through the mrepo binary vs the zstd CLI;
                                  merge: ties and dare_ties of the three fine-tunes (runs storage too: its exports are the reference);
                                  rmm: reversible merges of 8 LoRA adapters (r = 16) for K = 1..7, one revert;
                                  codec: encodings, zstd levels and chunk sizes, in process;
                                  real: the same codec figures on real checkpoints, if present
                      --realdata  folder made by shared/data/make-real-checkpoints.sh (default $REALDATA)
                      --keep      keep the scratch folder
                      --no-fsync  run mrepo with MREPO_FSYNC=0 (no disk barriers, like the zstd CLI)
                      --repeat N  run each timed command N times and report the fastest (default 3)
                    """)
                exit(0)
            default: throw BenchError("unknown option \(args[i])")
            }
            i += 1
        }
        // The merge is timed against the storage section's exports, in its repositories.
        if o.sections.contains("merge") { o.sections.insert("storage") }
        return o
    }
}

func mb(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }
func mbps(_ bytes: Int, _ seconds: Double) -> String { String(format: "%.0f MB/s", Double(bytes) / 1e6 / seconds) }
func fileSize(_ path: String) -> Int { (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0 }

func mrepoBinary() throws -> String {
    let own = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
    let candidate = own.appendingPathComponent("mrepo").path
    guard FileManager.default.isExecutableFile(atPath: candidate) else {
        throw BenchError("no mrepo binary beside mrepo-bench (\(candidate)); run `swift build -c release --product mrepo` first, or scripts/bench.sh")
    }
    return candidate
}

func machineLine() -> String {
    let cpu = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
        .split(separator: "\n").first { $0.hasPrefix("model name") }?
        .split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
    let mem = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8))?
        .split(separator: "\n").first?.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
    return "\(cpu), \(ProcessInfo.processInfo.activeProcessorCount) cores, \(mem / 1_048_576) GiB RAM"
}

// MARK: - Storage and speed through the real binary

struct StorageRow {
    var dtype: DType
    var model: String
    var fileBytes: Int
    var zstdBytes: Int
    var storedBytes: Int
    var commit: Measured
    var zstdCompress: Measured
    var export: Measured
    var zstdDecompress: Measured
    var copy: Measured
}

func storageSection(_ o: Options, arch: Architecture, dtype: DType, mrepo: String) throws -> [StorageRow] {
    let family = "\(o.work)/family-\(arch.name)-\(dtype.rawValue)"
    let factory = ModelFactory(architecture: arch, dtype: dtype)
    let models = ["base"] + FineTune.standardFamily.map(\.name)
    try generateOnce(family, what: "\(arch.name) \(dtype.rawValue) family") { try factory.writeFamily(to: family) }
    // `repeat` identical repositories, so every timed command runs `repeat` times; the best run counts
    // (the machine is shared and its write speed varies from run to run).
    let repos = (0..<o.repeats).map { "\(o.work)/repo-\(arch.name)-\(dtype.rawValue)-\($0)" }
    for repo in repos {
        try? FileManager.default.removeItem(atPath: repo)
        try Subprocess.check([mrepo, "init", "-q", repo])
    }
    var rows: [StorageRow] = []
    let env = o.mrepoEnvironment
    let best = Measured.best
    for model in models {
        let file = family + "/" + model + "/model.safetensors"
        let bytes = fileSize(file)
        var commits: [Measured] = [], exports: [Measured] = [], compressions: [Measured] = [], decompressions: [Measured] = [], copies: [Measured] = []
        var stored = 0
        let zst = o.work + "/tmp.zst"
        for repo in repos {
            if model != "base" { try Subprocess.check([mrepo, "-C", repo, "switch", "-q", "-c", model, "main"]) }
            // Put the checkpoint in the working tree (hard links: no copy).
            for name in try FileManager.default.contentsOfDirectory(atPath: family + "/" + model) {
                unlink(repo + "/" + name)
                link(family + "/" + model + "/" + name, repo + "/" + name)
            }
            // Every timed command starts alike: no dirty pages waiting for the disk, inputs read once (warm).
            let objectsDir = repo + "/.mrepo/objects"
            try settle(warm: [file, objectsDir])
            let commit = try Subprocess.run([mrepo, "-C", repo, "commit", "-q", "-m", model], environment: env)
            guard commit.status == 0 else { throw BenchError("mrepo commit of \(model) failed") }
            commits.append(commit)
            let du = try Subprocess.check([mrepo, "-C", repo, "du", "--json"], captureOutput: true).output
            stored = try lastNewStored(du)
            try settle(warm: [file])
            compressions.append(try Subprocess.check(["zstd", "-T2", "-3", "-f", "-q", file, "-o", zst]))
            let out = o.work + "/export-\(model)"
            try? FileManager.default.removeItem(atPath: out)
            try settle(warm: [objectsDir])
            let export = try Subprocess.run([mrepo, "-C", repo, "export", "-q", "HEAD", out], environment: env)
            guard export.status == 0 else { throw BenchError("mrepo export of \(model) failed") }
            exports.append(export)
            try Subprocess.check(["cmp", "-s", file, out + "/model.safetensors"])
            let restored = o.work + "/restored"
            try settle(warm: [zst])
            decompressions.append(try Subprocess.check(["zstd", "-d", "-f", "-q", zst, "-o", restored]))
            try settle(warm: [file])
            copies.append(try Subprocess.check(["cp", file, o.work + "/copy"]))
            for p in [out, restored, o.work + "/copy"] { try? FileManager.default.removeItem(atPath: p) }
        }
        let zstdBytes = fileSize(zst)
        try? FileManager.default.removeItem(atPath: zst)
        let row = StorageRow(dtype: dtype, model: model, fileBytes: bytes, zstdBytes: zstdBytes, storedBytes: stored,
                             commit: best(commits), zstdCompress: best(compressions), export: best(exports),
                             zstdDecompress: best(decompressions), copy: best(copies))
        rows.append(row)
        FileHandle.standardError.write(Data("  \(dtype.rawValue) \(model): stored \(mb(stored)) vs zstd -3 \(mb(zstdBytes)); commit \(String(format: "%.2f", row.commit.seconds)) s, export \(String(format: "%.2f", row.export.seconds)) s\n".utf8))
    }
    if o.sections.contains("merge") {
        mergeRows[dtype] = try mergeSection(o, repo: repos[0], rows: rows, mrepo: mrepo, env: env)
    }
    if !o.keep { for repo in repos { try? FileManager.default.removeItem(atPath: repo) } }
    return rows
}

nonisolated(unsafe) var mergeRows: [DType: [(method: String, merge: Measured, inputsExport: Double)]] = [:]

/// Merges the three fine-tunes with each method on its own branch; compares with exporting every input once.
func mergeSection(_ o: Options, repo: String, rows: [StorageRow], mrepo: String, env: [String: String]) throws
    -> [(method: String, merge: Measured, inputsExport: Double)] {
    let inputsExport = rows.reduce(0) { $0 + $1.export.seconds }
    var out: [(String, Measured, Double)] = []
    for method in ["ties", "dare_ties"] {
        var runs: [Measured] = []
        for attempt in 0..<o.repeats {
            let branch = "merge-\(method)-\(attempt)"
            try Subprocess.check([mrepo, "-C", repo, "switch", "-q", "--force", "-c", branch, "main"])
            try settle(warm: [repo + "/.mrepo/objects"])
            let m = try Subprocess.run([mrepo, "-C", repo, "merge", "-q", "math", "code", "chat", "--method", method,
                                        "--set", "density=0.5", "--seed", "1"], environment: env)
            guard m.status == 0 else { throw BenchError("mrepo merge --method \(method) failed") }
            runs.append(m)
            try Subprocess.check([mrepo, "-C", repo, "switch", "-q", "--force", "main"])
        }
        let best = Measured.best(runs)
        out.append((method, best, inputsExport))
        FileHandle.standardError.write(Data("  merge \(method): \(String(format: "%.2f", best.seconds)) s, \(best.peakRSSBytes / 1_048_576) MiB\n".utf8))
    }
    return out
}

func printMerges(_ arch: Architecture) {
    guard !mergeRows.isEmpty else { return }
    print("### Merge (\(arch.name) family: three fine-tunes into the base, density 0.5, with the commit and the checkout)\n")
    print("| dtype | method | `mrepo merge` | export of all four inputs | ratio (target < 2) | peak RSS (target < 1 GiB) |")
    print("|---|---|---|---|---|---|")
    for (dtype, list) in mergeRows.sorted(by: { $0.key.rawValue > $1.key.rawValue }) {
        for r in list {
            let cells = [dtype.rawValue, r.method, String(format: "%.2f s", r.merge.seconds), String(format: "%.2f s", r.inputsExport),
                         String(format: "%.2f", r.merge.seconds / r.inputsExport), "\(r.merge.peakRSSBytes / 1_048_576) MiB"]
            print("| " + cells.joined(separator: " | ") + " |")
        }
    }
    print("")
}

/// Writes generated inputs into `folder` unless a complete earlier run left them there.
func generateOnce(_ folder: String, what: String, _ write: () throws -> Void) throws {
    guard !FileManager.default.fileExists(atPath: folder + "/.complete") else { return }
    FileHandle.standardError.write(Data("generating the \(what) in \(folder)\n".utf8))
    try? FileManager.default.removeItem(atPath: folder)
    try write()
    _ = FileManager.default.createFile(atPath: folder + "/.complete", contents: nil)
}

extension ModelFactory {
    /// The base and the standard fine-tunes, one folder each.
    func writeFamily(to folder: String) throws {
        try writeCheckpoint(to: folder + "/base")
        for ft in FineTune.standardFamily { try writeCheckpoint(to: folder + "/" + ft.name, fineTune: ft) }
    }
}

/// Syncs (no dirty pages left for the next command to wait on) and reads `warm` (files or folders) once.
func settle(warm: [String]) throws {
    _ = try Subprocess.run(["sync"])
    for path in warm {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { continue }
        if isDir.boolValue {
            _ = try Subprocess.run(["sh", "-c", "find '\(path)' -type f -exec cat {} + > /dev/null"])
        } else {
            _ = try Subprocess.run(["cat", path])
        }
    }
}

/// The newest commit's new stored bytes from `mrepo du --json`.
func lastNewStored(_ json: String) throws -> Int {
    guard let v = try? JSONValue.parse(Array(json.utf8)), let commits = v["commits"]?.arrayValue,
          let last = commits.last, let n = last["new_stored_bytes"]?.intValue
    else { throw BenchError("cannot read `mrepo du --json`") }
    return n
}

func targetFor(_ dtype: DType, _ model: String) -> Double? {
    let heavy = model == "chat" || model.contains("prose")
    let base = model == "base"
    switch (dtype, base, heavy) {
    case (.f32, true, _): return 0.88
    case (.bf16, true, _): return 0.83
    case (.f32, false, false): return 0.50
    case (.bf16, false, false): return 0.25
    case (.f32, false, true): return 0.75
    case (.bf16, false, true): return 0.55
    default: return nil
    }
}

func printStorage(_ rows: [StorageRow], arch: Architecture, noSync: Bool) {
    print("### Stored bytes (\(arch.name) family, through `mrepo commit`)\n")
    print("| dtype | checkpoint | file | `zstd -3` | mrepo stored | mrepo / zstd | target | |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows {
        let ratio = Double(r.storedBytes) / Double(r.zstdBytes)
        let target = targetFor(r.dtype, r.model)
        let kind = r.model == "base" ? "base" : (r.model == "chat" ? "heavy fine-tune" : "light fine-tune")
        let targetText: String = target.map { String(format: "≤ %.2f", $0) } ?? ""
        let verdict: String = target.map { ratio <= $0 ? "met" : "missed" } ?? ""
        let ratioText = String(format: "%.3f", ratio)
        let cells: [String] = [r.dtype.rawValue, "\(r.model) (\(kind))", mb(r.fileBytes), mb(r.zstdBytes), mb(r.storedBytes), ratioText, targetText, verdict]
        print("| " + cells.joined(separator: " | ") + " |")
    }
    print("\n### Speed and memory (\(arch.name) family\(noSync ? ", mrepo with MREPO_FSYNC=0" : ", mrepo syncing every file to disk"))\n")
    print("| dtype | checkpoint | `mrepo commit` | `zstd -T2 -3` | ratio | `mrepo export` | `zstd -d` | ratio | `cp` | commit peak RSS | export peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows {
        let commitRatio = r.zstdCompress.seconds / r.commit.seconds
        let exportRatio = r.zstdDecompress.seconds / r.export.seconds
        let cells: [String] = [
            r.dtype.rawValue, r.model, mbps(r.fileBytes, r.commit.seconds), mbps(r.fileBytes, r.zstdCompress.seconds),
            String(format: "%.2f", commitRatio), mbps(r.fileBytes, r.export.seconds), mbps(r.fileBytes, r.zstdDecompress.seconds),
            String(format: "%.2f", exportRatio), mbps(r.fileBytes, r.copy.seconds),
            "\(r.commit.peakRSSBytes / 1_048_576) MiB", "\(r.export.peakRSSBytes / 1_048_576) MiB",
        ]
        print("| " + cells.joined(separator: " | ") + " |")
    }
    print("")
}

// MARK: - Codec choices, in process

struct CodecResult {
    var stored = 0
    var seconds = 0.0
}

/// Encodes every tensor of `file` (against `reference`'s same-named tensor when given) and sums the encoded size.
func encodeFile(_ file: SafetensorsFile, reference: SafetensorsFile?, encoding: TensorEncoding, options: CodecOptions) throws -> CodecResult {
    var result = CodecResult()
    let start = Subprocess.now()
    result.stored += Zstd.compress(file.headerBytes, level: 3).count
    for t in file.tensors {
        let source = file.data(of: t)
        var ref: TensorPipeline.Reference?
        if encoding != .whole, let reference, let rt = reference.tensor(named: t.name), rt.dtype == t.dtype, rt.shape == t.shape {
            let bytes = reference.data(of: rt)
            if bytes.elementsEqual(source) { continue }  // identical tensors are stored once
            let box = RawBox(bytes)
            let chunk = options.chunkByteCount
            ref = TensorPipeline.Reference(digest: .zero) { i, into in
                let r = (i * chunk)..<min(box.bytes.count, (i + 1) * chunk)
                into.copyMemory(from: UnsafeRawBufferPointer(rebasing: box.bytes[r]))
            }
        }
        let enc = ref == nil ? TensorEncoding.whole : (t.dtype.isFloatingPoint ? encoding : .integerDelta)
        result.stored += try TensorPipeline.encode(dtype: t.dtype, shape: t.shape, source: source, encoding: enc, reference: ref,
                                                   options: options, sink: { _ in }).storedByteCount
    }
    result.seconds = Subprocess.now() - start
    return result
}

struct RawBox: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer
    init(_ b: UnsafeRawBufferPointer) { bytes = b }
}

func zstdSize(_ path: String, level: Int = 3) throws -> Int {
    let out = NSTemporaryDirectory() + "/mrepo-bench-\(getpid()).zst"
    try Subprocess.check(["zstd", "-\(level)", "-f", "-q", path, "-o", out])
    defer { unlink(out) }
    return fileSize(out)
}

/// Ratios of each encoding to `zstd -3` for a family folder (base, fine-tunes).
func codecTable(title: String, folder: String, models: [(name: String, dir: String)], base: String) throws {
    let baseFile = try SafetensorsFile(path: folder + "/" + base + "/model.safetensors")
    print("### \(title)\n")
    print("| checkpoint | `zstd -3` | whole | xor | int-delta | int-delta/exp (default) | default at level 3 | default, 1 MiB chunks | default, 16 MiB chunks | encode speed (default) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for m in models {
        let path = folder + "/" + m.dir + "/model.safetensors"
        let file = try SafetensorsFile(path: path)
        let z = try zstdSize(path)
        func ratio(_ r: CodecResult) -> String { String(format: "%.3f", Double(r.stored) / Double(z)) }
        let whole = try encodeFile(file, reference: nil, encoding: .whole, options: .default)
        if m.dir == base {
            let l3 = try encodeFile(file, reference: nil, encoding: .whole, options: CodecOptions(chunkByteCount: 4 << 20, level: 3))
            print("| \(m.name) | \(mb(z)) | \(ratio(whole)) | - | - | - | \(ratio(l3)) | - | - | \(mbps(file.map.count, whole.seconds)) |")
            continue
        }
        let xor = try encodeFile(file, reference: baseFile, encoding: .xor, options: .default)
        let idelta = try encodeFile(file, reference: baseFile, encoding: .integerDelta, options: .default)
        let grouped = try encodeFile(file, reference: baseFile, encoding: .integerDeltaByExponent, options: .default)
        let l3 = try encodeFile(file, reference: baseFile, encoding: .integerDeltaByExponent, options: CodecOptions(chunkByteCount: 4 << 20, level: 3))
        let c1 = try encodeFile(file, reference: baseFile, encoding: .integerDeltaByExponent, options: CodecOptions(chunkByteCount: 1 << 20, level: 1))
        let c16 = try encodeFile(file, reference: baseFile, encoding: .integerDeltaByExponent, options: CodecOptions(chunkByteCount: 16 << 20, level: 1))
        let cells: [String] = [m.name, mb(z), ratio(whole), ratio(xor), ratio(idelta), "**" + ratio(grouped) + "**", ratio(l3), ratio(c1), ratio(c16),
                               mbps(file.map.count, grouped.seconds)]
        print("| " + cells.joined(separator: " | ") + " |")
    }
    print("")
}

// MARK: - Main

do {
    let o = try Options.parse(Array(CommandLine.arguments.dropFirst()))
    guard let arch = Architecture.all.first(where: { $0.name == o.size }) else { throw BenchError("unknown size \(o.size)") }
    try FileManager.default.createDirectory(atPath: o.work, withIntermediateDirectories: true)
    let date = ISO8601DateFormatter().string(from: Date())
    print("# mrepo-bench \(date)\n")
    print("Machine: \(machineLine()). zstd: \((try? Subprocess.check(["zstd", "-V"], captureOutput: true).output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? "not found").\n")
    if o.sections.contains("storage") {
        let mrepo = try mrepoBinary()
        for dtype in o.dtypes {
            let rows = try storageSection(o, arch: arch, dtype: dtype, mrepo: mrepo)
            printStorage(rows, arch: arch, noSync: o.noSync)
        }
        printMerges(arch)
    }
    if o.sections.contains("rmm") {
        try rmmSection(o, arch: arch, mrepo: try mrepoBinary())
    }
    if o.sections.contains("codec") {
        let mini = Architecture.minilm
        for dtype in o.dtypes {
            let folder = "\(o.work)/family-\(mini.name)-\(dtype.rawValue)"
            try generateOnce(folder, what: "\(mini.name) \(dtype.rawValue) family") {
                try ModelFactory(architecture: mini, dtype: dtype).writeFamily(to: folder)
            }
            try codecTable(title: "Codec choice: generated \(mini.name) family, \(dtype.rawValue) (ratio to `zstd -3` of the same file)",
                           folder: folder, models: [("base", "base"), ("math (light)", "math"), ("code (light)", "code"), ("chat (heavy)", "chat")],
                           base: "base")
        }
    }
    if o.sections.contains("real"), let real = o.realData {
        for suffix in ["", "_bf16"] {
            try codecTable(title: "Real checkpoints: all-MiniLM-L6-v2 and three real fine-tunes\(suffix.isEmpty ? ", F32" : ", BF16") (ratio to `zstd -3`)",
                           folder: real,
                           models: [("base", "base" + suffix), ("ft_code (light)", "ft_code" + suffix), ("ft_c (light)", "ft_c" + suffix),
                                    ("ft_prose (heavy)", "ft_prose" + suffix)].filter { FileManager.default.fileExists(atPath: real + "/" + $0.1 + "/model.safetensors") },
                           base: "base" + suffix)
        }
    }
    if !o.keep && o.sections.contains("storage") {
        for dtype in o.dtypes { try? FileManager.default.removeItem(atPath: "\(o.work)/family-\(arch.name)-\(dtype.rawValue)") }
    }
} catch {
    FileHandle.standardError.write(Data("mrepo-bench: error: \(error)\n".utf8))
    exit(2)
}
