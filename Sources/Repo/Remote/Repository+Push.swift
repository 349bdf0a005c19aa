import Delta
import Foundation

/// What `push` sends.
public struct PushOptions: Sendable {
    public var remote: String
    /// `NAME` (the same name on the remote) or `LOCAL:REMOTE`; empty: the current branch.
    public var refs: [String] = []
    /// Every branch.
    public var all = false
    /// Every tag, besides the refs named.
    public var tags = false
    /// Move remote refs even when that is not a fast-forward (still by compare-and-swap).
    public var force = false
    /// Remote branches or tags to delete.
    public var delete: [String] = []
    /// Record the remote branch as the upstream of each local branch pushed.
    public var setUpstream = false
    /// Ask the remote what it lacks and report what a push would send and which refs it would
    /// move, sending and changing nothing (here or there).
    public var dryRun = false

    public init(remote: String) {
        self.remote = remote
    }
}

extension Repository {
    /// Pushes branches and tags: the commits the remote lacks and the objects they need (only
    /// those it lacks: ids are asked for first), references before deltas, then the commit
    /// records, then each ref by compare-and-swap against what the remote listed at the start.
    ///
    /// Nothing is sent when a ref would not fast-forward (without `force`): the error names it.
    /// With `dryRun`, the result says what would be sent and which refs would move; nothing is.
    /// Two pushers racing for one branch cannot both win: the loser's compare-and-swap fails
    /// (``RepoError/remoteRefMoved(ref:remote:)``) and its objects, though sent, change nothing.
    ///
    /// - Throws: the first ref's refusal when no ref moved; ``PushPartlyRejected`` (what moved,
    ///   what was refused, and the first refusal) when some did.
    public func push(_ options: PushOptions) async throws -> TransferResult {
        guard let remote = try history.remote(named: options.remote) else {
            throw Repository.noRemote(options.remote)
        }
        let opened = try Transports.open(remote.url, environment: transportEnvironment)
        let items = try pushItems(options, remote: remote.name)
        guard !items.isEmpty else { throw RepoError.invalidArgument("nothing to push (no branch or tag named)") }
        // The remote's gc waits from the first question to the last ref update: it would remove
        // what was sent but is not reachable yet, and what the remote said it had. A dry run
        // sends nothing and holds nothing.
        let (result, firstError): (TransferResult, (any Error)?)
        if options.dryRun {
            (result, firstError) = try await send(options, items: items, remote: remote, through: opened)
            // What the push would meet at its first write, asked without writing (a push with
            // nothing to send or move writes nothing, and succeeds whoever runs it).
            if result.objects > 0 || result.commits > 0 || !result.refs.isEmpty { try await opened.checkWriteAccess() }
        } else {
            // This repository's read lock first, the remote's after: a local gc running makes the push
            // wait before it holds the remote's (a push session there could expire meanwhile, and
            // the remote's gc would wait all that time).
            (result, firstError) = try await withReadLock {
                try await opened.transfer(.push, notice: waitNotice) { transport in
                    try await send(options, items: items, remote: remote, through: transport)
                }
            }
        }
        if options.dryRun { return result }
        // The remote moved already: nothing may stop this bookkeeping, nor does it touch the working tree.
        try withWriteLock(wait: true, pending: .leave) {
            try history.updateRemoteRefs(remote: remote.name, result.refs.map { ($0.name, $0.kind, $0.new) }, message: "push \(remote.name)")
            if options.setUpstream {
                for item in items where item.fromBranch && item.kind == .branch && item.local != nil && !result.rejected.contains(where: { $0.name == item.remoteName }) {
                    try history.setUpstream(of: item.localName, to: Upstream(remote: remote.name, branch: item.remoteName))
                }
            }
        }
        if let firstError {
            // Some refs moved and others did not: say both (git's "! [rejected]" beside the rest).
            guard result.refs.isEmpty else { throw PushPartlyRejected(result: result, error: RepoError.wrap(firstError)) }
            throw firstError
        }
        return result
    }

    /// A push's exchange with the remote: refs compared, commits and objects sent, then each ref
    /// moved by compare-and-swap. Returns what moved and the first ref update that failed (the
    /// others are still tried).
    private func send(_ options: PushOptions, items: [PushItem], remote: RemoteConfig, through transport: any RemoteTransport) async throws
        -> (TransferResult, (any Error)?) {
        var result = TransferResult(remote: remote.name)
        let remoteRefs = try await transport.listRefs()
        let checkedOut = try await transport.checkedOutBranches()
        // Refuse before sending anything: a push that is not a fast-forward changes nothing.
        var updates: [RefUpdate] = []
        /// What `--force` let through that is no fast-forward ("forced update" in the output).
        var forced = Set<String>()
        var sources: [String: String] = [:]
        for var item in items {
            if item.kindFromRemote, let existing = remoteRefs[item.remoteName] { item.kind = existing.kind }
            let expected = remoteRefs[item.remoteName]?.targetID
            if let existing = remoteRefs[item.remoteName], existing.kind != item.kind, item.local != nil {
                throw RepoError.remote("\(remote.url): '\(item.remoteName)' is a \(existing.kind.rawValue) there, not a \(item.kind.rawValue)")
            }
            if item.local == nil && expected == nil {
                throw RepoError.remote("\(remote.url): no branch or tag '\(item.remoteName)' to delete")
            }
            let kind = item.remoteKind(remoteRefs)
            let local = kind == .tag && item.local != nil ? try history.ref(named: item.localName)?.message : nil
            let message = RemoteRef.carried(local)
            let tooLong = local != nil && message == nil
            if expected == item.local {
                // The same commit: nothing to do, unless a forced push changes the tag's message
                // (a tag made again with -f -m, or made lightweight); without --force, said.
                guard kind == .tag, item.local != nil, !tooLong, remoteRefs[item.remoteName]?.message != message else { continue }
                guard options.force else {
                    result.warnings.append("tag '\(item.remoteName)' has another message there; it is left as it is (pass --force to replace it)")
                    continue
                }
                forced.insert(item.remoteName)
            }
            if tooLong {
                result.warnings.append("the message of tag '\(item.localName)' is longer than \(RemoteRef.messageLimit >> 10) KiB: the tag is pushed without it")
            }
            if item.kind == .branch, checkedOut.contains(item.remoteName) {
                throw RepoError.remote("\(remote.url): '\(item.remoteName)' is the checked-out branch of that repository; push to another branch, or make the remote bare ('mrepo init --bare'); nothing was sent")
            }
            if let expected, let new = item.local {
                let known = try history.commit(expected) != nil
                let forward = known ? try isAncestor(expected, of: new) : false
                if item.kind == .tag || !forward {
                    guard options.force else {
                        // Tags do not move, forward or not (git: "already exists").
                        if item.kind == .tag {
                            throw RepoError.remote("\(remote.url): tag '\(item.remoteName)' already exists there, at \(expected.short); tags do not move (pass --force to move it); the remote is unchanged")
                        }
                        throw RepoError.nonFastForward(ref: item.remoteName, remote: remote.url)
                    }
                    forced.insert(item.remoteName)
                }
            }
            updates.append(RefUpdate(name: item.remoteName, kind: kind, expected: expected, new: item.local, force: options.force, message: message))
            // What the output names as the source (`mine -> theirs`); a deletion names the remote ref.
            if item.local != nil { sources[item.remoteName] = item.localName }
        }
        try await withReadLock {
            let records = try await recordsToPush(updates.compactMap(\.newID), remoteRefs: remoteRefs, transport: transport)
            let contents = try records.map { try $0.validate() }
            let needed = Repository.objectsNeeded(by: contents)
            let counter = ProgressCounter(progress, title: "push \(remote.name)", total: 0)
            let mover = ObjectMover(repository: self, transport: transport, progress: counter)
            let missing = try await mover.remoteMissing(needed.map(\.id))
            let toSend = needed.filter { missing.contains($0.id) }
            counter.finish()
            result.objects = toSend.count
            result.skippedObjects = needed.count - toSend.count
            result.commits = records.count
            let objectBytes = toSend.reduce(0) { $0 + $1.storedByteCount }
            let recordBytes = records.reduce(0) { $0 + $1.encoded().count }
            if options.dryRun {
                result.bytes = objectBytes + recordBytes
                return
            }
            let sendCounter = ProgressCounter(progress, title: "push \(remote.name)", total: objectBytes)
            defer { sendCounter.finish() }
            do {
                result.bytes += try await ObjectMover(repository: self, transport: transport, progress: sendCounter).upload(toSend)
            } catch {
                // A push that fails before any ref moves leaves nothing in a folder remote: the
                // objects it sent and no row records go again (mrepo serve: its push session removes them).
                (transport as? LocalTransport)?.discardInstalledUnrecorded()
                throw error
            }
            if !records.isEmpty {
                try await transport.putCommits(records)
                result.bytes += recordBytes
            }
        }
        if options.dryRun {
            result.refs = updates.map { $0.change(forced: forced.contains($0.name), source: sources[$0.name]) }
            return (result, nil)
        }
        CrashPoint.reach("push.refs")
        // Refs last, one compare-and-swap each.
        var firstError: (any Error)?
        for u in updates {
            do {
                try await transport.updateRef(u)
                result.refs.append(u.change(forced: forced.contains(u.name), source: sources[u.name]))
            } catch {
                firstError = firstError ?? error
                result.rejected.append((u.name, RepoError.wrap(error).description))
            }
        }
        return (result, firstError)
    }

    /// One ref to push: the local commit (nil to delete) and the name on the remote.
    struct PushItem {
        var localName: String
        var remoteName: String
        var kind: Ref.Kind
        var local: ObjectID?
        /// `localName` is a local branch (whose upstream `--set-upstream` records).
        var fromBranch = false
        /// Pushed from a revision that is no branch or tag (a commit id, `origin/main`, `main~1`):
        /// the remote ref keeps its kind, and a new one is a branch.
        var kindFromRemote = false

        func remoteKind(_ remoteRefs: [String: RemoteRef]) -> Ref.Kind {
            local == nil ? (remoteRefs[remoteName]?.kind ?? kind) : kind
        }
    }

    func pushItems(_ options: PushOptions, remote: String) throws -> [PushItem] {
        var items: [PushItem] = []
        /// A branch or tag by name, or (with a destination) any revision, as git's refspecs.
        func add(_ source: String, _ destination: String?) throws {
            var local = source
            // HEAD on a branch pushes that branch (`push origin HEAD`, `push -u origin HEAD`).
            if source == "HEAD" || source == "@", let branch = try history.head().branchName, try history.ref(named: branch) != nil {
                local = branch
            }
            // `refs/heads/X` and `refs/tags/X` say which kind a new remote ref is.
            var remoteName = destination
            var kind: Ref.Kind?
            for (prefix, k) in [("refs/heads/", Ref.Kind.branch), ("refs/tags/", .tag)] where destination?.hasPrefix(prefix) == true {
                remoteName = String(destination!.dropFirst(prefix.count))
                kind = k
            }
            if let ref = try history.ref(named: local) {
                let name = remoteName ?? local
                // A local ref keeps its name (one of an older mrepo may look like a commit id); a
                // new name typed for the remote is held to the rules of names created here.
                if remoteName != nil, remoteName != local { try RefNames.validateNew(name) } else { try RefNames.validate(name) }
                items.append(PushItem(localName: local, remoteName: name, kind: kind ?? ref.kind, local: ref.target,
                                      fromBranch: ref.kind == .branch))
                return
            }
            let id = try resolve(source)
            guard let remoteName else {
                throw RepoError.invalidArgument("'\(source)' is not a local branch or tag; name the remote branch to push it to: 'mrepo push \(remote) \(source):NAME'")
            }
            // A name typed for the remote is a new ref there (or a move of one): held to the rules
            // of names created here (no commit-id look-alikes).
            try RefNames.validateNew(remoteName)
            items.append(PushItem(localName: source, remoteName: remoteName, kind: kind ?? .branch, local: id, kindFromRemote: kind == nil))
        }
        for spec in options.refs {
            if let colon = spec.firstIndex(of: ":") {
                try add(String(spec[..<colon]), String(spec[spec.index(after: colon)...]))
            } else {
                try add(spec, nil)
            }
        }
        if options.all {
            for b in try history.refs(kind: .branch) where !items.contains(where: { $0.localName == b.name }) { try add(b.name, nil) }
        }
        if options.tags {
            for t in try history.refs(kind: .tag) where !items.contains(where: { $0.localName == t.name }) { try add(t.name, nil) }
        }
        for name in options.delete {
            try RefNames.validate(name)
            items.append(PushItem(localName: name, remoteName: name, kind: .branch, local: nil))
        }
        if options.refs.isEmpty && !options.all && !options.tags && options.delete.isEmpty {
            guard let branch = try history.head().branchName, try history.ref(named: branch) != nil else {
                throw RepoError.invalidArgument("HEAD is not on a branch with commits; name the branch to push")
            }
            let up = try history.upstream(of: branch)
            if let up, up.remote == remote, up.branch != branch {
                // As git's default (push.default=simple): a branch that tracks a remote branch of
                // another name (started from origin/main, say) is not pushed over it unasked.
                throw RepoError.invalidArgument("the upstream of '\(branch)' is '\(remote)/\(up.branch)', another name; to push to it, use 'mrepo push \(remote) \(branch):\(up.branch)'; to push to a branch named '\(branch)', use 'mrepo push \(remote) \(branch)'")
            }
            try add(branch, nil)
        }
        return items
    }

    /// The records of the commits reachable from `targets` that the remote lacks: commits below
    /// what the remote's refs point at (when this repository knows them) are not even asked about.
    func recordsToPush(_ targets: [ObjectID], remoteRefs: [String: RemoteRef], transport: any RemoteTransport) async throws -> [CommitRecord] {
        var onRemote = Set<ObjectID>()
        for r in remoteRefs.values {
            if let t = r.targetID, try history.commit(t) != nil { onRemote.formUnion(try ancestors(of: t)) }
        }
        var candidates: [ObjectID] = []
        var seen = Set<ObjectID>()
        var stack = targets
        while let id = stack.popLast() {
            guard !onRemote.contains(id), seen.insert(id).inserted else { continue }
            candidates.append(id)
            let c = try commit(id)
            stack += c.parents
            if let b = c.base { stack.append(b) }
        }
        var missing = Set<ObjectID>()
        var start = 0
        while start < candidates.count {
            let end = min(candidates.count, start + RemoteTransportLimits.negotiationBatch)
            missing.formUnion(try await transport.missingCommits(Array(candidates[start..<end])))
            start = end
        }
        let toSend = candidates.filter { missing.contains($0) }
        try await refuseHistoryBeyondBoundary(toSend, transport: transport)
        return try toSend.map { try commitRecord($0) }
    }

    /// A shallow clone can push only onto history the remote holds: a commit it would send whose
    /// parents (or base) were never fetched here must find them there, else the remote would hold a
    /// commit whose history it lacks (a repository refuses that; a store would accept it). Checked
    /// before anything is sent.
    func refuseHistoryBeyondBoundary(_ commits: [ObjectID], transport: any RemoteTransport) async throws {
        var below: [ObjectID: ObjectID] = [:]  // a commit beyond the boundary → the boundary commit
        for id in commits {
            guard let c = try history.commit(id), let graft = c.graft else { continue }
            if graft.boundary { for p in graft.parents { below[p] = id } }
            if let b = graft.base, c.base == nil { below[b] = id }
        }
        guard !below.isEmpty else { return }
        if let lacking = try await transport.missingCommits(below.keys.sorted()).sorted().first, let boundary = below[lacking] {
            throw RepoError.remote("\(transport.url): cannot push \(boundary.short): its history below this shallow clone's boundary (\(lacking.short)) is not there; run 'mrepo fetch --unshallow' first; nothing was sent")
        }
    }
}

extension RefUpdate {
    /// The ref change this update makes once it lands.
    /// The change as output shows it; `forced`: no fast-forward (`--force` let it through).
    /// `source`: the local ref or revision it comes from (`mine` of `mine:theirs`; nil: the same name).
    func change(forced: Bool, source: String? = nil) -> RefChange {
        RefChange(name: name, source: source, kind: kind, old: expectedID, new: newID, forced: forced)
    }
}
