import Delta
import Foundation
import GRDB

/// How much history a fetch takes (git's `--depth`, `--deepen`, `--unshallow`).
public enum FetchDepth: Sendable, Equatable {
    /// Every commit down to what this repository holds (a shallow clone stays as shallow as it is).
    case full
    /// At most N commits down from each branch and tag of the remote (N ≥ 1).
    case depth(Int)
    /// N more commits below every shallow boundary (N ≥ 1), besides the new commits.
    case deepen(Int)
    /// Everything below every shallow boundary: the repository becomes complete.
    case unshallow
}

extension Repository {
    /// Whether this repository is a shallow clone (some commit's parents were not fetched).
    public func isShallow() throws -> Bool {
        try !history.shallowBoundary().isEmpty
    }

    /// Fetches every branch and tag of a remote: the commits this repository lacks, the objects
    /// they need (only blobs when `lazy`: tensors then come on first use), then, last and in one
    /// transaction, the remote-tracking refs `REMOTE/NAME` and the remote's tags this repository
    /// does not have yet (as git follows tags).
    ///
    /// Each object is verified before it is renamed into the store, so an interrupted fetch keeps
    /// what arrived whole and the next fetch does not ask for it again.
    ///
    /// - Parameters:
    ///   - prune: delete remote-tracking refs whose branch or tag the remote no longer has.
    ///   - lazy: fetch no tensor objects (nil: as the remote is configured; clone --lazy sets it,
    ///     and so does a lazy fetch that records commits).
    ///   - depth: how much history to take (a shallow clone's `--depth`, `--deepen`, `--unshallow`).
    public func fetch(remote name: String, prune: Bool = false, lazy: Bool? = nil, depth: FetchDepth = .full, wait: Bool = false) async throws -> TransferResult {
        guard let remote = try history.remote(named: name) else {
            throw Repository.noRemote(name)
        }
        return try await withWriteLock(wait: wait) {
            try await fetchLocked(remote, prune: prune, lazy: lazy ?? remote.lazy, depth: depth).result
        }
    }

    /// The error for a remote name that names no remote; a URL or path given in its place is told
    /// how to add it (fetch, push and pull keep remote-tracking refs, so they take remote names).
    static func noRemote(_ name: String) -> RepoError {
        if name.contains("/") || name.contains("://") {
            return .invalidArgument("'\(name)' is not a remote name: add it first ('mrepo remote add NAME \(name)'), then use NAME")
        }
        return .invalidArgument("no remote named '\(name)' (see 'mrepo remote -v')")
    }

    /// With `checkout` (a clone's branch), the files of that commit's tree are written while the
    /// objects are verified (``ClonePrefill``), and returned for the checkout to move into place.
    ///
    /// `alsoWant`: a commit to fetch besides the branches (and tags), with its history: the tag a
    /// shallow clone checks out (`clone --depth N --branch TAG`), which tags do not bring there.
    func fetchLocked(_ remote: RemoteConfig, prune: Bool, lazy: Bool, depth: FetchDepth, checkout: ObjectID? = nil,
                     alsoWant: ObjectID? = nil) async throws
        -> (result: TransferResult, prefill: ClonePrefill?) {
        // A folder remote's gc waits until the objects are here (it would remove what a ref that
        // moves meanwhile no longer reaches).
        try await Transports.open(remote.url, environment: transportEnvironment).transfer(.fetch, notice: waitNotice) { transport in
            try await fetchLocked(remote, through: transport, prune: prune, lazy: lazy, depth: depth, checkout: checkout, alsoWant: alsoWant)
        }
    }

    private func fetchLocked(_ remote: RemoteConfig, through transport: any RemoteTransport, prune: Bool, lazy: Bool, depth: FetchDepth,
                             checkout: ObjectID?, alsoWant: ObjectID?) async throws
        -> (result: TransferResult, prefill: ClonePrefill?) {
        let refs = try await transport.listRefs()
        var result = TransferResult(remote: remote.name)
        for r in refs.values where r.targetID == nil {
            throw RepoError.remote("\(remote.url): ref '\(r.name)' has an invalid target '\(r.target)'")
        }
        // A shallow history follows tags only into what it fetched (as git's tag following), so a
        // tag far down does not bring the history below it; unshallowing takes everything.
        let shallowNow = try isShallow()
        let tagsAreWants = depth == .unshallow || (depth == .full && !shallowNow)
        let wants = refs.values.filter { $0.kind == .branch || tagsAreWants }.compactMap(\.targetID) + (alsoWant.map { [$0] } ?? [])
        let (records, contents, recordBytes) = try await fetchRecords(from: transport, wants: wants, depth: depth)
        result.commits = records.count
        result.bytes += recordBytes
        var needed = Repository.objectsNeeded(by: contents).filter { !objects.exists($0.id) }
        // A lazy fetch from a remote that is not lazy makes it so when files are left out now, or
        // were before (a remote added again to read them): later reads fetch them from it.
        var markLazy = false
        if lazy && !remote.lazy {
            let missingBefore = !missingObjectFiles(try history.allObjects().map(\.id)).isEmpty
            markLazy = missingBefore || needed.contains { $0.kind != .blob }
        }
        if lazy { needed = needed.filter { $0.kind == .blob } }
        let counter = ProgressCounter(progress, title: "fetch \(remote.name)", total: needed.reduce(0) { $0 + $1.storedByteCount })
        defer { counter.finish() }
        var mover = ObjectMover(repository: self, transport: transport, progress: counter)
        if !lazy, let checkout, let tree = contents.first(where: { $0.commit.id == checkout })?.tree {
            var logical: [ObjectID: Int] = [:]
            for c in contents { for o in c.objects { logical[o.id] = o.logicalByteCount } }
            mover.prefill = try ClonePrefill(repository: self, tree: tree, logical: logical)
        }
        do {
            let downloaded = try await mover.download(needed)
            result.bytes += downloaded.bytes
            // Objects found whole in their partial files (kept by an earlier try) were not sent again.
            result.objects = needed.count - downloaded.keptWhole
            result.skippedObjects += downloaded.keptWhole
            // A lazy fetch from a remote that was not lazy makes it so: the files it leaves out are
            // read from it on first use (`fetch --objects` fetches them now).
            try receiveCommits(records, allowMissingObjects: lazy, shallow: true, known: mover.verifiedRows.all,
                               markingLazy: markLazy ? remote.name : nil)
        } catch {
            mover.prefill?.discard()
            // A failed fetch stores nothing: the objects it installed before the failure leave the
            // store, as no row records them. After a failure of the transfer (a connection that kept
            // dropping, a full disk) they wait under their partial names with what else arrived, for
            // the next fetch not to download again; a fetch refused because the remote sent a damaged
            // object keeps nothing it received.
            let refused = RepoError.refusesReceivedObject(error)
            let ids = needed.map(\.id)
            objects.removeUnrecorded(ids, history: history, keepingAsPartial: !refused)
            if refused { PartialDownload.discard(ids, in: objects) }
            throw error
        }
        if depth == .unshallow, try isShallow() {
            result.warnings.append("\(remote.url) is itself a shallow repository: the history below its boundary is not there to fetch, so this one stays shallow")
        }
        // A remote-tracking ref names a commit that is here (a tag outside a shallow history is left out).
        let recorded = tagsAreWants ? refs : try refs.filter { try $0.value.targetID.flatMap { try history.commit($0) } != nil }
        (result.refs, result.warnings) = try recordRemoteRefs(remote.name, recorded, prune: prune, warnings: result.warnings)
        return (result, mover.prefill)
    }

    /// Walks the remote's history from `wants` down to commits this repository holds, reading
    /// records a few at a time in parallel and checking each. Returns them with their contents.
    ///
    /// `depth` limits the walk (docs/remotes.md, "Shallow clones"): `.depth(N)` takes at most N
    /// commits down from each want (going on below a boundary here that is fewer than N commits
    /// down), `.deepen(N)` takes N more commits below every boundary, `.unshallow` everything
    /// below them. A commit whose parents the walk leaves out becomes a boundary when recorded.
    ///
    /// A shallow remote's boundary is one for this walk too (git's rule): below a commit whose
    /// parents (or base) the remote lacks, nothing is asked for, so a clone of a shallow clone is
    /// shallow at the same boundary, or above it with a smaller depth.
    func fetchRecords(from transport: any RemoteTransport, wants: [ObjectID], depth: FetchDepth = .full) async throws
        -> (records: [CommitRecord], contents: [CommitRecord.Contents], bytes: Int) {
        let remoteGrafts = try await transport.shallowGrafts()
        let noParentsThere = Set(remoteGrafts.filter(\.boundary).compactMap { ObjectID(hex: $0.commit) })
        let noBaseThere = Set(remoteGrafts.filter(\.baseMissing).compactMap { ObjectID(hex: $0.commit) })
        // Budget: how many commits to take from here down (this one included); `.max` is unlimited.
        let unlimited = Int.max
        var queue: [(ObjectID, Int)]
        switch depth {
        case .full: queue = wants.map { ($0, unlimited) }
        case let .depth(n): queue = wants.map { ($0, n) }
        case .deepen, .unshallow:
            var n = unlimited
            if case let .deepen(d) = depth { n = d }
            queue = wants.map { ($0, unlimited) }
            for (id, graft) in try history.grafts() {
                if graft.boundary, !noParentsThere.contains(id) { queue += graft.parents.map { ($0, n) } }
                if let b = graft.base, n == unlimited, !noBaseThere.contains(id) { queue.append((b, unlimited)) }
            }
        }
        // Bases come along only where history is taken whole: a shallow repository keeps a missing
        // base in its commit's graft instead of fetching the history below it.
        let shallowHere = try isShallow()
        let followBases = depth == .unshallow || (depth == .full && !shallowHere)
        var best: [ObjectID: Int] = [:]
        var fetched: [ObjectID: CommitRecord.Contents] = [:]
        var records: [CommitRecord] = []
        var contents: [CommitRecord.Contents] = []
        var bytes = 0
        while !queue.isEmpty {
            var expand: [(ObjectID, Int)] = []
            for (id, budget) in queue where budget > 0 && budget > (best[id] ?? 0) {
                best[id] = budget
                expand.append((id, budget))
            }
            queue = []
            var absent: [ObjectID] = []
            for (id, _) in expand where fetched[id] == nil && !absent.contains(id) {
                if try history.commit(id) == nil { absent.append(id) }
            }
            var start = 0
            while start < absent.count {
                let batch = Array(absent[start..<min(absent.count, start + RemoteTransportLimits.parallelStreams * 2)])
                start += batch.count
                let got = try await withThrowingTaskGroup(of: CommitRecord.self) { group in
                    for id in batch { group.addTask { try await transport.getCommit(id) } }
                    var out: [CommitRecord] = []
                    for try await r in group { out.append(r) }
                    return out
                }
                for record in got {
                    let checked = try record.validate()
                    guard batch.contains(checked.commit.id), fetched[checked.commit.id] == nil else {
                        throw RepoError.remote("\(transport.url): sent commit \(checked.commit.id.short) when asked for another")
                    }
                    fetched[checked.commit.id] = checked
                    records.append(record)
                    contents.append(checked)
                    bytes += record.encoded().count
                }
            }
            for (id, budget) in expand {
                let next = budget == unlimited ? unlimited : budget - 1
                if let c = fetched[id] {
                    if !noParentsThere.contains(id) { queue += c.commit.parents.map { ($0, next) } }
                    if followBases, budget == unlimited, !noBaseThere.contains(id), let b = c.commit.base { queue.append((b, unlimited)) }
                } else if budget != unlimited, next > 0, !noParentsThere.contains(id), let here = try history.commit(id) {
                    // Here already: walk on below it only to deepen a boundary fewer than `budget` commits down.
                    queue += (here.isShallowBoundary ? here.hashedParents : here.parents).map { ($0, next) }
                }
            }
        }
        return (records, contents, bytes)
    }

    /// Sets the remote-tracking refs of `remote` to what it listed (and deletes those it no
    /// longer has, with `prune`), and creates the tags this repository lacks, in one transaction.
    ///
    /// A remote-tracking branch that moved to a commit that does not descend from where it was is
    /// marked forced (git's `+ a...b (forced update)`). A local tag is never moved; one that names
    /// another commit than the remote's tag of its name gets a warning, as git's "would clobber".
    func recordRemoteRefs(_ remote: String, _ refs: [String: RemoteRef], prune: Bool, warnings: [String] = []) throws
        -> (changes: [RefChange], warnings: [String]) {
        let before = Dictionary(try history.remoteRefs(remote: remote).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var updates: [(name: String, kind: Ref.Kind, target: ObjectID?)] = refs.values.sorted { $0.name < $1.name }.map { ($0.name, $0.kind, $0.targetID) }
        if prune {
            for (name, r) in before where refs[name] == nil { updates.append((name, r.kind, nil)) }
        }
        var changes: [RefChange] = []
        // In a shallow repository the walk stops at the boundary: "not an ancestor" is unknown there.
        let shallow = try isShallow()
        for u in updates where before[u.name]?.target != u.target {
            var change = RefChange(name: remote + "/" + u.name, source: u.name, kind: u.kind, old: before[u.name]?.target, new: u.target)
            if !shallow, let old = change.old, let new = change.new, try history.commit(old) != nil, try history.commit(new) != nil {
                change.forced = try !isAncestor(old, of: new)
            }
            changes.append(change)
        }
        var warnings = warnings
        for r in refs.values.sorted(by: { $0.name < $1.name }) where r.kind == .tag {
            guard let theirs = r.targetID, let ours = try history.ref(named: r.name), ours.kind == .tag, ours.target != theirs else { continue }
            warnings.append("tag '\(r.name)' names \(theirs.short) on \(remote), \(ours.target.short) here: the local tag is kept ('mrepo tag -f \(r.name) \(remote)/\(r.name)' takes theirs)")
        }
        var created = Set<String>()
        try history.write { db in
            try HistoryDatabase.updateRemoteRefs(db, remote: remote, updates, message: "fetch \(remote)")
            for r in refs.values where r.kind == .tag {
                guard let target = r.targetID, try HistoryDatabase.ref(db, r.name) == nil, (try? RefNames.validateNew(r.name)) != nil else { continue }
                try HistoryDatabase.setRef(db, name: r.name, kind: .tag, target: target, old: nil, message: "fetch \(remote): tag \(r.name)",
                                           tagMessage: RemoteRef.carried(r.message))
                created.insert(r.name)
            }
        }
        for i in changes.indices where changes[i].kind == .tag { changes[i].createdLocalTag = created.contains(changes[i].source) }
        // A local tag made again (deleted here since) while origin's stayed: listed too, as git lists it.
        for name in created.sorted() where !changes.contains(where: { $0.kind == .tag && $0.source == name }) {
            // origin/NAME itself did not move: old and new are both where it is.
            var change = RefChange(name: remote + "/" + name, source: name, kind: .tag, old: refs[name]?.targetID, new: refs[name]?.targetID)
            change.createdLocalTag = true
            changes.append(change)
        }
        return (changes, warnings)
    }

    /// Fetches the object files a revision needs that a lazy clone has not read yet.
    public func fetchObjects(of revision: String, wait: Bool = false) async throws -> TransferResult {
        let id = try resolve(revision)
        let c = try commit(id)
        var ids = Array(try history.tree(c.treeID).objectIDs.union(extraObjects(of: c)))
        ids.sort()
        var result = TransferResult(remote: try lazyRemote()?.name ?? "")
        let fetched = try await fetchMissingObjects(ids)
        (result.objects, result.bytes, result.skippedObjects) = (fetched.objects, fetched.bytes, fetched.keptWhole)
        return result
    }
}

extension Repository {
    /// Refuses a revision that walks past a shallow clone's boundary commit `id` (its parents were
    /// not fetched), saying how to fetch them.
    func refuseBeyondShallowBoundary(_ revision: String, at id: ObjectID) throws {
        guard try history.commit(id)?.isShallowBoundary == true else { return }
        throw RepoError.invalidArgument("'\(revision)': \(id.short) is the boundary of this shallow clone (its parents were not fetched); run 'mrepo fetch --deepen N' or 'mrepo fetch --unshallow'")
    }

    /// The error for commits without a common ancestor in a shallow clone, when their histories
    /// stop at a boundary (the merge base may lie beyond it); nil when the repository is complete
    /// or the histories end at real roots.
    func shallowMergeBaseError(_ commits: [ObjectID]) throws -> RepoError? {
        let boundary = Set(try history.shallowBoundary())
        guard !boundary.isEmpty else { return nil }
        for c in commits where !(try ancestors(of: c)).isDisjoint(with: boundary) {
            return .invalidArgument("no common ancestor in this shallow clone: the merge base lies beyond its boundary; run 'mrepo fetch --deepen N' or 'mrepo fetch --unshallow', then merge again")
        }
        return nil
    }
}
