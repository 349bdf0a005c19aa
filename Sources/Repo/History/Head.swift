import Delta
import Foundation

/// What HEAD points at.
public enum Head: Sendable, Equatable {
    /// On a branch; `commit` is nil while the branch has no commits yet.
    case branch(String, commit: ObjectID?)
    /// Detached at a commit.
    case detached(ObjectID)

    public var commit: ObjectID? {
        switch self {
        case let .branch(_, commit): return commit
        case let .detached(id): return id
        }
    }

    public var branchName: String? {
        if case let .branch(name, _) = self { return name }
        return nil
    }

    /// The branch name, or the short commit id of a detached HEAD (as reflog messages name it).
    public var displayName: String {
        switch self {
        case let .branch(name, _): return name
        case let .detached(id): return id.short
        }
    }
}
