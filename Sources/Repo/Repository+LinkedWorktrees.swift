import Delta
import Foundation

/// A working tree as `worktree list` shows it.
public struct WorktreeInfo: Sendable {
    /// '' for the main working tree, else the linked working tree's key.
    public var id: String
    public var path: String
    public var head: Head
    /// The working tree this command runs in.
    public var isCurrent: Bool
    /// Its folder is gone or no longer links to this repository: `worktree prune` forgets it.
    public var isPrunable: Bool
    public var isMain: Bool { id.isEmpty }
}

/// What `worktree add` made.
public struct AddedWorktree: Sendable {
    public var record: LinkedWorktreeRecord
    public var head: Head
    /// The branch `-b` (or the folder's name, or a branch only a remote has) created, if any.
    public var createdBranch: String?
    public var checkout: CheckoutResult
    /// The remote branch the created branch tracks (`origin/main`), or nil.
    public var upstream: String? = nil
}

extension Repository {
    // MARK: - add

    /// Adds a linked working tree at `path` (`mrepo worktree add`), as git does: `revision` is
    /// checked out there, a branch on it and anything else detached; with `newBranch`, a branch
    /// created at `revision` (default HEAD); with `detach`, `revision` (default HEAD) detached;
    /// with neither and no revision, the branch named after the folder, created at HEAD if missing.
    ///
    /// A branch checked out in another working tree is refused unless `force`. The folder must be
    /// new or empty. All or nothing: the files are staged beside their destinations and verified,
    /// renamed into place with the `.mrepo` link file last, and only then is the working tree
    /// recorded, with its HEAD and stat cache, in one transaction; a failure before that leaves the
    /// folder as it was (deleted again when the command made it).
    @discardableResult
    /// - Parameter tracking: whether a branch it creates tracks the remote-tracking branch it starts
    ///   from (`--track`, `--no-track`; by default when it starts from one).
    public func addWorktree(at path: String, revision: String? = nil, newBranch: String? = nil, detach: Bool = false,
                            force: Bool = false, tracking: BranchTracking = .auto, wait: Bool = false) throws -> AddedWorktree {
        if newBranch != nil, detach { throw RepoError.invalidArgument("-b and --detach: give one of them") }
        if detach, tracking != .auto { throw RepoError.invalidArgument("--track and --no-track go with a branch the working tree gets, not --detach") }
        if let newBranch { try RefNames.validateNew(newBranch) }
        return try withWriteLock(wait: wait) {
            let dir = Repository.absolutePath(path)
            try checkNewWorktreeFolder(dir, shownAs: path)
            let (head, created, upstream) = try worktreeHead(folder: dir, revision: revision, newBranch: newBranch, detach: detach, tracking: tracking)
            guard let target = head.commit else { throw RepoError.invalidArgument("HEAD has no commits yet; commit something before adding a working tree") }
            if let name = head.branchName, created == nil, !force, let other = try history.allHeads().first(where: { $0.value.branchName == name }) {
                let holder = other.key.isEmpty ? mainRoot : try history.linkedWorktrees().first { $0.id == other.key }?.path ?? other.key
                throw HistoryDatabase.branchInUse(name, at: holder)
            }
            if let name = created, try history.ref(named: name) != nil { throw RepoError.refExists(name) }
            let folderStaging = FileStaging(journal: journal)
            try folderStaging.createDirectory(dir, shownAs: path)
            let real = Repository.resolvingLinks(dir)
            let record = LinkedWorktreeRecord(id: try history.newWorktreeID(for: real), path: real, created: Date().timeIntervalSince1970)
            let linked = Repository(viewing: self, root: real, worktree: record.id)
            var stats = MaterializeStats()
            do {
                // Everything is staged (temporary files, in this process's journal), then the working
                // tree is registered, and only then do its link and files go into place, the link
                // first. A kill before the registration leaves nothing (the next command deletes the
                // temporary files, and the folder if it made it); one after it leaves a registered
                // working tree: listed by 'worktree list', its missing files shown by 'status' and
                // written by 'checkout --force HEAD', or prunable while its link is missing. Before, a
                // kill between the files and the registration left a full folder nothing recorded.
                let tree = try verifiedTree(of: target)
                let checkout = try linked.stageCheckout(tree, over: .empty, force: false)
                let link = WorktreeLink(store: Repository.resolvingLinks(metaDirectory), id: record.id)
                let linkStaging = FileStaging(journal: journal)
                let message = "worktree add: \(head.branchName.map { "branch \($0)" } ?? "detached at \(target.short)")"
                do {
                    try linkStaging.write(to: real + "/" + Repository.directoryName) { try $0.write(link.bytes) }
                    CrashPoint.reach("worktree.staged")
                    try history.registerWorktree(record, head: head, newBranch: created.map { ($0, upstream.map { "\($0.remote)/\($0.branch)" } ?? revision ?? "HEAD", upstream) },
                                                 force: force, statEntries: [], message: message)
                } catch {
                    linkStaging.rollback()
                    checkout.rollback()
                    throw error
                }
                do {
                    try linkStaging.commit()
                    CrashPoint.reach("worktree.linked")
                    let entries = try linked.finishCheckout(checkout)
                    stats = checkout.stats
                    CrashPoint.reach("worktree.files-written")
                    linked.history.saveStatCacheOpportunistically(entries, removing: [])
                } catch {
                    // Take back the registration (and the branch it created), then what was written
                    // into the folder (it was new or empty).
                    linkStaging.rollback()
                    checkout.rollback()
                    try? history.unregisterWorktree(record.id, createdBranch: created)
                    for name in (try? FileManager.default.contentsOfDirectory(atPath: real)) ?? [] {
                        try? FileManager.default.removeItem(atPath: real + "/" + name)
                    }
                    throw error
                }
            } catch {
                folderStaging.rollback()
                throw error
            }
            // Nothing is staged in it: this syncs the folders above the ones it made.
            try? folderStaging.commit()
            return AddedWorktree(record: record, head: head, createdBranch: created,
                                 checkout: CheckoutResult(head: head, writtenFiles: stats.written, removedFiles: stats.removed,
                                                          unchangedFiles: stats.unchanged),
                                 upstream: upstream.map { "\($0.remote)/\($0.branch)" })
        }
    }

    /// What a new working tree's HEAD is, the branch to create for it and that branch's upstream
    /// (git's rules: a branch that only a remote has starts from it, tracking it).
    private func worktreeHead(folder: String, revision: String?, newBranch: String?, detach: Bool,
                              tracking: BranchTracking) throws -> (Head, String?, Upstream?) {
        if let newBranch {
            let upstream = try upstream(forStart: revision, tracking: tracking)
            return (.branch(newBranch, commit: try resolve(revision ?? "HEAD")), newBranch, upstream)
        }
        if detach { return (.detached(try resolve(revision ?? "HEAD")), nil, nil) }
        if let revision {
            if let ref = try history.ref(named: revision) {
                return ref.kind == .branch ? (.branch(revision, commit: ref.target), nil, nil) : (.detached(ref.target), nil, nil)
            }
            if let remote = try trackingCandidate(revision) {
                try RefNames.validateNew(revision)
                let upstream = tracking == .never ? nil : Upstream(remote: remote.remote, branch: remote.name)
                return (.branch(revision, commit: remote.target), revision, upstream)
            }
            if tracking == .always {
                throw RepoError.invalidArgument("cannot set up tracking: '\(revision)' is not a branch only a remote has; use -b NEW with a remote-tracking start (origin/main)")
            }
            return (.detached(try resolve(revision)), nil, nil)
        }
        let name = splitPath(folder).name
        if let ref = try history.ref(named: name) {
            guard ref.kind == .branch else {
                throw RepoError.invalidArgument("'\(name)' (the folder's name) is a tag; name a branch or revision to check out, or pass -b NEW")
            }
            return (.branch(name, commit: ref.target), nil, nil)
        }
        do {
            try RefNames.validateNew(name)
        } catch {
            throw RepoError.invalidArgument("the folder's name '\(name)' is no valid branch name; name a branch or revision to check out, or pass -b NEW")
        }
        return (.branch(name, commit: try resolve("HEAD")), name, nil)
    }

    /// A new working tree goes into a new or empty folder, outside the store, with a name the link
    /// file can hold.
    private func checkNewWorktreeFolder(_ dir: String, shownAs shown: String) throws {
        if dir.contains("\n") || dir.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            throw RepoError.unsafePath(shown, reason: "a working tree's path must not hold control characters")
        }
        if let st = FileStat.of(dir, followLinks: true) {
            guard st.isDirectory else { throw RepoError.worktree(.notAFolder(shown)) }
            guard ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? ["?"]).isEmpty else {
                throw RepoError.worktree(.folderNotEmpty(shown))
            }
        }
        let real = Repository.resolvingLinks(dir)
        if isInsideStore(dir) {
            throw RepoError.worktree(.folderInStore(shown))
        }
        // (A folder holding another working tree is not empty; one whose folder is gone still has its row.)
        if try history.linkedWorktrees().contains(where: { $0.path == real }) {
            throw RepoError.worktree(.folderOfUnprunedWorktree(shown))
        }
    }

    // MARK: - remove

    /// Removes a linked working tree (`mrepo worktree remove`): deletes its folder and forgets it.
    ///
    /// Without `force`, refuses a working tree with uncommitted changes, a merge in progress, or
    /// files mrepo does not track (ignored ones included): only what the history holds may go
    /// unasked. Even with `force`, never deletes a nested repository's store, nor a folder that no
    /// longer links here. The folder is first renamed to a temporary name beside it, then its rows
    /// go in one transaction, then the folder: a crash leaves the working tree as it was, or a
    /// leftover that the next command deletes (the rows then wait for `worktree prune`).
    public func removeWorktree(_ path: String, force: Bool = false, wait: Bool = false) throws -> LinkedWorktreeRecord {
        try withWriteLock(wait: wait) {
            let real = Repository.resolvingLinks(Repository.absolutePath(path))
            if real == Repository.resolvingLinks(mainRoot) {
                throw RepoError.worktree(.removingMain(path))
            }
            guard let record = try history.linkedWorktrees().first(where: { Repository.resolvingLinks($0.path) == real }) else {
                throw RepoError.worktree(.notAWorktree(path))
            }
            if record.id == worktreeID {
                throw RepoError.worktree(.removingCurrent(path))
            }
            guard FileStat.of(record.path) != nil else {
                try forgetWorktrees([record.id])
                return record
            }
            try checkRemovable(record, force: force)
            let parent = splitPath(record.path).dir
            let doomed = TemporaryName.path(in: parent, name: "removed-worktree")
            journal.note(directory: parent)
            guard rename(record.path, doomed) == 0 else {
                throw RepoError.io(path: path, reason: "cannot move the folder away to delete it: \(errnoDescription())")
            }
            CrashPoint.reach("worktree.moved-away")
            do {
                try forgetWorktrees([record.id])
            } catch {
                rename(doomed, record.path)
                throw error
            }
            try? FileManager.default.removeItem(atPath: doomed)
            return record
        }
    }

    /// Why a linked working tree's folder may not be deleted, if it may not.
    private func checkRemovable(_ record: LinkedWorktreeRecord, force: Bool) throws {
        guard linksHere(record) else {
            throw RepoError.worktree(.noLongerLinked(record.path))
        }
        let contents = WorktreeContents(root: record.path)
        if let store = contents.stores.first {
            throw RepoError.worktree(.holdsNestedRepository(record.path, nested: store))
        }
        guard !force else { return }
        let linked = Repository(viewing: self, root: record.path, worktree: record.id)
        if try linked.history.mergeState() != nil {
            throw RepoError.worktree(.mergeInProgress(record.path))
        }
        let baseline = try linked.worktreeBaseline(head: try linked.history.head()).tree
        let changes = try linked.status(against: baseline).changes.map(\.path)
        if !changes.isEmpty {
            throw RepoError.worktree(.uncommittedChanges(record.path, paths: changes))
        }
        let tracked = Set(baseline.files.map(\.path))
        let untracked = contents.entries.filter { !tracked.contains($0) }
        if !untracked.isEmpty {
            throw RepoError.worktree(.untrackedFiles(record.path, paths: untracked))
        }
    }

    /// Refuses, before anything is written, a branch that another working tree has checked out
    /// (the transaction that moves HEAD checks again).
    func refuseBranchCheckedOutElsewhere(_ branch: String) throws {
        if let path = try history.branchesCheckedOutElsewhere()[branch] { throw HistoryDatabase.branchInUse(branch, at: path) }
    }

    // MARK: - list

    /// Every working tree: the main one first, then the linked ones, oldest first.
    public func worktrees() throws -> [WorktreeInfo] {
        let heads = try history.allHeads()
        var out = [WorktreeInfo(id: "", path: mainRoot, head: heads[""] ?? .branch("main", commit: nil), isCurrent: worktreeID.isEmpty,
                                isPrunable: false)]
        for record in try history.linkedWorktrees() {
            guard let head = heads[record.id] else { continue }
            out.append(WorktreeInfo(id: record.id, path: record.path, head: head, isCurrent: record.id == worktreeID,
                                    isPrunable: !linksHere(record)))
        }
        return out
    }

    /// Whether a linked working tree's folder still holds the link file naming this store and it.
    func linksHere(_ record: LinkedWorktreeRecord) -> Bool {
        guard let link = try? WorktreeLink.read(record.path + "/" + Repository.directoryName) else { return false }
        return link.id == record.id && Repository.resolvingLinks(link.store) == Repository.resolvingLinks(metaDirectory)
    }

    // MARK: - prune

    /// Forgets the linked working trees whose folder is gone (or no longer links here), in one
    /// transaction, freeing their branches; with `dryRun`, only says which.
    public func pruneWorktrees(dryRun: Bool = false, wait: Bool = false) throws -> [LinkedWorktreeRecord] {
        try withWriteLock(wait: wait) {
            let gone = try history.linkedWorktrees().filter { !linksHere($0) }
            if !dryRun { try forgetWorktrees(gone.map(\.id)) }
            return gone
        }
    }

    /// Forgets linked working trees (their rows), and any checkout an interrupted command left
    /// for them (``PendingCheckout``): no command can finish it any more.
    private func forgetWorktrees(_ ids: [String]) throws {
        try history.forgetWorktrees(ids)
        for id in ids { unlink(metaDirectory + "/CHECKOUT_PENDING-" + id) }
    }
}

/// Everything in a working tree's folder, for `worktree remove`: every entry that is not a folder
/// (relative paths; a nested linked working tree counts as one entry, `dir/`) and the nested
/// repositories with their own store. Symbolic links are not followed; mrepo's own temporary
/// files and the link file are left out.
struct WorktreeContents {
    var entries: [String] = []
    var stores: [String] = []

    init(root: String) {
        walk(root, "")
        entries.sort()
    }

    private mutating func walk(_ root: String, _ relative: String) {
        let dir = relative.isEmpty ? root : root + "/" + relative
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() {
            if name.hasPrefix(AtomicFileWriter.temporaryPrefix) || (relative.isEmpty && name == Repository.directoryName) { continue }
            let rel = relative.isEmpty ? name : relative + "/" + name
            guard let st = FileStat.of(dir + "/" + name), st.isDirectory else {
                entries.append(rel)
                continue
            }
            if let inner = FileStat.of(dir + "/" + name + "/" + Repository.directoryName) {
                if inner.isDirectory { stores.append(rel + "/") } else { entries.append(rel + "/") }
                continue
            }
            walk(root, rel)
        }
    }
}
