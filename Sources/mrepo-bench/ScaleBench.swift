import Delta
import Foundation
import ModelFactory

// The 3B-scale run (off by default: --sections scale3b): a Llama-3.2-3B-shaped bf16 family, written
// by `mrepo synth` as Hugging Face writes checkpoints (two shards with an index, each file in
// `save_file`'s order), committed, exported and merged through the binary. Time should grow with
// the bytes (compare the seconds per GB with the 1.2 GB family's), memory should not.

/// Peak RSS target at any scale.
let scalePeakTarget = 1 << 30

struct ScaleStep {
    var what: String
    var bytes: Int
    var run: Measured
    var reference: String
    var referenceSeconds: Double
    /// The target of run / reference (nil: reference / run ≥ 1, i.e. at least the reference's speed).
    var maxRatio: Double?
}

func scaleSection(_ o: Options, mrepo: String) throws {
    let arch = o.scaleArch
    let checkpointBytes = arch.parameterCount * DType.bf16.byteSize
    let fineTunes = ["math", "chat"]
    let family = "\(o.work)/scale-\(arch.name)"
    let title = "### Scale (\(arch.name): \(String(format: "%.3g", Double(arch.parameterCount) / 1e9)) B parameters, \(gb(checkpointBytes)) per bf16 checkpoint, "
        + "2 shards each in `save_file`'s order; base, `math` (light) and `chat` (heavy) fine-tunes)\n"
    // The family (3 checkpoints), the store (about 1.6 checkpoints), and one checkpoint's zstd file,
    // decompressed copy or export at a time (1.8).
    let generated = FileManager.default.fileExists(atPath: family + "/.complete")
    let needed = Int(Double(checkpointBytes) * (generated ? 3.5 : 6.5)) + (1 << 30)
    let free = freeBytes(o.work)
    guard free >= needed else {
        print(title + "\nSkipped: needs about \(gb(needed)) of free disk in \(o.work), \(gb(free)) free (--work elsewhere, or free some space).\n")
        progress("scale3b skipped: needs about \(gb(needed)) free in \(o.work), \(gb(free)) free")
        return
    }
    try generateOnce(family, what: "\(arch.name) bf16 family (mrepo synth)") {
        try Subprocess.check([mrepo, "synth", family, "--size", arch.name, "--dtype", "BF16", "--shards", "2", "--order", "save-file",
                              "--fine-tunes", fineTunes.joined(separator: ",")])
    }
    let repo = o.work + "/repo-scale"
    try? FileManager.default.removeItem(atPath: repo)
    try Subprocess.check([mrepo, "init", "-q", repo])
    var steps: [ScaleStep] = []
    var exportSeconds = 0.0
    for model in ["base"] + fineTunes {
        let folder = family + "/" + model
        let shards = safetensorsFiles(folder)
        let bytes = shards.reduce(0) { $0 + fileSize($1) }
        if model != "base" { try Subprocess.check([mrepo, "-C", repo, "switch", "-q", "-c", model, "main"]) }
        try linkCheckpoint(from: folder, into: repo)
        try settle(warm: shards + [repo + "/.mrepo/objects"])
        let commit = try timedMrepo([mrepo, "-C", repo, "commit", "-q", "-m", model], o, what: "mrepo commit of \(model)")
        progress("  scale: commit \(model) \(secs(commit.seconds)), \(mib(commit.peakRSSBytes))")
        // References on the same shards: zstd -T2 -3, then zstd -d of its output.
        var compress = 0.0, decompress = 0.0
        for shard in shards {
            let zst = o.work + "/scale.zst", restored = o.work + "/scale.restored"
            try settle(warm: [shard])
            compress += try Subprocess.check(["zstd", "-T2", "-3", "-f", "-q", shard, "-o", zst]).seconds
            try settle(warm: [zst])
            decompress += try Subprocess.check(["zstd", "-d", "-f", "-q", zst, "-o", restored]).seconds
            for p in [zst, restored] { try? FileManager.default.removeItem(atPath: p) }
        }
        let out = o.work + "/scale-export"
        try? FileManager.default.removeItem(atPath: out)
        try settle(warm: [repo + "/.mrepo/objects"])
        let export = try timedMrepo([mrepo, "-C", repo, "export", "-q", model == "base" ? "main" : model, out], o, what: "mrepo export of \(model)")
        for shard in shards { try Subprocess.check(["cmp", "-s", shard, out + "/" + URL(fileURLWithPath: shard).lastPathComponent]) }
        try? FileManager.default.removeItem(atPath: out)
        exportSeconds += export.seconds
        progress("  scale: export \(model) \(secs(export.seconds)), \(mib(export.peakRSSBytes))")
        steps.append(ScaleStep(what: "`commit` \(model)", bytes: bytes, run: commit, reference: "`zstd -T2 -3`", referenceSeconds: compress, maxRatio: nil))
        steps.append(ScaleStep(what: "`export` \(model)", bytes: bytes, run: export, reference: "`zstd -d`", referenceSeconds: decompress, maxRatio: nil))
    }
    // The inputs are in the store now; the working tree holds links to the last fine-tune only.
    if !o.keep { try? FileManager.default.removeItem(atPath: family) }
    try Subprocess.check([mrepo, "-C", repo, "switch", "-q", "-c", "merged", "main"])
    try settle(warm: [repo + "/.mrepo/objects"])
    let merge = try timedMrepo([mrepo, "-C", repo, "merge", "-q"] + fineTunes + ["--method", "ties", "--set", "density=0.5", "--seed", "1"], o,
                               what: "mrepo merge --method ties")
    progress("  scale: ties merge \(secs(merge.seconds)), \(mib(merge.peakRSSBytes))")
    steps.append(ScaleStep(what: "`merge --method ties` (\(fineTunes.joined(separator: " + "))), with the commit and the checkout",
                           bytes: checkpointBytes, run: merge, reference: "the three exports above", referenceSeconds: exportSeconds, maxRatio: 2))
    if !o.keep { try? FileManager.default.removeItem(atPath: repo) }
    printScale(steps, title: title, o: o)
}

func printScale(_ steps: [ScaleStep], title: String, o: Options) {
    print(title)
    print("One run of each command (\(o.syncNote)). References on the same shards in the same run; for commit and export the ratio is "
        + "the reference's time / mrepo's (target ≥ 1), for the merge mrepo's time / the exports of its three inputs (target < 2). "
        + "Time should be proportional to the bytes: compare the seconds per GB with the 1.2 GB family's. Peak RSS target: < 1 GiB.\n")
    header(["step", "bytes", "time", "s/GB", "speed", "reference", "reference time", "ratio", "peak RSS", ""])
    for s in steps {
        let ratio = s.maxRatio == nil ? s.referenceSeconds / max(s.run.seconds, 1e-9) : s.run.seconds / max(s.referenceSeconds, 1e-9)
        let met = (s.maxRatio.map { ratio < $0 } ?? (ratio >= 1)) && s.run.peakRSSBytes < scalePeakTarget
        row([s.what, gb(s.bytes), secs(s.run.seconds), String(format: "%.2f", s.run.seconds / (Double(s.bytes) / 1e9)), mbps(s.bytes, s.run.seconds),
             s.reference, secs(s.referenceSeconds), String(format: "%.2f", ratio), mib(s.run.peakRSSBytes), verdict(met)])
    }
    print("")
}
