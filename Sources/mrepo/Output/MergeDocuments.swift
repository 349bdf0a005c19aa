import Delta
import Foundation
import Merge
import Repo

// The `--json` documents of diff, merge and experts (the reports themselves encode in Merge:
// ``ConflictReport`` and ``ReversibleMergeReport`` are `Encodable`). Keys as documented in
// docs/guide.md; a key is renamed only with a changelog entry.

/// `diff --json` between two trees (and `log -p --json`'s diffs).
struct DiffDocument: Encodable {
    struct File: Encodable {
        var path: String
        var status: String
    }

    struct Tensor: Encodable {
        var name: String
        var path: String
        var status: String
        var oldDType: OrNull<String>
        var newDType: OrNull<String>
        var oldShape: OrNull<[Int]>
        var newShape: OrNull<[Int]>
        var elements: Int
        var l2Change: Number
        var relativeChange: Number
        var changedFraction: Number
        var cosine: Number

        enum CodingKeys: String, CodingKey {
            case name, path, status, oldDType = "old_dtype", newDType = "new_dtype", oldShape = "old_shape", newShape = "new_shape"
            case elements, l2Change = "l2_change", relativeChange = "relative_change", changedFraction = "changed_fraction", cosine
        }
    }

    var old: String
    var new: String
    var oldCommit: OrNull<String>
    var newCommit: OrNull<String>
    var mergeBase: OrNull<String>
    var different: Bool
    var files: [File]
    var tensors: [Tensor]

    enum CodingKeys: String, CodingKey {
        case old, new, oldCommit = "old_commit", newCommit = "new_commit", mergeBase = "merge_base", different, files, tensors
    }

    /// - Parameter all: list unchanged tensors too.
    init(_ report: DiffReport, all: Bool) {
        old = report.oldName
        new = report.newName
        oldCommit = OrNull(report.oldCommit?.hex)
        newCommit = OrNull(report.newCommit?.hex)
        mergeBase = OrNull(report.mergeBase?.hex)
        different = DiffPrinter.isDifferent(report)
        files = report.files.map { File(path: $0.path, status: $0.status.rawValue) }
        tensors = (all ? report.tensors : report.changedTensors).map { t in
            Tensor(name: t.name, path: t.path, status: t.status.rawValue, oldDType: OrNull(t.oldDType?.rawValue),
                   newDType: OrNull(t.newDType?.rawValue), oldShape: OrNull(t.oldShape), newShape: OrNull(t.newShape),
                   elements: t.elementCount, l2Change: Number(t.changeNorm), relativeChange: Number(t.relativeChange),
                   changedFraction: Number(t.changedFraction), cosine: Number(t.cosine))
        }
    }
}

/// `diff --json` between two adapter commits: per module, from the factors.
struct AdapterDiffDocument: Encodable {
    struct Module: Encodable {
        var module: String
        var baseTensor: String
        var oldRank: OrNull<Int>
        var newRank: OrNull<Int>
        var oldNorm: Number
        var newNorm: Number
        var cosine: Number
        var differenceNorm: Number
        var oldEffectiveRank: Number
        var newEffectiveRank: Number

        enum CodingKeys: String, CodingKey {
            case module, baseTensor = "base_tensor", oldRank = "old_rank", newRank = "new_rank", oldNorm = "old_norm"
            case newNorm = "new_norm", cosine, differenceNorm = "difference_norm"
            case oldEffectiveRank = "old_effective_rank", newEffectiveRank = "new_effective_rank"
        }
    }

    var old: String
    var new: String
    var oldCommit: String
    var newCommit: String
    var oldBase: String
    var newBase: String
    var modules: [Module]

    enum CodingKeys: String, CodingKey {
        case old, new, oldCommit = "old_commit", newCommit = "new_commit", oldBase = "old_base", newBase = "new_base", modules
    }

    init(_ r: AdapterDiffReport) {
        old = r.oldName
        new = r.newName
        oldCommit = r.oldCommit.hex
        newCommit = r.newCommit.hex
        oldBase = r.oldBase.hex
        newBase = r.newBase.hex
        modules = r.rows.map { m in
            Module(module: m.module, baseTensor: m.baseTensor, oldRank: OrNull(m.oldRank), newRank: OrNull(m.newRank),
                   oldNorm: Number(m.oldNorm), newNorm: Number(m.newNorm), cosine: Number(m.cosine),
                   differenceNorm: Number(m.differenceNorm), oldEffectiveRank: Number(m.oldEffectiveRank),
                   newEffectiveRank: Number(m.newEffectiveRank))
        }
    }
}

/// `merge --json`: the outcome, then the conflict report's members (``ConflictReport``).
struct MergeOutcomeHead: Encodable {
    /// `committed`, `fast-forward`, `up-to-date`, `conflicted`, `ready` or `planned`.
    var status: String
    var mergeBase: OrNull<String>
    var estimatedPeakBytes: Int
    /// The new commit (committed) or the commit HEAD moved to (fast-forward); absent otherwise.
    var commit: String?

    enum CodingKeys: String, CodingKey {
        case status, mergeBase = "merge_base", estimatedPeakBytes = "estimated_peak_bytes", commit
    }

    init(_ outcome: MergeOutcome) {
        switch outcome.status {
        case let .committed(c): status = "committed"; commit = c.id.hex
        case let .fastForward(id): status = "fast-forward"; commit = id.hex
        case .upToDate: status = "up-to-date"
        case .conflicted: status = "conflicted"
        case .ready: status = "ready"
        case .planned: status = "planned"
        }
        mergeBase = OrNull(outcome.base?.hex)
        estimatedPeakBytes = outcome.estimatedPeakBytes
    }
}

/// `merge --json` of a reversible merge: the status and commit, then the report's members
/// (``ReversibleMergeReport``).
struct ReversibleMergeHead: Encodable {
    var status = "committed"
    var commit: String
}

/// `experts --json`: the merge commit, then the report's members (``ReversibleMergeReport``).
struct ExpertsHead: Encodable {
    var commit: String
}

/// `merge --abort --json`.
struct MergeAbortDocument: Encodable {
    var aborted = true
    var head: OrNull<String>
}

/// `merge --continue --json`.
struct MergeFinishDocument: Encodable {
    var commit: String
    var branch: OrNull<String>
    var warnings: [String]
    /// Tracked files whose local changes stay out of the merge commit (still local changes).
    var keptLocalChanges: [String]

    enum CodingKeys: String, CodingKey {
        case commit, branch, warnings, keptLocalChanges = "kept_local_changes"
    }

    /// What `merge --continue` (and `commit` during a merge) prints once the merge is committed.
    static func present(_ commit: Commit, branch: String?, warnings: [String], keptLocal kept: [String], json: Bool, quiet: Bool) throws {
        for w in warnings { ErrorReporter.warn(w) }
        if json {
            try printJSON(MergeFinishDocument(commit: commit.id.hex, branch: OrNull(branch), warnings: warnings, keptLocalChanges: kept))
        } else if !quiet {
            print("[\(branch ?? "detached HEAD") \(commit.id.short)] \(commit.subject)")
            if !kept.isEmpty {
                let list = kept.prefix(5).map(DisplayText.escaping).joined(separator: ", ") + (kept.count > 5 ? " and \(kept.count - 5) more" : "")
                print(" local changes kept out of the merge commit: \(list) ('mrepo diff' shows them)")
            }
        }
    }
}

/// One method of `merge --list-methods --json`.
struct MethodDocument: Encodable {
    var id: String
    var name: String
    var summary: String
    var paper: String
    var requiresBase: Bool
    var tensorByTensor: Bool

    enum CodingKeys: String, CodingKey {
        case id, name, summary, paper, requiresBase = "requires_base", tensorByTensor = "tensor_by_tensor"
    }

    init(_ m: any MergeMethod.Type) {
        id = m.id
        name = m.displayName
        summary = m.summary
        paper = m.paper
        requiresBase = m.requiresBase
        tensorByTensor = m.mergesTensorByTensor
    }
}
