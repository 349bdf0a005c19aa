import Delta
import Foundation

extension Repository {
    /// `stash`: records the working tree as a commit whose parent is HEAD (no ref moves, no hook
    /// runs), lists it first in `stash list`, then puts the working tree back to HEAD. The stash
    /// commit and its objects are recorded before any file changes; the working tree is then
    /// updated as a checkout is (staged, then renamed).
    ///
    /// - Parameter includeUntracked: stash untracked files too, and remove them (`stash -u`); by
    ///   default only changes to the files HEAD tracks are stashed, as git's.
    /// - Throws: ``RepoError/nothingToStash`` when there is nothing to put aside.
    public func stash(message: String?, includeUntracked: Bool = false, wait: Bool = false) throws -> StashEntry {
        try withWriteLock(wait: wait) {
            let head = try history.head()
            guard let headID = head.commit else { throw RepoError.invalidArgument("nothing to stash on: HEAD has no commits yet") }
            let subject = try commit(headID).subject
            let text = message ?? "WIP on \(head.displayName): \(headID.short) \(subject)"
            var options = CommitOptions(message: text)
            options.stash = true
            options.stashUntracked = includeUntracked
            let baseline = try worktreeBaseline(head: head).tree
            // HEAD's files are staged, and the checkout noted, once the stash's tree is known and
            // before it is recorded: a full disk then records no stash, and a kill after the record
            // leaves a note the next command finishes. Not forced: the working tree held the
            // stash's snapshot; an edit made after a kill stops the next command instead of being lost.
            var staged: StagedCheckout?
            let result: CommitResult
            do {
                result = try commitLocked(options) { stashTree, commit in
                    staged = try self.stageCheckout(baseline, over: stashTree, force: true)
                    try self.notePendingCheckout(operation: "stash", from: stashTree, to: baseline, force: false,
                                            proof: .stashSaved(commit.id.hex), checkingTo: true, fromRecordedByTheCommand: true)
                }
            } catch {
                staged?.rollback()
                throw error
            }
            do {
                guard let checkout = staged else { throw RepoError.failed("the stash's checkout was not staged") }
                try history.write { db in try history.setOrigHead(db, headID) }
                let entries = try finishCheckout(checkout)
                history.saveStatCacheOpportunistically(entries, removing: [])
            } catch {
                throw RepoError.failed("the stash was saved as \(result.commit.id.short), but putting the working tree back to HEAD failed: \(RepoError.wrap(error).description); run 'mrepo reset --hard'")
            }
            return try history.stashes()[0]
        }
    }

    /// `stash pop [N]` (or `stash apply` with `drop: false`): writes the stash's changes into the
    /// working tree and drops the entry. When HEAD moved since the stash, its changes are applied
    /// onto HEAD file by file and tensor by tensor where HEAD did not touch the same things;
    /// otherwise nothing is written and the entry is kept. Local changes to files the stash does
    /// not change are kept, as git keeps them; one to a file it changes (or an untracked file where
    /// it adds one) stops it before anything is written. The files are renamed into place before
    /// the entry is dropped, so an interruption never loses the stash.
    public func stashPop(index: Int = 0, drop: Bool = true, wait: Bool = false) throws -> StashEntry {
        try withWriteLock(wait: wait) {
            try refuseDuringMerge("stash pop")
            let all = try history.stashes()
            guard index >= 0, index < all.count else {
                throw RepoError.invalidArgument(all.isEmpty ? "no stash entries" : "no stash entry stash@{\(index)} (there are \(all.count))")
            }
            let entry = all[index]
            let head = try history.head()
            let baseline = try worktreeBaseline(head: head).tree
            let stashCommit = try commit(entry.commit)
            guard let parent = stashCommit.parents.first else { throw RepoError.failed("stash \(entry.commit.short) has no parent") }
            guard let target = Repository.patch(baseline, from: try tree(of: parent), to: try tree(of: entry.commit)) else {
                throw RepoError.invalidArgument("stash@{\(index)}: HEAD changed files or tensors the stash changes too; switch to \(parent.short) (its base) and pop it there, or cherry-pick \(entry.commit.short)")
            }
            // Applied first, then dropped (as git does): killed in between, or should the drop fail,
            // the stash stays. Recording first dropped it while the files could still be the old
            // ones. The working tree then differs from HEAD: no stat-cache rows claim otherwise.
            let checkout = try stageCheckout(target, over: baseline, force: false, operation: drop ? "stash pop" : "stash apply")
            _ = try finishCheckout(checkout)
            // `apply` keeps the entry: nothing to record (its reflog said the entry was deleted).
            if drop {
                do {
                    try history.write { db in
                        try HistoryDatabase.dropStash(db, index: index)
                        try HistoryDatabase.logRef(db, "stash", old: entry.commit, new: nil, message: "stash pop")
                    }
                } catch {
                    throw RepoError.failed("stash@{\(index)} was applied, but dropping it failed: \(RepoError.wrap(error).description); drop it with 'mrepo stash drop \(index)'")
                }
            }
            return entry
        }
    }

    /// `stash drop [N]`.
    public func stashDrop(index: Int = 0, wait: Bool = false) throws -> StashEntry {
        try withWriteLock(wait: wait) {
            let all = try history.stashes()
            guard index >= 0, index < all.count else { throw RepoError.invalidArgument("no stash entry stash@{\(index)}") }
            try history.write { db in
                try HistoryDatabase.dropStash(db, index: index)
                try HistoryDatabase.logRef(db, "stash", old: all[index].commit, new: nil, message: "stash drop")
            }
            return all[index]
        }
    }

    // MARK: - Notes and metrics added later

    /// `notes add REV -m TEXT`: a note beside the commit (its id does not change).
    @discardableResult
    public func addNote(_ text: String, to revision: String, wait: Bool = false) throws -> ObjectID {
        try withWriteLock(wait: wait) {
            let id = try resolve(revision)
            try history.addNote(text, to: id, author: Repository.defaultAuthor())
            return id
        }
    }

    /// `notes remove [REV]`: removes the commit's notes (git's `notes remove`); how many there were.
    public func removeNotes(of revision: String, wait: Bool = false) throws -> (commit: ObjectID, removed: Int) {
        try withWriteLock(wait: wait) {
            let id = try resolve(revision)
            return (id, try history.removeNotes(of: id))
        }
    }

    /// `metric remove [REV] NAME...`: takes back metrics added with `metric add` (all or none).
    @discardableResult
    public func removeMetrics(_ names: [String], of revision: String, wait: Bool = false) throws -> ObjectID {
        try withWriteLock(wait: wait) {
            let id = try resolve(revision)
            try history.removeAddedMetrics(names, of: id)
            return id
        }
    }

    /// `metric add REV NAME=VALUE...`: metrics beside the commit, overriding recorded ones of the
    /// same name wherever metrics are read (log, show, mwa, the merge hooks).
    @discardableResult
    public func addMetrics(_ metrics: [Commit.Metric], to revision: String, wait: Bool = false) throws -> ObjectID {
        try withWriteLock(wait: wait) {
            let id = try resolve(revision)
            try history.addMetrics(metrics, to: id)
            return id
        }
    }

    /// A commit's metrics: those recorded with it, overridden and extended by those added later.
    public func metrics(of commit: Commit) throws -> [Commit.Metric] {
        let added = try history.addedMetrics(of: commit.id).map(\.metric)
        guard !added.isEmpty else { return commit.metrics }
        let names = Set(added.map(\.name))
        return commit.metrics.map { m in added.first { $0.name == m.name } ?? m }
            + added.filter { a in !commit.metrics.contains { $0.name == a.name } && names.contains(a.name) }
    }
}
