import Delta
import Foundation

/// What `mrepo switch` moves HEAD to.
public enum SwitchTarget: Sendable, Equatable {
    /// An existing branch, or one that only a remote has (it then starts here, tracking the
    /// remote's). `@{-N}` names the branch HEAD was on before the N-th last switch (`switch -`).
    case branch(String)
    /// A new branch at `startPoint` (default HEAD), switched to; it tracks the start point as
    /// `tracking` says.
    case newBranch(String, startPoint: String?, tracking: BranchTracking = .auto)
    /// A new branch with no history: its first commit has no parent; the working tree is left as it is.
    case orphan(String)
}

/// What `mrepo switch` did.
public struct SwitchResult: Sendable {
    /// The branch HEAD is on now (`@{-N}` resolved).
    public var branch: String
    /// The working tree's update; nil for an orphan branch, which writes nothing.
    public var checkout: CheckoutResult?
    /// The remote branch a branch the switch created tracks (`origin/main`), or nil.
    public var upstream: String? = nil
    /// Whether the switch created the branch.
    public var created = false
}

extension Repository {
    /// `mrepo switch`: moves HEAD to a branch, updating the working tree.
    /// - Parameter force: overwrite uncommitted changes in files the switch rewrites.
    public func switchTo(_ target: SwitchTarget, force: Bool = false, wait: Bool = false) throws -> SwitchResult {
        switch target {
        case let .branch(name):
            let name = try previousBranchReference(name) ?? name
            let existed = try history.ref(named: name) != nil
            let checkout = try switchBranch(name, force: force, wait: wait)
            // A branch only a remote had was created, tracking it.
            return SwitchResult(branch: name, checkout: checkout, upstream: existed ? nil : try upstreamName(of: name), created: !existed)
        case let .newBranch(name, startPoint, tracking):
            let checkout = try switchBranch(name, create: true, startPoint: startPoint, tracking: tracking, force: force, wait: wait)
            return SwitchResult(branch: name, checkout: checkout, upstream: try upstreamName(of: name), created: true)
        case let .orphan(name):
            try switchToOrphan(name, wait: wait)
            return SwitchResult(branch: name, checkout: nil)
        }
    }

    /// The branch `@{-N}` names (`switch -` is spelled `@{-1}` by then), or nil for any other name.
    func previousBranchReference(_ name: String) throws -> String? {
        guard name.hasPrefix("@{-"), name.hasSuffix("}") else { return nil }
        return try previousBranch(Int(name.dropFirst(3).dropLast()) ?? 1)
    }

    /// Switches to a branch, updating the working tree (`switch NAME`, `switch -c NAME [START]`).
    ///
    /// - Parameters:
    ///   - create: create the branch at `startPoint` (default HEAD) first.
    ///   - tracking: whether the created branch tracks its start point (a remote-tracking branch).
    ///   - force: overwrite uncommitted changes.
    public func switchBranch(_ name: String, create: Bool = false, startPoint: String? = nil, tracking: BranchTracking = .auto,
                             force: Bool = false, wait: Bool = false) throws -> CheckoutResult {
        // Forced: moveHead finishes an interrupted checkout itself, once the target is known.
        try withWriteLock(wait: wait, pending: force ? .leave : nil) {
            let head = try history.head()
            if create {
                try RefNames.validateNew(name)
                // The start point first: `switch --track origin/v1` with a tag v1 is about the start.
                let upstream = try upstream(forStart: startPoint, tracking: tracking)
                if try history.ref(named: name) != nil { throw RepoError.refExists(name) }
                // Another working tree may be on it while it has no commits: refused before any file is written.
                try refuseBranchCheckedOutElsewhere(name)
                guard let start = try startPoint.map({ try resolve($0) }) ?? head.commit else {
                    // No commits yet: rename the unborn branch.
                    try history.setHead(.branch(name, commit: nil), expected: head, message: "switch: unborn branch \(name)")
                    return CheckoutResult(head: .branch(name, commit: nil), writtenFiles: 0, removedFiles: 0, unchangedFiles: 0)
                }
                if start == head.commit, try worktreeBaseline(head: head).view != nil {
                    // As git does for `switch -c` at HEAD, the working tree is kept: here it holds a
                    // model rebuilt from HEAD (a reversible merge's expert), ready to be committed.
                    try refuseDuringMerge("switching")
                    try history.setHead(.branch(name, commit: start), expected: head,
                                        message: "switch: moving from \(head.displayName) to \(name) (created at \(start.short), keeping the working tree)",
                                        creating: .init(name: name, target: start, message: "branch: created from \(startPoint ?? "HEAD")",
                                                        upstream: upstream))
                    return CheckoutResult(head: .branch(name, commit: start), writtenFiles: 0, removedFiles: 0, unchangedFiles: 0)
                }
                var result = try moveHead(to: start, newHead: .branch(name, commit: start), from: head, force: force,
                                          message: "switch: moving from \(head.displayName) to \(name) (created at \(start.short))",
                                          creating: .init(name: name, target: start, message: "branch: created from \(startPoint ?? "HEAD")",
                                                          upstream: upstream))
                result.head = .branch(name, commit: start)
                return result
            }
            if try history.ref(named: name) == nil, let tracking = try trackingCandidate(name) {
                // A remote branch named like a commit id: `switch <id>` must not make a branch of
                // that name at another commit (the name is refused for new refs anyway).
                try RefNames.validateNew(name)
                try refuseBranchCheckedOutElsewhere(name)
                // As git does: a branch that exists only on a remote starts here, tracking it.
                let branch = HistoryDatabase.NewBranch(name: name, target: tracking.target, message: "branch: created from \(tracking.fullName)",
                                                       upstream: Upstream(remote: tracking.remote, branch: tracking.name))
                var result = try moveHead(to: tracking.target, newHead: .branch(name, commit: tracking.target), from: head, force: force,
                                          message: "switch: moving from \(head.displayName) to \(name) (created from \(tracking.fullName))",
                                          creating: branch)
                result.head = .branch(name, commit: tracking.target)
                result.createdFrom = tracking.fullName
                return result
            }
            guard let ref = try history.ref(named: name), ref.kind == .branch else {
                if try history.ref(named: name)?.kind == .tag {
                    throw RepoError.switchToTag(name)
                }
                throw RepoError.unknownRef(name)
            }
            if name != head.branchName { try refuseBranchCheckedOutElsewhere(name) }
            return try moveHead(to: ref.target, newHead: .branch(name, commit: ref.target), from: head, force: force,
                                message: "switch: moving from \(head.displayName) to \(name)")
        }
    }

    /// Starts a branch with no history (`switch --orphan`): its first commit has no parent. The
    /// working tree is left as it is.
    public func switchToOrphan(_ name: String, wait: Bool = false) throws {
        try RefNames.validateNew(name)
        try withWriteLock(wait: wait) {
            try refuseDuringMerge("switching")
            try history.refuseTakenName(name)
            try refuseBranchCheckedOutElsewhere(name)
            let head = try history.head()
            try history.setHead(.branch(name, commit: nil), expected: head, message: "switch: orphan branch \(name)")
        }
    }
}
