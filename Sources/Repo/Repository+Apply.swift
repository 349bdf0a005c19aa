import Delta
import Foundation
import Merge

/// How `revert` or `cherry-pick` applied a change.
public struct ApplyResult: Sendable {
    /// The commit recorded (nil when the merge machinery stopped on conflicts).
    public var commit: Commit?
    /// True when every changed file and tensor was put in place byte for byte (no arithmetic).
    public var exact: Bool
    /// The merge machinery's outcome, with its conflict report, when the change was applied as
    /// task arithmetic.
    public var merge: MergeOutcome?
}

extension Repository {
    /// `revert REV`: a new commit on HEAD that undoes REV's change against its first parent.
    ///
    /// Exact where no later commit touched what REV changed: those files and tensors get REV's
    /// parent's objects back, byte for byte. Otherwise the inverse task vector is added through the
    /// merge machinery (task arithmetic, base REV, experts HEAD and REV^, tensors changed on one
    /// side taken as they are), which reports conflicts as a merge does.
    ///
    /// - Parameter mainline: for a merge commit, the parent (1-based, git's `-m N`) whose side is
    ///   kept: the change undone is the one the merge made against that parent.
    public func revert(_ revision: String, message: String? = nil, mainline: Int? = nil, wait: Bool = false) throws -> ApplyResult {
        withPostHookWarnings(try withWriteLock(wait: wait) {
            let id = try resolve(revision)
            let c = try commit(id)
            let parent = try Repository.parent(of: c, mainline: mainline, kind: "revert")
            let text = message ?? "Revert \"\(c.subject)\"\n\nThis reverts commit \(id.hex)"
                + (mainline.map { ", reversing changes made to \(c.parents[$0 - 1].hex)." } ?? ".")
            return try applyChange(from: id, to: parent, message: text, kind: "revert")
        })
    }

    /// The parent a revert or cherry-pick measures a commit's change against: the only one, or
    /// for a merge commit the `mainline`-th (git's `-m N`), which a merge commit needs.
    static func parent(of c: Commit, mainline: Int?, kind: String) throws -> ObjectID {
        guard let first = c.parents.first else { throw RepoError.invalidArgument("cannot \(kind) \(c.id.short): it is a root commit") }
        guard c.parents.count > 1 else {
            if mainline != nil { throw RepoError.invalidArgument("\(kind): -m was given but \(c.id.short) is not a merge commit") }
            return first
        }
        guard let n = mainline else {
            throw RepoError.invalidArgument("cannot \(kind) \(c.id.short): it is a merge commit; -m N names the parent whose side is kept (-m 1: the change the merge brought into the branch it was made on)")
        }
        guard (1...c.parents.count).contains(n) else {
            throw RepoError.invalidArgument("\(kind): -m \(n): \(c.id.short) has \(c.parents.count) parents")
        }
        return c.parents[n - 1]
    }

    /// `result` with the warnings of the post hooks that ran once the write lock was released.
    private func withPostHookWarnings(_ result: ApplyResult) -> ApplyResult {
        var result = result
        let warnings = takePostHookWarnings()
        if !warnings.isEmpty { result.merge?.warnings += warnings }
        return result
    }

    /// `cherry-pick REV`: a new commit on HEAD that applies REV's change against its first parent.
    /// Exact where HEAD's files and tensors equal REV's parent's; else task arithmetic (HEAD +
    /// (REV − REV^)) through the merge machinery, with its conflict report.
    public func cherryPick(_ revision: String, mainline: Int? = nil, wait: Bool = false) throws -> ApplyResult {
        withPostHookWarnings(try withWriteLock(wait: wait) {
            let id = try resolve(revision)
            let c = try commit(id)
            let parent = try Repository.parent(of: c, mainline: mainline, kind: "cherry-pick")
            try refuseRepeatedPick(id)
            let text = c.message + "\n\n(cherry picked from commit \(id.hex))"
            return try applyChange(from: parent, to: id, message: text, kind: "cherry-pick", metrics: c.metrics)
        })
    }

    /// A change HEAD has already (the commit is in HEAD's history, or a commit there was
    /// cherry-picked from it) is refused: applied again as task arithmetic, its task vector would
    /// count twice (git finds such a pick empty and stops).
    private func refuseRepeatedPick(_ id: ObjectID) throws {
        guard let headID = try history.head().commit else { return }
        let mine = try ancestors(of: headID)
        if mine.contains(id) {
            throw RepoError.invalidArgument("cherry-pick: \(id.short) is already in HEAD's history; nothing was written")
        }
        let marker = "(cherry picked from commit \(id.hex))"
        let since = mine.subtracting(try ancestors(of: id))
        // A pick reverted since ('This reverts commit P.') no longer counts: picking again is git's habit then.
        var reverted = Set<String>()
        for other in since {
            guard let c = try history.commit(other), let r = c.message.range(of: "This reverts commit ") else { continue }
            reverted.insert(String(c.message[r.upperBound...].prefix(64)))
        }
        for other in since {
            guard let c = try history.commit(other), c.message.contains(marker), !reverted.contains(other.hex) else { continue }
            throw RepoError.invalidArgument("cherry-pick: HEAD has \(id.short)'s change already (picked as \(other.short)); applying it again would add its task vector twice; nothing was written")
        }
    }

    /// Applies the change `from` → `to` onto HEAD: exactly when possible, else as task arithmetic.
    private func applyChange(from: ObjectID, to: ObjectID, message: String, kind: String, metrics: [Commit.Metric] = []) throws -> ApplyResult {
        try refuseDuringMerge(kind)
        let head = try history.head()
        guard let headID = head.commit else { throw RepoError.invalidArgument("HEAD has no commits yet") }
        // Local changes stop the change only where it writes, as in git: the exact path's staging
        // refuses a changed file the new tree has otherwise (and an untracked file where it writes),
        // the arithmetic path has the merge's own rule; other local changes stay local changes.
        let headTree = try tree(of: headID)
        if let patched = Repository.patch(headTree, from: try tree(of: from), to: try tree(of: to)) {
            if patched.id == headTree.id {
                throw RepoError.invalidArgument("\(kind): the change is already in HEAD; nothing to commit")
            }
            let c = try recordTreeCommit(patched, head: head, headID: headID, message: message, metrics: metrics, reflog: kind, operation: kind,
                                         sources: [from, to])
            return ApplyResult(commit: c, exact: true, merge: nil)
        }
        // HEAD changed some of the same tensors: HEAD + (to − from), one-sided changes taken as they are.
        // Task arithmetic does not apply to LoRA adapters (nor to a reversible merge of them): say
        // which commits are adapters, in the terms of this command, not of a merge.
        let adapters = try [("HEAD (\(headID.short))", headID), (to.short, to), (from.short, from)]
            .filter { try commit($0.1).record(AdapterRecord.self) != nil }.map(\.0)
        if !adapters.isEmpty {
            throw RepoError.invalidArgument("\(kind): HEAD changed what this change touches, so it cannot be applied byte for byte, and task arithmetic does not apply to LoRA adapters (\(Array(Set(adapters)).sorted().joined(separator: ", ")) \(adapters.count == 1 ? "is one" : "are")); nothing was written. Apply it on a branch where nothing else changed those files, or fold the adapters into their base (mrepo export --fold) and commit the models")
        }
        var options = MergeOptions(branches: ["HEAD", to.hex], recipe: MergeRecipe(method: "task_arithmetic", experts: [], seed: 0),
                                   base: from.hex, message: message)
        options.inputsAreExperts = true
        options.singleParent = true
        options.oneSided = .take
        options.metrics = metrics
        options.operation = kind
        options.addsMergeFiles = false
        let outcome = try mergeLocked(options)
        var committed: Commit?
        if case let .committed(c) = outcome.status {
            committed = c
            try history.write { db in try history.setOrigHead(db, headID) }
        }
        return ApplyResult(commit: committed, exact: false, merge: outcome)
    }

    /// HEAD's tree with the change `from` → `to` applied file by file, or tensor by tensor inside
    /// a safetensors file whose header all three trees share; nil when HEAD changed something
    /// the change touches too (then only arithmetic can combine them).
    static func patch(_ head: Tree, from: Tree, to: Tree) -> Tree? {
        var files = Dictionary(head.files.map { ($0.path, $0) }, uniquingKeysWith: { a, _ in a })
        for path in Set(from.files.map(\.path)).union(to.files.map(\.path)) {
            let f = from.file(at: path), t = to.file(at: path)
            if f?.identity == t?.identity { continue }
            let h = files[path]
            if h?.identity == t?.identity { continue }
            if h?.identity == f?.identity {
                files[path] = t
                continue
            }
            guard let f, let t, let h, f.kind == .safetensors, f.objectID == t.objectID, h.objectID == f.objectID,
                  f.tensors.map(\.name) == h.tensors.map(\.name), t.tensors.map(\.name) == h.tensors.map(\.name) else { return nil }
            var patched = h
            for i in h.tensors.indices where f.tensors[i].objectID != t.tensors[i].objectID {
                if h.tensors[i].objectID == f.tensors[i].objectID {
                    patched.tensors[i].objectID = t.tensors[i].objectID
                } else if h.tensors[i].objectID != t.tensors[i].objectID {
                    return nil
                }
            }
            // The bytes are new: no digest is known until the file is written.
            patched.sha256 = nil
            files[path] = patched
        }
        return Tree(files: Array(files.values))
    }

    /// Records a commit of an existing tree (every object stored already) on HEAD and makes the
    /// working tree hold it: files staged first, then one transaction (commit, ref, reflog,
    /// ORIG_HEAD), then the renames. Local changes to paths HEAD and `tree` agree on stay local
    /// changes; one where they differ stops it before anything is written, named as `operation`.
    ///
    /// - Parameter sources: the commits besides HEAD whose tensors `tree` takes (a revert's or
    ///   cherry-pick's), for the lossy record of low-rank tensors among them.
    func recordTreeCommit(_ tree: Tree, head: Head, headID: ObjectID, message: String, metrics: [Commit.Metric], reflog: String,
                          operation: String, sources: [ObjectID] = []) throws -> Commit {
        let headCommit = try commit(headID)
        let baseline = try worktreeBaseline(head: head).tree
        let checkout = try stageCheckout(tree, over: baseline, force: false, operation: operation)
        let commit: Commit
        do {
            let author = Repository.defaultAuthor()
            let timestamp = (Date().timeIntervalSince1970 * 1000).rounded() / 1000
            // Lossy exactly when the tree holds low-rank tensors (HEAD's label would not say so: a
            // revert of a lossy commit is exact, a revert of that revert lossy again).
            let extra = JSONValue.object(try carriedStorage(of: tree, from: [headID] + sources) ?? [try CommitStorage.lossless.jsonMember()])
            let base = headCommit.base ?? headID
            let id = Commit.computeID(treeID: tree.id, parents: [headID], base: base, author: author, timestamp: timestamp,
                                      message: message, metrics: metrics, extra: extra)
            commit = Commit(id: id, treeID: tree.id, parents: [headID], base: base, author: author, timestamp: timestamp,
                            message: message, metrics: metrics, extra: extra, generation: headCommit.generation + 1)
            try notePendingCheckout(operation: operation, from: baseline, to: tree, force: false, proof: .head(id.hex))
            try history.recordCommit(objects: try withLeftoverRows([], for: tree), tree: tree.fillingDigests(from: checkout.staged), commit: commit, expectedHead: headID,
                                     reflogMessage: "\(reflog): \(commit.subject)", origHead: headID)
        } catch {
            checkout.rollback()
            clearPendingCheckout()
            throw error
        }
        let entries = try finishCheckout(checkout)
        history.saveStatCacheOpportunistically(entries, removing: [])
        return commit
    }
}
