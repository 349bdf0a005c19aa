import Delta
import Foundation
import Merge
import Repo

/// The text summary of a reversible merge, shared by `merge` and `experts`.
enum ReversiblePrinter {
    static func summary(_ r: ReversibleMergeReport, commit: ObjectID) {
        print("RMM \(r.variant) basis K = \(r.basis) over \(r.experts.count) \(r.kind == .adapter ? "adapters" : "full fine-tunes"), \(r.modules.count) modules\(r.center ? "" : " (uncentred)")")
        for remark in r.remarks { print("  note: \(remark)") }
        let rows = r.experts.map { e in
            [e.name, String(e.commit.prefix(12)), r.kind == .full && r.variant == .dense ? "dense" : "\(e.rank)", Format.number(e.meanError, digits: 4), Format.number(e.maxError, digits: 4),
             Format.number(e.globalError, digits: 4), Format.number(e.retainedEnergy, digits: 4)]
        }
        print(Format.table(["expert", "commit", "rank", "mean err", "max err", "whole err", "retained"], rows, right: [2, 3, 4, 5, 6]))
        var storage = "Storage: basis \(Format.bytes(r.storedBytes)) against \(Format.bytes(r.expertBytes)) for the \(r.experts.count) experts"
            + (r.kind == .full ? (r.variant == .dense ? " (their dense task vectors, in Float32)" : " (their rank-\(r.experts.first?.rank ?? 0) reductions, in Float32)") : "")
        storage += String(format: "; %.1f%% of their Float32 values", 100 * r.parameterRatio)
        if let f = r.formulaRatio { storage += String(format: " (formula (k(r+N)+r)/(rN) = %.1f%%)", 100 * f) }
        print(storage)
        if !r.baselines.isEmpty {
            print("One merged model instead, relative reconstruction error of each expert's ΔW (mean / max over tensors and experts):")
            let rmm = ReversibleMergeReport.meanAndMax(r.experts.map(\.meanError)), rmmMax = ReversibleMergeReport.meanAndMax(r.experts.map(\.maxError)).max
            var rows = [["rmm (this merge)", Format.number(rmm.mean, digits: 4), Format.number(rmmMax, digits: 4)]]
            rows += r.baselines.map { [$0.name, Format.number($0.meanError, digits: 4), Format.number($0.maxError, digits: 4)] }
            print(Format.table(["method", "mean", "max"], rows, right: [1, 2]))
        }
        print(String(format: "View: task arithmetic (λ = %@) of the rebuilt experts at rank %d (keeps %.1f%% of its energy). Rebuild an expert: mrepo checkout %@ --expert NAME",
                     Format.number(r.viewLambda, digits: 2), r.viewRank, 100 * r.viewRetainedEnergy, commit.short))
    }
}
