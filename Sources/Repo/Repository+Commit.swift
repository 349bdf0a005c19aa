import Delta
import Foundation

/// What to commit and how.
public struct CommitOptions: Sendable {
    /// The commit message.
    public var message: String
    /// Import this checkpoint folder instead of the working tree (`--from`); the working tree is
    /// then updated to the new commit.
    public var sourceDirectory: String?
    /// Code tensors against this revision's tensors instead of the history's first commit (`--base`).
    public var base: String?
    /// Evaluation numbers (`--metric name=value`).
    public var metrics: [Commit.Metric]
    /// `Name <email>`; nil takes it from `MREPO_AUTHOR`, git's config, or the user name.
    public var author: String?
    /// Record a commit even when the tree did not change.
    public var allowEmpty: Bool
    /// Follow symbolic links to regular files (`--dereference`).
    public var followSymlinks: Bool
    /// With `sourceDirectory`: overwrite uncommitted changes in the working tree.
    public var force: Bool
    /// Further facts to record in the commit (merge recipes, lossy settings).
    public var extra: [JSONMember]
    /// Extra parents (merge commits).
    public var extraParents: [ObjectID]
    /// The base model commit of a LoRA adapter folder (`--adapter-of`); default: the parent's base, or the parent.
    public var adapterOf: String?
    /// Store 2-D task vectors as truncated SVDs (`--lowrank R` / `--energy E`; lossy).
    public var lowRank: LowRankPolicy?
    /// Replace HEAD instead of adding a child (`commit --amend`): same parents; an empty message
    /// keeps HEAD's, and HEAD's metrics are kept unless given again.
    public var amend = false
    /// Record the working tree as a stash entry (`stash`): no ref moves, no hook runs.
    public var stash = false
    /// With `stash`: untracked files too (`stash -u`); by default only the files HEAD tracks are
    /// stashed, and untracked ones stay where they are, as git's.
    public var stashUntracked = false
    /// Skip the `pre-commit` hook (`--no-verify`, as git's); `post-commit` still runs.
    public var skipPreCommitHook = false
    /// With `sourceDirectory`: leave the working tree as it is (`--no-checkout`), as after
    /// `reset --soft`: no third copy of an imported checkpoint is written.
    public var noCheckout = false
    /// With `sourceDirectory`: commit onto this branch (created at HEAD when missing) instead of
    /// HEAD's, leaving HEAD and the working tree as they are (`--branch`).
    public var branch: String?

    public init(message: String, sourceDirectory: String? = nil, base: String? = nil, metrics: [Commit.Metric] = [],
                author: String? = nil, allowEmpty: Bool = false, followSymlinks: Bool = false, force: Bool = false,
                extra: [JSONMember] = [], extraParents: [ObjectID] = [], adapterOf: String? = nil, lowRank: LowRankPolicy? = nil,
                branch: String? = nil) {
        self.message = message
        self.sourceDirectory = sourceDirectory
        self.base = base
        self.metrics = metrics
        self.author = author
        self.allowEmpty = allowEmpty
        self.followSymlinks = followSymlinks
        self.force = force
        self.extra = extra
        self.extraParents = extraParents
        self.adapterOf = adapterOf
        self.lowRank = lowRank
        self.branch = branch
    }
}

/// What a commit stored.
public struct CommitResult: Sendable {
    public var commit: Commit
    public var branch: String?
    /// Files and tensors in the tree.
    public var fileCount: Int
    public var tensorCount: Int
    /// Size of the files.
    public var logicalByteCount: Int
    /// Objects this commit added, and their size on disk.
    public var newObjectCount: Int
    public var newStoredByteCount: Int
    /// Files reused from the stat cache without being read.
    public var unchangedFileCount: Int
    /// `commit --from`: working-tree files moved into place from the copies made while hashing
    /// (the others were decoded from their objects).
    public var copiedFileCount = 0
    /// The LoRA adapter the commit holds, if any.
    public var adapter: AdapterRecord?
    /// Tensors stored low-rank (lossy), with their errors.
    public var lowRankTensors: [LowRankTensorRecord] = []
    /// Things worth telling the user.
    public var notes: [String] = []
    /// Things the user should know that did not stop the commit (a failed post-commit hook).
    public var warnings: [String] = []
}

extension Repository {
    /// Snapshots the working tree (or `options.sourceDirectory`) as a new commit on the current branch.
    ///
    /// Order of work: scan and validate every file (a bad file aborts here, before anything is
    /// written), run the `pre-commit` hook, write and sync the objects, then record objects, tree,
    /// commit and the branch move in one database transaction. A failure before that transaction
    /// deletes the objects written so far.
    public func commit(_ options: CommitOptions, wait: Bool = false) throws -> CommitResult {
        var result = try withWriteLock(wait: wait) { try commitLocked(options) }
        // post-commit ran once the lock was released.
        result.warnings += takePostHookWarnings()
        return result
    }

    ///
    /// - Parameter beforeStashRecord: for `stash`, run with the stash's tree and commit just before
    ///   they are recorded (``stash(message:wait:)`` stages its checkout and notes it there); a
    ///   failure there records nothing.
    func commitLocked(_ options: CommitOptions, beforeStashRecord: ((Tree, Commit) throws -> Void)? = nil) throws -> CommitResult {
        let metricNames = options.metrics.map(\.name)
        if Set(metricNames).count != metricNames.count { throw RepoError.invalidArgument("each metric name may be given once") }
        // The default author asks git (two processes, 10-40 ms): asked on a thread of its own while
        // the folder is scanned, hashed and stored, and waited for only where it is needed.
        let pendingAuthor = options.author == nil ? BackgroundValue { Repository.defaultAuthor() } : nil
        let head = try history.head()
        let target = try commitTarget(options, head: head)
        let parent = target.parent
        let parentCommit = try parent.map { try commit($0) }
        var options = options
        if options.amend || options.stash {
            guard let parentCommit else {
                throw RepoError.invalidArgument(options.amend ? "nothing to amend: HEAD has no commits yet" : "nothing to stash on: HEAD has no commits yet")
            }
            if options.amend {
                if options.message.isEmpty { options.message = parentCommit.message }
                let given = Set(options.metrics.map(\.name))
                // What HEAD's metrics read as, those added with `metric add` included (they live
                // beside the replaced commit, which is about to be unreachable).
                options.metrics = try metrics(of: parentCommit).filter { !given.contains($0.name) } + options.metrics
                options.allowEmpty = true
            }
        }
        // What the working tree holds: HEAD's tree, or a view written over it (an expert rebuilt from a merge).
        let worktreeTree = options.branch == nil ? try worktreeBaseline(head: head).tree : Tree.empty
        let sourceRoot = try options.sourceDirectory.map { try validatedSource($0, leavesWorktree: options.branch != nil || options.noCheckout) } ?? root
        let fromWorktree = sourceRoot == root
        if options.branch != nil, fromWorktree {
            throw RepoError.invalidArgument("--branch needs --from DIR, a folder other than the working tree (the working tree belongs to HEAD's branch)")
        }

        // 1. Scan and validate.
        // git's stash: changes to tracked files only; untracked files are neither stored nor removed,
        // nor looked at (an untracked link or a name a tree cannot hold does not stop it).
        let only = options.stash && !options.stashUntracked ? Set(worktreeTree.files.map(\.path)) : nil
        // A stash takes every tracked file's change, one .mrepoignore lists included (left out, it
        // was recorded as removed and the checkout after the stash wrote HEAD's bytes over the edit).
        let rules = IgnoreRules(file: sourceRoot + "/.mrepoignore")
        // Read before the scan's lstat calls: which files a write during the commit could change
        // without changing their stat (Snapshotter.isRacy).
        let scanStart = (clock: FileSystemClock.read(in: sourceRoot), timeNs: Int64((Date().timeIntervalSince1970 * 1e9).rounded()))
        let scanned = try FolderScanner.scanFolder(root: sourceRoot, ignore: options.stash ? rules.keeping(worktreeTree.files.map(\.path)) : rules,
                                                   symlinks: options.followSymlinks ? .follow : .refuse, only: only).files
        try FolderScanner.checkNormalization(scanned)
        try checkShardIndexes(scanned)
        if !fromWorktree, options.branch == nil, !options.force, !options.noCheckout {
            // The import rewrites tracked files and files at the imported paths; other untracked files stay.
            let incoming = Set(scanned.map(\.path))
            let dirty = try status(against: worktreeTree).changes.filter { $0.kind != .added || incoming.contains($0.path) }.map(\.path)
            if !dirty.isEmpty { throw RepoError.dirtyWorktree(operation: "commit --from (which updates the working tree)", paths: dirty) }
        }
        var snap = Snapshotter(objects: objects, options: codecOptions)
        snap.lowRank = options.lowRank
        snap.scanStart = scanStart
        // A low-rank commit reads every tensor (the stat cache cannot say what a low-rank object holds).
        let cache = fromWorktree && options.lowRank == nil ? try storedStatCache() : [:]
        let prepared = try snap.prepare(scanned, cache: cache)
        let (adapter, adapterNote) = try adapterRecord(for: prepared, sourceRoot: sourceRoot, adapterOf: options.adapterOf, parent: parentCommit)

        // 2. The pre-commit hook sees the folder before anything is written.
        let givenAuthor = options.author
        let resolvedAuthor = { givenAuthor ?? pendingAuthor!.value }
        // The canonical spelling the commit id hashes (format.md §3.4).
        let metricsJSON = JSONValue.object(options.metrics.map { JSONMember($0.name, .double($0.value)) }).serialized()
        var hookEnv = [
            "MREPO_SOURCE": sourceRoot, "MREPO_MESSAGE": options.message,
            "MREPO_METRICS": metricsJSON, "MREPO_BRANCH": target.branch ?? "", "MREPO_PARENT": parent?.hex ?? "",
        ]
        if !options.stash, !options.skipPreCommitHook, hookExists("pre-commit") {
            hookEnv["MREPO_AUTHOR"] = resolvedAuthor()
            try runHook("pre-commit", environment: hookEnv)
        }

        // 3. Delta references: the base commit's tensors.
        if options.amend, let p = parentCommit, p.isShallowBoundary {
            throw RepoError.invalidArgument("cannot amend \(p.id.short): it is the boundary of this shallow clone (its parents were not fetched); run 'mrepo fetch --unshallow' first")
        }
        let baseCommit: ObjectID?
        if let rev = options.base {
            baseCommit = try resolve(rev)
        } else if options.amend {
            // The replaced commit is not a reference: it is about to be unreachable.
            baseCommit = parentCommit?.base
        } else {
            baseCommit = parentCommit.map { $0.base ?? $0.id }
        }
        let references = try referenceTensors(of: baseCommit)

        // 4. Store objects. A folder imported into the working tree is copied from the bytes as
        // they are hashed: the checkout after the commit moves the copies into place.
        let batch = objects.makeBatch()
        let copies = !fromWorktree && options.branch == nil ? try FileCopies(metaDirectory: metaDirectory) : nil
        defer { copies?.discard() }
        // The copies replace the working tree's files of the same names.
        if copies != nil { PageCache.dropInBackground(prepared.map { root + "/" + $0.scanned.path }) }
        var files: [TreeFile] = []
        var newInfos: [ObjectInfo] = []
        var lowRankRecords: [LowRankTensorRecord] = []
        var lossyPaths = Set<String>()
        var reused = 0
        var recorded: (Commit, Tree, [ObjectInfo])?
        do {
            let total = prepared.reduce(0) { $0 + $1.byteCount }
            let counter = ProgressCounter(progress, title: "commit", total: total)
            var seen = Set<ObjectID>()
            for file in prepared {
                if file.cached != nil { reused += 1 }
                let (entry, infos, records) = try snap.store(file, references: references, recorded: { try self.storedObjects($0) },
                                                             knownDigest: { f in try self.history.knownDigest(of: f) },
                                                             batch: batch, copies: copies, progress: counter)
                files.append(entry)
                lowRankRecords += records
                if !records.isEmpty { lossyPaths.insert(entry.path) }
                for info in infos where seen.insert(info.id).inserted { newInfos.append(info) }
            }
            counter.finish()
            // Objects reused from the stat cache must still exist.
            for file in prepared.compactMap(\.cached) {
                for id in [file.objectID] + file.tensors.map(\.objectID) where !objects.exists(id) && !batch.contains(id) {
                    throw RepoError.corruptObject(object: id.short, problem: "recorded for \(file.path) but missing from the store; run 'mrepo fsck'")
                }
            }
            let tree = Tree(files: files)
            // An empty --from folder (a run that wrote nothing, a mistyped path) would be recorded as
            // deleting every file of the model.
            if let source = options.sourceDirectory, files.isEmpty, !options.allowEmpty {
                throw RepoError.invalidArgument("--from \(source): the folder holds no file to commit; recording it would delete every file of the model (pass --allow-empty to record an empty tree)")
            }
            if !options.allowEmpty, parentCommit?.treeID == tree.id, options.extraParents.isEmpty {
                if options.lowRank != nil {
                    throw RepoError.invalidArgument("nothing to commit: the low-rank approximation equals HEAD's (commit without --lowrank to store the exact weights)")
                }
                if options.stash { throw RepoError.nothingToStash }
                throw RepoError.nothingToCommit
            }
            try batch.finish()
            try copies?.sync()
            CrashPoint.reach("commit.objects-durable")

            // 5. Record everything in one transaction.
            var generation = 0
            let parents = (options.amend ? parentCommit!.parents : (parent.map { [$0] } ?? [])) + options.extraParents
            for p in parents { generation = max(generation, (try history.commit(p)?.generation ?? 0) + 1) }
            let timestamp = (Date().timeIntervalSince1970 * 1000).rounded() / 1000
            var extra = options.extra
            if !options.stash, let carried = try carriedStorage(of: tree, from: (options.amend ? [parentCommit!.id] : []) + parents) {
                // Low-rank tensors kept from a lossy commit (an amend's, or the parent's): the commit
                // says so, with their errors (an amend recorded 'lossless' and lost them).
                extra.removeAll { $0.key == CommitStorage.member || $0.key == LossyRecord.member }
                extra += carried
            }
            if let policy = options.lowRank, !lowRankRecords.isEmpty {
                extra.removeAll { $0.key == LossyRecord.member }
                extra.removeAll { $0.key == CommitStorage.member }
                extra.append(try CommitStorage.lossy.jsonMember())
                extra.append(try LossyRecord(policy: policy, tensors: lowRankRecords).jsonMember())
            }
            if !extra.contains(where: { $0.key == CommitStorage.member }) {
                extra.append(try CommitStorage.lossless.jsonMember())
            }
            if let adapter { extra.append(try adapter.jsonMember()) }
            let extraJSON = JSONValue.object(extra)
            let author = resolvedAuthor()
            let id = Commit.computeID(treeID: tree.id, parents: parents, base: baseCommit, author: author, timestamp: timestamp,
                                      message: options.message, metrics: options.metrics, extra: extraJSON)
            let commit = Commit(id: id, treeID: tree.id, parents: parents, base: baseCommit, author: author, timestamp: timestamp,
                                message: options.message, metrics: options.metrics, extra: extraJSON, generation: generation)
            // Files stored low-rank differ from what the working tree holds: no stat-cache entry for them.
            let statEntries = fromWorktree ? zip(prepared, files).filter { !lossyPaths.contains($1.path) }.map {
                StatCacheEntry(path: $1.path, stat: $0.scanned.stat, identity: FileIdentityCoding.encode($1))
            } : []
            let kind = options.amend ? "commit (amend)" : parents.count > 1 ? "merge" : (parent == nil ? "commit (initial)" : "commit")
            if options.stash {
                try beforeStashRecord?(tree, commit)
                try history.recordStash(objects: newInfos, tree: tree, commit: commit, branch: head.branchName)
            } else if let branch = options.branch {
                try history.recordCommit(objects: newInfos, tree: tree, commit: commit, onto: branch, expected: target.created ? nil : parent,
                                         reflogMessage: "\(kind): \(commit.subject)")
            } else {
                if !fromWorktree, !options.noCheckout {
                    // Local changes were refused before, unless --force.
                    try notePendingCheckout(operation: "commit --from", from: worktreeTree, to: tree, force: options.force, proof: .head(id.hex))
                }
                try history.recordCommit(objects: newInfos, tree: tree, commit: commit, expectedHead: parent,
                                         reflogMessage: "\(kind): \(commit.subject)", statEntries: statEntries,
                                         origHead: options.amend ? parent : nil)
            }
            recorded = (commit, tree, newInfos)
        } catch {
            // Before the transaction nothing refers to the new objects: delete them.
            batch.rollback()
            clearPendingCheckout()
            throw error
        }
        // From here on the commit exists; a failure below leaves it intact.
        let (newCommit, tree, storedInfos) = recorded!
        CrashPoint.reach("commit.recorded")
        // 6. A folder imported from elsewhere becomes the working tree's content: the copies made
        // while storing are moved into place (verified by their SHA-256, computed from the bytes
        // written); a file without one is decoded.
        objects.releaseMappings()
        var copied = 0
        if !fromWorktree, options.branch == nil, !options.noCheckout {
            do {
                var stats = MaterializeStats()
                let entries = try materialize(tree, over: worktreeTree, force: true, stats: &stats, prepared: copies?.files ?? [:])
                copied = stats.moved
                history.saveStatCacheOpportunistically(entries, removing: [])
            } catch {
                throw RepoError.failed("commit \(newCommit.id.short) was recorded, but updating the working tree to it failed: \(RepoError.wrap(error).description); run 'mrepo checkout --force \(head.branchName ?? newCommit.id.short)'")
            }
        }
        hookEnv["MREPO_COMMIT"] = newCommit.id.hex
        hookEnv["MREPO_AUTHOR"] = resolvedAuthor()
        // Too late to reject anything: a failing post-commit hook is a warning, the commit stands.
        let warnings = options.stash ? [] : (runPostHook("post-commit", environment: hookEnv).map { [$0] } ?? [])
        var notes: [String] = []
        if let branch = options.branch, target.created {
            notes.append("created branch '\(branch)'" + (parent.map { " at \($0.short) (HEAD)" } ?? " (a root commit: HEAD has no commit)"))
        }
        if let adapterNote { notes.append(adapterNote) }
        if options.lowRank != nil {
            if lowRankRecords.isEmpty {
                notes.append("no tensor was stored low-rank (none is a 2-D floating-point change against the base where factors pay); the commit is lossless")
            } else if fromWorktree, lowRankRecords.contains(where: { $0.relativeError > 0 }) {
                notes.append("the working tree keeps the exact weights, so 'mrepo status' shows \(lossyPaths.sorted().joined(separator: ", ")) as modified against this approximate commit")
            }
        }
        return CommitResult(commit: newCommit, branch: target.branch, fileCount: tree.files.count, tensorCount: tree.tensorCount,
                            logicalByteCount: tree.logicalByteCount, newObjectCount: storedInfos.count,
                            newStoredByteCount: storedInfos.reduce(0) { $0 + $1.storedByteCount }, unchangedFileCount: reused,
                            copiedFileCount: copied, adapter: adapter, lowRankTensors: lowRankRecords, notes: notes, warnings: warnings)
    }

    /// Refuses a shard index (`*.safetensors.index.json`) with an entry that points outside its
    /// folder or at a shard the folder lacks: a loader would fail on the checkpoint.
    func checkShardIndexes(_ files: [ScannedFile]) throws {
        let paths = Set(files.map(\.path))
        for file in files where ShardIndex.isIndexFile(splitPath(file.path).name) {
            let bytes: [UInt8]
            do {
                bytes = try Array(Data(contentsOf: URL(fileURLWithPath: file.absolutePath)))
            } catch {
                throw RepoError.io(path: file.path, reason: "cannot read: \(error.localizedDescription)")
            }
            let dir = splitPath(file.path).dir
            let index: ShardIndex
            do throws(DeltaError) {
                index = try ShardIndex.parse(bytes, file: file.path)
                try index.checkShardsExist(file: file.path) { paths.contains(dir.isEmpty ? $0 : dir + "/" + $0) }
            } catch {
                throw RepoError.delta(error)
            }
            let folder = splitPath(file.absolutePath).dir
            try checkWeightMap(index, indexPath: file.path) { (shard) throws(DeltaError) in
                Set(try SafetensorsFile(path: folder + "/" + shard, displayName: shard).tensors.map(\.name))
            }
        }
    }

    /// Refuses an index whose weight map does not match its shards, as `mrepo check` reports it:
    /// a tensor listed in a shard that does not hold it, or a tensor of a shard the index does not
    /// list there (a tensor in two shards is one of these). transformers would load such a
    /// checkpoint wrongly or not at all.
    /// - Parameter tensorNames: the names of the tensors a shard (a path relative to the index's
    ///   folder) holds.
    func checkWeightMap(_ index: ShardIndex, indexPath: String, tensorNames: (String) throws(DeltaError) -> Set<String>) throws {
        var listed: [String: Set<String>] = [:]
        for (tensor, shard) in index.weightMap { listed[shard, default: []].insert(tensor) }
        for shard in index.shardFiles {
            let present: Set<String>
            do {
                present = try tensorNames(shard)
            } catch {
                throw RepoError.delta(error)
            }
            if let t = listed[shard, default: []].subtracting(present).sorted().first {
                throw RepoError.invalidArgument("\(indexPath): weight_map lists tensor '\(t)' in shard '\(shard)', which does not hold it ('mrepo check' lists every problem)")
            }
            if let t = present.subtracting(listed[shard, default: []]).sorted().first {
                let elsewhere = index.weightMap.first { $0.tensor == t }.map { " (it lists it in '\($0.file)')" } ?? ""
                throw RepoError.invalidArgument("\(indexPath): weight_map does not list tensor '\(t)' of shard '\(shard)'\(elsewhere) ('mrepo check' lists every problem)")
            }
        }
    }

    /// Stat-cache entries whose objects are all recorded: `status` caches what it only hashed,
    /// and a commit must read such files again to store them.
    func storedStatCache() throws -> [String: StatCacheEntry] {
        let entries = try history.statCache().compactMapValues { entry in
            FileIdentityCoding.decode(entry.identity, path: entry.path).map { (entry, [$0.objectID] + $0.tensors.map(\.objectID)) }
        }
        let recorded = try storedObjects(Set(entries.values.flatMap(\.1)))
        return entries.filter { $0.value.1.allSatisfy(recorded.contains) }.mapValues(\.0)
    }

    /// Which of `ids` are stored: recorded, with their file in place. An object whose row outlived
    /// its file (a `gc` interrupted between deleting the files and their rows, or a lazy clone that
    /// has not fetched it) does not count: a commit writes its file, and the new file's facts
    /// replace the row. Before, such a commit said "nothing new to store" and named missing files.
    func storedObjects(_ ids: some Collection<ObjectID>) throws -> Set<ObjectID> {
        try history.recordedObjects(ids).filter { objects.exists($0) }
    }

    /// The tensors of a commit usable as delta references, by name (one query; each object's
    /// header is read when a tensor is coded against it).
    func referenceTensors(of commit: ObjectID?) throws -> ReferenceIndex {
        guard let commit else { return ReferenceIndex(objects: objects, entries: [:]) }
        return ReferenceIndex(objects: objects, entries: try history.tensorObjects(ofTree: try self.commit(commit).treeID))
    }

    /// Where a commit goes: HEAD's branch (or detached HEAD), or the branch of `--branch`, which is
    /// created at HEAD's commit when it does not exist.
    func commitTarget(_ options: CommitOptions, head: Head) throws -> (branch: String?, parent: ObjectID?, created: Bool) {
        guard let branch = options.branch else {
            try refuseDuringMerge(options.stash ? "stash" : "commit")
            return (head.branchName, head.commit, false)
        }
        try RefNames.validate(branch, existing: try history.ref(named: branch) != nil)
        // HEAD's branch belongs to the working tree: moving it underneath would leave the working
        // tree (and a merge in progress) on a commit the branch no longer names.
        if head.branchName == branch {
            throw RepoError.invalidArgument("--branch \(branch): '\(branch)' is the current branch; commit --from DIR without --branch updates it and the working tree")
        }
        if let path = try history.branchesCheckedOutElsewhere()[branch] { throw HistoryDatabase.branchInUse(branch, at: path) }
        guard let ref = try history.ref(named: branch) else { return (branch, head.commit, true) }
        guard ref.kind == .branch else { throw RepoError.invalidArgument("--branch \(branch): '\(branch)' is a tag, not a branch") }
        return (branch, ref.target, false)
    }

    /// The absolute folder of `--from`. One inside the working tree is taken when the commit
    /// leaves the working tree alone (`--branch`, `--no-checkout`) or when `.mrepoignore` leaves
    /// the folder out (a trainer's `output_dir` inside the project): the working tree's files are
    /// then not its files, and writing them does not touch it.
    private func validatedSource(_ path: String, leavesWorktree: Bool) throws -> String {
        let dir = Repository.absolutePath(path)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir) else {
            throw RepoError.io(path: path, reason: "no such directory")
        }
        guard isDir.boolValue else {
            throw RepoError.io(path: path, reason: "not a directory (--from takes the checkpoint's folder)")
        }
        if dir == root { return root }
        // Never the store (its database, locks and objects are no model), however links lead there.
        if isInsideStore(dir) || (dir.hasPrefix(root + "/") && dir.dropFirst(root.count + 1).split(separator: "/").contains { PathPolicy.isReserved($0) }) {
            throw RepoError.invalidArgument("--from \(path): the folder is inside a repository's own store (.mrepo or .git), which holds no model")
        }
        if dir.hasPrefix(root + "/") {
            let relative = String(dir.dropFirst(root.count + 1))
            let ignore = IgnoreRules(file: root + "/.mrepoignore")
            let ignored = (PathPolicy.parents(of: relative) + [relative]).contains { ignore.ignores($0, isDirectory: true) }
            if !leavesWorktree, !ignored {
                throw RepoError.invalidArgument("--from \(path): the folder is inside the working tree, whose files it would replace; "
                    + "list it in .mrepoignore, or commit it with --branch B (or --no-checkout), which leave the working tree alone")
            }
        }
        return dir
    }

    /// `MREPO_AUTHOR`, else git's `user.name <user.email>`, else the login name.
    public static func defaultAuthor() -> String {
        let env = ProcessInfo.processInfo.environment
        if let a = env["MREPO_AUTHOR"], !a.isEmpty { return a }
        if let name = gitConfig("user.name") {
            return "\(name) <\(gitConfig("user.email") ?? "")>"
        }
        // The account's name when the environment has none (cron, containers, `env -i`).
        let account = getpwuid(getuid()).flatMap { $0.pointee.pw_name.map { String(cString: $0) } }
        let user = [env["USER"], env["LOGNAME"], account].compactMap { $0 }.first { !$0.isEmpty } ?? "unknown"
        return "\(user) <\(user)@\(ProcessInfo.processInfo.hostName)>"
    }

    private static func gitConfig(_ key: String) -> String? {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["git", "config", "--get", key]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { return nil }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        return text.isEmpty ? nil : text
    }
}
