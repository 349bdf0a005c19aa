import Delta
import Foundation

/// How history moves between repositories: the one interface behind every kind of remote (a
/// folder, `mrepo serve` over HTTP, an S3-compatible bucket). docs/remotes.md describes it for
/// implementers; docs/format.md ("Remote layout") the bytes.
///
/// A transport moves three kinds of things, and only these:
///
/// - **objects**, by id: the bytes of an object *file* exactly as stored (the `MROB` header and
///   the encoded tensor, docs/format.md §4.1), so nothing is re-encoded on either side. Objects
///   are immutable and content-addressed, so "put" is idempotent and a sender first asks which
///   ids the other side lacks (``missingObjects(_:)``). Whoever *stores* an object verifies it
///   first: a repository decodes it and compares the digest with the id (the delta reference
///   must be present there already, so senders send references first: ascending `depth`); a dumb
///   store (S3) cannot, so the receiving *repository* verifies when it fetches.
/// - **commit records** (``CommitRecord``): a commit, its tree rows and the index rows of the
///   objects the tree names, in one canonical, versioned JSON document whose ids the receiver
///   recomputes before recording anything. Records are immutable too.
/// - **refs**: names to commit ids, moved last and only by compare-and-swap
///   (``updateRef(_:)``), so a push that raced another never wins by accident.
///
/// Methods may be called concurrently (objects travel over several streams at once). Errors
/// are ``RepoError``s with one-line descriptions (``RepoError/remote(_:)`` for what the other
/// side said).
public protocol RemoteTransport: Sendable {
    /// The remote's URL as the user gave it (for messages).
    var url: String { get }

    /// Every branch and tag of the remote, by name.
    func listRefs() async throws -> [String: RemoteRef]

    /// The commits whose history the remote does not hold in full: a shallow repository's
    /// boundary commits and commits whose base lies beyond it (empty for a complete one). A fetch
    /// does not ask for what lies below them, and records them as boundaries in turn, as git
    /// clones a shallow repository.
    func shallowGrafts() async throws -> [RemoteGraft]

    /// The branches checked out in working trees of the remote (a repository that is not bare),
    /// unborn ones included: a push may not move them, and is refused before anything is sent.
    /// Empty for a store without working trees.
    func checkedOutBranches() async throws -> Set<String>

    /// Throws the error a push would meet at its first write when this remote will not take one
    /// (a read token, a read-only server, a folder this user may not write), without writing: what
    /// `push --dry-run` checks. A store that cannot be asked without writing (S3) passes.
    func checkWriteAccess() async throws

    /// Which of `ids` the remote does not hold (as whole, verified object files). Callers pass
    /// at most ``RemoteTransportLimits/negotiationBatch`` ids per call.
    func missingObjects(_ ids: [ObjectID]) async throws -> Set<ObjectID>

    /// Writes the stored bytes of object `id` to the new file `destination` (which the caller
    /// created empty or which does not exist yet) and returns their count. The caller verifies
    /// them; a transport need not.
    /// - Throws: ``RepoError/remote(_:)`` (or `corruptObject`) when the remote lacks the object.
    func getObject(_ id: ObjectID, to destination: String) async throws -> Int

    /// Stores the object file at `source` (the sender's object file, `byteCount` bytes) as `id`.
    /// A repository receiver verifies it before storing; an object it holds already is accepted
    /// without being read again.
    func putObject(_ id: ObjectID, from source: String, byteCount: Int) async throws

    /// Which of `ids` the remote has no commit record of (batched like ``missingObjects(_:)``).
    func missingCommits(_ ids: [ObjectID]) async throws -> Set<ObjectID>

    /// The record of commit `id`.
    func getCommit(_ id: ObjectID) async throws -> CommitRecord

    /// Stores commit records, parents before children. A repository receiver checks each one
    /// (``CommitRecord/validate()``, parents and base present, every object present) and records
    /// them in one transaction.
    func putCommits(_ records: [CommitRecord]) async throws

    /// Creates, moves or deletes one ref by compare-and-swap: it succeeds only when the ref's
    /// current target is `update.expected` (nil: the ref must not exist). Without
    /// `update.force`, a move must also be a fast-forward (the old target an ancestor of the new).
    /// - Throws: ``RepoError/nonFastForward(ref:remote:)`` or ``RepoError/remoteRefMoved(ref:remote:)``;
    ///   the remote is then unchanged.
    func updateRef(_ update: RefUpdate) async throws

    /// Runs one whole transfer, from its first question to its last ref update, with the remote
    /// held against its `gc`: `body` gets the transport to use meanwhile. A push counts on what
    /// the remote received but no ref reaches yet (objects without a row, commits recorded
    /// before their ref moves) and on the objects it said it had; a fetch on the objects it
    /// listed. A repository's `gc` removes exactly such things, so it waits until the transfer
    /// ends (docs/format.md §7.2).
    ///
    /// A folder remote holds the other repository's read lock (``Repository/readerLease(notice:)``),
    /// waiting while a `gc` runs there (`notice` says so). `mrepo serve` holds it for a push
    /// session (docs/serving.md); an S3 store has no `gc`, and the default runs `body` as it is.
    func transfer<T>(_ kind: TransferKind, notice: (@Sendable (String) -> Void)?,
                     _ body: (any RemoteTransport) async throws -> T) async throws -> T
}

/// What a transfer does to the remote (``RemoteTransport/transfer(_:notice:_:)``).
public enum TransferKind: Sendable, Equatable {
    /// Reads refs, commits and objects.
    case fetch
    /// Sends objects and commits, then moves refs.
    case push
}

extension RemoteTransport {
    /// S3 has no way to ask whether a key may be written short of writing one.
    public func checkWriteAccess() async throws {}

    /// A remote without `gc` (an S3 store): nothing to hold.
    public func transfer<T>(_ kind: TransferKind, notice: (@Sendable (String) -> Void)?,
                            _ body: (any RemoteTransport) async throws -> T) async throws -> T {
        try await body(self)
    }
}

/// A branch or tag as a remote holds it.
public struct RemoteRef: Sendable, Equatable, Codable {
    public var name: String
    public var kind: Ref.Kind
    /// The commit id, 64 hex digits.
    public var target: String
    /// An annotated tag's message (absent for branches and lightweight tags, and from remotes
    /// older than 2026-12-07, which did not send it).
    public var message: String?
    /// The longest tag message a transfer carries, in UTF-8 bytes: a push refuses a longer one, a
    /// fetch leaves it out.
    public static let messageLimit = 64 << 10

    public init(name: String, kind: Ref.Kind, target: ObjectID, message: String? = nil) {
        self.name = name
        self.kind = kind
        self.target = target.hex
        self.message = kind == .tag ? RemoteRef.carried(message) : nil
    }

    /// `message` when a transfer carries it (within ``messageLimit``), else nil.
    public static func carried(_ message: String?) -> String? {
        message.flatMap { $0.utf8.count <= messageLimit ? $0 : nil }
    }

    /// The target as an id (nil only for a damaged listing).
    public var targetID: ObjectID? { ObjectID(hex: target) }
}

/// A commit of a shallow remote whose parents, or base, the remote does not have.
public struct RemoteGraft: Sendable, Equatable, Codable {
    /// The commit id, 64 hex digits.
    public var commit: String
    /// Its parents are not there (a shallow boundary).
    public var boundary: Bool
    /// Its base is not there.
    public var baseMissing: Bool

    public init(commit: ObjectID, boundary: Bool, baseMissing: Bool) {
        self.commit = commit.hex
        self.boundary = boundary
        self.baseMissing = baseMissing
    }
}

/// One compare-and-swap of a remote ref.
public struct RefUpdate: Sendable, Equatable, Codable {
    public var name: String
    public var kind: Ref.Kind
    /// What the ref must point at now (64 hex digits), or nil when it must not exist.
    public var expected: String?
    /// Where it moves (64 hex digits), or nil to delete it.
    public var new: String?
    /// Accept a move that is not a fast-forward (`push --force`); the compare-and-swap still holds.
    public var force: Bool
    /// The message of an annotated tag the update creates or moves (receivers older than
    /// 2026-12-07 ignore it).
    public var message: String?

    public init(name: String, kind: Ref.Kind, expected: ObjectID?, new: ObjectID?, force: Bool, message: String? = nil) {
        self.name = name
        self.kind = kind
        self.expected = expected?.hex
        self.new = new?.hex
        self.force = force
        self.message = kind == .tag && new != nil ? message : nil
    }

    public var expectedID: ObjectID? { expected.flatMap(ObjectID.init(hex:)) }
    public var newID: ObjectID? { new.flatMap(ObjectID.init(hex:)) }
}

/// Sizes shared by every transport.
public enum RemoteTransportLimits {
    /// Ids per ``RemoteTransport/missingObjects(_:)`` or ``RemoteTransport/missingCommits(_:)`` call.
    public static let negotiationBatch = 1000
    /// Objects in flight at once (each streams through a file, so memory stays bounded).
    public static let parallelStreams = 4
}
