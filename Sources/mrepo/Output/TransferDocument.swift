import Repo

/// `fetch`, `push`, `clone` and `pull --json`: objects and bytes moved, and the refs that changed.
/// Scripts read `bytes_sent` (push) or `bytes_received` (the others): exactly one of the two keys is
/// present, so a script can tell the direction from the key.
struct TransferDocument: Encodable {
    struct Change: Encodable {
        /// The ref of this repository that changed (`origin/main` after a fetch).
        var name: String
        /// Its name on the side it came from (`main`).
        var source: String
        /// A fetched tag that created the local tag of its name (then `source` names it here too).
        var createdLocalTag: Bool
        var kind: String
        var old: OrNull<String>
        var new: OrNull<String>
        var forced: Bool

        enum CodingKeys: String, CodingKey {
            case name, source, createdLocalTag = "created_local_tag", kind, old, new, forced
        }
    }

    var remote: String
    var commits: Int
    var objects: Int
    var objectsSkipped: Int
    /// Set for a push only; left out (not `null`) otherwise.
    var bytesSent: Int?
    /// Set for fetch, clone and pull only; left out (not `null`) otherwise.
    var bytesReceived: Int?
    var refs: [Change]
    /// Set for `push --dry-run` only (what would be sent; nothing was); left out otherwise.
    var dryRun: Bool?
    /// A push whose remote refused some refs while others moved: each refused ref and why (the
    /// command fails); left out otherwise.
    var rejected: [Rejection]?
    /// `fetch --all`: why this remote could not be fetched (nothing came from it); left out otherwise.
    var error: String?

    struct Rejection: Encodable {
        var name: String
        var reason: String
    }

    enum CodingKeys: String, CodingKey {
        case remote, commits, objects, objectsSkipped = "objects_skipped", bytesSent = "bytes_sent", bytesReceived = "bytes_received", refs
        case dryRun = "dry_run", rejected, error
    }

    /// A remote `fetch --all` could not fetch: nothing received, and why.
    init(failedFetchOf remote: String, error: String) {
        self.remote = remote
        commits = 0
        objects = 0
        objectsSkipped = 0
        bytesReceived = 0
        refs = []
        self.error = error
    }

    /// - Parameter sent: a push (the bytes went out).
    init(_ r: TransferResult, sent: Bool, dryRun: Bool = false) {
        self.dryRun = dryRun ? true : nil
        remote = r.remote
        commits = r.commits
        objects = r.objects
        objectsSkipped = r.skippedObjects
        bytesSent = sent ? r.bytes : nil
        bytesReceived = sent ? nil : r.bytes
        rejected = r.rejected.isEmpty ? nil : r.rejected.map { Rejection(name: $0.name, reason: $0.reason) }
        refs = r.refs.map { Change(name: $0.name, source: $0.source, createdLocalTag: $0.createdLocalTag, kind: $0.kind.rawValue, old: OrNull($0.old?.hex), new: OrNull($0.new?.hex), forced: $0.forced) }
    }
}

/// What `clone --json` adds after the transfer's members.
struct CloneDocument: Encodable {
    var directory: String
    var lazy: Bool
    var shallow: Bool
    /// The branch checked out (`null`: the remote had no branch, HEAD is unborn or detached).
    var branch: OrNull<String>
    /// The commit checked out (`null`: HEAD is unborn).
    var head: OrNull<String>
}

/// What `pull --json` adds after the fetch's members.
struct PullDocument: Encodable {
    /// `up_to_date` or `fast_forward`.
    var status: String
    /// The commit the branch moved to (`null` when it did not move).
    var head: OrNull<String>

    init(_ outcome: PullOutcome) {
        switch outcome {
        case .upToDate:
            status = "up_to_date"
            head = OrNull(nil)
        case let .fastForward(_, to):
            status = "fast_forward"
            head = OrNull(to.hex)
        }
    }
}
