/// Whether a new branch tracks the remote branch it starts from (git's `--track`, `--no-track`
/// and its default, `branch.autoSetupMerge=true`).
public enum BranchTracking: Sendable, Equatable {
    /// Tracks its start point when that is a remote-tracking branch (`origin/main`).
    case auto
    /// Tracks its start point, which must be a remote-tracking branch.
    case always
    /// Tracks nothing.
    case never
}

/// How a remote-tracking ref is spelled: `origin/B`, `remotes/origin/B` or `refs/remotes/origin/B`
/// (the remote's name ends at the first slash).
public enum RemoteRefSpelling {
    /// The remote and the ref's name on it, or nil when `spec` has no slash.
    public static func split(_ spec: String) -> (remote: String, name: String)? {
        var rest = Substring(spec)
        for prefix in ["refs/remotes/", "remotes/"] where rest.hasPrefix(prefix) {
            rest = rest.dropFirst(prefix.count)
            break
        }
        guard let slash = rest.firstIndex(of: "/") else { return nil }
        return (String(rest[..<slash]), String(rest[rest.index(after: slash)...]))
    }
}

extension Repository {
    /// The remote-tracking branch a start point names exactly (`origin/B`, `remotes/origin/B` or
    /// `refs/remotes/origin/B`), or nil: a local branch or tag of that name wins, as it does when
    /// the start point is resolved, and `origin/B~1` names a commit, not a branch.
    func remoteTrackingStart(_ spec: String) throws -> RemoteTrackingRef? {
        if try history.ref(named: spec) != nil { return nil }
        let tracking = try remoteRef(spelled: spec)
        return tracking?.kind == .branch ? tracking : nil
    }

    /// The remote-tracking ref `spec` spells (``RemoteRefSpelling``), or nil.
    func remoteRef(spelled spec: String) throws -> RemoteTrackingRef? {
        guard let (remote, name) = RemoteRefSpelling.split(spec) else { return nil }
        return try history.remoteRef(remote: remote, name: name)
    }

    /// The upstream a new branch starting at `start` (nil: HEAD) gets.
    func upstream(forStart start: String?, tracking: BranchTracking) throws -> Upstream? {
        guard tracking != .never else { return nil }
        if let start, let ref = try remoteTrackingStart(start) { return Upstream(remote: ref.remote, branch: ref.name) }
        guard tracking == .always else { return nil }
        throw RepoError.invalidArgument("cannot set up tracking: \(start.map { "'\($0)'" } ?? "HEAD") is not a remote-tracking branch; start the branch at one (e.g. origin/main)")
    }

    /// The upstream recorded for a local branch, as `origin/main`, or nil.
    public func upstreamName(of branch: String) throws -> String? {
        try history.upstream(of: branch).map { "\($0.remote)/\($0.branch)" }
    }

    /// `branch -u UPSTREAM [BRANCH]`: makes a local branch (default: the current one) track a
    /// remote-tracking branch. Returns the branch.
    @discardableResult
    public func setUpstream(of branch: String? = nil, to upstream: String, wait: Bool = false) throws -> String {
        try withWriteLock(wait: wait) {
            let name = try localBranch(branch)
            guard let tracking = try remoteTrackingStart(upstream) else {
                if let ref = try history.ref(named: upstream) {
                    throw RepoError.invalidArgument("'\(upstream)' is a local \(ref.kind.rawValue); an upstream is a remote-tracking branch (origin/main)")
                }
                throw RepoError.invalidArgument("the requested upstream branch '\(upstream)' does not exist; name a remote-tracking branch (mrepo branch -r lists them; mrepo fetch updates them)")
            }
            try history.setUpstream(of: name, to: Upstream(remote: tracking.remote, branch: tracking.name))
            return name
        }
    }

    /// `branch --unset-upstream [BRANCH]`: forgets a local branch's upstream (default: the current
    /// branch's). Returns the branch.
    @discardableResult
    public func unsetUpstream(of branch: String? = nil, wait: Bool = false) throws -> String {
        try withWriteLock(wait: wait) {
            let name = try localBranch(branch)
            guard try history.unsetUpstream(of: name) else {
                throw RepoError.invalidArgument("branch '\(name)' has no upstream information")
            }
            return name
        }
    }

    /// A local branch that exists: the one named, or the current one.
    private func localBranch(_ branch: String?) throws -> String {
        guard let name = try branch ?? history.head().branchName else {
            throw RepoError.invalidArgument("HEAD is detached; name the branch")
        }
        guard let ref = try history.ref(named: name), ref.kind == .branch else {
            if try history.head().branchName == name { throw RepoError.unbornBranch(name) }
            if try history.ref(named: name)?.kind == .tag { throw RepoError.invalidArgument("'\(name)' is a tag, not a branch") }
            throw RepoError.unknownRef(name)
        }
        return name
    }
}
