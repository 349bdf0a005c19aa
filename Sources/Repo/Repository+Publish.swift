import Delta
import Foundation
import GRDB

/// One change of a commit made without a working tree (an upload through `mrepo serve`).
public enum FileChange: Sendable {
    /// A file whose bytes are in the regular file `source` (read, not moved; the caller deletes it).
    case write(path: String, source: String)
    /// A file of another tree of this repository, taken as it is (its objects are stored already).
    case reuse(path: String, file: TreeFile)
    /// Deletes a file; it must exist.
    case delete(path: String)
    /// Deletes every file below a folder; at least one must exist.
    case deleteFolder(path: String)
}

/// A reader's hold on the repository: `gc` waits until it is released (or deallocated).
public final class ReaderLease: Sendable {
    private let barrier: ReaderBarrier?
    init(barrier: ReaderBarrier?) { self.barrier = barrier }
    public func release() { barrier?.release() }
    deinit { barrier?.release() }
}

extension Repository {
    /// Holds `.mrepo/gc.lock` shared until the lease is released, whatever else this process does:
    /// for readers that outlive a call (a file streamed to a client over many writes).
    ///
    /// - Parameter notice: told when the lease waits for a running `gc` (the repository's
    ///   ``waitNotice`` when nil).
    public func readerLease(notice: (@Sendable (String) -> Void)? = nil) -> ReaderLease {
        ReaderLease(barrier: ReaderBarrier.shared(path: gcLockPath, notice: notice ?? waitNotice))
    }

    /// The same lease without waiting: throws ``GCRunning`` at once when `gc` runs (a server
    /// answers "retry later" rather than hold a thread for as long as gc takes).
    public func readerLeaseWithoutWaiting() throws(GCRunning) -> ReaderLease {
        ReaderLease(barrier: try ReaderBarrier.sharedWithoutWaiting(path: gcLockPath).get())
    }

    /// The commit a revision names, for a client that may only name refs or full ids: a branch, a
    /// tag, or a commit id of at least 40 hex digits (a unique prefix, as `mrepo serve` shows 40).
    /// An id wins over a ref spelled the same (as in git, a full object id always names the
    /// object): a revision pinned to a commit must not be redirected by a branch named like it.
    public func resolveExact(_ revision: String) throws -> ObjectID {
        let lower = revision.lowercased()
        if lower.count >= 40, lower.count <= 64, lower.allSatisfy({ $0.isHexDigit }) {
            let matches = try history.commitIDs(withPrefix: lower)
            if matches.count == 1 { return matches[0] }
        }
        if let ref = try history.ref(named: revision) { return ref.target }
        throw RepoError.unknownRevision(revision)
    }

    /// A file of any tree of this repository whose recorded SHA-256 is `digest` (uploads whose
    /// content is stored already need not be sent again).
    /// Only a file whose objects are all stored (rows, and files in place) counts: a tree that an
    /// interrupted `gc` was removing, or a lazy clone's, may name objects whose files are gone.
    public func file(withSHA256 digest: Digest) throws -> TreeFile? {
        for f in try history.files(withSHA256: digest, limit: 64) {
            let ids = Set([f.objectID] + f.tensors.map(\.objectID))
            if try storedObjects(ids).count == ids.count { return f }
        }
        return nil
    }

    /// The SHA-256 of a file: the recorded one, or computed by reading the file once.
    public func sha256(of file: TreeFile) throws -> Digest {
        if let d = file.sha256 { return d }
        let sha = SHA256()
        let cursor = try FileReader(store: objects, file: file).cursor()
        while try cursor.next({ sha.update($0) }) {}
        return sha.finalize()
    }

    /// Records a commit on `branch` made of its current tree with `changes` applied, without
    /// touching the working tree. The branch HEAD names is accepted only in a bare repository
    /// (HEAD then follows it), as for pushes.
    ///
    /// - Parameters:
    ///   - expectedParent: when given, the commit the branch must point at now (else
    ///     ``RepoError/concurrentUpdate(ref:)``).
    /// - Returns: the new commit. Written objects are deleted again when anything fails before
    ///   the commit is recorded; the branch moves by compare-and-swap in the same transaction.
    public func commitFiles(toBranch branch: String, changes: [FileChange], message: String, author: String,
                            expectedParent: ObjectID? = nil) throws -> Commit {
        try RefNames.validate(branch)
        // post-commit runs once the lock is released; a Hub client gets no warning of its failure
        // (the commit stands), so this thread's warnings are dropped.
        defer { _ = takePostHookWarnings() }
        return try withWriteLock(wait: true) {
            let head = try history.head()
            let existing = try history.ref(named: branch)
            if let existing, existing.kind != .branch { throw RepoError.invalidArgument("'\(branch)' is a tag, not a branch") }
            let parent = existing?.target
            if parent == nil, head.branchName != branch { throw RepoError.unknownRevision(branch) }
            if let expectedParent, expectedParent != parent { throw RepoError.concurrentUpdate(ref: branch) }
            // As for pushes: a branch checked out in any working tree stays where its files are,
            // unless the repository is bare.
            if try history.meta("bare") != "1", try history.allHeads().values.contains(where: { $0.branchName == branch }) {
                throw RepoError.invalidArgument("'\(branch)' is the checked-out branch of this repository; commit to another branch, or serve a bare repository ('mrepo init --bare'); nothing was changed")
            }
            let parentCommit = try parent.map { try commit($0) }
            var files: [String: TreeFile] = [:]
            if let parent { for f in try verifiedTree(of: parent).files { files[f.path] = f } }

            var written: [(path: String, source: String)] = []
            for change in changes {
                switch change {
                case let .write(path, source):
                    written.append((try Repository.checkedUploadPath(path), source))
                case let .reuse(path, file):
                    var f = file
                    f.path = try Repository.checkedUploadPath(path)
                    files[f.path] = f
                case let .delete(path):
                    guard files.removeValue(forKey: path) != nil else { throw RepoError.unsafePath(path, reason: "no such file to delete") }
                case let .deleteFolder(path):
                    let prefix = path.hasSuffix("/") ? path : path + "/"
                    let doomed = files.keys.filter { $0.hasPrefix(prefix) }
                    guard !doomed.isEmpty else { throw RepoError.unsafePath(path, reason: "no such folder to delete") }
                    for p in doomed { files[p] = nil }
                }
            }
            // As `commit` does: shard indexes must name shards the tree holds, and the pre-commit
            // hook may refuse, before anything is written.
            let writtenByPath = Dictionary(written.map { ($0.path, $0.source) }, uniquingKeysWith: { _, b in b })
            try checkShardIndexes(paths: Set(files.keys).union(writtenByPath.keys), written: writtenByPath, unchanged: files)
            let deleted = (parent == nil ? [] : try tree(of: parent!).files.map(\.path)).filter { files[$0] == nil && writtenByPath[$0] == nil }
            var hookEnv = try runPublishPreCommitHook(branch: branch, parent: parent, message: message, author: author,
                                                      written: written, deleted: deleted)
            var snap = Snapshotter(objects: objects, options: codecOptions)
            snap.lowRank = nil
            let scanned = try written.map { item -> ScannedFile in
                guard let st = FileStat.of(item.source), st.isRegular else {
                    throw RepoError.io(path: item.source, reason: "the uploaded file is missing")
                }
                var stat = st
                stat.mode &= ~UInt32(0o111)
                return ScannedFile(path: item.path, absolutePath: item.source, stat: stat)
            }
            let prepared = try snap.prepare(scanned, cache: [:])
            let baseCommit = parentCommit.map { $0.base ?? $0.id }
            let references = try referenceTensors(of: baseCommit)
            let batch = objects.makeBatch()
            defer { objects.releaseMappings() }
            do {
                var newInfos: [ObjectInfo] = []
                var seen = Set<ObjectID>()
                for file in prepared {
                    let (entry, infos, _) = try snap.store(file, references: references, recorded: { try self.storedObjects($0) },
                                                           batch: batch, progress: nil)
                    files[entry.path] = entry
                    for info in infos where seen.insert(info.id).inserted { newInfos.append(info) }
                }
                let paths = files.keys.sorted()
                try Repository.checkTreePaths(paths)
                let tree = Tree(files: Array(files.values))
                try batch.finish()
                let leftoverInfos = try withLeftoverRows(newInfos, for: tree)
                let timestamp = (Date().timeIntervalSince1970 * 1000).rounded() / 1000
                let extra = JSONValue.object([try CommitStorage.lossless.jsonMember()])
                let parents = parent.map { [$0] } ?? []
                let id = Commit.computeID(treeID: tree.id, parents: parents, base: baseCommit, author: author, timestamp: timestamp,
                                          message: message, metrics: [], extra: extra)
                let commit = Commit(id: id, treeID: tree.id, parents: parents, base: baseCommit, author: author, timestamp: timestamp,
                                    message: message, metrics: [], extra: extra, generation: (parentCommit?.generation ?? -1) + 1)
                let reflog = "commit\(parent == nil ? " (initial)" : ""): \(commit.subject)"
                try history.write { db in
                    try HistoryDatabase.insert(db, objects: leftoverInfos)
                    try HistoryDatabase.insert(db, tree: tree)
                    try HistoryDatabase.insert(db, commit: commit)
                    try HistoryDatabase.setRef(db, name: branch, kind: .branch, target: commit.id, old: parent, message: reflog)
                    for (worktree, h) in try HistoryDatabase.allHeads(db) where h.branchName == branch {
                        try HistoryDatabase.logRef(db, HistoryDatabase.headLogName(worktree), old: parent, new: commit.id, message: reflog)
                    }
                }
                // Too late to refuse anything: a failing post-commit hook leaves the commit as it is.
                hookEnv["MREPO_COMMIT"] = commit.id.hex
                _ = runPostHook("post-commit", environment: hookEnv)
                return commit
            } catch {
                batch.rollback()
                throw error
            }
        }
    }

    /// A path a client asked to write: the rules of a tree path (docs/format.md §4.5).
    static func checkedUploadPath(_ path: String) throws -> String {
        let p = try PathPolicy.normalize(path)
        if p.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) {
            throw RepoError.unsafePath(path, reason: "control characters are not allowed in paths")
        }
        return p
    }

    /// Paths a tree may hold together: no two equal in NFC, none a folder of another.
    static func checkTreePaths(_ sorted: [String]) throws {
        if let (a, b) = FolderScanner.normalizationTwins(sorted).first { throw FolderScanner.normalizationError(a, b) }
        let set = Set(sorted)
        for p in sorted {
            var folder = Substring(p)
            while let slash = folder.lastIndex(of: "/") {
                folder = folder[..<slash]
                if set.contains(String(folder)) { throw RepoError.unsafePath(p, reason: "'\(folder)' is a file, so it cannot be a folder too") }
            }
        }
    }
}
