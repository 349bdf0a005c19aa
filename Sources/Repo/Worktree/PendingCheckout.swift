import Delta
import Foundation

/// A checkout that a command does after recording its history, noted so that a kill between the
/// record and the renames cannot leave HEAD on a new commit over the old files.
///
/// A merge, `revert`, `cherry-pick`, `reset --hard` and `stash`/`stash pop` stage every file
/// first, record (one transaction), then rename the files into place: a failure before the record
/// leaves everything as it was. A kill after the record but before the last rename used to leave
/// the working tree holding the old files under the new HEAD; `status` showed them as changes, and
/// a `commit` then undid the revert or the merge. Such a command now writes this note (durably)
/// before its record and deletes it after its renames. The next command that takes the write lock
/// (the writer that left it is gone: the lock is free) reads it. When the record was made
/// (``Proof``) it finishes the checkout: the recorded tree over the one the working tree held,
/// which passes the files already renamed. When the record was not made, nothing was renamed and
/// the note is deleted. Format: docs/format.md §7.6.
struct PendingCheckout: Codable, Equatable {
    /// What the record did, so that a later command can tell whether it was made.
    enum Proof: Codable, Equatable {
        /// HEAD is at this commit (a merge, revert, cherry-pick or `reset --hard`).
        case head(String)
        /// The merge in progress names this tree as its candidate (`merge --no-commit`).
        case mergeCandidate(String)
        /// This stash commit is in the stash list (`stash`).
        case stashSaved(String)
        /// This stash commit is no longer in the stash list (`stash pop`).
        case stashDropped(String)
    }

    /// The command, for messages ("revert", "merge", ...).
    var operation: String
    /// The tree the working tree held, and the one the command checks out (ids, hex).
    var from: String
    var to: String
    /// Whether local changes are overwritten (`reset --hard`, `stash`).
    var force: Bool
    var proof: Proof
}

extension Repository {
    /// `.mrepo/CHECKOUT_PENDING` for the main working tree; a linked one's has its key appended
    /// (keys are ASCII letters, digits, `-`, `_` and `.`: ``HistoryDatabase/newWorktreeID(for:)``).
    var pendingCheckoutPath: String {
        metaDirectory + "/CHECKOUT_PENDING" + (worktreeID.isEmpty ? "" : "-" + worktreeID)
    }

    /// Notes, durably, the checkout of `to` over `from` that follows a record `proof` describes.
    func notePendingCheckout(operation: String, from: Tree, to: Tree, force: Bool, proof: PendingCheckout.Proof) throws {
        let note = PendingCheckout(operation: operation, from: from.id.hex, to: to.id.hex, force: force, proof: proof)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try AtomicFileWriter.write(Array(try encoder.encode(note)), to: pendingCheckoutPath)
    }

    /// Deletes the note once the checkout is done (or the record failed).
    func clearPendingCheckout() {
        unlink(pendingCheckoutPath)
    }

    /// Finishes the checkout of a command killed between its record and its renames (see
    /// ``PendingCheckout``); called with the write lock held, before the command runs. Returns
    /// what it did, for the user, or nil when there was nothing to finish.
    func finishPendingCheckout() -> String? {
        guard let data = FileManager.default.contents(atPath: pendingCheckoutPath) else { return nil }
        guard let note = try? JSONDecoder().decode(PendingCheckout.self, from: data),
              let fromID = ObjectID(hex: note.from), let toID = ObjectID(hex: note.to) else {
            clearPendingCheckout()
            return "\(pendingCheckoutPath) could not be read; it was removed (run 'mrepo status' to check the working tree)"
        }
        guard (try? wasRecorded(note.proof)) == true else {
            // Killed before its record: nothing was renamed, and its staged files are swept.
            clearPendingCheckout()
            return nil
        }
        do {
            let checkout = try stageCheckout(try history.tree(toID), over: try history.tree(fromID), force: note.force,
                                             operation: "finishing the interrupted \(note.operation)")
            let entries = try finishCheckout(checkout)
            history.saveStatCacheOpportunistically(entries, removing: [])
            return "finished updating the working tree for an interrupted \(note.operation) (\(checkout.stats.written) files written, \(checkout.stats.removed) removed)"
        } catch {
            clearPendingCheckout()
            return "an interrupted \(note.operation) left the working tree partly updated, and finishing it failed: \(RepoError.wrap(error).description); 'mrepo status' shows what differs from HEAD"
        }
    }

    private func wasRecorded(_ proof: PendingCheckout.Proof) throws -> Bool {
        switch proof {
        case let .head(hex):
            return try history.head().commit?.hex == hex
        case let .mergeCandidate(hex):
            return try history.mergeState()?.readyTree?.hex == hex
        case let .stashSaved(hex):
            return try history.stashes().contains { $0.commit.hex == hex }
        case let .stashDropped(hex):
            return try !history.stashes().contains { $0.commit.hex == hex }
        }
    }
}
