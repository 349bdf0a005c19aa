import Foundation

/// The nearest tag behind a commit, as `git describe` finds it.
public struct TagDescription: Sendable, Equatable {
    /// The commit described.
    public var commit: ObjectID
    /// The nearest tag, or nil when no tag qualifies.
    public var tag: String?
    /// Commits reachable from `commit` and not from the tag (0: the commit is the tagged one);
    /// nil when no tag qualifies.
    public var distance: Int?
    /// With `dirty`: whether the working tree differs from HEAD.
    public var dirty: Bool?
}

extension Repository {
    /// `describe REV`: the tag whose commit is an ancestor of REV with the fewest commits between
    /// them (commits reachable from REV and not from the tag); among equals, an annotated tag, then
    /// the newest, then the first by name. Only tags with a message (annotated) count unless `anyTag`; `match` and
    /// `exclude` are globs on the tag's name. With `dirty` (REV is HEAD), it also says whether
    /// the working tree has changes.
    public func describe(_ revision: String = "HEAD", anyTag: Bool = false, match: [String] = [], exclude: [String] = [],
                         dirty: Bool = false) throws -> TagDescription {
        let commit = try resolve(revision)
        let history = try ancestors(of: commit)
        let candidates = try tags().filter { t in
            (anyTag || t.message != nil) && history.contains(t.target)
                && (match.isEmpty || match.contains { PathSpec.glob($0, t.name) })
                && !exclude.contains { PathSpec.glob($0, t.name) }
        }
        // Among tags as near, an annotated one first (git's describe --tags does so too).
        var best: (distance: Int, plain: Int, timestamp: Double, name: String)?
        var reached: [ObjectID: Set<ObjectID>] = [:]
        for t in candidates {
            let behind: Set<ObjectID>
            if let known = reached[t.target] { behind = known } else {
                behind = try ancestors(of: t.target)
                reached[t.target] = behind
            }
            let distance = history.subtracting(behind).count
            let plain = t.message == nil ? 1 : 0
            if let b = best, (b.distance, b.plain, -b.timestamp, b.name) <= (distance, plain, -t.timestamp, t.name) { continue }
            best = (distance, plain, t.timestamp, t.name)
        }
        return TagDescription(commit: commit, tag: best?.name, distance: best?.distance,
                              // As git: changes to tracked files make it dirty, untracked files do not.
                              dirty: dirty ? try status().changes.contains { $0.kind != .added } : nil)
    }
}
