import Delta
import Foundation

// The read-only questions a front end asks about a repository, named for what they answer. The
// CLI calls these and never `history`, so the database type stays an implementation detail of Repo
// (its queries can change shape, batch or cache without touching a command).
extension Repository {
    // MARK: - HEAD and refs

    /// HEAD of this working tree.
    public func head() throws -> Head {
        try history.head()
    }

    /// The current branch's name; nil on a detached HEAD.
    public func currentBranch() throws -> String? {
        try history.head().branchName
    }

    /// The branch or tag of this name, if there is one.
    public func ref(named name: String) throws -> Ref? {
        try history.ref(named: name)
    }

    /// Branches and tags (of one kind, or both), by name.
    public func refs(kind: Ref.Kind? = nil) throws -> [Ref] {
        try history.refs(kind: kind)
    }

    /// The names revisions may start with: HEAD, every branch and tag, and ORIG_HEAD when a reset,
    /// merge or pull recorded one (shell completion).
    public func revisionNames() throws -> [String] {
        ["HEAD"] + (try history.refs().map(\.name)) + (try history.origHead() != nil ? ["ORIG_HEAD"] : [])
    }

    /// The reflog, newest first; `HEAD` means this working tree's HEAD, nil every ref.
    public func reflog(ref: String? = nil, limit: Int = 100) throws -> [ReflogEntry] {
        try history.reflog(ref: ref, limit: limit)
    }

    // MARK: - Annotations

    /// Notes added to a commit after the fact (`notes add`), oldest first.
    public func notes(of commit: ObjectID) throws -> [CommitNote] {
        try history.notes(of: commit)
    }

    /// Stash entries, newest first (`stash@{0}`).
    public func stashes() throws -> [StashEntry] {
        try history.stashes()
    }

    /// The expert names of every reversible merge in the history, each once, in the order first
    /// met (shell completion of `--expert`).
    public func reversibleExpertNames() throws -> [String] {
        var names: [String] = []
        for c in try history.allCommits() {
            for e in try c.record(ReversibleMergeRecord.self)?.experts ?? [] where !names.contains(e.name) { names.append(e.name) }
        }
        return names
    }

    // MARK: - Remotes

    /// Every remote, by name.
    public func remotes() throws -> [RemoteConfig] {
        try history.remotes()
    }

    /// The remote of this name, if there is one.
    public func remote(named name: String) throws -> RemoteConfig? {
        try history.remote(named: name)
    }

    /// Where a push without a remote goes: the current branch's upstream remote, else `origin`.
    public func defaultPushRemote() throws -> String {
        if let branch = try history.head().branchName, let up = try history.upstream(of: branch) { return up.remote }
        return "origin"
    }
}
