import Delta

/// An error from a repository operation. ``description`` is one line a user can act on.
public enum RepoError: Error, CustomStringConvertible, Equatable, Sendable {
    /// No `.mrepo` directory here or in any parent.
    case notARepository(path: String)
    /// `init` over an existing repository.
    case alreadyARepository(path: String)
    /// The repository was written by a newer mrepo.
    case unsupportedFormat(path: String, problem: String)
    /// A revision that names no commit.
    case unknownRevision(String)
    /// A prefix that matches several commits.
    case ambiguousRevision(String, candidates: [String])
    /// A branch or tag name that does not exist.
    case unknownRef(String)
    /// A branch or tag that already exists.
    case refExists(String)
    /// A branch or tag name that is not allowed.
    case invalidRefName(String, reason: String)
    /// The working tree has changes that an operation would lose.
    case dirtyWorktree(operation: String, paths: [String])
    /// Another process holds the write lock.
    case repositoryLocked(path: String, pid: Int?)
    /// A stored object is missing or does not verify.
    case corruptObject(object: String, problem: String)
    /// A path that would escape the working tree or is otherwise unusable.
    case unsafePath(String, reason: String)
    /// A hook exited non-zero.
    case hookRejected(hook: String, status: Int32)
    /// Nothing to commit.
    case nothingToCommit
    /// A ref moved while the command ran.
    case concurrentUpdate(ref: String)
    /// An error from reading or coding tensors, with the file or commit it happened in.
    case delta(DeltaError)
    /// A system call failed.
    case io(path: String, reason: String)
    /// The file system holding `path` has no room left (SQLITE_FULL, ENOSPC).
    case diskFull(path: String)
    /// A database row or stored record that cannot be read (what it is, and why).
    case corruptRecord(String, problem: String)
    /// A tree whose rows do not describe the files committed (a damaged or altered history
    /// database): what, and how it was found out.
    case corruptTree(String, problem: String)
    /// The request itself is wrong (bad flag combination, bad value).
    case invalidArgument(String)
    /// Anything else, already phrased for the user.
    case failed(String)

    /// One line whatever the names in it hold (``Swift/String/escapingControlCharacters``).
    public var description: String { message.escapingControlCharacters }

    private var message: String {
        switch self {
        case let .notARepository(path):
            return "not an mrepo repository (or any parent up to /): \(path); run 'mrepo init' first"
        case let .alreadyARepository(path):
            return "\(path): already an mrepo repository"
        case let .unsupportedFormat(path, problem):
            return "\(path): \(problem)"
        case let .unknownRevision(rev):
            return "unknown revision '\(rev)'"
        case let .ambiguousRevision(rev, candidates):
            return "ambiguous revision '\(rev)': matches \(candidates.prefix(5).joined(separator: ", "))\(candidates.count > 5 ? ", ..." : "")"
        case let .unknownRef(name):
            return "no branch or tag named '\(name)'"
        case let .refExists(name):
            return "'\(name)' already exists"
        case let .invalidRefName(name, reason):
            return "invalid name '\(name)': \(reason)"
        case let .dirtyWorktree(operation, paths):
            let list = paths.prefix(3).joined(separator: ", ") + (paths.count > 3 ? " and \(paths.count - 3) more" : "")
            // Only switch and checkout take --force; other commands say how to get a clean tree.
            let takesForce = operation.hasPrefix("switching") || operation.hasPrefix("checking out")
            return "\(operation) would overwrite uncommitted changes in \(list); "
                + (takesForce ? "commit them, or pass --force to discard them" : "commit them first, or discard them with 'mrepo checkout --force HEAD'")
        case let .repositoryLocked(path, pid):
            let who = pid.map { "pid \($0)" } ?? "another process"
            return "\(path): repository is locked by \(who) (another mrepo command is writing); retry, or pass --wait"
        case let .corruptObject(object, problem):
            return "object \(object): \(problem)"
        case let .unsafePath(path, reason):
            return "\(path): \(reason)"
        case let .hookRejected(hook, status):
            return "\(hook) hook rejected the operation (exit status \(status)); nothing was written"
        case .nothingToCommit:
            return "nothing to commit, working tree clean (use --allow-empty to record a commit anyway)"
        case let .concurrentUpdate(ref):
            return "'\(ref)' moved while this command ran; nothing was changed, run it again"
        case let .delta(error):
            return error.description
        case let .io(path, reason):
            return "\(path): \(reason)"
        case let .diskFull(path):
            return "\(path): disk full (no space left on device); free some space and run the command again"
        case let .corruptRecord(what, problem):
            return "\(what) is unreadable (\(problem)); run 'mrepo fsck'"
        case let .corruptTree(what, problem):
            return "\(what): \(problem); nothing was written; run 'mrepo fsck'"
        case let .invalidArgument(message):
            return message
        case let .failed(message):
            return message
        }
    }
}

extension RepoError {
    /// Wraps any error as a RepoError, keeping its text.
    static func wrap(_ error: any Error) -> RepoError {
        if let e = error as? RepoError { return e }
        if let e = error as? DeltaError { return .delta(e) }
        return .failed("\(error)")
    }
}
