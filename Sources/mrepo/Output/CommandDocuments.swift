import Delta
import Foundation
import Merge
import Repo

// The small `--json` documents of the commands that print one fact or a short list (branch, tag,
// config, notes, metric, stash, reset, restore, resolve, init, check, remote, rev-parse, show
// REV:path). Keys as printed since they were added; members in order.

/// `branch --show-current --json`.
struct CurrentBranchDocument: Encodable {
    var branch: OrNull<String>
}

/// `branch -m --json`.
struct RenamedDocument: Encodable {
    var renamed: String
    var name: String
}

/// `branch -d --json` and `tag -d --json`: the ref and the commit it named.
struct DeletedRefDocument: Encodable {
    var deleted: String
    var commit: String

    /// What `branch -d` and `tag -d` print: a line per ref ("Deleted tag v1 (was ID)."), or with
    /// `json` one document, a list of them when several names were given.
    static func present(_ deleted: [(name: String, target: ObjectID)], kind: String, several: Bool, json: Bool, quiet: Bool) throws {
        let documents = deleted.map { DeletedRefDocument(deleted: $0.name, commit: $0.target.hex) }
        if json {
            if several { try printJSON(documents) } else { try printJSON(documents[0]) }
        } else if !quiet {
            for d in deleted { print("Deleted \(kind) \(d.name) (was \(d.target.short)).") }
        }
    }
}

/// `branch NAME --json`.
struct CreatedBranchDocument: Encodable {
    var created: String
    var commit: String
    /// The remote branch it tracks (`origin/main`), or null.
    var upstream: OrNull<String>
}

/// `branch -u/--set-upstream-to --json`, `branch --unset-upstream --json`.
struct UpstreamDocument: Encodable {
    var branch: String
    var upstream: OrNull<String>
}

/// `tag NAME --json`.
struct CreatedTagDocument: Encodable {
    var created: String
    var commit: String
    var message: OrNull<String>
}

/// Members whose names are data (config keys, metric names), in their order.
struct NamedValues<Value: Encodable>: Encodable {
    var members: [(String, Value)]

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: JSONKey.self)
        for (name, value) in members { try c.encode(value, forKey: JSONKey(name)) }
    }
}

/// `config KEY --json`, and `config KEY VALUE --json` (with the file written).
struct ConfigValueDocument: Encodable {
    var key: String
    var value: OrNull<String>
    var file: String?
}

/// `metric --json`: a commit's metrics, recorded and added, in order.
struct MetricsDocument: Encodable {
    var commit: String
    var metrics: NamedValues<Number>

    init(commit: ObjectID, metrics: [Commit.Metric]) {
        self.commit = commit.hex
        self.metrics = NamedValues(members: metrics.map { ($0.name, Number($0.value)) })
    }
}

/// `notes --json`.
struct NotesDocument: Encodable {
    struct Note: Encodable {
        var text: String
        var author: String
        var date: String
    }

    var commit: String
    var notes: [Note]

    init(commit: ObjectID, notes: [CommitNote]) {
        self.commit = commit.hex
        self.notes = notes.map { Note(text: $0.text, author: $0.author, date: Format.iso($0.timestamp)) }
    }
}

/// One entry of `stash list --json` (and the entry `stash push/pop/apply/drop --json` touched).
struct StashDocument: Encodable {
    var index: Int
    var commit: String
    var message: String
    var branch: OrNull<String>
    var date: String

    init(_ e: StashEntry) {
        index = e.index
        commit = e.commit.hex
        message = e.message
        branch = OrNull(e.branch)
        date = Format.iso(e.timestamp)
    }
}

/// `reset --json`.
struct ResetDocument: Encodable {
    var old: OrNull<String>
    var new: String
    var branch: OrNull<String>
    var mode: String
    var writtenFiles: OrNull<Int>
    var removedFiles: OrNull<Int>

    enum CodingKeys: String, CodingKey {
        case old, new, branch, mode, writtenFiles = "written_files", removedFiles = "removed_files"
    }
}

/// `restore --json`.
struct RestoreDocument: Encodable {
    var source: String?
    var files: [String]
    var tensors: [String]
    var removed: [String]
    /// Files named that already held the source's content, left untouched.
    var unchanged: [String] = []
    /// Why nothing was restored (`--staged` alone: mrepo has no index).
    var note: String?
}

/// `resolve --json`: the tensors settled now and those still unresolved.
struct ResolveDocument: Encodable {
    var resolved: [String]
    var unresolved: [String]
}

/// `init --json`.
struct InitDocument: Encodable {
    var root: String
    var directory: String
    var branch: String
    var hooks: Bool
    var bare: Bool
}

/// `check --json`.
struct CheckDocument: Encodable {
    var ok: Bool
    var files: Int
    var tensors: Int
    var bytes: Int
    var finiteChecked: Bool
    var problems: [String]

    enum CodingKeys: String, CodingKey {
        case ok, files, tensors, bytes, finiteChecked = "finite_checked", problems
    }
}

/// One remote of `remote --json`.
struct RemoteDocument: Encodable {
    var name: String
    var url: String
    var lazy: Bool
}

/// `show REV:path --json`: a file of a tree and its tensors.
struct ShowFileDocument: Encodable {
    struct Tensor: Encodable {
        var name: String
        var dtype: String
        var shape: [Int]
        var object: String
        var encoding: OrNull<String>
        var storedBytes: OrNull<Int>

        enum CodingKeys: String, CodingKey {
            case name, dtype, shape, object, encoding, storedBytes = "stored_bytes"
        }
    }

    var commit: String
    var path: String
    var kind: String
    var bytes: Int
    var object: String
    var sha256: OrNull<String>
    var tensors: [Tensor]

    init(commit: ObjectID, file: TreeFile, objects: [ObjectID: ObjectInfo]) {
        self.commit = commit.hex
        path = file.path
        kind = file.kind.rawValue
        bytes = file.byteCount
        object = file.objectID.hex
        sha256 = OrNull(file.sha256?.hex)
        tensors = file.tensors.map { t in
            Tensor(name: t.name, dtype: t.dtype.rawValue, shape: t.shape, object: t.objectID.hex,
                   encoding: OrNull(objects[t.objectID]?.encoding.description), storedBytes: OrNull(objects[t.objectID]?.storedByteCount))
        }
    }
}

/// `clean --json`.
struct CleanDocument: Encodable {
    var dryRun: Bool
    var removed: [String]
    var skippedRepositories: [String]

    enum CodingKeys: String, CodingKey {
        case dryRun = "dry_run", removed, skippedRepositories = "skipped_repositories"
    }
}

/// `describe --json`.
struct DescribeDocument: Encodable {
    var commit: String
    var description: String
    var tag: OrNull<String>
    var distance: OrNull<Int>
    var dirty: OrNull<Bool>
}

/// `remote show --json`.
struct RemoteShowDocument: Encodable {
    struct Branch: Encodable {
        var name: String
        var state: OrNull<String>
    }

    struct Pull: Encodable {
        var local: String
        var remoteBranch: String
        enum CodingKeys: String, CodingKey { case local, remoteBranch = "remote_branch" }
    }

    struct Push: Encodable {
        var local: String
        var remoteBranch: String
        var state: String
        enum CodingKeys: String, CodingKey { case local, remoteBranch = "remote_branch", state }
    }

    var name: String
    var url: String
    var lazy: Bool
    var queried: Bool
    var branches: [Branch]
    var pulls: [Pull]
    var pushes: [Push]

    init(_ r: RemoteReport) {
        name = r.name
        url = r.url
        lazy = r.lazy
        queried = r.queried
        branches = r.branches.map { Branch(name: $0.name, state: OrNull($0.state?.rawValue)) }
        pulls = r.pulls.map { Pull(local: $0.local, remoteBranch: $0.remoteBranch) }
        pushes = r.pushes.map { Push(local: $0.local, remoteBranch: $0.remoteBranch, state: $0.state.rawValue) }
    }
}
