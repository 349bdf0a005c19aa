import Delta
import Foundation

/// The working tree compared with HEAD.
public struct WorktreeStatus: Sendable {
    public enum ChangeKind: String, Sendable, Codable {
        case added, modified, deleted
    }

    public struct Change: Sendable, Equatable {
        public var path: String
        public var kind: ChangeKind
        /// For a modified safetensors file: how many tensors differ (added, removed or changed).
        public var changedTensors: Int?
        public var tensorCount: Int?
        /// Why the file cannot be read (a truncated or damaged safetensors file, a symbolic link to
        /// a folder): the codec's error, or what the link is.
        public var reason: String?
        /// For a symbolic link read as the file it points to: what it points to. `commit` stores
        /// such a file only with `--dereference`.
        public var linkTarget: String? = nil
        /// A path a tree cannot store (a link to a folder or to nothing, a name that is not UTF-8
        /// or holds a control character): `reason` says which, and `commit` refuses it.
        public var unstorable = false
        /// A deleted tracked file that is still on disk: `.mrepoignore` lists it (or a folder above
        /// it), so the next commit leaves it out. Not a `reason`: commands that protect unreadable
        /// files must not treat it as one.
        public var ignoredOnDisk = false

        /// What status says of an ignored tracked file.
        public static let ignoredOnDiskNote = "listed in .mrepoignore: the next commit leaves it out of the tree; the file stays on disk"
    }

    public var head: Head
    public var changes: [Change]
    /// Folders holding their own `.mrepo`: nested repositories, left out of every commit.
    public var nestedRepositories: [String] = []
    /// Pairs of paths that differ only in Unicode normalisation (NFC and NFD): both are listed in
    /// `changes`, and `commit` refuses them until one is renamed.
    public var normalizationTwins: [(String, String)] = []
    public var isClean: Bool { changes.isEmpty }
}

/// The working tree compared with a tree.
struct WorktreeComparison {
    var changes: [WorktreeStatus.Change]
    /// The files found, as tree entries, by path.
    var current: [String: TreeFile]
    var nestedRepositories: [String]
    var normalizationTwins: [(String, String)]
    /// Paths that are symbolic links (read through, or set aside as unusable). A checkout replaces
    /// such a link by renaming over it, never writing through it.
    var links: Set<String> = []
    /// The file system's clock, read before the scan: a file whose `lstat`, taken after it, shows a
    /// last change before it can be cached as `current` says (``StatCacheEntry/init(path:stat:identity:clock:)``).
    var clock: FileSystemClock? = nil

    /// Refuses to write over a working tree whose paths cannot be told apart as strings.
    func checkWritable() throws {
        if let (a, b) = normalizationTwins.first { throw FolderScanner.normalizationError(a, b) }
    }
}

/// A path compared byte for byte: Swift's `String` equality treats the NFC and NFD spellings of a
/// name as equal, a file system does not.
struct ExactPath: Hashable, Comparable {
    var path: String

    static func == (a: ExactPath, b: ExactPath) -> Bool { a.path.utf8.elementsEqual(b.path.utf8) }
    func hash(into hasher: inout Hasher) {
        for byte in path.utf8 { hasher.combine(byte) }
    }
    static func < (a: ExactPath, b: ExactPath) -> Bool {
        if a.path != b.path { return a.path < b.path }
        return a.path.utf8.lexicographicallyPrecedes(b.path.utf8)
    }
}

/// What a switch or checkout did to the working tree.
public struct CheckoutResult: Sendable {
    public var head: Head
    public var writtenFiles: Int
    public var removedFiles: Int
    public var unchangedFiles: Int
    /// When the checkout created HEAD's branch from a branch only a remote had: that remote
    /// branch (`origin/dev`), which the new branch tracks.
    public var createdFrom: String? = nil
}

extension Repository {
    /// Compares the working tree with HEAD. Files whose size, times and inode match the stat
    /// cache are not read; the others are hashed, tensor by tensor.
    public func status() throws -> WorktreeStatus {
        try withReadLock {
            let head = try history.head()
            let tree = try worktreeBaseline(head: head).tree
            let comparison = try status(against: tree)
            return WorktreeStatus(head: head, changes: comparison.changes, nestedRepositories: comparison.nestedRepositories,
                                  normalizationTwins: comparison.normalizationTwins)
        }
    }

    /// The working tree's files and their differences from `tree`. Paths are compared byte for
    /// byte, so two names that differ only in Unicode normalisation are two entries.
    func status(against tree: Tree) throws -> WorktreeComparison {
        // Read before the scan's lstat calls: files changed before it get entries trusted at once.
        let clock = FileSystemClock.read(in: root)
        let ignore = IgnoreRules(file: root + "/.mrepoignore")
        let scan = try FolderScanner.scanFolder(root: root, ignore: ignore, symlinks: .readThrough)
        let scanned = scan.files
        let snap = Snapshotter(objects: objects, options: codecOptions)
        let cache = try history.statCache()
        // A safetensors file that does not parse is a change (hashed as a blob), not an error.
        let prepared = try snap.prepare(scanned, cache: cache, tolerant: true)
        let counter = ProgressCounter(progress, title: "status", total: prepared.filter { $0.cached == nil }.reduce(0) { $0 + $1.byteCount })
        var current: [String: TreeFile] = [:]
        var found: [ExactPath: TreeFile] = [:]
        var fresh: [StatCacheEntry] = []
        // What a tree cannot store (a link that is not a file, a name that is not UTF-8) is listed
        // with the reason, as an unreadable file is; it is neither read nor entered.
        var unreadable: [String: String] = scan.unstorable
        for file in prepared {
            let entry = try snap.identify(file, progress: file.cached == nil ? counter : nil)
            current[entry.path] = entry
            found[ExactPath(path: entry.path)] = entry
            if let reason = file.unreadable {
                // Not cached: the next status reads it again and gives the reason again.
                unreadable[entry.path] = reason
            } else if file.cached == nil {
                fresh.append(StatCacheEntry(path: entry.path, stat: file.scanned.stat, identity: FileIdentityCoding.encode(entry), clock: clock))
            }
        }
        counter.finish()
        let stale = cache.keys.filter { current[$0] == nil }
        history.saveStatCacheOpportunistically(fresh, removing: Array(stale))

        var changes: [WorktreeStatus.Change] = []
        let recorded = Dictionary(tree.files.map { (ExactPath(path: $0.path), $0) }, uniquingKeysWith: { a, _ in a })
        let unusable = Set(scan.unstorable.keys.map { ExactPath(path: $0) })
        for exact in Set(found.keys).union(recorded.keys).union(unusable).sorted() {
            let path = exact.path
            let old = recorded[exact]
            let new = found[exact]
            if let reason = unreadable[path] {
                changes.append(.init(path: path, kind: old == nil ? .added : .modified, reason: reason, linkTarget: scan.linkTargets[path],
                                     unstorable: scan.unstorable[path] != nil))
                continue
            }
            switch (old, new) {
            case (nil, let n?):
                changes.append(.init(path: path, kind: .added, changedTensors: n.kind == .safetensors ? n.tensors.count : nil, tensorCount: n.tensors.count,
                                     linkTarget: scan.linkTargets[path]))
            case (_?, nil):
                // mrepo has no index: a tracked file .mrepoignore now lists leaves the next tree
                // (the way to stop tracking a file and keep it); say so, it is still on disk.
                var change = WorktreeStatus.Change(path: path, kind: .deleted, changedTensors: nil, tensorCount: nil)
                change.ignoredOnDisk = FileStat.of(root + "/" + path) != nil && ignore.ignoresWithFolders(path)
                changes.append(change)
            case let (o?, n?) where o.identity != n.identity:
                var changed: Int?
                if n.kind == .safetensors {
                    let before = Dictionary(o.tensors.map { ($0.name, $0.objectID) }, uniquingKeysWith: { a, _ in a })
                    let after = Dictionary(n.tensors.map { ($0.name, $0.objectID) }, uniquingKeysWith: { a, _ in a })
                    changed = Set(before.keys).union(after.keys).filter { before[$0] != after[$0] }.count
                }
                changes.append(.init(path: path, kind: .modified, changedTensors: changed, tensorCount: n.tensors.count,
                                     linkTarget: scan.linkTargets[path]))
            default:
                break
            }
        }
        return WorktreeComparison(changes: changes, current: current, nestedRepositories: scan.nestedRepositories,
                                  normalizationTwins: FolderScanner.normalizationTwins(scanned.map(\.path)),
                                  links: Set(scan.linkTargets.keys).union(scan.blobLinks), clock: clock)
    }

    // MARK: - Switch and checkout

    /// Checks out a revision: a branch name switches to the branch; anything else detaches HEAD
    /// at that commit.
    public func checkout(_ revision: String, force: Bool = false, wait: Bool = false) throws -> CheckoutResult {
        if try history.ref(named: revision)?.kind == .branch {
            return try switchBranch(revision, force: force, wait: wait)
        }
        // `checkout [--force] HEAD` stays on HEAD's branch, as in git (the advice for discarding
        // local changes); it does not detach HEAD.
        if revision == "HEAD" || revision == "@", case let .branch(branch, commit) = try history.head(),
           try commit != nil || trackingCandidate(branch) != nil {
            return try switchBranch(branch, force: force, wait: wait)
        }
        // A branch only a remote has: created tracking it, as `switch` (and git's checkout) does.
        if try history.ref(named: revision) == nil, (try? resolve(revision)) == nil, try trackingCandidate(revision) != nil {
            return try switchBranch(revision, force: force, wait: wait)
        }
        return try detachHead(at: revision, force: force, wait: wait)
    }

    /// Detaches HEAD at `revision`'s commit (a branch name too: `switch --detach`, `checkout
    /// --detach`), writing its tree over the working tree.
    public func detachHead(at revision: String, force: Bool = false, wait: Bool = false) throws -> CheckoutResult {
        try withWriteLock(wait: wait, pending: force ? .leave : nil) {
            let target = try resolve(revision)
            let head = try history.head()
            return try moveHead(to: target, newHead: .detached(target), from: head, force: force, message: "checkout: moving from \(head.displayName) to \(revision)",
                                operation: "checkout")
        }
    }

    /// Notes a command that renames, then moves HEAD (``PendingCheckout/Proof/headMovesTo(_:)``),
    /// with its `force` (an undo keeps the files such a move had not reached yet). A note of a
    /// recorded command that a forced command could not finish is kept instead, until a checkout
    /// succeeds (this one's success deletes it, as ``finishPendingCheckout(_:)`` promises); an older
    /// move's note is replaced: this move's files are the ones to put back.
    func noteMoveOfHead(operation: String, from: Tree, to: Tree, target: ObjectID, force: Bool) throws {
        switch pendingNote {
        case .none: break
        case let .note(old): guard case .headMovesTo = old.proof else { return }
        case .unreadable: return
        }
        try notePendingCheckout(operation: operation, from: from, to: to, force: force, proof: .headMovesTo(target.hex), checkingTo: true)
    }

    /// Checks `newTree` out over `oldTree`, then records the move of HEAD to `target` with
    /// `record`: the renames noted as such (``noteMoveOfHead(operation:from:to:target:force:)``),
    /// the note deleted once `record` is done. Shared by switch and checkout, fast-forwards and
    /// bisect steps.
    /// - Parameters:
    ///   - refusal: what a refusal over local changes names ("switching", "pull", ...).
    ///   - operation: the command, as the note names it.
    func checkOutThenMoveHead(_ newTree: Tree, over oldTree: Tree, to target: ObjectID, force: Bool, refusal: String = "switching",
                              operation: String, record: ([StatCacheEntry]) throws -> Void) throws -> MaterializeStats {
        var stats = MaterializeStats()
        let entries = try materialize(newTree, over: oldTree, force: force, operation: refusal, stats: &stats) {
            try self.noteMoveOfHead(operation: operation, from: oldTree, to: newTree, target: target, force: force)
        }
        CrashPoint.reach("checkout.files-written")
        try record(entries)
        clearPendingCheckout()
        return stats
    }

    /// Writes `target`'s tree over the working tree, then moves HEAD to `newHead` (creating the
    /// branch `creating` in the same transaction, if given). The renames come before HEAD moves:
    /// they are noted (``PendingCheckout/Proof/headMovesTo(_:)``), so that if the command is killed
    /// in between, the next one puts HEAD's files back instead of leaving some of the target's
    /// where a commit would record them on the old branch.
    func moveHead(to target: ObjectID, newHead: Head, from head: Head, force: Bool, message: String,
                  creating: HistoryDatabase.NewBranch? = nil, operation: String = "switch") throws -> CheckoutResult {
        try refuseDuringMerge("switching")
        let newTree = try verifiedTree(of: target)
        // Forced, and sure to run: a checkout an interrupted command left is finished (with force)
        // first, so that the files it removes go too (this checkout compares with HEAD only).
        if force, let done = try finishPendingCheckout(.discard) { waitNotice?(done) }
        let oldTree = try worktreeBaseline(head: head).tree
        let stats = try checkOutThenMoveHead(newTree, over: oldTree, to: target, force: force, operation: operation) { entries in
            if let creating {
                try history.setHead(newHead, expected: head, message: message, creating: creating, statEntries: entries)
            } else {
                try history.setHead(newHead, expected: head, message: message, statEntries: entries)
            }
        }
        return CheckoutResult(head: newHead, writtenFiles: stats.written, removedFiles: stats.removed, unchangedFiles: stats.unchanged)
    }

    /// The links of the working tree (read through) that lead, hop by hop (each link on the way,
    /// folder links resolved on disk), through a path of the working tree that differs between
    /// `old` and `new`: after the checkout they would read other bytes, or nothing.
    func linksIntoChangedFiles(_ links: Set<String>, old: Tree, new: Tree) -> Set<String> {
        guard !links.isEmpty, let resolvedRoot = realpath(root, nil) else { return [] }
        let realRoot = String(cString: resolvedRoot)
        free(resolvedRoot)
        let before = Dictionary(old.files.map { ($0.path, $0.identity) }, uniquingKeysWith: { a, _ in a })
        let after = Dictionary(new.files.map { ($0.path, $0.identity) }, uniquingKeysWith: { a, _ in a })
        var out = Set<String>()
        for path in links {
            for hop in PathPolicy.linkHops(from: path, root: root, realRoot: realRoot) where hop != path && before[hop] != after[hop] {
                out.insert(path)
                break
            }
        }
        return out
    }

    struct MaterializeStats {
        var written = 0, removed = 0, unchanged = 0
        /// Of the files written, those moved into place from prepared copies (not decoded).
        var moved = 0
    }

    @discardableResult
    func materialize(_ newTree: Tree, over oldTree: Tree, force: Bool, carryUnchanged: Bool = false) throws -> [StatCacheEntry] {
        var stats = MaterializeStats()
        return try materialize(newTree, over: oldTree, force: force, carryUnchanged: carryUnchanged, stats: &stats)
    }

    /// Makes the working tree hold `newTree`, given that it held `oldTree`: ``stageCheckout(_:over:force:prepared:)``
    /// then ``finishCheckout(_:)``. A failure before the renames (a local change in the way, a
    /// corrupt object, a full disk) leaves the working tree as it was.
    ///
    /// - Parameter beforeRenames: run once the files are staged, when some are to be renamed or
    ///   deleted (a command that records after its renames notes them there, ``PendingCheckout``,
    ///   and deletes the note itself once it has recorded); a failure there writes nothing.
    func materialize(_ newTree: Tree, over oldTree: Tree, force: Bool, operation: String = "switching", carryUnchanged: Bool = false,
                     keepDivergent: Bool = false, stats: inout MaterializeStats, prepared: [String: PreparedFile] = [:],
                     beforeRenames: (() throws -> Void)? = nil) throws -> [StatCacheEntry] {
        let checkout = try stageCheckout(newTree, over: oldTree, force: force, operation: operation, carryUnchanged: carryUnchanged,
                                         keepDivergent: keepDivergent, prepared: prepared)
        if let beforeRenames, !checkout.staged.isEmpty || !checkout.removals.isEmpty {
            do {
                try beforeRenames()
            } catch {
                checkout.rollback()
                throw error
            }
        }
        let entries = try finishCheckout(checkout, keepingNote: beforeRenames != nil)
        stats = checkout.stats
        return entries
    }

    /// A checkout whose new and changed files are written and verified beside their destinations
    /// (temporary files), but not yet renamed into place.
    struct StagedCheckout {
        let staging: FileStaging
        var stats = MaterializeStats()
        /// Stat-cache entries of the files already equal to the target.
        var unchangedEntries: [StatCacheEntry] = []
        /// The staged files, as the tree entries to record for them.
        var staged: [TreeFile] = []
        /// Working-tree paths the target drops, deleted after the renames.
        var removals: [String] = []

        /// Deletes the temporary files and the folders created for them.
        func rollback() { staging.rollback() }
    }

    /// The first half of a checkout: writes every file of `newTree` that the working tree (which
    /// held `oldTree`) lacks to a temporary file beside its destination, verifying every object it
    /// decodes, and changes nothing else. On failure the temporary files and the folders made for
    /// them are deleted: the working tree is as it was.
    ///
    /// Files already equal to the target are not touched. Without `force`, a local change to a
    /// path that differs between the trees (or an untracked file in the way) stops the operation
    /// before anything is written; local changes to paths the trees agree on are carried over.
    /// Until ``finishCheckout(_:)`` the disk holds both the old and the new version of every
    /// changed file.
    ///
    /// - Parameter prepared: files already written and synced elsewhere on this file system (path →
    ///   temporary file), moved beside their destination instead of being decoded again.
    ///
    /// - Parameters:
    ///   - operation: what a refusal names (``RepoError/dirtyWorktree(operation:paths:)``).
    ///   - carryUnchanged: with `force`, still keep local changes to paths the two trees agree on
    ///     (git's `reset --merge`); only the paths that differ are overwritten.
    ///   - keepDivergent: without `force`, keep a file that holds neither tree's version instead of
    ///     stopping (undoing an interrupted switch: only what the switch wrote is put back).
    ///   - sparingUntracked: with `force`, still stop at an untracked file where the target writes
    ///     one (`reset --hard`, whose help promises that untracked files stay), naming it.
    func stageCheckout(_ newTree: Tree, over oldTree: Tree, force: Bool, operation: String = "switching", carryUnchanged: Bool = false,
                       keepDivergent: Bool = false, sparingUntracked: Bool = false, prepared: [String: PreparedFile] = [:]) throws -> StagedCheckout {
        let comparison = try status(against: oldTree)
        try comparison.checkWritable()
        let (changes, current) = (comparison.changes, comparison.current)
        if force, sparingUntracked {
            // Where the target writes a file, or a folder (which would replace the file).
            let folders = Set(newTree.files.flatMap { PathPolicy.parents(of: $0.path) })
            let inTheWay = changes.filter { change in
                change.kind == .added && !isInsideNestedRepository(change.path)
                    && (newTree.file(at: change.path).map { current[change.path]?.identity != $0.identity } == true
                        || folders.contains(change.path))
            }.map(\.path).sorted()
            if !inTheWay.isEmpty {
                let list = inTheWay.prefix(3).joined(separator: ", ") + (inTheWay.count > 3 ? " and \(inTheWay.count - 3) more" : "")
                throw RepoError.invalidArgument("\(operation) would overwrite untracked files in \(list), which the target commit tracks; "
                    + "move them away (or delete them) first, or commit them")
            }
        }
        // Links read through to a file of the working tree that this checkout rewrites or removes:
        // whatever they read now, they would read something else (or nothing) after it. Each is
        // written over like a changed file (never counted unchanged); one at a path the checkout
        // would otherwise leave alone stops it, unless `force`.
        let endangered = linksIntoChangedFiles(comparison.links, old: oldTree, new: newTree)
        if !force, let path = endangered.filter({ oldTree.file(at: $0)?.identity == newTree.file(at: $0)?.identity
                                                  && newTree.file(at: $0) != nil }).min() {
            throw RepoError.unsafePath(path, reason: "is a symbolic link to a file this checkout rewrites or removes, so it would read other "
                + "bytes after it; replace the link by a copy of the file"
                + (RepoError.takesForce(operation) ? ", or use --force to put the recorded file there" : " first"))
        }
        // Local changes to paths the two trees agree on are carried over, as git does.
        var carried = Set<String>()
        if !force {
            var blocked: [String] = []
            // A nested repository's files are its own: they neither block nor are touched.
            for change in changes where !isInsideNestedRepository(change.path) {
                let before = oldTree.file(at: change.path)?.identity
                let after = newTree.file(at: change.path)?.identity
                if change.kind == .added {
                    if let after, current[change.path]?.identity != after {
                        if keepDivergent { carried.insert(change.path) } else { blocked.append(change.path) }
                    }
                } else if change.reason == nil, !comparison.links.contains(change.path), current[change.path]?.identity == after {
                    // The file already holds what the checkout would leave there (one interrupted
                    // after some of its renames, run again; a file deleted that the target drops):
                    // nothing is lost. Not a link: it is not the regular file the target records.
                    continue
                } else if before != after {
                    if keepDivergent { carried.insert(change.path) } else { blocked.append(change.path) }
                } else {
                    // Kept as it is, an unreadable file too (truncated, say): where the two trees
                    // agree nothing is written, so what it holds need not be known.
                    carried.insert(change.path)
                }
            }
            if !blocked.isEmpty { throw RepoError.dirtyWorktree(operation: operation, paths: blocked) }
        } else if carryUnchanged {
            for change in changes where change.kind != .added && change.reason == nil && !isInsideNestedRepository(change.path)
                && oldTree.file(at: change.path)?.identity == newTree.file(at: change.path)?.identity {
                carried.insert(change.path)
            }
        }
        var checkout = StagedCheckout(staging: FileStaging(journal: journal))
        var toWrite: [TreeFile] = []
        for file in newTree.files {
            _ = try PathPolicy.normalize(file.path)
            // A tree recorded before the folder became a nested repository still lists its files:
            // they are left as the nested repository has them.
            if carried.contains(file.path) || isInsideNestedRepository(file.path) { continue }
            if current[file.path]?.identity == file.identity, !endangered.contains(file.path) {
                checkout.stats.unchanged += 1
                // This lstat follows the status's clock reading: a change since the status shows
                // a later mtime, and the entry is then trusted only a second after it is recorded.
                // (A link read through is cached by what it points to, as the scan sees it.)
                if let st = FileStat.of(root + "/" + file.path, followLinks: comparison.links.contains(file.path)) {
                    checkout.unchangedEntries.append(StatCacheEntry(path: file.path, stat: st, identity: FileIdentityCoding.encode(file),
                                                                    clock: comparison.clock))
                }
            } else {
                // A link at the path itself is replaced by the rename (what it points to is never
                // written); the dirty check above kept an untracked or changed one unless `force`.
                try PathPolicy.checkNoSymlinkParents(root: root, path: file.path, replacingLink: comparison.links.contains(file.path))
                toWrite.append(file)
            }
        }
        let keep = Set(newTree.files.map(\.path))
        checkout.removals = oldTree.files.map(\.path).filter { !keep.contains($0) && !carried.contains($0) && current[$0] != nil }
        for path in checkout.removals {
            try PathPolicy.checkNoSymlinkParents(root: root, path: path, replacingLink: comparison.links.contains(path))
        }
        try makeRoom(for: toWrite.map(\.path), removals: checkout.removals, force: force, staging: checkout.staging, operation: operation)

        // Files about to be replaced or removed lose their cached pages while the new ones are
        // written, instead of in the renames and unlinks at the end.
        // (A file adopted from a prepared copy is written already: nothing would overlap the drop.)
        // (Not through a link: the file it points to stays.)
        PageCache.dropInBackground((toWrite.map(\.path).filter { current[$0] != nil && prepared[$0] == nil } + checkout.removals)
            .filter { !comparison.links.contains($0) }.map { root + "/" + $0 })
        let counter = ProgressCounter(progress, title: "checkout", total: toWrite.reduce(0) { $0 + $1.byteCount })
        do {
            for file in toWrite {
                let destination = root + "/" + file.path
                var staged = file
                // A prepared file is taken only when its SHA-256 (of the bytes written to it) is the
                // one the tree records; otherwise the file is rebuilt from its objects.
                if let ready = prepared[file.path], ready.sha256 == nil || file.sha256 == nil || ready.sha256 == file.sha256,
                   try checkout.staging.adopt(ready.temporary, for: destination, executable: file.executable) {
                    counter.add(file.byteCount)
                    staged.sha256 = file.sha256 ?? ready.sha256
                    checkout.stats.moved += 1
                } else {
                    staged.sha256 = try stage(file, at: destination, in: checkout.staging, progress: counter)
                }
                checkout.staged.append(staged)
            }
        } catch {
            checkout.rollback()
            throw error
        }
        counter.finish()
        checkout.stats.written = toWrite.count
        checkout.stats.removed = checkout.removals.count
        return checkout
    }

    /// The second half of a checkout: syncs the staged files and renames them into place, then
    /// deletes the files the target drops. Returns the stat-cache entries of the files in place.
    /// Only an I/O error while renaming can leave the working tree partly updated (the remaining
    /// temporary files are deleted); running the checkout again with `--force` finishes it.
    /// `keepingNote`: the caller records after the renames and deletes its note itself.
    func finishCheckout(_ checkout: StagedCheckout, keepingNote: Bool = false) throws -> [StatCacheEntry] {
        CrashPoint.reach("checkout.staged")
        do {
            try checkout.staging.commit(didRename: { CrashPoint.reach("checkout.file") })
        } catch {
            checkout.rollback()
            throw error
        }
        var entries = checkout.unchangedEntries
        // Recorded without the file system's clock (another process may change a file between its
        // rename and this stat, at a time before any clock read now): trusted by the one-second
        // rule only (see the closing note of 2026-12-07 on this window).
        for file in checkout.staged {
            if let st = FileStat.of(root + "/" + file.path) {
                entries.append(StatCacheEntry(path: file.path, stat: st, identity: FileIdentityCoding.encode(file)))
            }
        }
        for path in checkout.removals {
            unlink(root + "/" + path)
            removeEmptyParents(of: path)
        }
        // The checkout a record promised is done (``PendingCheckout``).
        if !keepingNote { clearPendingCheckout() }
        return entries
    }

    private func removeEmptyParents(of path: String) {
        var dir = splitPath(path).dir
        while !dir.isEmpty, dir != "/" {
            if rmdir(root + "/" + dir) != 0 { break }
            dir = dir.contains("/") ? splitPath(dir).dir : ""
        }
    }

    /// Creates a folder and its parents; the error names `shown` (default: the folder).
    func createDirectory(_ path: String, shownAs shown: String? = nil) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw RepoError.io(path: shown ?? path, reason: "cannot create directory")
        }
    }

    /// Writes one file of a tree to a temporary file beside `destination`, kept by `staging` until
    /// it commits, verifying it (``rebuild(_:into:verifyObjects:progress:)``): by the SHA-256 of the
    /// whole file when the tree records it (a row naming another valid object would otherwise go
    /// unnoticed), else by every object's identity.
    /// - Returns: the SHA-256 of the bytes written.
    @discardableResult
    func stage(_ file: TreeFile, at destination: String, in staging: FileStaging, progress: ProgressCounter?) throws -> Digest {
        // Whatever writes it (a checkout, restore, export, a merge's candidate): never a path into a
        // `.git` or `.mrepo`, which a tree of an older mrepo may hold (PathPolicy.normalize).
        _ = try PathPolicy.normalize(file.path)
        func write(verifyObjects: Bool) throws -> Digest {
            var digest = Digest.zero
            try staging.write(to: destination, permissions: file.executable ? 0o755 : 0o644) { writer in
                digest = try rebuild(file, into: writer, verifyObjects: verifyObjects, progress: verifyObjects ? nil : progress)
            }
            return digest
        }
        do {
            do {
                return try write(verifyObjects: false)
            } catch is FileDigestMismatch {
                // Something is wrong: rebuild once more checking every object, to say what.
                return try write(verifyObjects: true)
            }
        } catch let RepoError.corruptObject(object, problem) {
            throw RepoError.corruptObject(object: object, problem: "\(file.path): \(problem); nothing was written")
        }
    }

    /// Commands that move HEAD or record commits wait until a merge in progress is finished.
    func refuseDuringMerge(_ operation: String) throws {
        if try history.mergeState() != nil {
            throw RepoError.invalidArgument("\(operation) is not possible while a merge is in progress; finish it with 'mrepo merge --continue' or 'mrepo merge --abort'")
        }
    }
}
