import Delta
import Foundation
import GRDB

/// How a branch stands against its upstream (`status`).
public struct TrackingStatus: Sendable, Equatable {
    /// `origin/main`.
    public var upstream: String
    /// Commits on the branch that the upstream lacks.
    public var ahead: Int
    /// Commits on the upstream that the branch lacks.
    public var behind: Int
    /// The upstream is recorded but its remote-tracking branch is no more (deleted on the remote
    /// and pruned): git's "gone". Then `ahead` and `behind` are 0.
    public var gone = false
}

/// What `pull` did.
public enum PullOutcome: Sendable {
    case upToDate
    case fastForward(from: ObjectID?, to: ObjectID)
}

extension Repository {
    // MARK: - Configuration

    /// Adds a remote (`remote add NAME URL`); the URL is checked for form, not reached.
    public func addRemote(_ name: String, url: String, lazy: Bool = false, wait: Bool = false) throws {
        try Repository.validateRemoteName(name)
        let url = try Repository.storedURL(url)
        try withWriteLock(wait: wait) { try history.addRemote(RemoteConfig(name: name, url: url, lazy: lazy)) }
    }

    /// The URL as recorded: a relative path becomes absolute (it was relative to where the command ran).
    static func storedURL(_ url: String) throws -> String {
        if case let .local(path) = try RemoteLocation(parsing: url), !url.hasPrefix("file://") { return path }
        return url
    }

    /// Removes a remote, its remote-tracking refs and the upstreams naming it. The one lazy remote
    /// of a lazy clone that has not fetched every object file is kept unless `force`: nothing else
    /// could fetch those files.
    public func removeRemote(_ name: String, force: Bool = false, wait: Bool = false) throws {
        try withWriteLock(wait: wait) {
            let remotes = try history.remotes()
            if !force, remotes.contains(where: { $0.name == name && $0.lazy }), !remotes.contains(where: { $0.name != name && $0.lazy }) {
                let missing = missingObjectFiles(try history.allObjects().map(\.id)).count
                if missing > 0 {
                    throw RepoError.invalidArgument("'\(name)' is the remote this lazy clone fetches its \(missing) missing object file\(missing == 1 ? "" : "s") from: 'mrepo fetch --objects REV' fetches what a revision needs now; 'mrepo remote remove --force \(name)' removes it anyway (those objects then stay missing until a remote that has them is fetched with --lazy)")
                }
            }
            try history.removeRemote(name)
        }
    }

    public func renameRemote(_ old: String, to new: String, wait: Bool = false) throws {
        try Repository.validateRemoteName(new)
        try withWriteLock(wait: wait) { try history.renameRemote(old, to: new) }
    }

    public func setRemoteURL(_ name: String, url: String, wait: Bool = false) throws {
        let url = try Repository.storedURL(url)
        try withWriteLock(wait: wait) { try history.setRemote(name, url: url) }
    }

    /// A remote's name is the first part of `NAME/branch`: a ref name without `/`.
    static func validateRemoteName(_ name: String) throws {
        try RefNames.validate(name)
        if name.contains("/") { throw RepoError.invalidRefName(name, reason: "a remote's name must not contain '/'") }
    }

    // MARK: - Clone

    /// Clones the repository at `url` into `directory` (default: the last part of the URL):
    /// `init`, the remote `origin`, a fetch, then the branch `branch` (default: `main` when the
    /// remote has it, else its first branch) created from `origin/BRANCH`, tracking it, and checked out.
    /// With `depth`, only the last `depth` commits of each branch and tag (a shallow clone).
    /// `notice` is told when the clone waits (for gc on the remote, say).
    ///
    /// The clone is built in a hidden folder beside the destination and renamed into place last, so
    /// a clone that fails, or is killed, leaves no repository behind: a failure removes the folder,
    /// and the next clone into the same parent removes what killed ones left (``CloneStaging/sweep()``).
    /// A lazy clone's checkout reads its tree's objects now (asynchronously: a read from inside the
    /// checkout would block a thread of the async pool on the fetch); they count as received.
    private func fetchCheckedOut(_ commit: ObjectID, into result: inout TransferResult) async throws {
        let fetched = try await fetchMissingObjects(Array(try tree(of: commit).objectIDs))
        result.objects += fetched.objects
        result.bytes += fetched.bytes
        result.skippedObjects += fetched.keptWhole
    }

    public static func clone(url: String, into directory: String?, branch: String? = nil, lazy: Bool = false, depth: Int? = nil,
                             progress: (any ProgressSink)? = nil, notice: (@Sendable (String) -> Void)? = nil,
                             environment: [String: String] = ProcessInfo.processInfo.environment) async throws -> (Repository, TransferResult) {
        let location = try RemoteLocation(parsing: url)
        if let depth, depth < 1 { throw RepoError.invalidArgument("--depth \(depth): the depth must be at least 1") }
        let name = directory ?? Repository.defaultCloneDirectory(location, url: url)
        let dest = absolutePath(name)
        let existed = FileManager.default.fileExists(atPath: dest)
        if existed, let entries = try? FileManager.default.contentsOfDirectory(atPath: dest), !entries.isEmpty {
            throw RepoError.invalidArgument("destination '\(name)' already exists and is not an empty folder")
        }
        // What killed clones into other destinations left here goes first (also when this clone
        // fails: it is no state of anyone's); what killed clones into this one received moves into
        // this clone's store below. Then reach the remote before creating anything.
        let staging = CloneStaging(destination: dest)
        let killed = staging.sweep()
        let listed = try await Transports.open(url, environment: environment).listRefs()
        // The branch the clone will check out, as listed now: its files are written while its
        // objects are verified (used only if the branch still names that commit after the fetch).
        let planned = (branch ?? (listed["main"]?.kind == .branch ? "main" : nil)).flatMap { listed[$0] }.flatMap { $0.kind == .branch ? $0.targetID : nil }
        // `--branch TAG` with no branch of that name: the tag's commit is fetched whatever the depth.
        let tagWanted = branch.flatMap { listed[$0] }.flatMap { $0.kind == .tag ? $0.targetID : nil }
        do {
            let built = try initialize(at: staging.path)
            built.progress = progress
            built.waitNotice = notice
            built.transportEnvironment = environment
            // What killed clones into this destination received waits as partial files: objects
            // they had begun continue where they broke off, whole ones are verified, not sent again.
            PartialDownload.adopt(fromKilledClones: killed, into: built.objects)
            try built.history.addRemote(RemoteConfig(name: "origin", url: try storedURL(url), lazy: lazy))
            guard let remote = try built.history.remote(named: "origin") else { throw RepoError.failed("the new clone has no remote 'origin'") }
            if lazy { built.readMissingObjectsLazily() }
            let fetched = try await built.withWriteLock(wait: false) {
                try await built.fetchLocked(remote, prune: false, lazy: lazy, depth: depth.map { .depth($0) } ?? .full, checkout: planned,
                                            alsoWant: tagWanted)
            }
            var result = fetched.result
            let prefill = fetched.prefill
            defer { prefill?.discard() }
            let branches = try built.history.remoteRefs(remote: "origin").filter { $0.kind == .branch }
            if branches.isEmpty, branch == nil {
                result.warnings.append("\(url) holds no branches: the clone is an empty repository")
                // As git records it: the unborn branch tracks the remote's branch of its name, so
                // the first pull or push and `status` know it.
                if let unborn = try built.history.head().branchName {
                    try built.history.setUpstream(of: unborn, to: Upstream(remote: "origin", branch: unborn))
                }
            }
            let chosen = branch ?? (branches.contains { $0.name == "main" } ? "main" : branches.first?.name)
            if let chosen, !branches.contains(where: { $0.name == chosen }), let tag = try built.history.ref(named: chosen), tag.kind == .tag {
                // `--branch TAG`: HEAD detached at the tag's commit, as git clones it.
                if lazy { try await built.fetchCheckedOut(tag.target, into: &result) }
                try built.withWriteLock {
                    _ = try built.moveHead(to: tag.target, newHead: .detached(tag.target), from: try built.history.head(), force: false,
                                           message: "clone: from \(url), tag \(chosen)")
                }
            } else if let chosen {
                guard let tracking = branches.first(where: { $0.name == chosen }) else {
                    throw RepoError.invalidArgument("remote branch or tag '\(chosen)' not found in \(url)")
                }
                if lazy { try await built.fetchCheckedOut(tracking.target, into: &result) }
                let prepared = tracking.target == planned ? prefill?.finish() ?? [:] : [:]
                try built.withWriteLock {
                    try built.startBranch(chosen, at: tracking.target, upstream: Upstream(remote: "origin", branch: chosen), message: "clone: from \(url)",
                                          prepared: prepared)
                }
            }
            // What killed tries left that this clone does not need (another remote's objects, a
            // branch deleted since) is not kept; a lazy clone keeps what it may read later.
            _ = PartialDownload.sweep(built.objects, keeping: Set(try built.history.allObjects().map(\.id).filter { !built.objects.exists($0) }))
            // The temporary folder goes before the clone is moved into place (it is inside it).
            prefill?.discard()
            CrashPoint.reach("clone.before-rename")
            // The journal names folders of the staging path: deleted here, before the rename, as
            // it would be at the end of the command (it outlived the clone in the clone's .mrepo).
            built.journal.close()
            try staging.install()
            let repo = try Repository(root: dest)
            repo.progress = progress
            repo.transportEnvironment = environment
            return (repo, result)
        } catch {
            // What arrived waits for the next try, unless the remote sent a damaged object.
            if RepoError.refusesReceivedObject(error) { staging.remove() } else { staging.keepOnlyPartials() }
            throw error
        }
    }

    static func defaultCloneDirectory(_ location: RemoteLocation, url: String) -> String {
        let trimmed = url.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        let last = trimmed.split(separator: "/").last.map(String.init) ?? "clone"
        if case .local = location, last.hasSuffix(".mrepo") { return String(last.dropLast(6)) }
        return last
    }

    // MARK: - Pull

    /// Fetches `remote`, then fast-forwards the current branch to `remote/branch` (default: its
    /// upstream, else the branch of the same name). Branches that diverged are not merged: a model
    /// merge needs a method, so the error says which `mrepo merge` to run.
    public func pull(remote name: String?, branch: String?, wait: Bool = false) async throws -> (PullOutcome, TransferResult) {
        let head = try history.head()
        guard let current = head.branchName else { throw RepoError.invalidArgument("HEAD is detached; switch to a branch to pull into") }
        let upstream = try history.upstream(of: current)
        let remoteName = name ?? upstream?.remote ?? "origin"
        let remoteBranch = branch ?? (upstream?.remote == remoteName ? upstream?.branch : nil) ?? current
        let fetched = try await fetch(remote: remoteName, wait: wait)
        guard let tracking = try history.remoteRef(remote: remoteName, name: remoteBranch), tracking.kind == .branch else {
            throw RepoError.invalidArgument("remote '\(remoteName)' has no branch '\(remoteBranch)'")
        }
        if try lazyRemote() != nil { try await fetchMissingObjects(Array(try tree(of: tracking.target).objectIDs)) }
        let outcome: PullOutcome = try withWriteLock(wait: wait) {
            let head = try history.head()
            guard let local = head.commit else {
                // Its recorded upstream (a clone of an empty repository) stays; none is made up.
                try startBranch(current, at: tracking.target, upstream: try history.upstream(of: current), message: "pull: from \(tracking.fullName)")
                return .fastForward(from: nil, to: tracking.target)
            }
            if try isAncestor(tracking.target, of: local) { return .upToDate }
            guard try isAncestor(local, of: tracking.target) else {
                throw RepoError.invalidArgument("'\(current)' and '\(tracking.fullName)' have diverged; merge them with 'mrepo merge \(tracking.fullName)' (a model merge takes a method)")
            }
            try refuseDuringMerge("pulling")
            _ = try moveHeadForward(head, to: tracking.target, message: "pull \(remoteName): fast-forward", operation: "pull")
            return .fastForward(from: local, to: tracking.target)
        }
        return (outcome, fetched)
    }

    /// Gives the unborn branch HEAD is on (or a new one) its first commit: writes the commit's
    /// files into the working tree (refusing to overwrite untracked files that differ), then in one
    /// transaction creates the branch, points HEAD at it and records the upstream.
    func startBranch(_ name: String, at target: ObjectID, upstream: Upstream?, message: String, prepared: [String: PreparedFile] = [:]) throws {
        let head = try history.head()
        guard head.commit == nil else { throw RepoError.concurrentUpdate(ref: head.branchName ?? "HEAD") }
        try refuseDuringMerge("switching")
        var stats = MaterializeStats()
        let entries = try materialize(try verifiedTree(of: target), over: .empty, force: false, stats: &stats, prepared: prepared)
        try history.write { db in
            guard try history.head(db) == head else { throw RepoError.concurrentUpdate(ref: "HEAD") }
            try history.refuseBranchInUse(db, name)
            try HistoryDatabase.setRef(db, name: name, kind: .branch, target: target, old: nil, message: message)
            try db.execute(sql: "UPDATE head SET branch = ?, commitID = NULL WHERE worktree = ?", arguments: [name, history.worktree])
            try HistoryDatabase.logRef(db, history.headLogName, old: nil, new: target, message: message)
            try history.clearView(db)
            for e in entries { try e.save(db, worktree: history.worktree) }
            try HistoryDatabase.startUpstream(db, of: name, upstream)
        }
    }

    // MARK: - Tracking

    /// The upstream of the current branch (`origin/main`) and how far each side is ahead, or nil.
    public func trackingStatus() throws -> TrackingStatus? {
        guard let branch = try history.head().branchName else { return nil }
        return try trackingStatus(of: branch)
    }

    /// The upstream of a local branch (`origin/main`) and how far each side is ahead, or nil when
    /// the branch has none (`branch -vv`, `status`). As in git, a branch tracks only the upstream
    /// recorded for it (by clone, `push -u`, `branch -u`, or a branch started from a remote one).
    public func trackingStatus(of branch: String) throws -> TrackingStatus? {
        guard let local = try history.ref(named: branch)?.target else { return nil }
        guard let upstream = try history.upstream(of: branch) else { return nil }
        guard let tracking = try history.remoteRef(remote: upstream.remote, name: upstream.branch) else {
            return TrackingStatus(upstream: "\(upstream.remote)/\(upstream.branch)", ahead: 0, behind: 0, gone: true)
        }
        let (ahead, behind) = try aheadBehind(local, tracking.target)
        return TrackingStatus(upstream: tracking.fullName, ahead: ahead, behind: behind)
    }

    /// Commits reachable from `local` and not from `other`, and the other way round.
    func aheadBehind(_ local: ObjectID, _ other: ObjectID) throws -> (ahead: Int, behind: Int) {
        let mine = try ancestors(of: local)
        let theirs = try ancestors(of: other)
        return (mine.subtracting(theirs).count, theirs.subtracting(mine).count)
    }

    /// The remote-tracking branch that `switch NAME` starts a new branch from, when NAME exists on
    /// exactly one remote and not locally.
    func trackingCandidate(_ name: String) throws -> RemoteTrackingRef? {
        let matches = try history.remoteRefs().filter { $0.name == name && $0.kind == .branch }
        if matches.count > 1 {
            throw RepoError.invalidArgument("'\(name)' is a branch of several remotes (\(matches.map(\.fullName).joined(separator: ", "))); use 'mrepo switch -c \(name) REMOTE/\(name)'")
        }
        return matches.first
    }
}
