import Delta
import Foundation

/// What `mrepo merge` is asked to do: start a merge, or finish or abandon the one in progress.
public enum MergeAction: Sendable {
    /// Merge the branches the options name.
    case start(MergeOptions)
    /// Commit a merge whose conflicts are resolved (`--continue`); nil keeps the prepared message.
    case finish(message: String?)
    /// `commit` during a merge: as `finish`, but refused while tracked files differ from what the
    /// merge wrote (git's commit would record them; `--continue` keeps them as local changes).
    case commit(message: String?)
    /// Abandon the merge in progress (`--abort`): branches and the working tree return to how they were.
    case abort
}

/// What `mrepo merge` did.
public enum MergeActionResult: Sendable {
    /// A merge ran (committed, fast-forwarded, stopped on conflicts, planned…).
    case merged(MergeOutcome)
    /// The merge in progress was committed on `branch` (nil: detached HEAD); `keptLocal` lists the
    /// tracked files whose local changes stay out of the commit, as local changes.
    case finished(Commit, branch: String?, warnings: [String], keptLocal: [String])
    /// The merge in progress was abandoned; HEAD is at `head` again.
    case aborted(head: ObjectID?)
}

extension Repository {
    /// `mrepo merge`: the one entry point of the command, whichever of its modes was asked for.
    public func merge(_ action: MergeAction, wait: Bool = false) throws -> MergeActionResult {
        switch action {
        case let .start(options):
            return .merged(try merge(options, wait: wait))
        case let .finish(message):
            return try finished(continueMerge(message: message, wait: wait))
        case let .commit(message):
            return try finished(continueMerge(message: message, wait: wait, refusingLocalChanges: true))
        case .abort:
            try abortMerge(wait: wait)
            return .aborted(head: try headCommit())
        }
    }

    private func finished(_ done: (commit: Commit, warnings: [String], keptLocal: [String])) throws -> MergeActionResult {
        .finished(done.commit, branch: try history.head().branchName, warnings: done.warnings + takePostHookWarnings(), keptLocal: done.keptLocal)
    }
}
