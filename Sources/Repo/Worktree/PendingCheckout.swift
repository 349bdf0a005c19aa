import Delta
import Foundation

/// What a command that takes the write lock does with a checkout an interrupted command left.
public enum PendingCheckoutPolicy: Sendable {
    /// Finish it before the command runs, or refuse to run (the default).
    case finish
    /// Finish it with `force` (or, failing that, warn and go ahead): for a command that overwrites
    /// local changes anyway (`checkout --force`, `switch --force`, `reset --hard`, `merge --abort`),
    /// which calls ``Repository/finishPendingCheckout(_:)`` itself once it knows it will run, and
    /// takes the lock with ``leave``.
    case discard
    /// Leave it for the repository's own next command: a push received from another repository,
    /// anything `mrepo serve` does, the bookkeeping after a push.
    case leave
}

/// A checkout that a command does after recording its history, noted so that a kill between the
/// record and the renames cannot leave HEAD on a new commit over the old files.
///
/// A merge, `revert`, `cherry-pick`, `reset --hard`, `stash` and `commit --from` stage every file
/// first, record (one transaction), then rename the files into place: a failure before the record
/// leaves everything as it was. A kill after the record but before the last rename used to leave
/// the working tree holding the old files under the new HEAD; `status` showed them as changes, and
/// a `commit` then undid the revert or the merge. Such a command now writes this note (durably)
/// before its record and deletes it after its renames. The next command that takes the write lock
/// (the writer that left it is gone: the lock is free) reads it. When the record was made
/// (``Proof``) it finishes the checkout: the recorded tree over the one the working tree held,
/// which passes the files already renamed. When the record was not made, nothing was renamed and
/// the note is deleted. (`stash pop` renames first and records after, as git applies, then drops:
/// killed in between, the stash stays.) Format: docs/format.md §7.6.
struct PendingCheckout: Codable, Equatable {
    /// What the record did, so that a later command can tell whether it was made.
    enum Proof: Codable, Equatable {
        /// HEAD is at this commit (a merge, revert, cherry-pick or `reset --hard`).
        case head(String)
        /// HEAD is at this commit and no merge is in progress (`reset --hard` abandoning a merge:
        /// HEAD may be at the target before the record, which clears the merge state).
        case headWithoutMerge(String)
        /// The merge in progress names this tree as its candidate (`merge --no-commit`).
        case mergeCandidate(String)
        /// This stash commit was saved (`stash`): it is in the stash list, or the stash's reflog
        /// records it (popped or dropped since, in another working tree).
        case stashSaved(String)
        /// HEAD moves to this commit after the renames (`switch`, `checkout`, a fast-forward
        /// `pull` or merge): the other way round. Until HEAD is there the command did not finish,
        /// and the next one puts HEAD's files back (the `from` tree over the `to` tree); once it
        /// is, the renames were done and the note is stale.
        case headMovesTo(String)

        /// What holds the command's result once its record is made, for messages.
        var holder: String? {
            switch self {
            case .head, .headWithoutMerge: "HEAD holds its result"
            case .mergeCandidate: "the merge in progress holds its result"
            case .stashSaved: "the stash holds its changes"
            case .headMovesTo: nil
            }
        }
    }

    /// The command, for messages ("revert", "merge", ...).
    var operation: String
    /// The tree the working tree held, and the one the command checks out (ids, hex).
    var from: String
    var to: String
    /// Whether local changes are overwritten (`reset --hard`, `commit --from --force`).
    var force: Bool
    var proof: Proof

    /// The two tree ids, or nil when either is not one.
    var treeIDs: (from: ObjectID, to: ObjectID)? {
        guard let from = ObjectID(hex: from), let to = ObjectID(hex: to) else { return nil }
        return (from, to)
    }
}

extension Repository {
    /// `.mrepo/CHECKOUT_PENDING` for the main working tree; a linked one's has its key appended
    /// (keys are ASCII letters, digits, `-`, `_` and `.`: ``HistoryDatabase/newWorktreeID(for:)``).
    var pendingCheckoutPath: String {
        metaDirectory + "/CHECKOUT_PENDING" + (worktreeID.isEmpty ? "" : "-" + worktreeID)
    }

    /// Notes, durably, the checkout of `to` over `from` that follows a record `proof` describes.
    /// Nothing is noted when `from` (or, with `checkingTo`, `to`) is not a recorded tree (a view
    /// the working tree holds, §6.2): no later command could read it back.
    /// `fromRecordedByTheCommand`: `from` is recorded by the record itself (a stash's tree), so it
    /// is there whenever the proof holds.
    func notePendingCheckout(operation: String, from: Tree, to: Tree, force: Bool, proof: PendingCheckout.Proof,
                             checkingTo: Bool = false, fromRecordedByTheCommand: Bool = false) throws {
        guard try fromRecordedByTheCommand || history.hasTree(from.id), try !checkingTo || history.hasTree(to.id) else { return }
        let note = PendingCheckout(operation: operation, from: from.id.hex, to: to.id.hex, force: force, proof: proof)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try AtomicFileWriter.write(Array(try encoder.encode(note)), to: pendingCheckoutPath)
    }

    /// This working tree's note, read: `.none` without one, `.unreadable` when it is not a note.
    enum PendingNote { case none, unreadable, note(PendingCheckout) }

    var pendingNote: PendingNote {
        guard let data = FileManager.default.contents(atPath: pendingCheckoutPath) else { return .none }
        guard let note = try? JSONDecoder().decode(PendingCheckout.self, from: data) else { return .unreadable }
        return .note(note)
    }

    /// Deletes the note once the checkout is done (or the record failed), durably: a note back
    /// after a power loss would have the next command finish a checkout again over later edits
    /// (which then stop it). Best effort: a failed sync leaves that rare case, not an error.
    func clearPendingCheckout() {
        guard unlink(pendingCheckoutPath) == 0 else { return }
        try? AtomicFileWriter.syncDirectory(metaDirectory)
    }

    /// Finishes the checkout of a command killed between its record and its renames (see
    /// ``PendingCheckout``); called with the write lock held, before the command runs. Returns
    /// what it did, for the user, or nil when there was nothing to finish. Local changes to paths
    /// the checkout does not change are always kept.
    ///
    /// With ``PendingCheckoutPolicy/discard`` (called by a command that overwrites local changes
    /// anyway, once it knows it will run) the checkout is finished with `force`; a note that cannot
    /// be used (unreadable, trees not recorded) is deleted, and one that cannot be finished now (a
    /// full disk, a folder in the way) is kept with a warning while the command goes ahead: the
    /// user is never stuck, and the note goes only once a checkout succeeds.
    ///
    /// - Throws: when the checkout was recorded but cannot be finished (a local change in the way,
    ///   a tree that is not recorded, an unreadable note): the note stays, and the command does not
    ///   run, since it could record the old files.
    func finishPendingCheckout(_ policy: PendingCheckoutPolicy) throws -> String? {
        guard policy != .leave else { return nil }
        let read = pendingNote
        if case .none = read { return nil }
        let discard = policy == .discard
        let note: PendingCheckout? = if case let .note(n) = read { n } else { nil }
        func dropped(_ why: String) -> String {
            clearPendingCheckout()
            return "\(why); \(pendingCheckoutPath) was deleted"
        }
        var advice: String {
            if case .mergeCandidate = note?.proof {
                return "run 'mrepo merge --abort' to go back to HEAD (local changes to those files are lost)"
            }
            if case .headMovesTo = note?.proof {
                return "run 'mrepo checkout --force HEAD' to put HEAD's files back (local changes to those files are lost), or 'mrepo status' to see what differs"
            }
            return "run 'mrepo checkout --force HEAD' to finish it (local changes to those files are lost), or 'mrepo status' to see what differs"
        }
        guard let note, let ids = note.treeIDs else {
            if discard { return dropped("\(pendingCheckoutPath) was not a checkout left by an interrupted command") }
            throw RepoError.failed("\(pendingCheckoutPath): not a checkout left by an interrupted command; 'mrepo checkout --force HEAD' deletes it, making the working tree hold HEAD (local changes to tracked files are lost)")
        }
        // Under `.discard` a failure below is a warning: the note stays (the command's own
        // checkout deletes it when it succeeds), and the command goes ahead.
        func kept(_ why: String) -> String {
            let leftovers: String
            if case .headMovesTo = note.proof { leftovers = "files the interrupted command added may remain" } else {
                leftovers = "files the interrupted command removes may remain"
            }
            return "\(why); going ahead (\(pendingCheckoutPath) stays until a checkout succeeds; \(leftovers): see 'mrepo status')"
        }
        let recorded: Bool
        do {
            recorded = try wasRecorded(note.proof)
        } catch {
            let text = "an interrupted \(note.operation) may have left the working tree partly updated, and checking it failed: \(RepoError.wrap(error).description)"
            if discard { return kept(text) }
            throw RepoError.failed("\(text); \(advice)")
        }
        if case .headMovesTo = note.proof {
            // Renames first, then HEAD: HEAD there means every rename was done.
            if recorded {
                clearPendingCheckout()
                return nil
            }
            return try undoInterruptedMove(note, ids: ids, discard: discard, advice: advice, kept: kept, dropped: dropped)
        }
        guard recorded else {
            // Killed before its record: nothing was renamed, and its staged files are swept.
            clearPendingCheckout()
            return nil
        }
        let holds = note.proof.holder.map { " (\($0))" } ?? ""
        let failure = "an interrupted \(note.operation) left the working tree partly updated\(holds), and finishing it failed"
        func failed(_ error: any Error) throws -> String {
            if discard { return kept("\(failure): \(RepoError.wrap(error).description)") }
            throw RepoError.failed("\(failure): \(RepoError.wrap(error).description); \(advice)")
        }
        let trees: (from: Tree, to: Tree)?
        do {
            trees = try recordedTrees(ids)
        } catch {
            return try failed(error)
        }
        guard let trees else {
            if discard { return dropped("\(failure): its trees are not recorded") }
            throw RepoError.failed("\(failure): its trees are not recorded; \(advice)")
        }
        do {
            let done = try checkOut(trees.to, over: trees.from, force: note.force || discard, operation: "finishing the interrupted \(note.operation)")
            return "finished updating the working tree for an interrupted \(note.operation) (\(done))"
        } catch {
            return try failed(error)
        }
    }

    /// Puts HEAD's files back after a `switch` (or `checkout`, or a fast-forward) killed during
    /// its renames, before HEAD moved: the note's `from` tree over its `to` tree. Files the command
    /// had not renamed yet still hold HEAD's version and are passed; an edit made since to a file
    /// it did rename stops this (unless forced), as for a roll-forward.
    private func undoInterruptedMove(_ note: PendingCheckout, ids: (from: ObjectID, to: ObjectID), discard: Bool, advice: String,
                                     kept: (String) -> String, dropped: (String) -> String) throws -> String? {
        let failure = "an interrupted \(note.operation) left some of its files in the working tree (HEAD did not move), and putting HEAD's back failed"
        let trees: (from: Tree, to: Tree)?
        do {
            trees = try recordedTrees(ids)
        } catch {
            if discard { return kept("\(failure): \(RepoError.wrap(error).description)") }
            throw RepoError.failed("\(failure): \(RepoError.wrap(error).description); \(advice)")
        }
        guard let trees else {
            if discard { return dropped("\(failure): its trees are not recorded") }
            throw RepoError.failed("\(failure): its trees are not recorded; \(advice)")
        }
        do {
            // After a forced move, a file holding neither tree's version is a local change its
            // --force had not reached yet: kept. After a move that was not forced (which refuses
            // local changes to the files it writes), one is an edit made since to a file it wrote:
            // it stops this, as for a roll-forward. A forced command overwrites either.
            let done = try checkOut(trees.from, over: trees.to, force: discard, operation: "undoing the interrupted \(note.operation)",
                                    keepDivergent: note.force && !discard)
            clearPendingCheckout()
            return "put back HEAD's files over those an interrupted \(note.operation) had begun to write (\(done))"
        } catch {
            if discard { return kept("\(failure): \(RepoError.wrap(error).description)") }
            throw RepoError.failed("\(failure): \(RepoError.wrap(error).description); \(advice)")
        }
    }

    /// `merge --abort` of a merge state that cannot be read: a `merge --no-commit` killed while
    /// renaming its candidate into place left a note naming both trees, so the candidate's files
    /// go back to the ones the working tree held (with force; local changes to paths the trees
    /// agree on kept). Returns what it did, or nil when there was no such note.
    func undoPendingCandidate() throws -> String? {
        guard case let .note(note) = pendingNote, case .mergeCandidate = note.proof,
              let ids = note.treeIDs, let trees = try recordedTrees(ids) else { return nil }
        let done = try checkOut(trees.from, over: trees.to, force: true, operation: "aborting the merge")
        return "put back the files an interrupted merge --no-commit had begun to write (\(done))"
    }

    /// A note's two trees, or nil when either id names no recorded tree (it would read as an
    /// empty one: never check that out).
    private func recordedTrees(_ ids: (from: ObjectID, to: ObjectID)) throws -> (from: Tree, to: Tree)? {
        let (from, to) = (try history.tree(ids.from), try history.tree(ids.to))
        return from.id == ids.from && to.id == ids.to ? (from, to) : nil
    }

    /// Checks `newTree` out over `oldTree`, keeping local changes to paths the two agree on; says
    /// how many files it wrote and removed.
    private func checkOut(_ newTree: Tree, over oldTree: Tree, force: Bool, operation: String, keepDivergent: Bool = false) throws -> String {
        var stats = MaterializeStats()
        let entries = try materialize(newTree, over: oldTree, force: force, operation: operation, carryUnchanged: true,
                                      keepDivergent: keepDivergent, stats: &stats)
        history.saveStatCacheOpportunistically(entries, removing: [])
        return "\(stats.written) \(stats.written == 1 ? "file" : "files") written, \(stats.removed) removed"
    }

    private func wasRecorded(_ proof: PendingCheckout.Proof) throws -> Bool {
        switch proof {
        case let .head(hex):
            return try history.head().commit?.hex == hex
        case let .headWithoutMerge(hex):
            return try history.head().commit?.hex == hex && history.mergeState() == nil
        case let .mergeCandidate(hex):
            return try history.mergeState()?.readyTree?.hex == hex
        case let .headMovesTo(hex):
            return try history.head().commit?.hex == hex
        case let .stashSaved(hex):
            if try history.stashes().contains(where: { $0.commit.hex == hex }) { return true }
            // Popped or dropped since, in another working tree (the stash list is shared): the
            // record also logged it in the stash's reflog, in the same transaction.
            return try history.reflog(ref: "stash", limit: Int(Int32.max)).contains { $0.new?.hex == hex }
        }
    }
}

/// What `status` says about a checkout an interrupted command left (``PendingCheckout``).
public struct InterruptedCheckout: Sendable, Equatable {
    /// The interrupted command ("merge", "revert", ...), or nil when the note cannot be read.
    public let operation: String?
    /// Whether the command's record was made, so that the next writer finishes the checkout.
    /// False when the note cannot be read, or its record cannot be checked.
    public let recorded: Bool
    /// A command that records after its renames (`switch`) was killed before it recorded: the
    /// next writer puts HEAD's files back.
    public var putsBack = false
    /// What the next command does about it, or what to run, in words.
    public let advice: String
}

extension Repository {
    /// The checkout an interrupted command left in this working tree, read without changing
    /// anything (for `status`); nil when there is none, when its command was killed before its
    /// record (the next writer deletes the note: nothing was renamed), or while a writer runs.
    public func interruptedCheckout() throws -> InterruptedCheckout? {
        let read = pendingNote
        if case .none = read { return nil }
        // A writer running now (between its record and its renames) is not interrupted: a note
        // written since it took the lock (which writes its pid) is its own.
        let lockPath = metaDirectory + "/lock"
        if WriteLock.liveHolder(path: lockPath) != nil, let lock = FileStat.of(lockPath), let note = FileStat.of(pendingCheckoutPath),
           note.mtimeNs >= lock.mtimeNs {
            return nil
        }
        guard case let .note(note) = read, note.treeIDs != nil else {
            return InterruptedCheckout(operation: nil, recorded: false,
                                       advice: "\(pendingCheckoutPath) (left by an interrupted command) cannot be read: the next command that writes refuses until 'mrepo checkout --force HEAD' deletes it (local changes to tracked files are lost)")
        }
        let recorded: Bool
        do {
            recorded = try wasRecorded(note.proof)
        } catch {
            return InterruptedCheckout(operation: note.operation, recorded: false,
                                       advice: "checking whether its record was made failed: \(RepoError.wrap(error).description)")
        }
        if case .headMovesTo = note.proof {
            // HEAD there: the renames were done (a stale note). Not there: they are undone next.
            guard !recorded else { return nil }
            return InterruptedCheckout(operation: note.operation, recorded: false, putsBack: true,
                                       advice: "HEAD did not move; the next command that writes puts HEAD's files back first (until then, the changes listed include files it had begun to write)")
        }
        guard recorded else { return nil }
        return InterruptedCheckout(operation: note.operation, recorded: true, putsBack: false,
                                   advice: "\(note.proof.holder ?? "the record was made"); the next command that writes finishes updating the files first (until then, the changes listed include files it has yet to write)")
    }
}
