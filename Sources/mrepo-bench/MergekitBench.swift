import Delta
import Foundation

// Merges against mergekit: the three real MiniLM fine-tunes merged with each deterministic method by
// `mrepo merge --config` and by `mergekit-yaml`, with the same recipes. The recipes, the repository
// set-up and the timing live in scripts/mergekit_parity.py (the parity harness); this section runs
// it with --timing-only and reads its JSON.

/// One recipe per deterministic method, by its name in scripts/mergekit_parity.py's RECIPES.
/// Every method both tools have that takes no seed (mergekit 0.1.5 also has nearswap, sce, nuslerp,
/// multislerp, karcher, ram and arcee_fusion, which mrepo does not; della and dare are seeded).
let mergekitRecipes = ["linear_equal", "task_arithmetic_three", "ties_three", "breadcrumbs_three", "breadcrumbs_ties_three",
                       "slerp_t03", "model_stock_three"]

/// mergekit's venv: $MERGEKIT_VENV, else ~/.cache/mergekit-venv.
func mergekitVenv() -> String {
    ProcessInfo.processInfo.environment["MERGEKIT_VENV"] ?? (NSHomeDirectory() + "/.cache/mergekit-venv")
}

struct MergekitRow {
    var recipe: String
    var about: String
    var mergekitSeconds: Double
    var mergekitPeakBytes: Int
    var mrepoSeconds: Double
    var mrepoPeakBytes: Int
    var error: String?
}

func mergekitSection(_ o: Options, mrepo: String) throws {
    let title = "### Merges against mergekit (the three real MiniLM fine-tunes, float32)\n"
    guard let real = o.realData else {
        print(title + "\nSkipped: no real checkpoints (shared/data/make-real-checkpoints.sh; --realdata or $REALDATA).\n")
        return
    }
    let venv = mergekitVenv()
    guard FileManager.default.isExecutableFile(atPath: venv + "/bin/mergekit-yaml") else {
        print(title + "\nSkipped: no mergekit in \(venv) (set $MERGEKIT_VENV to a venv with mergekit 0.1.5, torch, numpy and safetensors).\n")
        return
    }
    let scripts = try scriptsDirectory()
    let json = o.work + "/mergekit-timing.json"
    let work = o.work + "/mergekit"
    try? FileManager.default.removeItem(atPath: json)
    var env = o.mrepoEnvironment
    env["MERGEKIT_VENV"] = venv
    progress("mergekit: \(mergekitRecipes.count) recipes, \(o.repeats) run(s) of each tool (scripts/mergekit-parity.sh --timing-only)")
    let m = try Subprocess.run([scripts + "/mergekit-parity.sh", "--mrepo", mrepo, "--data", real, "--timing-only",
                                "--repeat", "\(o.repeats)", "--only", mergekitRecipes.joined(separator: ","),
                                "--json", json, "--work", work] + (o.keep ? ["--keep"] : []),
                               captureOutput: true, environment: env)
    if !o.keep { try? FileManager.default.removeItem(atPath: work) }
    guard m.status == 0, let bytes = FileManager.default.contents(atPath: json), let doc = try? JSONValue.parse(Array(bytes)) else {
        let tail = m.output.split(separator: "\n").suffix(8).joined(separator: "\n")
        throw BenchError("scripts/mergekit-parity.sh --timing-only failed (exit \(m.status)):\n\(tail)")
    }
    // The median of the runs (each tool's wall time and peak RSS separately); one run: that run.
    func median(_ tool: JSONValue?, _ key: String) -> Double {
        let values = (tool?["runs"]?.arrayValue ?? []).compactMap { $0[key]?.doubleValue }.sorted()
        guard !values.isEmpty else { return tool?[key]?.doubleValue ?? 0 }
        return values.count % 2 == 1 ? values[values.count / 2] : (values[values.count / 2 - 1] + values[values.count / 2]) / 2
    }
    let rows = (doc["recipes"]?.arrayValue ?? []).map { r in
        MergekitRow(recipe: r["name"]?.stringValue ?? "?", about: r["about"]?.stringValue ?? "",
                    mergekitSeconds: median(r["mergekit"], "wall_s"),
                    mergekitPeakBytes: Int(median(r["mergekit"], "peak_rss_kib")) * 1024,
                    mrepoSeconds: median(r["mrepo_merge"], "wall_s"),
                    mrepoPeakBytes: Int(median(r["mrepo_merge"], "peak_rss_kib")) * 1024,
                    error: r["error"]?.stringValue)
    }
    printMergekit(rows, o: o, mergekitVersion: doc["mergekit_version"]?.stringValue ?? "?", torchVersion: doc["torch_version"]?.stringValue ?? "?")
    if !o.keep { try? FileManager.default.removeItem(atPath: json) }
}

func printMergekit(_ rows: [MergekitRow], o: Options, mergekitVersion: String, torchVersion: String) {
    print("### Merges against mergekit (the three real MiniLM fine-tunes, float32)\n")
    print("Reference: `mergekit-yaml RECIPE OUT --copy-tokenizer --no-cuda` (mergekit \(mergekitVersion), torch \(torchVersion), CPU) on the "
        + "checkpoint folders, in the same run. mrepo: `mrepo merge --config RECIPE` of the same recipe on a branch of a repository holding "
        + "the four models, including the merge commit and writing the merged model into the working tree (\(o.syncNote)); "
        + "every run is a first merge of its recipe, on a fresh copy of that repository (no earlier result stored). "
        + "Each tool's median of \(o.repeats) run(s) (wall time and peak RSS each). Targets: mrepo ≥ 10 × faster (speed ratio = mergekit's "
        + "time / mrepo's), at ≤ 0.25 × mergekit's peak RSS.\n")
    header(["recipe", "mergekit", "`mrepo merge`", "speed ratio (≥ 10)", "mergekit peak RSS", "mrepo peak RSS", "RSS ratio (≤ 0.25)", ""])
    for r in rows {
        if let e = r.error {
            row([r.about, "-", "-", "-", "-", "-", "-", "failed: " + (e.split(separator: "\n").first.map(String.init) ?? "")])
            continue
        }
        let speed = r.mergekitSeconds / max(r.mrepoSeconds, 1e-9)
        let memory = Double(r.mrepoPeakBytes) / Double(max(r.mergekitPeakBytes, 1))
        row([r.about, secs(r.mergekitSeconds), secs(r.mrepoSeconds), String(format: "%.1f", speed), mib(r.mergekitPeakBytes),
             mib(r.mrepoPeakBytes), String(format: "%.2f", memory), verdict(speed >= 10 && memory <= 0.25)])
    }
    print("")
}
