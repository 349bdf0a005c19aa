import Delta
import Foundation
import ModelFactory

// The reversible-merge benchmark: 8 LoRA adapters (rank 16, every attention and MLP projection)
// of the generated base, merged with `--method rmm` for K = 1 … 7, one expert reverted.

struct RMMRun {
    var k: Int
    var merge: Measured
    var meanError: Double
    var maxError: Double
    var globalError: Double
    var storedBytes: Int
    var expertBytes: Int
    var parameterRatio: Double
    var formulaRatio: Double?
}

func rmmSection(_ o: Options, arch: Architecture, mrepo: String) throws {
    let n = 8, rank = 16
    let folder = "\(o.work)/rmm-\(arch.name)"
    let factory = ModelFactory(architecture: arch, dtype: .f32)
    let specs = (0..<n).map { LoRASpec(name: "lora-\($0 + 1)", seed: 201 + UInt64($0), rank: rank, alpha: Double(2 * rank), targets: LoRASpec.allProjections) }
    try generateOnce(folder, what: "\(arch.name) base and \(n) adapters") {
        try factory.writeCheckpoint(to: folder + "/base")
        for s in specs { try factory.writeAdapter(s, to: folder + "/" + s.name) }
    }
    let env = o.mrepoEnvironment
    let repo = o.work + "/repo-rmm"
    try? FileManager.default.removeItem(atPath: repo)
    try Subprocess.check([mrepo, "init", "-q", repo])
    try Subprocess.check([mrepo, "-C", repo, "commit", "-q", "--from", folder + "/base", "-m", "base"])
    for s in specs {
        try Subprocess.check([mrepo, "-C", repo, "switch", "-q", "-c", s.name, "main"])
        try Subprocess.check([mrepo, "-C", repo, "commit", "-q", "--from", folder + "/" + s.name, "-m", s.name])
    }
    try Subprocess.check([mrepo, "-C", repo, "switch", "-q", "main"])
    let adapterBytes = specs.reduce(0) { $0 + fileSize(folder + "/" + $1.name + "/adapter_model.safetensors") }
    // Reference: reading every input once (exporting the 8 adapters).
    var exportAll = 0.0
    for s in specs {
        let out = o.work + "/rmm-export-\(s.name)"
        try? FileManager.default.removeItem(atPath: out)
        try settle(warm: [repo + "/.mrepo/objects"])
        exportAll += try Subprocess.check([mrepo, "-C", repo, "export", "-q", s.name, out]).seconds
        try? FileManager.default.removeItem(atPath: out)
    }
    func merge(_ k: Int, baselines: Bool, branch: String) throws -> (Measured, JSONValue) {
        try Subprocess.check([mrepo, "-C", repo, "switch", "-q", "--force", "-c", branch, "main"])
        try settle(warm: [repo + "/.mrepo/objects"])
        let m = try Subprocess.run([mrepo, "-C", repo, "merge", "--json", "--method", "rmm", "--basis", "\(k)", "--set", "baselines=\(baselines)"]
            + specs.map(\.name), captureOutput: true, environment: env)
        guard m.status == 0, let json = try? JSONValue.parse(Array(m.output.utf8)) else { throw BenchError("mrepo merge --method rmm --basis \(k) failed") }
        return (m, json)
    }
    var runs: [RMMRun] = []
    for k in 1..<n {
        let (m, json) = try merge(k, baselines: false, branch: "rmm-\(k)")
        let experts = json["experts"]?.arrayValue ?? []
        let storage = json["storage"]
        runs.append(RMMRun(k: k, merge: m,
                           meanError: experts.compactMap { $0["mean_error"]?.doubleValue }.reduce(0, +) / Double(max(experts.count, 1)),
                           maxError: experts.compactMap { $0["max_error"]?.doubleValue }.max() ?? 0,
                           globalError: experts.compactMap { $0["global_error"]?.doubleValue }.reduce(0, +) / Double(max(experts.count, 1)),
                           storedBytes: storage?["stored_bytes"]?.intValue ?? 0, expertBytes: storage?["expert_bytes"]?.intValue ?? 0,
                           parameterRatio: storage?["parameter_ratio"]?.doubleValue ?? 0, formulaRatio: storage?["formula_ratio"]?.doubleValue))
        FileHandle.standardError.write(Data("  rmm K=\(k): \(String(format: "%.2f", m.seconds)) s, \(m.peakRSSBytes / 1_048_576) MiB, mean error \(String(format: "%.4f", runs.last!.meanError))\n".utf8))
    }
    // One merge with the baselines (N dense task vectors per module).
    let (withBaselines, baselineJSON) = try merge(3, baselines: true, branch: "rmm-3-baselines")
    // Revert one expert, against checking out the committed expert; fold it, against folding the committed one.
    let expert = specs[4].name
    try Subprocess.check([mrepo, "-C", repo, "switch", "-q", "--force", "main"])
    try settle(warm: [repo + "/.mrepo/objects"])
    let revert = try Subprocess.run([mrepo, "-C", repo, "checkout", "-q", "rmm-3", "--expert", expert], environment: env)
    guard revert.status == 0 else { throw BenchError("checkout --expert failed") }
    try Subprocess.check([mrepo, "-C", repo, "switch", "-q", "--force", "main"])
    try settle(warm: [repo + "/.mrepo/objects"])
    let plain = try Subprocess.run([mrepo, "-C", repo, "switch", "-q", expert], environment: env)
    try Subprocess.check([mrepo, "-C", repo, "switch", "-q", "--force", "main"])
    let foldOut = o.work + "/rmm-fold"
    try? FileManager.default.removeItem(atPath: foldOut)
    try settle(warm: [repo + "/.mrepo/objects"])
    let foldRebuilt = try Subprocess.run([mrepo, "-C", repo, "export", "-q", "rmm-3", foldOut, "--expert", expert, "--fold"], environment: env)
    try? FileManager.default.removeItem(atPath: foldOut)
    try settle(warm: [repo + "/.mrepo/objects"])
    let foldCommitted = try Subprocess.run([mrepo, "-C", repo, "export", "-q", expert, foldOut, "--fold"], environment: env)
    try? FileManager.default.removeItem(atPath: foldOut)
    guard foldRebuilt.status == 0, foldCommitted.status == 0 else { throw BenchError("export --fold failed") }

    let modules = factory.loraModules(specs[0]).count
    print("### Reversible merge (\(n) LoRA adapters, r = \(rank), \(modules) modules: every attention and MLP projection of the \(arch.name) base)\n")
    print("Adapters: \(mb(adapterBytes)) of safetensors together. Reference for the merge time: exporting all \(n) adapters, \(String(format: "%.2f s", exportAll)).\n")
    print("| K | `mrepo merge --method rmm` | ratio to exporting the inputs | peak RSS | mean error per tensor | max error | whole-vector error | basis stored | basis / adapters (Float32 values) | formula (k(r+N)+r)/(rN) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs {
        let cells = ["\(r.k)", String(format: "%.2f s", r.merge.seconds), String(format: "%.2f", r.merge.seconds / exportAll),
                     "\(r.merge.peakRSSBytes / 1_048_576) MiB", String(format: "%.4f", r.meanError), String(format: "%.4f", r.maxError),
                     String(format: "%.4f", r.globalError), mb(r.storedBytes), String(format: "%.3f", r.parameterRatio),
                     r.formulaRatio.map { String(format: "%.3f", $0) } ?? "-"]
        print("| " + cells.joined(separator: " | ") + " |")
    }
    print("\nWith the baselines (K = 3, N dense task vectors per module): \(String(format: "%.2f s", withBaselines.seconds)), peak RSS \(withBaselines.peakRSSBytes / 1_048_576) MiB. "
        + "Relative reconstruction error of each expert's ΔW, mean / max over tensors and experts:\n")
    print("| method | mean | max |")
    print("|---|---|---|")
    let k3 = runs.first { $0.k == 3 }
    if let k3 { print("| rmm, K = 3 | \(String(format: "%.4f", k3.meanError)) | \(String(format: "%.4f", k3.maxError)) |") }
    for b in baselineJSON["baselines"]?.arrayValue ?? [] {
        print("| \(b["name"]?.stringValue ?? "") | \(String(format: "%.4f", b["mean_error"]?.doubleValue ?? 0)) | \(String(format: "%.4f", b["max_error"]?.doubleValue ?? 0)) |")
    }
    print("\n| revert one expert (K = 3) | time | reference | ratio | peak RSS |")
    print("|---|---|---|---|---|")
    print("| `checkout rmm-3 --expert \(expert)` | \(String(format: "%.2f s", revert.seconds)) | `switch \(expert)` (the committed adapter): \(String(format: "%.2f s", plain.seconds)) | \(String(format: "%.2f", revert.seconds / max(plain.seconds, 1e-9))) | \(revert.peakRSSBytes / 1_048_576) MiB |")
    print("| `export rmm-3 DIR --expert \(expert) --fold` | \(String(format: "%.2f s", foldRebuilt.seconds)) | `export \(expert) DIR --fold`: \(String(format: "%.2f s", foldCommitted.seconds)) | \(String(format: "%.2f", foldRebuilt.seconds / max(foldCommitted.seconds, 1e-9))) | \(foldRebuilt.peakRSSBytes / 1_048_576) MiB |")
    print("")
    if !o.keep {
        try? FileManager.default.removeItem(atPath: repo)
        try? FileManager.default.removeItem(atPath: folder)
    }
}
