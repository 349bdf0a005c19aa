import Delta
import Foundation
import GRDB

/// The two ends of a transfer as a repository sees them: what it holds, the records it gives,
/// and how it takes objects, commits and ref updates from another repository. ``LocalTransport``
/// calls these on the other repository; `mrepo serve` calls them for HTTP clients.
extension Repository {
    // MARK: - Giving

    /// Which of `ids` have no object file here.
    public func missingObjectFiles(_ ids: [ObjectID]) -> Set<ObjectID> {
        Set(ids.filter { !objects.exists($0) })
    }

    /// This repository's grafts as a remote describes them (``RemoteTransport/shallowGrafts()``).
    public func shallowGrafts() throws -> [RemoteGraft] {
        try history.grafts().sorted { $0.key < $1.key }.map { id, graft in
            let baseMissing = try graft.base.map { try history.commit($0) == nil } ?? false
            return RemoteGraft(commit: id, boundary: graft.boundary, baseMissing: baseMissing)
        }
    }

    /// Which of `ids` have no commit row here.
    public func missingCommits(_ ids: [ObjectID]) throws -> Set<ObjectID> {
        try history.read { db in
            var out = Set<ObjectID>()
            for id in ids where try Row.fetchOne(db, sql: #"SELECT 1 FROM "commit" WHERE id = ?"#, arguments: [id.hex]) == nil {
                out.insert(id)
            }
            return out
        }
    }

    /// The transfer record of a commit: its rows, its tree's rows, and the rows of every object it
    /// needs (tree, `extra`, and their delta references).
    public func commitRecord(_ id: ObjectID) throws -> CommitRecord {
        let c = try commit(id)
        let tree = try history.tree(c.treeID)
        var infos: [ObjectID: ObjectInfo] = [:]
        var stack = Array(tree.objectIDs.union(extraObjects(of: c)))
        while let next = stack.popLast() {
            guard infos[next] == nil else { continue }
            guard let info = try history.objectInfo(next) else {
                throw RepoError.corruptObject(object: next.short, problem: "commit \(id.short) needs it but it is not recorded; run 'mrepo fsck'")
            }
            infos[next] = info
            if let r = info.reference { stack.append(r) }
        }
        return CommitRecord(commit: c, tree: tree, objects: Array(infos.values))
    }

    /// Every object a set of records needs, shallowest first (references before the deltas on them).
    static func objectsNeeded(by records: [CommitRecord.Contents]) -> [ObjectInfo] {
        var byID: [ObjectID: ObjectInfo] = [:]
        for r in records { for o in r.objects { byID[o.id] = o } }
        return byID.values.sorted { ($0.depth, $0.id) < ($1.depth, $1.id) }
    }

    // MARK: - Taking

    /// Verifies the object file at `file` (a temporary file in this store, see
    /// ``ObjectStore/incomingPath()``) and moves it into place, synced; its name is made durable
    /// by ``receiveCommits(_:allowMissingObjects:shallow:known:)`` before any commit names it
    /// (one sync for all of a push's objects). The file is gone afterwards, whatever happens.
    @discardableResult
    public func receiveObject(_ id: ObjectID, file: String) throws -> ObjectInfo {
        defer { unlink(file) }
        if objects.exists(id) { return try objects.inspect(id) }
        let info = try objects.verifyIncoming(id, path: file)
        try objects.install(id, from: file, syncFolder: false)
        return info
    }

    /// After a push that failed (or was abandoned) before recording what it sent: removes the
    /// objects of `ids` (the ones that push installed) that no row records, under the write lock
    /// (a commit that stores the same object meanwhile records its row first, and keeps the file).
    /// Without `wait`, a busy repository keeps them for `gc`.
    public func discardReceivedUnrecorded(_ ids: [ObjectID], wait: Bool) {
        guard !ids.isEmpty else { return }
        _ = try? withWriteLock(wait: wait, pending: .leave) {
            objects.removeUnrecorded(ids, history: history)
        }
    }

    /// Records commits (checked with ``CommitRecord/validate()``; parents before children, or
    /// any order: they are sorted) in one transaction. Every object a record names must have a file
    /// here unless `allowMissingObjects` (a lazy clone records the rows and fetches files later).
    /// Object rows come from the files when present, so a record cannot misdescribe them.
    ///
    /// With `shallow` (a fetch with a depth), a commit whose parents were neither here nor sent is
    /// recorded as a shallow boundary, and one whose base is missing keeps it in its graft
    /// (docs/format.md §6.7); boundaries whose parents arrive are lifted in the same transaction.
    /// A push never passes it: a pushed commit's history must be complete on the receiver.
    ///
    /// `known`: rows already read from the object files (a fetch's verification reads them), which
    /// are not read again.
    ///
    /// `markingLazy`: a remote to mark lazy in the same transaction (a `fetch --lazy` from a remote
    /// that was not), so that no object row without a file is recorded without a remote to fetch
    /// its file from on first use.
    public func receiveCommits(_ records: [CommitRecord], allowMissingObjects: Bool = false, shallow: Bool = false,
                               known: [ObjectID: ObjectInfo] = [:], markingLazy remote: String? = nil) throws {
        let contents = try Repository.parentsFirst(records.map { try $0.validate() })
        guard !contents.isEmpty else {
            if let remote {
                try history.write { try HistoryDatabase.setRemoteLazy($0, remote) }
                readMissingObjectsLazily()
            }
            return
        }
        // Read the files before the transaction (no I/O on files inside it).
        var rows: [ObjectID: ObjectInfo] = [:]
        let needed = Repository.objectsNeeded(by: contents)
        // An object this call was not handed a row for may have been received by a push, whose
        // names are not synced one by one (``receiveObject(_:file:)``): one sync of the file
        // system makes them durable before any row names them. A fetch installed its own durably.
        if needed.contains(where: { known[$0.id] == nil && objects.exists($0.id) }) {
            try AtomicFileWriter.syncFileSystem(containing: objects.root)
        }
        var inspected = Set<ObjectID>()
        for o in needed {
            if let row = known[o.id] {
                rows[o.id] = row
            } else if objects.exists(o.id) {
                rows[o.id] = try objects.inspect(o.id)
                inspected.insert(o.id)
            } else if allowMissingObjects {
                rows[o.id] = o
            } else {
                throw RepoError.corruptObject(object: o.id.short, problem: "needed by a received commit but not sent (send objects before commits)")
            }
        }
        try history.write { db in
            for c in contents {
                var commit = c.commit
                var generation = 0
                let missing = try (commit.parents + (commit.base.map { [$0] } ?? [])).filter { try HistoryDatabase.generation(db, $0) == nil }
                if let p = missing.first, !shallow {
                    throw RepoError.corruptRecord("commit record \(commit.id.short)", problem: "its parent or base \(p.short) is neither here nor sent")
                }
                if !missing.isEmpty {
                    // A shallow boundary has no known parents at all (as git's grafts), even when
                    // some of a merge's parents are here.
                    let boundary = commit.parents.contains(where: missing.contains)
                    commit.graft = Commit.Graft(parents: commit.parents, base: commit.base, boundary: boundary)
                    if boundary { commit.parents = [] }
                    if let b = commit.base, missing.contains(b) { commit.base = nil }
                }
                for p in commit.parents {
                    generation = max(generation, (try HistoryDatabase.generation(db, p) ?? 0) + 1)
                }
                commit.generation = generation
                let needed = c.objects.compactMap { rows[$0.id] }
                try HistoryDatabase.insert(db, objects: needed, readFromFiles: inspected)
                try HistoryDatabase.insert(db, tree: c.tree)
                try HistoryDatabase.insert(db, commit: commit)
            }
            if shallow { try HistoryDatabase.liftGrafts(db) }
            if let remote { try HistoryDatabase.setRemoteLazy(db, remote) }
        }
        if remote != nil { readMissingObjectsLazily() }
    }

    /// Orders checked records so that every parent and base comes before its children.
    static func parentsFirst(_ contents: [CommitRecord.Contents]) throws -> [CommitRecord.Contents] {
        let byID = Dictionary(contents.map { ($0.commit.id, $0) }, uniquingKeysWith: { a, _ in a })
        var out: [CommitRecord.Contents] = []
        var state: [ObjectID: Bool] = [:]  // false: visiting, true: done
        for start in contents.map(\.commit.id) {
            var stack: [(ObjectID, Bool)] = [(start, false)]
            while let (id, expanded) = stack.popLast() {
                if expanded {
                    state[id] = true
                    if let c = byID[id] { out.append(c) }
                    continue
                }
                if state[id] != nil { continue }
                guard let c = byID[id] else { continue }
                state[id] = false
                stack.append((id, true))
                for p in c.commit.parents + (c.commit.base.map { [$0] } ?? []) where state[p] == nil { stack.append((p, false)) }
            }
        }
        return out
    }

    /// The branches checked out in this repository's working trees (unborn ones included) that a
    /// push may not move: none in a bare repository. Clients are told, so that such a push is
    /// refused before anything is sent; ``applyRefUpdate(_:shownAs:)`` refuses it again.
    public func branchesPushesMayNotMove() throws -> Set<String> {
        guard try history.meta("bare") != "1" else { return [] }
        return Set(try history.allHeads().values.compactMap(\.branchName))
    }

    /// Applies one ref update from a push, by compare-and-swap, in one transaction: the ref must
    /// point at `update.expected` now; without `force` a branch may only move forward and a tag
    /// not at all. The branch checked out in a repository with a working tree is refused (its
    /// files would no longer match it), as git does, unless the repository is bare
    /// (`mrepo init --bare`).
    public func applyRefUpdate(_ update: RefUpdate, shownAs remote: String) throws {
        try RefNames.validate(update.name)
        let bare = try history.meta("bare") == "1"
        try withWriteLock(wait: true, pending: .leave) {
            try history.write { db in
                let current = try HistoryDatabase.ref(db, update.name)
                if let current, current.kind != update.kind {
                    throw RepoError.remote("\(remote): '\(update.name)' is a \(current.kind.rawValue) there, not a \(update.kind.rawValue); nothing was changed")
                }
                guard current?.target.hex == update.expected else { throw RepoError.remoteRefMoved(ref: update.name, remote: remote) }
                if !bare, update.kind == .branch, try HistoryDatabase.allHeads(db).values.contains(where: { $0.branchName == update.name }) {
                    throw RepoError.remote("\(remote): '\(update.name)' is the checked-out branch of that repository; push to another branch, or make the remote bare ('mrepo init --bare'); nothing was changed")
                }
                guard let newHex = update.new else {
                    guard current != nil else { throw RepoError.remote("\(remote): no branch or tag '\(update.name)' to delete") }
                    try db.execute(sql: "DELETE FROM ref WHERE name = ?", arguments: [update.name])
                    if update.kind == .branch { try db.execute(sql: "DELETE FROM upstream WHERE branch = ?", arguments: [update.name]) }
                    try HistoryDatabase.logRef(db, update.name, old: current?.target, new: nil, message: "push: delete")
                    return
                }
                // A ref this push creates is held to the rules of names created here (no commit-id
                // look-alikes); one that exists (an older mrepo's) may still move.
                if current == nil { try RefNames.validateNew(update.name) }
                if update.message != nil, RemoteRef.carried(update.message) == nil {
                    throw RepoError.remote("\(remote): the message of tag '\(update.name)' is longer than \(RemoteRef.messageLimit >> 10) KiB; nothing was changed")
                }
                guard let new = ObjectID(hex: newHex), try HistoryDatabase.generation(db, new) != nil else {
                    throw RepoError.remote("\(remote): commit \(newHex.prefix(12)) of '\(update.name)' was not received; nothing was changed")
                }
                if let current, !update.force, current.target != new {
                    let forward = try HistoryDatabase.isAncestor(db, current.target, of: new)
                    if update.kind == .tag || !forward {
                        throw RepoError.nonFastForward(ref: update.name, remote: remote)
                    }
                }
                if current == nil, update.kind == .branch { try HistoryDatabase.startUpstream(db, of: update.name, nil) }
                try HistoryDatabase.setRef(db, name: update.name, kind: update.kind, target: new, old: current?.target,
                                           message: update.force ? "push (forced)" : "push")
                // A tag takes the pushed message, none for a lightweight tag pushed over an annotated
                // one; a branch carries none, whatever the request says.
                if update.kind == .tag {
                    try db.execute(sql: "UPDATE ref SET message = ? WHERE name = ?", arguments: [update.message, update.name])
                }
            }
        }
    }
}
