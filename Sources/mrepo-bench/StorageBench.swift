import Delta
import Foundation
import ModelFactory

// Storage and speed through the real binary: each checkpoint of the generated family committed and
// exported by `mrepo`, next to `zstd -T2 -3`, `zstd -d` and `cp` of the same file in the same run; for
// both layouts (fine-tunes in their base's order, and as `save_file` writes them); then re-commits of
// tensors that are already stored.

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

/// A commit whose every tensor is already in the store.
struct RecommitRow {
    var what: String
    var fileBytes: Int
    var newStoredBytes: Int
    var commit: Measured
    var zstdCompress: Measured
}

struct StorageResult {
    var merges: [MergeRow] = []
}

/// Peak RSS target of commit and export, whatever the tensor order.
let storagePeakTarget = 512 * 1_048_576

func familyFolder(_ o: Options, dtype: DType, layout: FamilyLayout) -> String {
    "\(o.work)/family-\(o.arch.name)-\(dtype.rawValue)" + (layout == .aligned ? "" : "-\(layout.rawValue)")
}

func storageSection(_ o: Options, dtype: DType, mrepo: String, merge: Bool) throws -> StorageResult {
    let factory = ModelFactory(architecture: o.arch, dtype: dtype)
    for layout in o.layouts {
        let family = familyFolder(o, dtype: dtype, layout: layout)
        try generateOnce(family, what: "\(o.arch.name) \(dtype.rawValue) family, \(layout.rawValue) layout") {
            try factory.writeFamily(to: family, layout: layout)
        }
    }
    // The re-commit measurement commits the base in state_dict() order over the base in name order.
    var reorderedBase = familyFolder(o, dtype: dtype, layout: .reordered) + "/base"
    if o.layouts.contains(.aligned) && !o.layouts.contains(.reordered) {
        let folder = "\(o.work)/base-state-dict-\(o.arch.name)-\(dtype.rawValue)"
        try generateOnce(folder, what: "\(o.arch.name) \(dtype.rawValue) base in state_dict() order") {
            try factory.writeCheckpoint(to: folder + "/base", order: .stateDict)
        }
        reorderedBase = folder + "/base"
    }
    var result = StorageResult()
    for layout in o.layouts {
        let family = familyFolder(o, dtype: dtype, layout: layout)
        let repos = (0..<o.repeats).map { "\(o.work)/repo-\(o.arch.name)-\(dtype.rawValue)-\(layout.rawValue)-\($0)" }
        let rows = try measureFamily(o, family: family, dtype: dtype, repos: repos, mrepo: mrepo)
        printStorage(rows, o: o, layout: layout)
        if layout == .aligned {
            let again = try measureRecommits(o, family: family, reorderedBase: reorderedBase, rows: rows, repos: repos, mrepo: mrepo)
            printRecommits(again, o: o, dtype: dtype)
        }
        if merge && result.merges.isEmpty {
            result.merges = try mergeSection(o, repo: repos[0], dtype: dtype, layout: layout, rows: rows, mrepo: mrepo)
        }
        if !o.keep { for repo in repos { try? FileManager.default.removeItem(atPath: repo) } }
    }
    if let real = o.realData, o.realStorage {
        try realStorage(o, real: real, dtype: dtype, mrepo: mrepo)
    }
    if !o.keep {
        try? FileManager.default.removeItem(atPath: "\(o.work)/base-state-dict-\(o.arch.name)-\(dtype.rawValue)")
        for layout in FamilyLayout.allCases { try? FileManager.default.removeItem(atPath: familyFolder(o, dtype: dtype, layout: layout)) }
    }
    return result
}

/// The real MiniLM family (`--realdata`: all-MiniLM-L6-v2 and its three full fine-tunes, as
/// published, every file in `save_file` order) through the same commits and exports as the
/// generated family. The checkpoint folders are linked into a scratch family folder under their
/// models' names (files only: the pooling folder is left out).
func realStorage(_ o: Options, real: String, dtype: DType, mrepo: String) throws {
    guard dtype == .f32 || dtype == .bf16 else { return }
    let suffix = dtype == .bf16 ? "_bf16" : ""
    let models = [("base", "base"), ("code", "ft_code"), ("prose", "ft_prose"), ("c", "ft_c")]
    let family = "\(o.work)/family-real-\(dtype.rawValue)"
    for (model, folder) in models {
        let source = real + "/" + folder + suffix, target = family + "/" + model
        guard FileManager.default.fileExists(atPath: source + "/model.safetensors") else {
            progress("  real \(dtype.rawValue): \(source) missing; real family skipped")
            return
        }
        try? FileManager.default.removeItem(atPath: target)
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        for name in try FileManager.default.contentsOfDirectory(atPath: source) where !name.hasPrefix(".") {
            var st = stat()
            guard stat(source + "/" + name, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            if link(source + "/" + name, target + "/" + name) != 0 {
                try FileManager.default.copyItem(atPath: source + "/" + name, toPath: target + "/" + name)
            }
        }
    }
    let repos = (0..<o.repeats).map { "\(o.work)/repo-real-\(dtype.rawValue)-\($0)" }
    let rows = try measureFamily(o, family: family, dtype: dtype, repos: repos, mrepo: mrepo, models: models.map(\.0))
    printStorage(rows, o: o, title: "real MiniLM family (all-MiniLM-L6-v2 and three full fine-tunes, every file in `save_file` order)")
    if !o.keep {
        for repo in repos { try? FileManager.default.removeItem(atPath: repo) }
        try? FileManager.default.removeItem(atPath: family)
    }
}

/// Commits base, math, code and chat into `repos.count` identical repositories (each fine-tune on its
/// own branch from the base), exporting each again; the median run of each command counts.
func measureFamily(_ o: Options, family: String, dtype: DType, repos: [String], mrepo: String,
                   models: [String] = ["base"] + FineTune.standardFamily.map(\.name)) throws -> [StorageRow] {
    for repo in repos {
        try? FileManager.default.removeItem(atPath: repo)
        try Subprocess.check([mrepo, "init", "-q", repo])
    }
    var rows: [StorageRow] = []
    for model in models {
        let file = family + "/" + model + "/model.safetensors"
        let bytes = fileSize(file)
        var commits: [Measured] = [], exports: [Measured] = [], compressions: [Measured] = [], decompressions: [Measured] = [], copies: [Measured] = []
        var stored = 0
        let zst = o.work + "/tmp.zst"
        for repo in repos {
            if model != "base" { try Subprocess.check([mrepo, "-C", repo, "switch", "-q", "-c", model, "main"]) }
            try linkCheckpoint(from: family + "/" + model, into: repo)
            // Every timed command starts alike: no dirty pages waiting for the disk, inputs read once (warm).
            let objectsDir = repo + "/.mrepo/objects"
            try settle(warm: [file, objectsDir])
            commits.append(try timedMrepo([mrepo, "-C", repo, "commit", "-q", "-m", model], o, what: "mrepo commit of \(model)"))
            stored = try lastNewStored(try Subprocess.check([mrepo, "-C", repo, "du", "--json"], captureOutput: true).output)
            try settle(warm: [file])
            compressions.append(try Subprocess.check(["zstd", "-T2", "-3", "-f", "-q", file, "-o", zst]))
            let out = o.work + "/export-\(model)"
            try? FileManager.default.removeItem(atPath: out)
            try settle(warm: [objectsDir])
            exports.append(try timedMrepo([mrepo, "-C", repo, "export", "-q", "HEAD", out], o, what: "mrepo export of \(model)"))
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
        // Medians: each command ran once per repository, its reference right after it.
        let median = Measured.median
        let row = StorageRow(dtype: dtype, model: model, fileBytes: bytes, zstdBytes: zstdBytes, storedBytes: stored,
                             commit: median(commits), zstdCompress: median(compressions), export: median(exports),
                             zstdDecompress: median(decompressions), copy: median(copies))
        rows.append(row)
        progress("  \(dtype.rawValue) \(model): stored \(mb(stored)) vs zstd -3 \(mb(zstdBytes)); commit \(secs(row.commit.seconds)), export \(secs(row.export.seconds))")
    }
    return rows
}

/// Commits whose every tensor is already stored, in the repositories `measureFamily` filled: `math`
/// again on a new branch from the base (the same file), and the base in `state_dict()` order over
/// the base in name order (the same tensors in another file).
func measureRecommits(_ o: Options, family: String, reorderedBase: String, rows: [StorageRow], repos: [String], mrepo: String) throws -> [RecommitRow] {
    let cases: [(what: String, branch: String, folder: String, reference: StorageRow?)] = [
        ("`math` again, on a new branch from the base (the same file)", "again-math", family + "/math", rows.first { $0.model == "math" }),
        ("the base in `state_dict()` order over the base in name order (the same tensors, another file)", "again-base", reorderedBase, nil),
    ]
    var out: [RecommitRow] = []
    for c in cases {
        let file = c.folder + "/model.safetensors"
        var commits: [Measured] = [], compressions: [Measured] = []
        var stored = 0
        for repo in repos {
            try Subprocess.check([mrepo, "-C", repo, "switch", "-q", "--force", "-c", c.branch, "main"])
            try linkCheckpoint(from: c.folder, into: repo)
            try settle(warm: [file, repo + "/.mrepo/objects"])
            commits.append(try timedMrepo([mrepo, "-C", repo, "commit", "-q", "-m", c.branch], o, what: "mrepo commit (\(c.branch))"))
            stored = try lastNewStored(try Subprocess.check([mrepo, "-C", repo, "du", "--json"], captureOutput: true).output)
            if c.reference == nil {
                try settle(warm: [file])
                compressions.append(try Subprocess.check(["zstd", "-T2", "-3", "-f", "-q", file, "-o", o.work + "/tmp.zst"]))
                try? FileManager.default.removeItem(atPath: o.work + "/tmp.zst")
            }
        }
        let commit = Measured.median(commits)
        out.append(RecommitRow(what: c.what, fileBytes: fileSize(file), newStoredBytes: stored, commit: commit,
                               zstdCompress: c.reference?.zstdCompress ?? Measured.median(compressions)))
        progress("  re-commit \(c.branch): \(secs(commit.seconds)), new stored \(mb(stored))")
    }
    return out
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

func layoutTitle(_ layout: FamilyLayout) -> String {
    switch layout {
    case .aligned: return ""
    case .reordered: return ", re-ordered: base in `state_dict()` order, fine-tunes as `save_file` writes them"
    }
}

func printStorage(_ rows: [StorageRow], o: Options, layout: FamilyLayout) {
    printStorage(rows, o: o, title: "\(o.arch.name) family\(layoutTitle(layout))")
}

func printStorage(_ rows: [StorageRow], o: Options, title: String) {
    print("### Stored bytes (\(title), through `mrepo commit`)\n")
    header(["dtype", "checkpoint", "file", "`zstd -3`", "mrepo stored", "mrepo / zstd", "target", ""])
    for r in rows {
        let ratio = Double(r.storedBytes) / Double(r.zstdBytes)
        let target = targetFor(r.dtype, r.model)
        let kind = r.model == "base" ? "base" : (r.model == "chat" || r.model == "prose" ? "heavy fine-tune" : "light fine-tune")
        row([r.dtype.rawValue, "\(r.model) (\(kind))", mb(r.fileBytes), mb(r.zstdBytes), mb(r.storedBytes), String(format: "%.3f", ratio),
             target.map { String(format: "≤ %.2f", $0) } ?? "", target.map { verdict(ratio <= $0) } ?? ""])
    }
    print("\n### Speed and memory (\(title), \(o.syncNote))\n")
    print("Reference: `zstd -T2 -3` (for commit) and `zstd -d` (for export) of the same file in the same run; ratio = the reference's time / mrepo's "
        + "(higher is better). Targets: both ratios ≥ 1.0, peak RSS of commit and export < 512 MiB. The CPU ratios compare user + system time "
        + "the same way (medians of the same runs): on a shared machine they move less than wall time.\n")
    header(["dtype", "checkpoint", "`mrepo commit`", "`zstd -T2 -3`", "ratio", "`mrepo export`", "`zstd -d`", "ratio", "`cp`",
            "commit peak RSS", "export peak RSS", "commit CPU ratio", "export CPU ratio"])
    var missed: [String] = []
    for r in rows {
        let commitRatio = r.zstdCompress.seconds / r.commit.seconds
        let exportRatio = r.zstdDecompress.seconds / r.export.seconds
        if commitRatio < 1 { missed.append("commit \(r.model) \(String(format: "%.2f", commitRatio))") }
        if exportRatio < 1 { missed.append("export \(r.model) \(String(format: "%.2f", exportRatio))") }
        if max(r.commit.peakRSSBytes, r.export.peakRSSBytes) >= storagePeakTarget { missed.append("peak RSS \(r.model)") }
        row([r.dtype.rawValue, r.model, mbps(r.fileBytes, r.commit.seconds), mbps(r.fileBytes, r.zstdCompress.seconds),
             String(format: "%.2f", commitRatio), mbps(r.fileBytes, r.export.seconds), mbps(r.fileBytes, r.zstdDecompress.seconds),
             String(format: "%.2f", exportRatio), mbps(r.fileBytes, r.copy.seconds), mib(r.commit.peakRSSBytes), mib(r.export.peakRSSBytes),
             cpuRatio(r.zstdCompress, r.commit), cpuRatio(r.zstdDecompress, r.export)])
    }
    print("\nTargets " + (missed.isEmpty ? "met in every row." : "missed: " + missed.joined(separator: "; ") + ".") + "\n")
}

/// The reference's CPU time over mrepo's.
func cpuRatio(_ reference: Measured, _ mrepo: Measured) -> String {
    mrepo.cpuSeconds > 0 ? String(format: "%.2f", reference.cpuSeconds / mrepo.cpuSeconds) : "–"
}

func printRecommits(_ rows: [RecommitRow], o: Options, dtype: DType) {
    print("### Re-committing stored tensors (\(o.arch.name) family, \(dtype.rawValue), \(o.syncNote))\n")
    print("Every tensor of the committed file is already in the repository. Reference: `zstd -T2 -3` of the same file in the same run; "
        + "ratio = its time / mrepo's. Targets: ratio ≥ 1.0, peak RSS < 512 MiB.\n")
    header(["dtype", "committed", "file", "new stored", "`mrepo commit`", "`zstd -T2 -3`", "ratio", "peak RSS", ""])
    for r in rows {
        let ratio = r.zstdCompress.seconds / r.commit.seconds
        row([dtype.rawValue, r.what, mb(r.fileBytes), String(format: "%.1f kB", Double(r.newStoredBytes) / 1e3), secs(r.commit.seconds), secs(r.zstdCompress.seconds),
             String(format: "%.2f", ratio), mib(r.commit.peakRSSBytes), verdict(ratio >= 1 && r.commit.peakRSSBytes < storagePeakTarget)])
    }
    print("")
}
