import Delta
import Foundation
import GRDB

extension Repository {
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
    ///   - lazy: fetch no tensor objects (nil: as the remote is configured; clone --lazy sets it).
    public func fetch(remote name: String, prune: Bool = false, lazy: Bool? = nil, wait: Bool = false) async throws -> TransferResult {
        guard let remote = try history.remote(named: name) else {
            throw RepoError.invalidArgument("no remote named '\(name)' (see 'mrepo remote -v')")
        }
        return try await withWriteLock(wait: wait) {
            try await fetchLocked(remote, prune: prune, lazy: lazy ?? remote.lazy)
        }
    }

    func fetchLocked(_ remote: RemoteConfig, prune: Bool, lazy: Bool) async throws -> TransferResult {
        let transport = try Transports.open(remote.url, environment: transportEnvironment)
        let refs = try await transport.listRefs()
        var result = TransferResult(remote: remote.name)
        for r in refs.values where r.targetID == nil {
            throw RepoError.remote("\(remote.url): ref '\(r.name)' has an invalid target '\(r.target)'")
        }
        let (records, contents, recordBytes) = try await fetchRecords(from: transport, wants: refs.values.compactMap(\.targetID))
        result.commits = records.count
        result.bytes += recordBytes
        var needed = Repository.objectsNeeded(by: contents).filter { !objects.exists($0.id) }
        if lazy { needed = needed.filter { $0.kind == .blob } }
        let counter = ProgressCounter(progress, title: "fetch \(remote.name)", total: needed.reduce(0) { $0 + $1.storedByteCount })
        defer { counter.finish() }
        result.bytes += try await ObjectMover(repository: self, transport: transport, progress: counter).download(needed)
        result.objects = needed.count
        try receiveCommits(records, allowMissingObjects: lazy)
        result.refs = try recordRemoteRefs(remote.name, refs, prune: prune)
        return result
    }

    /// Walks the remote's history from `wants` down to commits this repository holds, reading
    /// records a few at a time in parallel and checking each. Returns them with their contents.
    func fetchRecords(from transport: any RemoteTransport, wants: [ObjectID]) async throws
        -> (records: [CommitRecord], contents: [CommitRecord.Contents], bytes: Int) {
        var queue = Array(try missingCommits(wants))
        var seen = Set(queue)
        var records: [CommitRecord] = []
        var contents: [CommitRecord.Contents] = []
        var bytes = 0
        while !queue.isEmpty {
            let batch = Array(queue.prefix(RemoteTransportLimits.parallelStreams * 2))
            queue.removeFirst(batch.count)
            let fetched = try await withThrowingTaskGroup(of: CommitRecord.self) { group in
                for id in batch { group.addTask { try await transport.getCommit(id) } }
                var out: [CommitRecord] = []
                for try await r in group { out.append(r) }
                return out
            }
            var next: [ObjectID] = []
            for record in fetched {
                let checked = try record.validate()
                guard batch.contains(checked.commit.id) else {
                    throw RepoError.remote("\(transport.url): sent commit \(checked.commit.id.short) when asked for another")
                }
                records.append(record)
                contents.append(checked)
                bytes += record.encoded().count
                for p in checked.commit.parents + (checked.commit.base.map { [$0] } ?? []) where seen.insert(p).inserted {
                    next.append(p)
                }
            }
            queue += try missingCommits(next)
        }
        return (records, contents, bytes)
    }

    /// Sets the remote-tracking refs of `remote` to what it listed (and deletes those it no
    /// longer has, with `prune`), and creates the tags this repository lacks, in one transaction.
    func recordRemoteRefs(_ remote: String, _ refs: [String: RemoteRef], prune: Bool) throws -> [RefChange] {
        let before = Dictionary(try history.remoteRefs(remote: remote).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var updates: [(name: String, kind: Ref.Kind, target: ObjectID?)] = refs.values.sorted { $0.name < $1.name }.map { ($0.name, $0.kind, $0.targetID) }
        if prune {
            for (name, r) in before where refs[name] == nil { updates.append((name, r.kind, nil)) }
        }
        var changes: [RefChange] = []
        for u in updates where before[u.name]?.target != u.target {
            changes.append(RefChange(name: remote + "/" + u.name, kind: u.kind, old: before[u.name]?.target, new: u.target))
        }
        try history.write { db in
            try HistoryDatabase.updateRemoteRefs(db, remote: remote, updates, message: "fetch \(remote)")
            for r in refs.values where r.kind == .tag {
                guard let target = r.targetID, try HistoryDatabase.ref(db, r.name) == nil, (try? RefNames.validate(r.name)) != nil else { continue }
                try HistoryDatabase.setRef(db, name: r.name, kind: .tag, target: target, old: nil, message: "fetch \(remote): tag \(r.name)")
            }
        }
        return changes
    }

    /// Fetches the object files a revision needs that a lazy clone has not read yet.
    public func fetchObjects(of revision: String, wait: Bool = false) async throws -> TransferResult {
        let id = try resolve(revision)
        let c = try commit(id)
        var ids = Array(try history.tree(c.treeID).objectIDs.union(extraObjects(of: c)))
        ids.sort()
        var result = TransferResult(remote: try lazyRemote()?.name ?? "")
        let before = ids.filter { !objects.exists($0) }
        let bytes = try await fetchMissingObjects(before)
        result.objects = before.count
        result.bytes = bytes
        return result
    }
}
