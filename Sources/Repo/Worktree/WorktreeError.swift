/// Why a command refuses something about linked working trees (`mrepo worktree`, and the rule that
/// a branch is checked out in one working tree at a time), as ``RepoError/worktree(_:)``.
/// ``description`` is the one-line message; folders are named as the user gave them, or absolute.
public enum WorktreeError: Equatable, Sendable, CustomStringConvertible {
    /// Another working tree, at `worktree`, has `branch` checked out (`folderGone`: its folder is
    /// deleted but the working tree not yet pruned).
    case branchCheckedOut(branch: String, worktree: String, folderGone: Bool)
    /// `branch -d/-D` of a branch another working tree has checked out.
    case deletingCheckedOutBranch(branch: String, worktree: String)
    /// `worktree add` into a path that exists and is no folder.
    case notAFolder(String)
    /// `worktree add` into a folder that holds something.
    case folderNotEmpty(String)
    /// `worktree add` into the store (`.mrepo`).
    case folderInStore(String)
    /// `worktree add` where a working tree whose folder is gone is still registered.
    case folderOfUnprunedWorktree(String)
    /// The folder was registered by another command meanwhile.
    case alreadyRegistered(String)
    /// `worktree remove` of the main working tree.
    case removingMain(String)
    /// `worktree remove` of a folder that is no working tree of this repository.
    case notAWorktree(String)
    /// `worktree remove` of the working tree the command runs in.
    case removingCurrent(String)
    /// `worktree remove` of a folder whose link file is missing or names another store or key.
    case noLongerLinked(String)
    /// `worktree remove` of a folder holding a repository with its own store (`nested`, relative).
    case holdsNestedRepository(String, nested: String)
    /// `worktree remove` without `--force` of a working tree with a merge in progress.
    case mergeInProgress(String)
    /// `worktree remove` without `--force` of a working tree with uncommitted changes in `paths`.
    case uncommittedChanges(String, paths: [String])
    /// `worktree remove` without `--force` of a working tree holding files no commit tracks.
    case untrackedFiles(String, paths: [String])
    /// A linked working tree (its key) the repository forgot while this command had it open.
    case unregistered(String)
    /// A link file (`linkFile`) naming a key the store does not know.
    case unknownLink(linkFile: String, id: String, store: String)

    public var description: String {
        switch self {
        case let .branchCheckedOut(branch, worktree, folderGone):
            let gone = folderGone ? " (its folder is gone: 'mrepo worktree prune' forgets it)" : ""
            return "branch '\(branch)' is already checked out in the working tree at \(worktree)\(gone); work on it there, or use another branch"
        case let .deletingCheckedOutBranch(branch, worktree):
            return "cannot delete branch '\(branch)': it is checked out in the working tree at \(worktree)"
        case let .notAFolder(path):
            return "\(path): already exists and is not a folder"
        case let .folderNotEmpty(path):
            return "\(path): already exists and is not empty; a new working tree goes into a new or empty folder"
        case let .folderInStore(path):
            return "\(path): the folder is inside the repository's store (\(Repository.directoryName)); choose a folder outside it"
        case let .folderOfUnprunedWorktree(path):
            return "\(path): is a working tree of this repository already, whose folder is gone; 'mrepo worktree prune' forgets it"
        case let .alreadyRegistered(path):
            return "\(path): already a working tree of this repository"
        case let .removingMain(path):
            return "\(path): is the main working tree; only linked working trees can be removed"
        case let .notAWorktree(path):
            return "\(path): is not a working tree of this repository (see 'mrepo worktree list')"
        case let .removingCurrent(path):
            return "\(path): is the working tree this command runs in; run 'mrepo worktree remove' from another one"
        case let .noLongerLinked(path):
            return "\(path): no longer links to this repository (its .mrepo file is missing or names another); 'mrepo worktree prune' forgets it and leaves the folder alone"
        case let .holdsNestedRepository(path, nested):
            return "\(path): holds a nested repository (\(nested)), which even --force does not delete; move it away first"
        case let .mergeInProgress(path):
            return "\(path): has a merge in progress; finish or abort it there, or pass --force"
        case let .uncommittedChanges(path, paths):
            return "\(path): has uncommitted changes in \(Self.listed(paths)); commit them, or pass --force to delete them too"
        case let .untrackedFiles(path, paths):
            return "\(path): holds files mrepo does not track (\(Self.listed(paths))); pass --force to delete them too"
        case let .unregistered(id):
            return "working tree '\(id)' is no longer registered in the repository (removed by 'mrepo worktree remove' or 'prune'); nothing was changed"
        case let .unknownLink(linkFile, id, store):
            return "\(linkFile): working tree '\(id)' is not registered in \(store) (removed, pruned, or its 'mrepo worktree add' was interrupted); delete this folder, or add it again elsewhere with 'mrepo worktree add'"
        }
    }

    /// The first three paths, and how many more.
    static func listed(_ paths: [String]) -> String {
        paths.prefix(3).joined(separator: ", ") + (paths.count > 3 ? " and \(paths.count - 3) more" : "")
    }
}
