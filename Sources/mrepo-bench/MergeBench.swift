import Delta
import Foundation
import ModelFactory

// The merge benchmark: ties and dare_ties of the three fine-tunes, in the storage section's first
// repository, against exporting every input once (the storage section's exports).

struct MergeRow {
    var dtype: DType
    var method: String
    var merge: Measured
    var inputsExport: Double
}

/// Merges the three fine-tunes with each method on its own branch; compares with exporting every input once.
func mergeSection(_ o: Options, repo: String, dtype: DType, layout: FamilyLayout, rows: [StorageRow], mrepo: String) throws -> [MergeRow] {
    let inputsExport = rows.reduce(0) { $0 + $1.export.seconds }
    var out: [MergeRow] = []
    for method in ["ties", "dare_ties"] {
        var runs: [Measured] = []
        for attempt in 0..<o.repeats {
            let branch = "merge-\(method)-\(attempt)"
            try Subprocess.check([mrepo, "-C", repo, "switch", "-q", "--force", "-c", branch, "main"])
            try settle(warm: [repo + "/.mrepo/objects"])
            runs.append(try timedMrepo([mrepo, "-C", repo, "merge", "-q", "math", "code", "chat", "--method", method,
                                        "--set", "density=0.5", "--seed", "1"], o, what: "mrepo merge --method \(method)"))
            try Subprocess.check([mrepo, "-C", repo, "switch", "-q", "--force", "main"])
        }
        let best = Measured.best(runs)
        out.append(MergeRow(dtype: dtype, method: method, merge: best, inputsExport: inputsExport))
        progress("  merge \(method) (\(layout.rawValue) layout): \(secs(best.seconds)), \(mib(best.peakRSSBytes))")
    }
    return out
}

func printMerges(_ rows: [MergeRow], arch: Architecture) {
    guard !rows.isEmpty else { return }
    print("### Merge (\(arch.name) family: three fine-tunes into the base, density 0.5, with the commit and the checkout)\n")
    header(["dtype", "method", "`mrepo merge`", "export of all four inputs", "ratio (target < 2)", "peak RSS (target < 1 GiB)"])
    for dtype in Set(rows.map(\.dtype)).sorted(by: { $0.rawValue > $1.rawValue }) {
        for r in rows where r.dtype == dtype {
            row([r.dtype.rawValue, r.method, secs(r.merge.seconds), secs(r.inputsExport),
                 String(format: "%.2f", r.merge.seconds / r.inputsExport), mib(r.merge.peakRSSBytes)])
        }
    }
    print("")
}
