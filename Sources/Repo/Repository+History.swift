import Delta
import Foundation

/// A branch as `branch` lists it.
public struct BranchInfo: Sendable {
    public var name: String
    public var target: ObjectID
    public var isCurrent: Bool
    public var subject: String
    /// The folder of another working tree that has the branch checked out, if any.
    public var worktree: String? = nil
    /// The remote of a remote-tracking branch (`origin` for `origin/main`); nil for a local branch.
    public var remote: String? = nil
}

extension Repository {
    // MARK: - Graph

    /// Commits reachable from `starts`, newest first (by timestamp, then generation), as `log` lists them.
    ///
    /// - Parameter firstParent: follow only first parents.
    public func log(from starts: [ObjectID], limit: Int? = nil, firstParent: Bool = false) throws -> [Commit] {
        var out: [Commit] = []
        var seen = Set<ObjectID>()
        var frontier: [Commit] = []
        for s in starts where seen.insert(s).inserted { frontier.append(try commit(s)) }
        while !frontier.isEmpty {
            if let limit, out.count >= limit { break }
            let i = frontier.indices.max { a, b in
                (frontier[a].timestamp, frontier[a].generation) < (frontier[b].timestamp, frontier[b].generation)
            }!
            let c = frontier.remove(at: i)
            out.append(c)
            for p in firstParent ? Array(c.parents.prefix(1)) : c.parents where seen.insert(p).inserted {
                frontier.append(try commit(p))
            }
        }
        return out
    }

    /// The commits `id` reaches that no branch, tag, remote-tracking branch, working tree's HEAD or
    /// stash entry reaches, newest first: what moving away from a detached HEAD at `id` leaves
    /// behind (the reflog keeps them until `gc --prune-reflog`), as git warns about.
    public func commitsLeftBehind(_ id: ObjectID) throws -> [Commit] {
        var stack = try history.refs().map(\.target) + history.allHeads().values.compactMap(\.commit)
            + history.remoteRefs().map(\.target) + history.stashes().map(\.commit)
        var reached = Set<ObjectID>()
        while let c = stack.popLast() {
            guard reached.insert(c).inserted else { continue }
            for p in try history.parents(of: c) where !reached.contains(p) { stack.append(p) }
        }
        var out: [Commit] = []
        var seen: Set<ObjectID> = [id]
        stack = [id]
        while let c = stack.popLast() {
            guard !reached.contains(c), let commit = try history.commit(c) else { continue }
            out.append(commit)
            for p in commit.parents where seen.insert(p).inserted { stack.append(p) }
        }
        return out.sorted { ($0.generation, $0.timestamp) > ($1.generation, $1.timestamp) }
    }

    /// Every ancestor of a commit, itself included.
    public func ancestors(of id: ObjectID) throws -> Set<ObjectID> {
        var seen: Set<ObjectID> = [id]
        var stack = [id]
        while let c = stack.popLast() {
            for p in try history.parents(of: c) where seen.insert(p).inserted { stack.append(p) }
        }
        return seen
    }

    /// Whether `a` is an ancestor of (or equal to) `b`.
    public func isAncestor(_ a: ObjectID, of b: ObjectID) throws -> Bool {
        try ancestors(of: b).contains(a)
    }

    /// The best common ancestors of several commits: common ancestors that are not ancestors of
    /// another common ancestor, sorted by generation (highest first) and then by id, so the first
    /// one is a deterministic choice.
    public func mergeBases(_ commits: [ObjectID]) throws -> [ObjectID] {
        guard let first = commits.first else { return [] }
        var common = try ancestors(of: first)
        for c in commits.dropFirst() { common.formIntersection(try ancestors(of: c)) }
        var best = common
        for c in common {
            for p in try ancestors(of: c) where p != c { best.remove(p) }
        }
        return try best.map { (id: $0, gen: try commit($0).generation) }
            .sorted { ($0.gen, $1.id) > ($1.gen, $0.id) }
            .map(\.id)
    }

    // MARK: - Branches and tags

    public func branches() throws -> [BranchInfo] {
        let head = try history.head()
        let elsewhere = try history.branchesCheckedOutElsewhere()
        return try history.refs(kind: .branch).map {
            BranchInfo(name: $0.name, target: $0.target, isCurrent: head.branchName == $0.name, subject: try commit($0.target).subject,
                       worktree: elsewhere[$0.name])
        }
    }

    /// The local branches (`local`), then the remote-tracking ones (`remoteTracking`), as `branch`,
    /// `branch -r` and `branch -a` list them; with `merged`, only those whose tip that revision
    /// contains (`--merged REV`), or, with `merged: false`, does not (`--no-merged`); with
    /// `containing`, only those that contain that revision (`--contains REV`).
    public func branches(local: Bool, remoteTracking: Bool, merged: (revision: String, yes: Bool)? = nil,
                         containing: String? = nil) throws -> [BranchInfo] {
        var list = try (local ? branches() : []) + (remoteTracking ? remoteBranches() : [])
        if let merged {
            let tip = try resolve(merged.revision)
            list = try list.filter { try isAncestor($0.target, of: tip) == merged.yes }
        }
        if let containing {
            let commit = try resolve(containing)
            list = try list.filter { try isAncestor(commit, of: $0.target) }
        }
        return list
    }

    /// The remote-tracking branches (`origin/main`), by remote, then name; a commit this repository
    /// does not hold (a branch fetched without its history) has an empty subject.
    public func remoteBranches() throws -> [BranchInfo] {
        try history.remoteRefs().filter { $0.kind == .branch }.map {
            BranchInfo(name: $0.fullName, target: $0.target, isCurrent: false, subject: (try? commit($0.target).subject) ?? "", remote: $0.remote)
        }
    }

    /// Creates a branch at a revision (default HEAD) without switching to it; it tracks the revision
    /// as `tracking` says (by default when that is a remote-tracking branch, as in git).
    @discardableResult
    public func createBranch(_ name: String, at revision: String? = nil, tracking: BranchTracking = .auto, wait: Bool = false) throws -> ObjectID {
        try RefNames.validateNew(name)
        return try withWriteLock(wait: wait) {
            let upstream = try upstream(forStart: revision, tracking: tracking)
            let target = try revision.map { try resolve($0) } ?? resolve("HEAD")
            // Another working tree on it while it has no commits would find them under its feet.
            try refuseBranchCheckedOutElsewhere(name)
            try history.createRef(name: name, kind: .branch, target: target, message: "branch: created from \(revision ?? "HEAD")",
                                  upstream: upstream)
            return target
        }
    }

    /// Deletes a branch. Without `force`, refuses a branch whose commits are not all reachable from HEAD.
    public func deleteBranch(_ name: String, force: Bool = false, wait: Bool = false) throws -> ObjectID {
        try deleteBranches([name], force: force, wait: wait)[0].target
    }

    /// `branch -d A B ...`: every branch is checked first (it exists, is not checked out, and,
    /// without `force`, HEAD contains it), then all are deleted in one transaction; one that may
    /// not be deleted deletes none.
    public func deleteBranches(_ names: [String], force: Bool = false, wait: Bool = false) throws -> [(name: String, target: ObjectID)] {
        try withWriteLock(wait: wait) {
            var deleted: [(name: String, target: ObjectID)] = []
            let elsewhere = try history.branchesCheckedOutElsewhere()
            let head = try history.head()
            for name in names where !deleted.contains(where: { $0.name == name }) {
                guard let ref = try history.ref(named: name), ref.kind == .branch else { throw RepoError.unknownRef(name) }
                if head.branchName == name {
                    throw RepoError.deletingCurrentBranch(name)
                }
                if let path = elsewhere[name] {
                    throw RepoError.worktree(.deletingCheckedOutBranch(branch: name, worktree: path))
                }
                if !force, let commit = head.commit, !(try isAncestor(ref.target, of: commit)) {
                    throw RepoError.branchNotMerged(name)
                }
                deleted.append((name, ref.target))
            }
            try history.deleteRefs(deleted.map(\.name), kind: .branch)
            return deleted
        }
    }

    public func tags() throws -> [Ref] {
        try history.refs(kind: .tag)
    }

    /// Creates a tag at a revision (default HEAD), with an optional message.
    @discardableResult
    public func createTag(_ name: String, at revision: String? = nil, message: String? = nil, wait: Bool = false) throws -> ObjectID {
        try RefNames.validateNew(name)
        return try withWriteLock(wait: wait) {
            let target = try revision.map { try resolve($0) } ?? resolve("HEAD")
            try history.createRef(name: name, kind: .tag, target: target, message: "tag: \(name)", tagMessage: message)
            return target
        }
    }

    /// Deletes a tag; returns the commit it named (read under the same lock, so it is the one deleted).
    @discardableResult
    public func deleteTag(_ name: String, wait: Bool = false) throws -> ObjectID {
        try deleteTags([name], wait: wait)[0].target
    }

    /// `tag -d A B ...`: all the tags are deleted in one transaction, or none (one does not exist).
    public func deleteTags(_ names: [String], wait: Bool = false) throws -> [(name: String, target: ObjectID)] {
        try withWriteLock(wait: wait) {
            var deleted: [(name: String, target: ObjectID)] = []
            for name in names where !deleted.contains(where: { $0.name == name }) {
                let found = try history.ref(named: name)
                guard let ref = found, ref.kind == .tag else {
                    throw RepoError.invalidArgument(found?.kind == .branch
                        ? "'\(name)' is a branch, not a tag; delete it with 'mrepo branch -d \(name)'" : "no tag named '\(name)'")
                }
                deleted.append((name, ref.target))
            }
            try history.deleteRefs(deleted.map(\.name), kind: .tag)
            return deleted
        }
    }

    /// The names pointing at each commit, for decorating `log`, as git orders them: branches,
    /// remote-tracking branches (`origin/main`), then tags (`tag: v1`).
    public func decorations() throws -> [ObjectID: [String]] {
        var out: [ObjectID: [String]] = [:]
        let refs = try history.refs()
        for r in refs where r.kind == .branch { out[r.target, default: []].append(r.name) }
        for r in try history.remoteRefs() where r.kind == .branch { out[r.target, default: []].append(r.fullName) }
        for r in refs where r.kind == .tag { out[r.target, default: []].append("tag: \(r.name)") }
        return out
    }

    /// The commits `log --all` starts from: every branch, remote-tracking branch and tag, and HEAD.
    public func allStartingPoints() throws -> [ObjectID] {
        var out = try history.refs().map(\.target) + history.remoteRefs().map(\.target)
        if let h = try headCommit() { out.append(h) }
        return out
    }
}

extension Repository {
    /// `branch -m/-M OLD NEW`: renames a branch; its reflog moves with it.
    public func renameBranch(_ old: String, to new: String, force: Bool = false, wait: Bool = false) throws {
        try RefNames.validateNew(new)
        try withWriteLock(wait: wait) {
            if new != old { try refuseBranchCheckedOutElsewhere(new) }
            try history.renameBranch(old, to: new, force: force)
        }
    }

    /// `branch -c/-C OLD NEW`: a new branch at OLD's commit, with a copy of its reflog and upstream.
    @discardableResult
    public func copyBranch(_ old: String, to new: String, force: Bool = false, wait: Bool = false) throws -> ObjectID {
        try RefNames.validateNew(new)
        return try withWriteLock(wait: wait) {
            try refuseBranchCheckedOutElsewhere(new)
            return try history.copyBranch(old, to: new, force: force)
        }
    }

    /// `branch -f NAME [START]`: creates the branch or moves it to START (default HEAD); not the current branch.
    /// A START that is a remote-tracking branch becomes its upstream (unless `tracking` is `.never`);
    /// otherwise a moved branch keeps its upstream.
    @discardableResult
    public func forceBranch(_ name: String, at revision: String? = nil, tracking: BranchTracking = .auto, wait: Bool = false) throws -> ObjectID {
        try RefNames.validate(name, existing: try history.ref(named: name) != nil)
        return try withWriteLock(wait: wait) {
            let upstream = try upstream(forStart: revision, tracking: tracking)
            let target = try revision.map { try resolve($0) } ?? resolve("HEAD")
            try refuseBranchCheckedOutElsewhere(name)
            try history.forceRef(name: name, kind: .branch, target: target, message: "branch: reset to \(revision ?? "HEAD")", tagMessage: nil,
                                 upstream: upstream)
            return target
        }
    }

    /// `tag -f NAME [REV]`: creates the tag or moves it (with a new message, or none).
    @discardableResult
    public func forceTag(_ name: String, at revision: String? = nil, message: String? = nil, wait: Bool = false) throws -> ObjectID {
        try RefNames.validate(name, existing: try history.ref(named: name) != nil)
        return try withWriteLock(wait: wait) {
            let target = try revision.map { try resolve($0) } ?? resolve("HEAD")
            try history.forceRef(name: name, kind: .tag, target: target, message: "tag: \(name) (moved)", tagMessage: message)
            return target
        }
    }
}
