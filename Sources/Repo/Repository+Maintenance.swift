import Delta
import Foundation
import GRDB

/// What `fsck` found.
public struct FsckReport: Sendable {
    /// Problems: the repository is not intact.
    public var errors: [String] = []
    /// Facts worth knowing that do not harm the history (leftovers of interrupted commands).
    public var warnings: [String] = []
    public var commitCount = 0
    public var objectCount = 0
    public var verifiedBytes = 0
    public var isClean: Bool { errors.isEmpty }
}

/// What `gc` removed.
public struct GCReport: Sendable {
    public var removedCommits = 0
    public var removedObjects = 0
    public var freedBytes = 0
    public var removedTemporaryFiles = 0
}

/// Storage of one commit.
public struct CommitUsage: Sendable {
    public var id: ObjectID
    public var subject: String
    public var names: [String]
    /// Size of the commit's files.
    public var logicalByteCount: Int
    /// Stored size of the objects this commit was the first to use.
    public var newStoredByteCount: Int
    /// Logical size of the data behind those new objects.
    public var newLogicalByteCount: Int
}

/// Logical versus stored bytes, per commit and for the repository.
public struct UsageReport: Sendable {
    public var commits: [CommitUsage]
    /// Sum of every commit's logical size (what keeping each checkpoint as a copy would cost).
    public var logicalByteCount: Int
    /// Size of all object files.
    public var storedByteCount: Int
    /// Size of the history database (with its WAL).
    public var databaseByteCount: Int
    public var objectCount: Int
}

extension Repository {
    // MARK: - fsck

    /// Checks the whole repository: database integrity, every commit and tree id, every ref, and
    /// every object, decoded and re-hashed. Objects are named by the commit, file and tensor that
    /// use them.
    public func fsck() throws -> FsckReport {
        try withReadLock { try fsckLocked() }
    }

    private func fsckLocked() throws -> FsckReport {
        var report = FsckReport()
        // Database.
        report.errors += try history.integrityProblems()
        // Every working tree's HEAD; a linked one whose folder is gone still holds its branch.
        for (worktree, head) in try history.allHeads().sorted(by: { $0.key < $1.key }) {
            if case let .detached(id) = head, try history.commit(id) == nil {
                report.errors.append("HEAD\(worktree.isEmpty ? "" : " of working tree '\(worktree)'"): points at missing commit \(id.short)")
            }
        }
        for record in try history.linkedWorktrees() where !linksHere(record) {
            report.warnings.append("working tree '\(record.id)' at \(record.path) is gone or no longer links here ('mrepo worktree prune' forgets it)")
        }
        // Commits and trees.
        var users: [ObjectID: String] = [:]
        var treesChecked = Set<ObjectID>()
        let commits = try history.allCommits()
        report.commitCount = commits.count
        let known = Set(commits.map(\.id))
        for c in commits {
            // A shallow clone's boundary hashes the parents it does not hold (docs/format.md §6.7).
            let recomputed = Commit.computeID(treeID: c.treeID, parents: c.hashedParents, base: c.hashedBase, author: c.author, timestamp: c.timestamp,
                                              message: c.message, metrics: c.metrics, extra: c.extra)
            if recomputed != c.id { report.errors.append("commit \(c.id.short): content does not hash to its id (\(recomputed.short))") }
            if let g = c.graft {
                if g.boundary && !c.parents.isEmpty { report.errors.append("commit \(c.id.short): a shallow boundary with parent rows") }
                if !g.boundary && g.parents != c.parents { report.errors.append("commit \(c.id.short): its shallow row names other parents than its parent rows") }
                if g.boundary, !g.parents.isEmpty, g.parents.allSatisfy(known.contains) {
                    report.errors.append("commit \(c.id.short): a shallow boundary whose parents are all here (not linked)")
                }
            }
            for p in c.parents where !known.contains(p) { report.errors.append("commit \(c.id.short): parent \(p.short) is missing") }
            if let b = c.base, !known.contains(b) { report.errors.append("commit \(c.id.short): base \(b.short) is missing") }
            guard treesChecked.insert(c.treeID).inserted else { continue }
            let tree = try history.tree(c.treeID)
            if tree.id != c.treeID { report.errors.append("tree \(c.treeID.short) (commit \(c.id.short)): entries do not hash to its id") }
            for f in tree.files {
                if (try? PathPolicy.normalize(f.path)) == nil { report.errors.append("tree \(c.treeID.short): unsafe path '\(f.path)'") }
                if users[f.objectID] == nil { users[f.objectID] = "commit \(c.id.short) \(f.path)\(f.kind == .safetensors ? " (header)" : "")" }
                for t in f.tensors where users[t.objectID] == nil {
                    users[t.objectID] = "commit \(c.id.short) \(f.path) tensor '\(t.name)'"
                }
            }
        }
        // Objects.
        let infos = try history.allObjects()
        let recorded = Dictionary(infos.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for (id, user) in users where recorded[id] == nil {
            report.errors.append("object \(id.short) (\(user)): not recorded in the object index")
        }
        let counter = ProgressCounter(progress, title: "fsck", total: infos.reduce(0) { $0 + $1.logicalByteCount })
        // A gc interrupted on a full disk has deleted the files of objects it was about to forget
        // before their rows: harmless to anything a branch, tag, HEAD or merge needs.
        var live: Set<ObjectID>?
        var forgotten = 0
        let lazy = try lazyRemote() != nil
        var notFetched = 0
        for r in try history.remoteRefs() where !known.contains(r.target) {
            report.errors.append("remote-tracking ref \(r.fullName): points at missing commit \(r.target.short)")
        }
        // A bisection's commits are kept by gc (pinnedCommits): one missing is damage.
        for state in try history.allBisectStates() {
            for id in state.commits where !known.contains(id) {
                report.errors.append("bisection: names missing commit \(id.short) ('mrepo bisect reset' ends it)")
            }
        }
        for info in infos.sorted(by: { $0.id < $1.id }) {
            let name = users[info.id].map { "object \(info.id.short) (\($0))" } ?? "object \(info.id.short)"
            if let ref = info.reference, recorded[ref] == nil {
                report.errors.append("\(name): delta reference \(ref.short) is missing")
            }
            guard objects.exists(info.id) else {
                if lazy {
                    // A lazy clone fetches this file on first use.
                    notFetched += 1
                    continue
                }
                if live == nil { live = try liveData(includeReflog: false).objects }
                if live?.contains(info.id) == true {
                    report.errors.append("\(name): object file is missing")
                } else {
                    forgotten += 1
                }
                continue
            }
            if let problem = referenceChainProblem(info, recorded: recorded) {
                report.errors.append("\(name): broken reference chain: \(problem)")
            }
            do {
                var count = 0
                try objects.decode(info.id) { count += $0.count }
                if count != info.logicalByteCount {
                    report.errors.append("\(name): decodes to \(count) bytes, the index records \(info.logicalByteCount)")
                }
                report.verifiedBytes += count
                if let recorded = info.checksum, try objects.storedChecksum(of: info.id) != recorded {
                    // The file decodes to its id: the row's checksum is out of date (written for
                    // another file of this id), which costs merges a hash, nothing else.
                    report.warnings.append("\(name): the CRC-32C its row records is not its file's, which decodes to its id (merges hash this object)")
                }
            } catch {
                report.errors.append("\(name): \(RepoError.wrap(error).description.replacingOccurrences(of: "object \(info.id.short): ", with: ""))")
            }
            counter.add(info.logicalByteCount)
            report.objectCount += 1
        }
        counter.finish()
        objects.releaseMappings()
        // Files the index does not know.
        let (files, temporary) = objects.listFiles()
        let dangling = files.filter { recorded[$0] == nil }
        // A command that writes (a fetch, a commit) may be running: its files are not leftovers.
        let writer = WriteLock.liveHolder(path: metaDirectory + "/lock")
        // The lock file names the last writer: a live process of that pid is it, unless it was
        // killed and its pid taken by another program since.
        let isMrepo = writer.map { (try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8))?.hasPrefix("mrepo") == true } ?? false
        let origin = writer.map { isMrepo ? "written by pid \($0), an mrepo command still running"
                                          : "written by pid \($0), an mrepo command still running, or left by an interrupted command" }
            ?? "left by an interrupted command"
        if !dangling.isEmpty {
            report.warnings.append("\(dangling.count) unreferenced object file\(dangling.count == 1 ? "" : "s") (\(origin); 'mrepo gc' removes \(writer == nil ? "them" : "those left once it ends"))")
        }
        if forgotten > 0 {
            report.warnings.append("\(forgotten) object\(forgotten == 1 ? "" : "s") that no branch, tag or HEAD needs \(forgotten == 1 ? "has" : "have") no file (left by an interrupted 'mrepo gc'; 'mrepo gc --prune-reflog' forgets them)")
        }
        if notFetched > 0 {
            report.warnings.append("\(notFetched) object\(notFetched == 1 ? "" : "s") not fetched yet (a lazy clone reads them from its remote on first use; 'mrepo fetch --objects REV' fetches them now)")
        }
        // A temporary file names its writer: one whose process runs (a lazy reader fetching, which
        // holds no write lock) is said to be in use, not left by an interrupted command.
        var liveness = ProcessLiveness()
        let inUse = temporary.filter { path in
            let (folder, name) = splitPath(path)
            guard let writer = TemporaryName.writer(of: name), writer.pid != getpid(), TemporaryName.isLocal(owner: writer.owner) else { return false }
            return !liveness.isLeftover(name, in: folder)
        }
        let leftOver = temporary.count - inUse.count
        if leftOver > 0 {
            report.warnings.append("\(leftOver) temporary file\(leftOver == 1 ? "" : "s") in the object store (\(inUse.isEmpty ? origin : "left by an interrupted command"); 'mrepo gc' removes \(writer == nil || !inUse.isEmpty ? "them" : "those left once it ends"))")
        }
        if !inUse.isEmpty {
            let pids = Set(inUse.compactMap { TemporaryName.pid(of: splitPath($0).name) }).sorted().map(String.init)
            report.warnings.append("\(inUse.count) temporary file\(inUse.count == 1 ? "" : "s") in the object store of \(pids.count == 1 ? "pid" : "pids") \(pids.prefix(3).joined(separator: ", "))\(pids.count > 3 ? " and \(pids.count - 3) more" : ""), still running (a command writing, or reading a lazy clone's objects)")
        }
        let partial = PartialDownload.census(objects)
        if partial.count > 0 {
            report.warnings.append("\(partial.count) object\(partial.count == 1 ? "" : "s") of a fetch or clone that broke off or still runs, in .mrepo/objects/partial (\(partial.bytes) bytes; the next fetch continues \(partial.count == 1 ? "it" : "them"), 'mrepo gc' removes what no fetch holds)")
        }
        return report
    }

    /// What is wrong with an object's reference chain, if anything: the row and the file must
    /// name the same reference, a reference must be a tensor object of the same dtype and shape
    /// (and chunk size, for a lossless delta), blobs have none, and following the rows must end.
    func referenceChainProblem(_ info: ObjectInfo, recorded: [ObjectID: ObjectInfo]) -> String? {
        let header: EncodedTensorHeader
        do {
            header = try objects.header(of: info.id)
        } catch {
            return nil  // decoding reports the unreadable file
        }
        if header.reference != info.reference {
            return "the object file names reference \(header.reference?.short ?? "none"), the index \(info.reference?.short ?? "none")"
        }
        guard let ref = info.reference else { return nil }
        if info.kind != .tensor { return "a blob is coded against \(ref.short); blobs are stored whole" }
        guard let refInfo = recorded[ref] else { return nil }  // reported as missing
        if refInfo.kind != .tensor { return "reference \(ref.short) is a blob, not a tensor" }
        guard let refHeader = try? objects.header(of: ref) else { return "reference \(ref.short) has no readable object file" }
        if refHeader.dtype != header.dtype || refHeader.shape != header.shape {
            return "reference \(ref.short) is \(refHeader.dtype.rawValue) \(refHeader.shape), the object \(header.dtype.rawValue) \(header.shape)"
        }
        if header.encoding != .lowRank, refHeader.chunkByteCount != header.chunkByteCount {
            return "reference \(ref.short) has chunks of \(refHeader.chunkByteCount) bytes, the object \(header.chunkByteCount)"
        }
        var seen: Set<ObjectID> = [info.id]
        var next: ObjectID? = ref
        while let current = next {
            guard seen.insert(current).inserted, seen.count <= ObjectStore.readableDepth + 1 else {
                return "following the references from \(ref.short) never ends (a cycle)"
            }
            next = recorded[current]?.reference
        }
        return nil
    }

    // MARK: - gc

    /// Removes commits, trees and objects that no branch, tag, HEAD or reflog entry reaches,
    /// and files left by interrupted commands.
    ///
    /// Files nothing records go first (temporary files, unrecorded objects, a merge's prepared
    /// files): that needs no database change. Then the database forgets unreachable data, in one
    /// transaction, and their files go after. A crash in between leaves unreferenced files, which
    /// the next `gc` removes. On a full disk even that transaction needs room in the WAL: if it
    /// fails for want of space, the unreachable objects' files are deleted first and the
    /// transaction is run again (a crash in between leaves rows for unreachable objects whose files
    /// are gone: `fsck` reports them as a warning and running the `gc` again forgets them).
    ///
    /// gc first waits until no reader (export, diff, status, fsck) holds `.mrepo/gc.lock`, and
    /// holds it exclusively to the end, so it never deletes an object a reader is using; only
    /// then does it take the write lock (failing at once, or waiting with `wait`, as writers do).
    ///
    /// - Parameter reflogExpiry: with `pruneReflog`, forget only the reflog entries older than this
    ///   time (seconds since 1970), as git's `reflog expire --expire=AGE`.
    public func gc(pruneReflog: Bool = false, reflogExpiry: Double? = nil, wait: Bool = false) throws -> GCReport {
        let barrier = try ReaderBarrier.exclusive(path: gcLockPath, notice: waitNotice)
        defer { barrier.release() }
        return try withWriteLock(wait: wait) {
            var report = GCReport()
            let live = try liveData(includeReflog: !pruneReflog || reflogExpiry != nil, reflogSince: pruneReflog ? reflogExpiry : nil)
            let infos = try history.allObjects()
            let byID = Dictionary(infos.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
            let doomed = infos.filter { !live.objects.contains($0.id) }.sorted { $0.depth > $1.depth }
            removeUnrecordedFiles(recorded: byID, report: &report)
            // Partly downloaded objects that no download holds now (a fetch would start them over).
            let partial = PartialDownload.sweep(objects)
            report.removedTemporaryFiles += partial.count
            report.freedBytes += partial.bytes
            var removed = false
            func removeDoomed() {
                guard !removed else { return }
                removed = true
                for o in doomed {
                    CrashPoint.reach("gc.remove")
                    objects.remove(o.id)
                    report.removedObjects += 1
                    report.freedBytes += o.storedByteCount
                }
            }
            do {
                try forget(live: live, doomed: doomed, pruneReflog: pruneReflog, reflogExpiry: reflogExpiry, report: &report)
            } catch RepoError.diskFull {
                removeDoomed()
                try forget(live: live, doomed: doomed, pruneReflog: pruneReflog, reflogExpiry: reflogExpiry, report: &report)
            }
            CrashPoint.reach("gc.recorded")
            removeDoomed()
            // Temporary files and folders of processes that are gone: in `.mrepo`, every folder
            // of the store and of every working tree, wherever a journal was lost.
            let roots = [mainRoot] + (try history.linkedWorktrees().filter(linksHere).map(\.path))
            report.removedTemporaryFiles += LeftoverSweeper.sweepAll(roots: roots, metaDirectory: metaDirectory, objectsRoot: objects.root)
            // Fixed-name folders of mrepo 0.1.0 merges (the lock shows no writer uses them now).
            for legacy in ["merge-candidate", "merge-report.json"] where FileStat.of(metaDirectory + "/" + legacy) != nil {
                try? FileManager.default.removeItem(atPath: metaDirectory + "/" + legacy)
                report.removedTemporaryFiles += 1
            }
            return report
        }
    }

    /// Deletes what no row records: temporary files and unrecorded objects in the store, and the
    /// prepared checkout files of an interrupted merge.
    private func removeUnrecordedFiles(recorded: [ObjectID: ObjectInfo], report: inout GCReport) {
        // Temporary files of processes that are gone go with the leftover sweep at the end (a running
        // process's files are never touched); here only object files nothing records.
        let files = objects.listFiles().objects
        for id in files where recorded[id] == nil {
            report.freedBytes += FileStat.of(objects.path(for: id))?.size ?? 0
            objects.remove(id)
            report.removedObjects += 1
        }
        // The fixed-name folder of mrepo 0.1.0 merges (the write lock shows no merge uses it now).
        if FileManager.default.fileExists(atPath: metaDirectory + "/prepared") {
            try? FileManager.default.removeItem(atPath: metaDirectory + "/prepared")
            report.removedTemporaryFiles += 1
        }
    }

    /// The database forgets unreachable commits, trees and objects (and the reflog and stat cache
    /// as asked), in one transaction.
    private func forget(live: LiveData, doomed: [ObjectInfo], pruneReflog: Bool, reflogExpiry: Double?, report: inout GCReport) throws {
        report.removedCommits = try history.forget(keepingCommits: live.commits, trees: live.trees, deleting: doomed.map(\.id),
                                                   pruneReflog: pruneReflog, reflogExpiry: reflogExpiry)
    }

    /// What the history still needs.
    struct LiveData {
        var commits: Set<ObjectID>
        var trees: Set<ObjectID>
        /// Objects of those trees and commits, an unfinished merge's, and their delta references.
        var objects: Set<ObjectID>
    }

    /// The commits, trees and objects that refs, every working tree's HEAD and unfinished merge, and (optionally) the
    /// reflog reach.
    func liveData(includeReflog: Bool, reflogSince: Double? = nil) throws -> LiveData {
        let reachableCommits = try reachableCommitIDs(includeReflog: includeReflog, reflogSince: reflogSince)
        var keepObjects = Set<ObjectID>()
        var keepTrees = Set<ObjectID>()
        for id in reachableCommits {
            guard let c = try history.commit(id) else { continue }
            if keepTrees.insert(c.treeID).inserted {
                keepObjects.formUnion(try history.tree(c.treeID).objectIDs)
            }
            keepObjects.formUnion(extraObjects(of: c))
        }
        // Every working tree's merge in progress.
        for state in try history.allMergeStates() {
            keepObjects.formUnion(state.objects)
            if let ready = state.readyTree {
                keepTrees.insert(ready)
                keepObjects.formUnion(try history.tree(ready).objectIDs)
            }
        }
        let references = Dictionary(try history.allObjects().map { ($0.id, $0.reference) }, uniquingKeysWith: { a, _ in a })
        var stack = Array(keepObjects)
        while let id = stack.popLast() {
            if let ref = references[id] ?? nil, keepObjects.insert(ref).inserted { stack.append(ref) }
        }
        return LiveData(commits: reachableCommits, trees: keepTrees, objects: keepObjects)
    }

    /// Commits reachable from refs, HEAD, and (optionally) the reflog, with parents and delta bases.
    func reachableCommitIDs(includeReflog: Bool, reflogSince: Double? = nil) throws -> Set<ObjectID> {
        var roots: [ObjectID] = try history.refs().map(\.target)
        roots.append(contentsOf: try history.allHeads().values.compactMap(\.commit))
        // What the remotes were last seen at stays, as in git.
        roots += try history.remoteRefs().map(\.target)
        if includeReflog {
            for e in try history.reflog(limit: Int.max) where e.timestamp >= reflogSince ?? -.infinity {
                if let o = e.old { roots.append(o) }
                if let n = e.new { roots.append(n) }
            }
        }
        roots.append(contentsOf: try pinnedCommits())
        var seen = Set<ObjectID>()
        var stack = roots
        while let id = stack.popLast() {
            guard seen.insert(id).inserted, let c = try history.commit(id) else { continue }
            stack.append(contentsOf: c.parents)
            if let b = c.base { stack.append(b) }
            // An adapter needs its base model; a reversible merge needs the model its basis applies to.
            // A damaged record throws: gc must not guess what it would have kept.
            if let b = try c.record(AdapterRecord.self)?.base { stack.append(b) }
            if let b = try c.record(ReversibleMergeRecord.self)?.base { stack.append(b) }
        }
        return seen.filter { (try? history.commit($0)) != nil }
    }

    /// Commits kept alive by state outside refs: the inputs of every working tree's unfinished
    /// merge, stashes, every working tree's ORIG_HEAD, and the commits a bisection names.
    func pinnedCommits() throws -> [ObjectID] {
        try history.allMergeStates().flatMap(\.commits) + history.stashes().map(\.commit) + history.allOrigHeads()
            + history.allBisectStates().flatMap(\.commits)
    }

    /// Objects a commit needs beyond its tree (recorded in `extra`, e.g. a reversible merge's basis).
    /// It walks the JSON rather than the typed records so that any member ending in `object`,
    /// including ones a later version adds, keeps its object alive.
    func extraObjects(of commit: Commit) -> Set<ObjectID> {
        var out = Set<ObjectID>()
        func visit(_ v: JSONValue) {
            switch v {
            case let .object(members):
                for m in members {
                    if m.key.hasSuffix("object"), let s = m.value.stringValue, let id = ObjectID(hex: s) { out.insert(id) }
                    visit(m.value)
                }
            case let .array(items):
                items.forEach(visit)
            default:
                break
            }
        }
        visit(commit.extra)
        return out
    }

    // MARK: - du

    /// Logical and stored bytes per commit (oldest first) and for the whole repository.
    public func usage() throws -> UsageReport {
        let commits = try history.allCommits()
        let infos = Dictionary(try history.allObjects().map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let names = try decorations()
        var seen = Set<ObjectID>()
        var rows: [CommitUsage] = []
        var logical = 0
        for c in commits {
            let tree = try history.tree(c.treeID)
            var newStored = 0
            var newLogical = 0
            for id in tree.objectIDs.union(extraObjects(of: c)) where seen.insert(id).inserted {
                newStored += infos[id]?.storedByteCount ?? 0
                newLogical += infos[id]?.logicalByteCount ?? 0
            }
            logical += tree.logicalByteCount
            rows.append(CommitUsage(id: c.id, subject: c.subject, names: names[c.id] ?? [], logicalByteCount: tree.logicalByteCount,
                                    newStoredByteCount: newStored, newLogicalByteCount: newLogical))
        }
        let db = ["", "-wal"].reduce(0) { $0 + (FileStat.of(history.path + $1)?.size ?? 0) }
        return UsageReport(commits: rows, logicalByteCount: logical, storedByteCount: infos.values.reduce(0) { $0 + $1.storedByteCount },
                           databaseByteCount: db, objectCount: infos.count)
    }
}
