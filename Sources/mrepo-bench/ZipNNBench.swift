import Delta
import Foundation
import ModelFactory

// Base checkpoints against ZipNN: what mrepo stores for a checkpoint that has no reference, next to
// ZipNN's compressed size (scripts/zipnn_size.py, in a venv with zipnn) and `zstd -3` of the same file.

/// ZipNN's venv: $ZIPNN_VENV, else ~/.cache/zipnn-venv.
func zipnnVenv() -> String {
    ProcessInfo.processInfo.environment["ZIPNN_VENV"] ?? (NSHomeDirectory() + "/.cache/zipnn-venv")
}

/// The issue's targets for a base: mrepo's stored size as a fraction of `zstd -3`'s.
func zipnnTarget(_ dtype: DType) -> Double? {
    switch dtype {
    case .f32: return 0.89
    case .bf16: return 0.85
    default: return nil
    }
}

struct ZipNNRow {
    var label: String
    var dtype: DType
    var fileBytes: Int
    var zstdBytes: Int
    var storedBytes: Int
    var commit: Measured
    /// The same commit with the rANS coder (MREPO_RANS=1).
    var ransBytes: Int
    var ransCommit: Measured
    var perTensorBytes: Int
    var wholeFileBytes: Int
    var perTensorSeconds: Double
}

func zipnnSection(_ o: Options, mrepo: String) throws {
    let venv = zipnnVenv()
    guard FileManager.default.isExecutableFile(atPath: venv + "/bin/python"),
          (try? Subprocess.run([venv + "/bin/python", "-c", "import zipnn"]))?.status == 0 else {
        print("### Base checkpoints against ZipNN\n\nSkipped: no zipnn in \(venv) (`python3 -m venv \(venv) && \(venv)/bin/pip install zipnn`, or set $ZIPNN_VENV).\n")
        return
    }
    // The inputs: the real MiniLM base in both dtypes, and the generated base of each measured dtype.
    var inputs: [(label: String, file: String, dtype: DType)] = []
    if let real = o.realData {
        inputs.append(("all-MiniLM-L6-v2 (real)", real + "/base/model.safetensors", .f32))
        if FileManager.default.fileExists(atPath: real + "/base_bf16/model.safetensors") {
            inputs.append(("all-MiniLM-L6-v2 (real)", real + "/base_bf16/model.safetensors", .bf16))
        }
    }
    for dtype in o.dtypes {
        let folder = "\(o.work)/zipnn-base-\(o.arch.name)-\(dtype.rawValue)"
        try generateOnce(folder, what: "\(o.arch.name) \(dtype.rawValue) base") {
            try ModelFactory(architecture: o.arch, dtype: dtype).writeCheckpoint(to: folder + "/base")
        }
        inputs.append(("generated \(o.arch.name) base", folder + "/base/model.safetensors", dtype))
    }
    // ZipNN on every file in one process (torch starts once).
    let json = o.work + "/zipnn.json"
    try? FileManager.default.removeItem(atPath: json)
    progress("zipnn: compressing \(inputs.count) base checkpoints with ZipNN")
    let z = try Subprocess.run([venv + "/bin/python", try scriptsDirectory() + "/zipnn_size.py", "--json", json] + inputs.map(\.file), captureOutput: true)
    guard z.status == 0, let bytes = FileManager.default.contents(atPath: json), let doc = try? JSONValue.parse(Array(bytes)) else {
        throw BenchError("scripts/zipnn_size.py failed (exit \(z.status)): \(z.output.split(separator: "\n").suffix(4).joined(separator: " / "))")
    }
    let files = doc["files"]?.arrayValue ?? []
    var rows: [ZipNNRow] = []
    for (i, input) in inputs.enumerated() {
        // mrepo: the file alone committed into a new repository, with the default coder and with rANS.
        func commitAlone(_ env: [String: String]) throws -> (Int, Measured) {
            let repo = o.work + "/repo-zipnn"
            try? FileManager.default.removeItem(atPath: repo)
            try Subprocess.check([mrepo, "init", "-q", repo])
            guard link(input.file, repo + "/model.safetensors") == 0 else { throw BenchError("cannot link \(input.file) into \(repo)") }
            try settle(warm: [input.file])
            let commit = try timedMrepo([mrepo, "-C", repo, "commit", "-q", "-m", "base"], o, what: "mrepo commit of \(input.file)",
                                        extraEnvironment: env)
            let stored = try lastNewStored(try Subprocess.check([mrepo, "-C", repo, "du", "--json"], captureOutput: true).output)
            try? FileManager.default.removeItem(atPath: repo)
            return (stored, commit)
        }
        let (stored, commit) = try commitAlone(["MREPO_RANS": "0"])
        let (ransStored, ransCommit) = try commitAlone(["MREPO_RANS": "1"])
        let f = i < files.count ? files[i] : JSONValue.null
        rows.append(ZipNNRow(label: input.label, dtype: input.dtype, fileBytes: fileSize(input.file), zstdBytes: try zstdSize(input.file),
                             storedBytes: stored, commit: commit, ransBytes: ransStored, ransCommit: ransCommit, perTensorBytes: f["per_tensor_bytes"]?.intValue ?? 0,
                             wholeFileBytes: f["whole_file_bytes"]?.intValue ?? 0, perTensorSeconds: f["per_tensor_seconds"]?.doubleValue ?? 0))
    }
    if !o.keep {
        for dtype in o.dtypes { try? FileManager.default.removeItem(atPath: "\(o.work)/zipnn-base-\(o.arch.name)-\(dtype.rawValue)") }
        try? FileManager.default.removeItem(atPath: json)
    }
    printZipNN(rows, version: doc["zipnn_version"]?.stringValue ?? "?")
}

func printZipNN(_ rows: [ZipNNRow], version: String) {
    print("### Base checkpoints against ZipNN (ratio to `zstd -3` of the same file; lower is better)\n")
    print("References, on the same file in the same run: `zstd -3`, and ZipNN \(version) (scripts/zipnn_size.py) per tensor "
        + "(its `.znn.safetensors`, what its Hugging Face plugin reads) and on the whole file with the file's dtype. mrepo: the new stored "
        + "bytes of committing the file alone into an empty repository, with the default coder (zstd) and with the rANS coder "
        + "(`MREPO_RANS=1`). Targets: mrepo ≤ 0.89 × `zstd -3` for a float32 base, ≤ 0.85 × for bfloat16.\n")
    header(["checkpoint", "dtype", "file", "`zstd -3`", "ZipNN per tensor", "ZipNN whole file", "ZipNN / zstd", "mrepo / zstd",
            "mrepo rANS / zstd", "mrepo rANS / ZipNN", "target", "", "ZipNN time", "`mrepo commit`", "`mrepo commit`, rANS"])
    for r in rows {
        let z = Double(max(r.zstdBytes, 1))
        let zipnn = min(r.perTensorBytes, r.wholeFileBytes)
        let ratio = Double(r.ransBytes) / z
        let target = zipnnTarget(r.dtype)
        row([r.label, r.dtype.rawValue, mb(r.fileBytes), mb(r.zstdBytes), mb(r.perTensorBytes), mb(r.wholeFileBytes),
             String(format: "%.4f", Double(zipnn) / z), String(format: "%.4f", Double(r.storedBytes) / z), String(format: "%.4f", ratio),
             String(format: "%.3f", Double(r.ransBytes) / Double(max(zipnn, 1))),
             target.map { String(format: "≤ %.2f", $0) } ?? "-", target.map { verdict(ratio <= $0) } ?? "",
             secs(r.perTensorSeconds), secs(r.commit.seconds), secs(r.ransCommit.seconds)])
    }
    print("\n\"ZipNN / zstd\" and \"mrepo / ZipNN\" use ZipNN's smaller size of the two; ZipNN's time is its per-tensor compression "
        + "(not synced), mrepo's the whole commit.\n")
}
