import Delta
import Foundation

/// What `checkout` and `export` write from a commit: its files as committed, or a model generated
/// from it. The one place that decides between a plain tree, an adapter and a reversible merge.
public enum Materialization: Sendable, Equatable {
    /// The commit's files, as committed.
    case tree
    /// An adapter commit (or a reversible merge's adapter view) folded into its base: θ_base + ΔW.
    case folded
    /// An expert rebuilt from a reversible merge; `fold` writes the dense model of an adapter expert.
    case expert(String, fold: Bool)
    /// A view of a reversible merge (`ta`, `ta-full`, `mean`); `fold` as for an expert.
    case view(ReversibleView, fold: Bool)

    /// The materialisation the command-line flags name (`--expert`, `--view`, `--fold`).
    public init(expert: String?, view: ReversibleView?, fold: Bool) {
        if let expert {
            self = .expert(expert, fold: fold)
        } else if let view {
            self = .view(view, fold: fold)
        } else {
            self = fold ? .folded : .tree
        }
    }

    /// The arguments of the rebuild functions.
    var rebuild: (expert: String?, view: ReversibleView?, fold: Bool) {
        switch self {
        case .tree: return (nil, nil, false)
        case .folded: return (nil, nil, true)
        case let .expert(name, fold): return (name, nil, fold)
        case let .view(view, fold): return (nil, view, fold)
        }
    }
}

extension Repository {
    /// Writes a commit, or a model generated from it, into `directory` (created if missing; a folder
    /// holding files the output does not name is refused unless `clean`).
    ///
    /// `REV:path` exports one file or folder of the tree; `clean` deletes files the output does not name.
    /// `noStatistics` leaves the statistics folder (`mrepo_stats/`) out of a commit's files.
    public func export(_ revision: String, as what: Materialization, to directory: String, clean: Bool = false,
                       noStatistics: Bool = false) throws -> ExportResult {
        var result: ExportResult
        switch what {
        case .tree:
            if let (rev, path) = Repository.splitPathRevision(revision) {
                result = try export(rev, to: directory, only: path, clean: clean, noStatistics: noStatistics)
            } else {
                result = try export(revision, to: directory, clean: clean, noStatistics: noStatistics)
            }
        case .folded, .expert, .view:
            let r = what.rebuild
            result = try exportReversible(revision, view: r.view, expert: r.expert, fold: r.fold, to: directory, clean: clean)
        }
        let exported = try commit(result.commit)
        result.lossy = try exported.record(LossyRecord.self)
        if result.lossy == nil, what.rebuild.fold {
            // A fold writes the base model's weights too: approximate where the base is a lossy commit.
            if let base = try exported.record(AdapterRecord.self)?.base ?? exported.record(ReversibleMergeRecord.self)?.base,
               let lossy = try commit(base).record(LossyRecord.self) {
                result.lossy = lossy
                result.lossyCommit = base
            }
        }
        return result
    }

    /// Checks out a commit (`@{-N}`: the branch HEAD was on before the N-th last switch), or writes a model generated from it over HEAD's files (HEAD is then
    /// detached at the commit, and `status` compares against what was written).
    /// - Returns: the checkout and, for a generated model, what the working tree holds.
    public func checkout(_ revision: String, as what: Materialization, force: Bool = false,
                         wait: Bool = false) throws -> (CheckoutResult, description: String?) {
        // `checkout -` (spelled @{-1} by then): the branch HEAD was on before.
        let revision = try previousBranchReference(revision) ?? revision
        switch what {
        case .tree:
            return (try checkout(revision, force: force, wait: wait), nil)
        case .folded, .expert, .view:
            let r = what.rebuild
            let (result, description) = try checkoutReversible(revision, view: r.view, expert: r.expert, fold: r.fold, force: force, wait: wait)
            return (result, description)
        }
    }
}
