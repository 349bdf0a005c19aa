import Delta
import Foundation

/// What `reset` does besides moving HEAD: mrepo has no index, so `--mixed` (git's default) is `--soft`.
public enum ResetMode: String, Sendable, CaseIterable {
    /// Move HEAD only; the working tree keeps its files (they show as changes).
    case soft
    /// As `soft`: there is no index to reset.
    case mixed
    /// Move HEAD and make the working tree hold the target, discarding local changes to tracked files.
    case hard
}

/// What a reset did.
public struct ResetResult: Sendable {
    public var old: ObjectID?
    public var new: ObjectID
    public var head: Head
    /// The working tree's update (`--hard`).
    public var checkout: CheckoutResult?
}

/// What a restore wrote.
public struct RestoreResult: Sendable {
    public var source: ObjectID
    /// Files rewritten (whole files, or files some of whose tensors were put back).
    public var files: [String]
    /// Tensors put back (`--tensor`).
    public var tensors: [String]
    /// Files the source lacks, deleted from the working tree.
    public var removed: [String]
    /// Files named that already held the source's content (by the stat cache), left untouched.
    public var unchanged: [String] = []
}

extension Repository {
    /// `reset [--soft|--mixed|--hard] REV`: moves HEAD's branch (or a detached HEAD) to REV and
    /// records where it was as ORIG_HEAD, so `reset --hard ORIG_HEAD` undoes it. With `--hard` the
    /// working tree's files are staged first and renamed into place only after the move is
    /// recorded: a failure before leaves everything as it was.
    public func reset(to revision: String, mode: ResetMode, wait: Bool = false) throws -> ResetResult {
        try withWriteLock(wait: wait, pending: mode == .hard ? .leave : nil) {
            // As git's: a hard reset abandons a merge in progress (its files go with the rest of
            // the working tree); a soft one would leave the merge's files beside a moved HEAD.
            let merge = try history.mergeState()
            if merge != nil && mode != .hard {
                throw RepoError.invalidArgument("a \(mode.rawValue) reset is not possible while a merge is in progress; 'mrepo reset --hard' or 'mrepo merge --abort' ends the merge")
            }
            let head = try history.head()
            let target = try resolve(revision)
            let message = "reset: moving to \(revision)"
            guard mode == .hard else {
                try history.moveHead(to: target, expected: head, message: message)
                return ResetResult(old: head.commit, new: target, head: Repository.moved(head, to: target))
            }
            let targetTree = try verifiedTree(of: target)
            // Sure to run: an interrupted command's checkout is finished (with force) first.
            if let done = try finishPendingCheckout(.discard) { waitNotice?(done) }
            // A merge's working tree holds its candidate (when it wrote one): files the merge added
            // are tracked ones, which the reset removes.
            let baseline = try merge?.readyTree.map { try history.tree($0) } ?? worktreeBaseline(head: head).tree
            let checkout = try stageCheckout(targetTree, over: baseline, force: true, operation: "reset --hard", sparingUntracked: true)
            // A note kept because it could not be finished stays as it is: this reset neither
            // replaces it nor, failing, deletes it (its own checkout deletes it on success).
            let noted = (head.commit != target || merge != nil) && !FileManager.default.fileExists(atPath: pendingCheckoutPath)
            do {
                // HEAD already at the target and no merge: the record changes nothing a later
                // command could check.
                if noted {
                    try notePendingCheckout(operation: "reset --hard", from: baseline, to: targetTree, force: true,
                                            proof: merge == nil ? .head(target.hex) : .headWithoutMerge(target.hex))
                    CrashPoint.reach("reset.noted")
                }
                // The merge state goes in the transaction that moves HEAD.
                try history.moveHead(to: target, expected: head, message: message,
                                     alsoDo: merge == nil ? nil : { try HistoryDatabase.clearMergeState($0, worktree: self.history.worktree) })
            } catch {
                checkout.rollback()
                if noted { clearPendingCheckout() }
                throw error
            }
            let entries = try finishCheckout(checkout)
            history.saveStatCacheOpportunistically(entries, removing: [])
            let stats = checkout.stats
            return ResetResult(old: head.commit, new: target, head: Repository.moved(head, to: target),
                               checkout: CheckoutResult(head: Repository.moved(head, to: target), writtenFiles: stats.written,
                                                        removedFiles: stats.removed, unchangedFiles: stats.unchanged))
        }
    }

    static func moved(_ head: Head, to target: ObjectID) -> Head {
        if let b = head.branchName { return .branch(b, commit: target) }
        return .detached(target)
    }

    /// `restore [--source REV] PATH...`: puts files back as REV (default HEAD) has them; a
    /// path may be a folder. With `tensors` (globs), only the matching tensors of the working
    /// tree's safetensors files (under the paths, if any) are put back, in place of the file's
    /// current bytes for them; everything else in the file is kept. All files are written beside
    /// their destinations first and renamed into place at the end: a failure changes nothing.
    /// - Parameter from: the folder the paths were typed in (absolute; nil: the root), as git
    ///   takes pathspecs in a subfolder.
    public func restore(paths: [String], source: String?, tensors: [String] = [], wait: Bool = false, from: String? = nil) throws -> RestoreResult {
        let paths = try rootRelative(paths, from: from)
        return try withWriteLock(wait: wait) {
            let sourceID = try resolve(source ?? "HEAD")
            let tree = try verifiedTree(of: sourceID)
            let staging = FileStaging(journal: journal)
            defer { objects.releaseMappings() }
            var result = RestoreResult(source: sourceID, files: [], tensors: [], removed: [])
            do {
                if tensors.isEmpty {
                    guard !paths.isEmpty else { throw RepoError.invalidArgument("name the paths to restore (or --tensor GLOB)") }
                    let head = try history.head()
                    let tracked = try worktreeBaseline(head: head).tree
                    var writes: [TreeFile] = [], seen = Set<String>()
                    for path in paths {
                        let spec = Repository.normalizedPathSpec(path)
                        let files = tree.files.filter { PathSpec.matches(spec, file: $0.path) }
                        let gone = tracked.files.filter { PathSpec.matches(spec, file: $0.path) && tree.file(at: $0.path) == nil }
                            .filter { FileStat.of(root + "/" + $0.path) != nil }
                        if files.isEmpty && gone.isEmpty {
                            throw RepoError.invalidArgument("pathspec '\(path)' did not match any file of \(source ?? "HEAD") (\(sourceID.short))")
                        }
                        for f in files where seen.insert(f.path).inserted {
                            // Never through a linked folder; a link where the file belongs is the
                            // user's and is refused too, naming it (`checkout --force` replaces it).
                            try PathPolicy.checkNoSymlinkParents(root: root, path: f.path)
                            writes.append(f)
                        }
                        for f in gone where seen.insert(f.path).inserted {
                            // Never removed through a linked folder (it would delete outside the working tree).
                            try PathPolicy.checkNoSymlinkParents(root: root, path: f.path, replacingLink: true)
                            result.removed.append(f.path)
                        }
                    }
                    result.unchanged = try leaveUnchanged(&writes)
                    // What stands where a file comes back is dealt with before anything is staged,
                    // as in a checkout: an empty folder goes; one that holds anything stops the
                    // restore, naming what it holds; a file where a folder must go goes when the
                    // restore removes it anyway, and stops it otherwise.
                    try makeRoom(for: writes.map(\.path), removals: result.removed, force: false, staging: staging, operation: "restore")
                    for f in writes {
                        try stage(f, at: root + "/" + f.path, in: staging, progress: nil)
                        result.files.append(f.path)
                    }
                } else {
                    try restoreTensors(tensors, paths: paths, from: tree, staging: staging, result: &result)
                }
                try staging.commit()
            } catch {
                staging.rollback()
                throw error
            }
            // What it wrote is recorded in the stat cache, untrusted (another process may have
            // changed a file since its rename), so a second `restore .` confirms it by hashing
            // instead of writing it again.
            if tensors.isEmpty {
                let written = Set(result.files)
                let entries = tree.files.filter { written.contains($0.path) }.compactMap { f in
                    FileStat.of(root + "/" + f.path).map { StatCacheEntry.untrusted(path: f.path, stat: $0, identity: FileIdentityCoding.encode(f)) }
                }
                history.saveStatCacheOpportunistically(entries, removing: result.removed)
            }
            // The folder the command runs in stays, emptied or not (git's does since 2.35).
            let here = URL(fileURLWithPath: FileManager.default.currentDirectoryPath).standardizedFileURL.path
            for path in result.removed {
                unlink(root + "/" + path)
                // Folders the removal left empty go too, as git's do.
                for folder in PathPolicy.parents(of: path) {
                    let full = root + "/" + folder
                    if here == full || here.hasPrefix(full + "/") || rmdir(full) != 0 { break }
                }
            }
            return result
        }
    }

    /// Takes out of `writes` the files that hold their content already, and returns their paths:
    /// left alone, as git leaves them (their links and times kept); anything else is written,
    /// whether or not it differs. The stat cache says which: an entry it trusts, or one recorded
    /// too soon after its file was written to be trusted (what a switch or restore just wrote),
    /// confirmed by hashing the file, which costs less than writing it again.
    private func leaveUnchanged(_ writes: inout [TreeFile]) throws -> [String] {
        let clock = FileSystemClock.read(in: root)
        let cache = try history.statCache()
        let snap = Snapshotter(objects: objects, options: codecOptions)
        var unchanged: [String] = [], confirmed: [StatCacheEntry] = []
        writes.removeAll { f in
            guard let entry = cache[f.path], let st = FileStat.of(root + "/" + f.path), st.isRegular, entry.describes(st),
                  FileIdentityCoding.decode(entry.identity, path: f.path)?.identity == f.identity else { return false }
            if !entry.matches(st) {
                guard let file = try? snap.prepare([ScannedFile(path: f.path, absolutePath: root + "/" + f.path, stat: st)], cache: [:], tolerant: true).first,
                      file.unreadable == nil, (try? snap.identify(file, progress: nil))?.identity == f.identity else { return false }
                confirmed.append(StatCacheEntry(path: f.path, stat: st, identity: entry.identity, clock: clock))
            }
            unchanged.append(f.path)
            return true
        }
        history.saveStatCacheOpportunistically(confirmed, removing: [])
        return unchanged
    }

    /// Stages the working tree's safetensors files with the tensors matching `globs` replaced by
    /// `tree`'s (matched by name; dtype and shape must agree, so the file's layout is kept).
    private func restoreTensors(_ globs: [String], paths: [String], from tree: Tree, staging: FileStaging,
                                result: inout RestoreResult) throws {
        let sourceTensors = tree.tensorsByName
        let ambiguous = Tree.namesInSeveralFiles(tree.modelTensors.map { ($0.path, $0.tensor.name) })
        // Read as status reads the working tree: an untracked oddity elsewhere does not stop it.
        let scan = try FolderScanner.scanFolder(root: root, ignore: IgnoreRules(file: root + "/.mrepoignore"), symlinks: .readThrough)
        let specs = paths.map(Repository.normalizedPathSpec)
        var matchedAny = false
        for scanned in scan.files where isSafetensorsPath(scanned.path) {
            if !specs.isEmpty, !specs.contains(where: { PathSpec.matches($0, file: scanned.path) }) { continue }
            // The same file's tensor in the source first (two files may hold a tensor of one name).
            let sameFile = Dictionary(tree.file(at: scanned.path)?.tensors.map { ($0.name, $0) } ?? [], uniquingKeysWith: { a, _ in a })
            let file: SafetensorsFile
            do { file = try SafetensorsFile(path: root + "/" + scanned.path, displayName: scanned.path) } catch { throw RepoError.delta(error) }
            let chosen = file.tensors.filter { t in globs.contains { PathSpec.glob($0, t.name) } }
            guard !chosen.isEmpty else { continue }
            if scan.linkTargets[scanned.path] != nil || scan.blobLinks.contains(scanned.path) {
                throw RepoError.unsafePath(scanned.path, reason: "is a symbolic link in the working tree; refusing to overwrite it")
            }
            matchedAny = true
            // By name: an empty tensor shares its start with the tensor after it.
            var replace: [String: TreeTensor] = [:]
            for t in chosen {
                // Another file's tensor of the name only when the source holds the name once.
                guard let s = sameFile[t.name] ?? (ambiguous.contains(t.name) ? nil : sourceTensors[t.name]) else {
                    if ambiguous.contains(t.name) {
                        throw RepoError.invalidArgument("tensor '\(t.name)' (\(scanned.path)): the source revision holds it in several files, none of them this one; nothing was written")
                    }
                    throw RepoError.invalidArgument("tensor '\(t.name)' (\(scanned.path)) does not exist in the source revision")
                }
                guard s.dtype == t.dtype, s.shape == t.shape else {
                    throw RepoError.invalidArgument("tensor '\(t.name)' is \(s.dtype.rawValue) \(s.shape) in the source revision but \(t.dtype.rawValue) \(t.shape) in \(scanned.path); restore the whole file instead")
                }
                replace[t.name] = s
            }
            try staging.write(to: root + "/" + scanned.path, permissions: scanned.stat.mode & 0o777) { writer in
                var offset = 0
                for t in file.tensors.inDataOrder() {
                    let range = file.fileRange(of: t)
                    guard let s = replace[t.name] else { continue }
                    if offset < range.lowerBound { try writer.write(file.map.bytes(in: offset..<range.lowerBound)) }
                    var written = 0
                    try objects.decode(s.objectID) { bytes in
                        written += bytes.count
                        try writer.write(bytes)
                    }
                    guard written == range.count else {
                        throw RepoError.corruptObject(object: s.objectID.short, problem: "tensor '\(t.name)' decoded to \(written) bytes, expected \(range.count)")
                    }
                    offset = range.upperBound
                }
                if offset < file.map.count { try writer.write(file.map.bytes(in: offset..<file.map.count)) }
            }
            result.files.append(scanned.path)
            result.tensors += chosen.map(\.name)
        }
        if !matchedAny {
            throw RepoError.invalidArgument("--tensor \(globs.joined(separator: ", ")): no tensor of the working tree's safetensors files matches")
        }
    }

    static func normalizedPathSpec(_ path: String) -> String {
        var p = path
        while p.hasPrefix("./") { p.removeFirst(2) }
        while p.hasSuffix("/") && p.count > 1 { p.removeLast() }
        return p == "." ? "" : p
    }
}

/// Path and tensor-name patterns: a path matches a spec equal to it, a folder above it, or a glob.
public enum PathSpec {
    public static func matches(_ spec: String, file path: String) -> Bool {
        if spec.isEmpty || spec == path || path.hasPrefix(spec + "/") { return true }
        return glob(spec, path)
    }

    /// fnmatch(3) without special treatment of `/` (so `*.weight` matches dotted names and `*` crosses folders).
    public static func glob(_ pattern: String, _ text: String) -> Bool {
        fnmatch(pattern, text, 0) == 0
    }

    public static func isGlob(_ s: String) -> Bool { s.contains { "*?[".contains($0) } }
}
