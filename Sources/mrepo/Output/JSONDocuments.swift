import Delta
import Foundation
import Repo

// The documents `--json` prints, as `Codable` types: members in declaration order, absent values as
// `null` (``OrNull``). Scripts read these; a key is renamed only with a changelog entry.

/// A commit as `log --json` lists it, and the start of `show --json`.
struct CommitDocument: Encodable {
    var id: String
    var parents: [String]
    var base: OrNull<String>
    var tree: String
    var author: String
    var date: String
    var timestamp: Double
    var message: String
    /// Name → value, in the order recorded.
    var metrics: NamedValues<Number>
    /// Notes added later (`mrepo notes add`).
    var notes: [String]
    var refs: [String]
    /// As recorded, passed through verbatim: the stored text is what the commit id hashes, and it
    /// may hold members a newer mrepo or another tool wrote (the typed ones are `show`'s business).
    var extra: JSONValue

    /// - Parameters:
    ///   - metrics: the commit's metrics with those added later (default: as recorded).
    ///   - notes: notes added later.
    init(_ c: Commit, names: [String], metrics: [Commit.Metric]? = nil, notes: [CommitNote] = []) {
        id = c.id.hex
        parents = c.parents.map(\.hex)
        base = OrNull(c.base?.hex)
        tree = c.treeID.hex
        author = c.author
        date = Format.iso(c.timestamp)
        timestamp = c.timestamp
        message = c.message
        self.metrics = NamedValues(members: (metrics ?? c.metrics).map { ($0.name, Number($0.value)) })
        self.notes = notes.map(\.text)
        refs = names
        extra = c.extra
    }
}

/// `show --json`: the commit, its files and tensors, and the sizes.
struct ShowDocument: Encodable {
    struct Tensor: Encodable {
        var name: String
        var dtype: String
        var shape: [Int]
        var object: String
        var encoding: OrNull<String>
        var reference: OrNull<String>
        var storedBytes: OrNull<Int>

        enum CodingKeys: String, CodingKey {
            case name, dtype, shape, object, encoding, reference, storedBytes = "stored_bytes"
        }
    }

    struct File: Encodable {
        var path: String
        var kind: String
        var bytes: Int
        var object: String
        /// Only for safetensors files.
        var tensors: [Tensor]?
    }

    var commit: CommitDocument
    var files: [File]
    var logicalBytes: Int
    var storedBytes: Int

    enum CodingKeys: String, CodingKey {
        case files, logicalBytes = "logical_bytes", storedBytes = "stored_bytes"
    }

    init(_ c: Commit, names: [String], tree: Tree, objects: [ObjectID: ObjectInfo], metrics: [Commit.Metric]? = nil,
         notes: [CommitNote] = []) {
        commit = CommitDocument(c, names: names, metrics: metrics, notes: notes)
        files = tree.files.map { f in
            File(path: f.path, kind: f.kind.rawValue, bytes: f.byteCount, object: f.objectID.hex,
                 tensors: f.kind != .safetensors ? nil : f.tensors.map { t in
                     let info = objects[t.objectID]
                     return Tensor(name: t.name, dtype: t.dtype.rawValue, shape: t.shape, object: t.objectID.hex,
                                   encoding: OrNull(info?.encoding.description), reference: OrNull(info?.reference?.hex),
                                   storedBytes: OrNull(info?.storedByteCount))
                 })
        }
        logicalBytes = tree.logicalByteCount
        storedBytes = objects.values.reduce(0) { $0 + $1.storedByteCount }
    }

    /// The commit's members first, then the files and sizes, in one object.
    func encode(to encoder: any Encoder) throws {
        try commit.encode(to: encoder)
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(files, forKey: .files)
        try c.encode(logicalBytes, forKey: .logicalBytes)
        try c.encode(storedBytes, forKey: .storedBytes)
    }
}

/// `commit --json`.
struct CommitResultDocument: Encodable {
    struct Adapter: Encodable {
        var base: String
        var r: Int
        var alpha: Double
        var targets: [String]
        var modules: Int
    }

    struct Lossy: Encodable {
        var tensors: Int
        var maxRelativeError: Double
        var storedBytes: Int
        var denseBytes: Int

        enum CodingKeys: String, CodingKey {
            case tensors, maxRelativeError = "max_relative_error", storedBytes = "stored_bytes", denseBytes = "dense_bytes"
        }
    }

    var commit: String
    var branch: OrNull<String>
    var files: Int
    var tensors: Int
    var logicalBytes: Int
    var newObjects: Int
    var newStoredBytes: Int
    var unchangedFiles: Int
    var copiedFiles: Int
    var seconds: Double
    var adapter: OrNull<Adapter>
    var lossy: OrNull<Lossy>
    var notes: [String]

    enum CodingKeys: String, CodingKey {
        case commit, branch, files, tensors, logicalBytes = "logical_bytes", newObjects = "new_objects"
        case newStoredBytes = "new_stored_bytes", unchangedFiles = "unchanged_files", copiedFiles = "copied_files", seconds, adapter, lossy, notes
    }

    init(_ result: CommitResult, seconds: Double) {
        commit = result.commit.id.hex
        branch = OrNull(result.branch)
        files = result.fileCount
        tensors = result.tensorCount
        logicalBytes = result.logicalByteCount
        newObjects = result.newObjectCount
        newStoredBytes = result.newStoredByteCount
        unchangedFiles = result.unchangedFileCount
        copiedFiles = result.copiedFileCount
        self.seconds = seconds
        adapter = OrNull(result.adapter.map { Adapter(base: $0.base.hex, r: $0.rank, alpha: $0.alpha, targets: $0.targets, modules: $0.moduleCount) })
        let low = result.lowRankTensors
        lossy = OrNull(low.isEmpty ? nil : Lossy(tensors: low.count, maxRelativeError: low.map(\.relativeError).max() ?? 0,
                                                  storedBytes: low.reduce(0) { $0 + $1.storedByteCount },
                                                  denseBytes: low.reduce(0) { $0 + $1.logicalByteCount }))
        notes = result.notes
    }
}

/// `export --json`.
struct ExportDocument: Encodable {
    var commit: String
    var directory: String
    var files: Int
    var bytes: Int
    var seconds: Double
    var lossy: Bool
    var maxRelativeError: OrNull<Double>

    enum CodingKeys: String, CodingKey {
        case commit, directory, files, bytes, seconds, lossy, maxRelativeError = "max_relative_error"
    }
}

/// `gc --json`.
struct GCDocument: Encodable {
    var removedCommits: Int
    var removedObjects: Int
    var freedBytes: Int
    var removedTemporaryFiles: Int

    enum CodingKeys: String, CodingKey {
        case removedCommits = "removed_commits", removedObjects = "removed_objects", freedBytes = "freed_bytes"
        case removedTemporaryFiles = "removed_temporary_files"
    }

    init(_ r: GCReport) {
        removedCommits = r.removedCommits
        removedObjects = r.removedObjects
        freedBytes = r.freedBytes
        removedTemporaryFiles = r.removedTemporaryFiles
    }
}

/// `fsck --json`.
struct FsckDocument: Encodable {
    var clean: Bool
    var errors: [String]
    var warnings: [String]
    var commits: Int
    var objects: Int
    var verifiedBytes: Int

    enum CodingKeys: String, CodingKey {
        case clean, errors, warnings, commits, objects, verifiedBytes = "verified_bytes"
    }

    init(_ r: FsckReport) {
        clean = r.isClean
        errors = r.errors
        warnings = r.warnings
        commits = r.commitCount
        objects = r.objectCount
        verifiedBytes = r.verifiedBytes
    }
}

/// One line of `branch --json`.
struct BranchDocument: Encodable {
    var name: String
    var commit: String
    var current: Bool
    var subject: String
    /// The working tree that has the branch checked out, if another one does.
    var worktree: OrNull<String>
    /// The remote of a remote-tracking branch (`branch -r`, `-a`); null for a local branch.
    var remote: OrNull<String>
    /// The remote branch a local branch tracks (`origin/main`), or null.
    var upstream: OrNull<String>
}

/// One line of `tag --json`.
struct TagDocument: Encodable {
    var name: String
    var commit: String
    var message: OrNull<String>
}

/// One line of `reflog --json`.
struct ReflogDocument: Encodable {
    var ref: String
    var old: OrNull<String>
    var new: OrNull<String>
    var date: String
    var message: String
}

/// `du --json`.
struct UsageDocument: Encodable {
    struct Lossy: Encodable {
        var method: String
        var setting: String
        var tensors: Int
        var storedBytes: Int
        var denseBytes: Int
        var maxRelativeError: Double

        enum CodingKeys: String, CodingKey {
            case method, setting, tensors, storedBytes = "stored_bytes", denseBytes = "dense_bytes", maxRelativeError = "max_relative_error"
        }
    }

    struct Commit: Encodable {
        var id: String
        var subject: String
        var refs: [String]
        var logicalBytes: Int
        var newStoredBytes: Int
        var newLogicalBytes: Int
        var lossy: OrNull<Lossy>

        enum CodingKeys: String, CodingKey {
            case id, subject, refs, logicalBytes = "logical_bytes", newStoredBytes = "new_stored_bytes"
            case newLogicalBytes = "new_logical_bytes", lossy
        }
    }

    var commits: [Commit]
    var logicalBytes: Int
    var objectBytes: Int
    var databaseBytes: Int
    var objects: Int

    enum CodingKeys: String, CodingKey {
        case commits, logicalBytes = "logical_bytes", objectBytes = "object_bytes", databaseBytes = "database_bytes", objects
    }
}

/// `status --json`.
struct StatusDocument: Encodable {
    struct Unresolved: Encodable {
        var tensor: String
        var reason: String
    }

    struct Merge: Encodable {
        var branches: [String]
        var method: String
        var ready: Bool
        var unresolved: [Unresolved]
        /// The first line of the commit's message to be.
        var subject: String
        /// A revert or cherry-pick through task arithmetic rather than a merge of branches.
        var appliesChange: Bool
        /// Which: "revert" or "cherry-pick" (null for a merge).
        var operation: OrNull<String>

        enum CodingKeys: String, CodingKey { case branches, method, ready, unresolved, subject, appliesChange = "applies_change", operation }
    }

    struct Change: Encodable {
        var path: String
        var status: String
        var changedTensors: OrNull<Int>
        var tensors: OrNull<Int>
        var reason: OrNull<String>
        var symlinkTarget: OrNull<String>

        enum CodingKeys: String, CodingKey {
            case path, status, changedTensors = "changed_tensors", tensors, reason, symlinkTarget = "symlink_target"
        }
    }

    struct Upstream: Encodable {
        var name: String
        var ahead: Int
        var behind: Int
        /// The remote branch is no more (deleted there and pruned here).
        var gone: Bool
    }

    /// A checkout an interrupted command left (`Repository.interruptedCheckout()`).
    struct Interrupted: Encodable {
        var operation: OrNull<String>
        /// Its record was made: the next command that writes finishes the checkout.
        var recorded: Bool
        /// A command that records after its renames (`switch`) was killed first: the next command
        /// that writes puts HEAD's files back.
        var putsBack: Bool
        var advice: String

        enum CodingKeys: String, CodingKey { case operation, recorded, putsBack = "puts_back", advice }
    }

    var mergeInProgress: OrNull<Merge>
    var interruptedCheckout: OrNull<Interrupted>
    var branch: OrNull<String>
    var head: OrNull<String>
    var upstream: OrNull<Upstream>
    var view: OrNull<String>
    var clean: Bool
    var nestedRepositories: [String]
    var normalizationTwins: [[String]]
    var changes: [Change]
    /// The bisection in progress, as `bisect ... --json` prints it.
    var bisectInProgress: OrNull<BisectDocument>

    enum CodingKeys: String, CodingKey {
        case mergeInProgress = "merge_in_progress", interruptedCheckout = "interrupted_checkout", branch, head, upstream, view, clean, nestedRepositories = "nested_repositories"
        case normalizationTwins = "normalization_twins", changes, bisectInProgress = "bisect_in_progress"
    }

    init(_ status: WorktreeStatus, merge: MergeInProgress?, view: String?, tracking: TrackingStatus? = nil, bisect: BisectOutcome? = nil,
         interrupted: InterruptedCheckout? = nil) {
        interruptedCheckout = OrNull(interrupted.map { Interrupted(operation: OrNull($0.operation), recorded: $0.recorded, putsBack: $0.putsBack, advice: $0.advice) })
        bisectInProgress = OrNull(bisect.map(BisectDocument.init))
        upstream = OrNull(tracking.map { Upstream(name: $0.upstream, ahead: $0.ahead, behind: $0.behind, gone: $0.gone) })
        mergeInProgress = OrNull(merge.map { m in
            Merge(branches: m.branches, method: m.method, ready: m.ready, unresolved: m.unresolved.map { Unresolved(tensor: $0.tensor, reason: $0.reason) },
                  subject: m.subject, appliesChange: m.appliesChange, operation: OrNull(m.operation))
        })
        branch = OrNull(status.head.branchName)
        head = OrNull(status.head.commit?.hex)
        self.view = OrNull(view)
        clean = status.isClean
        nestedRepositories = status.nestedRepositories
        normalizationTwins = status.normalizationTwins.map { [$0.0, $0.1] }
        changes = status.changes.map { c in
            Change(path: c.path, status: c.kind.rawValue, changedTensors: OrNull(c.changedTensors), tensors: OrNull(c.tensorCount),
                   reason: OrNull(c.reason ?? (c.ignoredOnDisk ? WorktreeStatus.Change.ignoredOnDiskNote : nil)), symlinkTarget: OrNull(c.linkTarget))
        }
    }
}

/// `worktree add --json`: the new working tree, what it checked out, and how many files it wrote.
struct AddedWorktreeDocument: Encodable {
    var path: String
    var id: String
    var head: OrNull<String>
    var branch: OrNull<String>
    /// The branch `add` created (`-b`, or the one named after the folder), or null.
    var createdBranch: OrNull<String>
    var upstream: OrNull<String>
    var filesWritten: Int

    enum CodingKeys: String, CodingKey {
        case path, id, head, branch, createdBranch = "created_branch", upstream, filesWritten = "files_written"
    }

    init(_ a: AddedWorktree) {
        path = a.record.path
        id = a.record.id
        switch a.head {
        case let .branch(name, commit):
            branch = OrNull(name)
            head = OrNull(commit?.hex)
        case let .detached(commit):
            branch = OrNull(nil)
            head = OrNull(commit.hex)
        }
        createdBranch = OrNull(a.createdBranch)
        upstream = OrNull(a.upstream)
        filesWritten = a.checkout.writtenFiles
    }
}

/// `worktree remove --json` and each entry of `worktree prune --json`: a working tree forgotten.
struct ForgottenWorktreeDocument: Encodable {
    var path: String
    var id: String
}

/// One line of `worktree list --json`.
struct WorktreeDocument: Encodable {
    var path: String
    var id: String
    var main: Bool
    var current: Bool
    var head: OrNull<String>
    var branch: OrNull<String>
    var prunable: Bool
}
