import Delta
import Foundation

/// A recorded commit.
public struct Commit: Sendable, Equatable {
    public var id: ObjectID
    public var treeID: ObjectID
    public var parents: [ObjectID]
    /// The commit whose tensors this commit's tensors are coded against (nil for a root).
    public var base: ObjectID?
    /// `Name <email>`.
    public var author: String
    /// Seconds since 1970.
    public var timestamp: Double
    public var message: String
    /// Evaluation numbers recorded with `--metric name=value`, in the order given.
    public var metrics: [Metric]
    /// Further facts (lossy storage, merge recipe, ...) as a JSON object.
    public var extra: JSONValue
    /// 1 + the largest generation of the parents (0 for a root); orders commits topologically.
    public var generation: Int
    /// Set when this repository is a shallow clone and lacks this commit's parents or base
    /// (docs/format.md §6.7): what the id hashes. `parents` and `base` then hold only what is here.
    public var graft: Graft? = nil

    /// The parents and base a commit's id hashes, when this repository does not hold them all.
    public struct Graft: Sendable, Equatable {
        /// The commit's parents, in order, as its id hashes them.
        public var parents: [ObjectID]
        /// The commit's base, as its id hashes it.
        public var base: ObjectID?
        /// The history stops here: the parents were not fetched, so the commit has no known parents
        /// (a shallow boundary). False when only the base is missing.
        public var boundary: Bool
    }

    /// The parents the id hashes (``parents`` unless this is a shallow boundary).
    public var hashedParents: [ObjectID] { graft?.parents ?? parents }
    /// The base the id hashes (``base`` unless it lies beyond a shallow boundary).
    public var hashedBase: ObjectID? { graft.map(\.base) ?? base }
    /// Whether this commit is a shallow clone's boundary: its parents were not fetched.
    public var isShallowBoundary: Bool { graft?.boundary == true }

    public struct Metric: Sendable, Equatable, Codable {
        public var name: String
        public var value: Double
        public init(name: String, value: Double) {
            self.name = name
            self.value = value
        }
    }

    /// `extra.storage` as recorded, for display (``CommitStorage`` is the typed record):
    /// `lossless`, or `lossy` when low-rank tensors replaced some it was given.
    public var storage: String {
        extra["storage"]?.stringValue ?? "lossless"
    }

    /// The first line of the message.
    public var subject: String {
        String(message.split(separator: "\n", omittingEmptySubsequences: false).first ?? "")
    }

    public var date: Date { Date(timeIntervalSince1970: timestamp) }

    /// The commit's identity: SHA-256 over its canonical text (docs/format.md §3.4).
    public static func computeID(treeID: ObjectID, parents: [ObjectID], base: ObjectID?, author: String,
                                 timestamp: Double, message: String, metrics: [Metric], extra: JSONValue) -> ObjectID {
        var text = "mrepo-commit v1\ntree \(treeID.hex)\n"
        for p in parents { text += "parent \(p.hex)\n" }
        if let base { text += "base \(base.hex)\n" }
        text += "author \(JSONValue.string(author).serialized())\n"
        text += "time \(Int64((timestamp * 1000).rounded()))\n"
        text += "metrics \(JSONValue.object(metrics.map { JSONMember($0.name, .double($0.value)) }).serialized())\n"
        text += "extra \(extra.serialized())\n\n"
        text += message
        return SHA256.hash(Array(text.utf8))
    }
}
