import Foundation

/// What `remote show NAME` tells: the remote's branches against the remote-tracking ones, and
/// where each local branch pulls from and pushes to.
public struct RemoteReport: Sendable {
    public enum BranchState: String, Sendable, Codable {
        /// On the remote and tracked here.
        case tracked
        /// On the remote, not fetched yet.
        case new
        /// Tracked here, gone from the remote (`fetch --prune` removes it).
        case stale
    }

    /// How a local branch stands against the remote branch it pushes to.
    public enum PushState: String, Sendable, Codable {
        case upToDate = "up to date"
        /// The remote's commit is behind the local one: a push fast-forwards it.
        case fastForwardable = "fast-forwardable"
        /// The local commit is behind the remote's (or the remote holds commits not fetched).
        case localOutOfDate = "local out of date"
        /// Both moved: a push needs --force, or a merge first.
        case diverged
        /// The remote has no such branch: a push creates it.
        case create
    }

    public struct Branch: Sendable {
        public var name: String
        /// Nil when the remote was not asked (`-n`).
        public var state: BranchState?
    }

    public struct Pull: Sendable {
        public var local: String
        public var remoteBranch: String
    }

    public struct Push: Sendable {
        public var local: String
        public var remoteBranch: String
        public var state: PushState
    }

    public var name: String
    public var url: String
    public var lazy: Bool
    /// Whether the remote was asked for its refs (without, only what this repository recorded).
    public var queried: Bool
    public var branches: [Branch]
    public var pulls: [Pull]
    /// Only when queried.
    public var pushes: [Push]
}

extension Repository {
    /// `remote show NAME`: the remote's URL, its branches (tracked, new or stale, when `query`
    /// lets it ask the remote), the local branches that pull from it, and how each local branch
    /// with a branch there stands for a push.
    public func remoteReport(_ name: String, query: Bool = true) async throws -> RemoteReport {
        guard let remote = try history.remote(named: name) else {
            throw RepoError.invalidArgument("no remote named '\(name)' (see 'mrepo remote -v')")
        }
        let tracked = try history.remoteRefs(remote: name).filter { $0.kind == .branch }
        let local = try history.refs(kind: .branch)
        var pulls: [RemoteReport.Pull] = []
        var pushTargets: [(local: String, target: ObjectID, remoteBranch: String)] = []
        for b in local {
            let upstream = try history.upstream(of: b.name)
            if let upstream, upstream.remote == name { pulls.append(.init(local: b.name, remoteBranch: upstream.branch)) }
            pushTargets.append((b.name, b.target, upstream?.remote == name ? upstream!.branch : b.name))
        }
        guard query else {
            return RemoteReport(name: name, url: remote.url, lazy: remote.lazy, queried: false,
                                branches: tracked.map { .init(name: $0.name, state: nil) }, pulls: pulls, pushes: [])
        }
        let theirs = try await Transports.open(remote.url, environment: transportEnvironment).listRefs().values.filter { $0.kind == .branch }
        let onRemote = Dictionary(theirs.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let trackedNames = Set(tracked.map(\.name))
        var branches = theirs.map { RemoteReport.Branch(name: $0.name, state: trackedNames.contains($0.name) ? .tracked : .new) }
        branches += tracked.filter { onRemote[$0.name] == nil }.map { .init(name: $0.name, state: .stale) }
        branches.sort { $0.name < $1.name }
        var pushes: [RemoteReport.Push] = []
        for t in pushTargets {
            guard let there = onRemote[t.remoteBranch] else {
                // Only branches set to track this remote are listed as new there.
                if pulls.contains(where: { $0.local == t.local }) { pushes.append(.init(local: t.local, remoteBranch: t.remoteBranch, state: .create)) }
                continue
            }
            let state: RemoteReport.PushState
            if let id = there.targetID, try history.commit(id) != nil {
                switch try aheadBehind(t.target, id) {
                case (0, 0): state = .upToDate
                case (_, 0): state = .fastForwardable
                case (0, _): state = .localOutOfDate
                default: state = .diverged
                }
            } else {
                // The remote holds a commit this repository has not fetched.
                state = .localOutOfDate
            }
            pushes.append(.init(local: t.local, remoteBranch: t.remoteBranch, state: state))
        }
        return RemoteReport(name: name, url: remote.url, lazy: remote.lazy, queried: true, branches: branches, pulls: pulls, pushes: pushes)
    }
}
