import Delta
import Merge

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
    /// A hook was ended by a signal (killed, crashed): it said no answer, which counts as a refusal.
    case hookKilled(hook: String, signal: Int32)
    /// Nothing to commit.
    case nothingToCommit
    /// `stash` with no change to put aside (git: "No local changes to save", not an error there).
    case nothingToStash
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
    /// `HEAD` on a branch that has no commits yet.
    case unbornBranch(String)
    /// `REV~n` or `REV^n` asks for a parent `commit` does not have (it has `parents`).
    case missingParent(revision: String, commit: String, parents: Int)
    /// Deleting the branch HEAD is on.
    case deletingCurrentBranch(String)
    /// Deleting, without force, a branch with commits HEAD does not contain.
    case branchNotMerged(String)
    /// `switch` to a tag rather than a branch.
    case switchToTag(String)
    /// `export` into the working tree itself.
    case exportIntoWorktree
    /// `export` into `.mrepo` (`directory` as given), however links lead there.
    case exportIntoStore(directory: String)
    /// A commit that holds no LoRA adapter, where one is needed.
    case notAnAdapter(commit: String)
    /// `--adapter-of` on a folder without adapter files.
    case notAnAdapterFolder
    /// An adapter committed with no commit to be its base model.
    case adapterWithoutBase(file: String)
    /// An adapter that does not fit the base model's tensors.
    case adapterBaseMismatch(file: String, base: String, problem: String)
    /// An `adapter_config.json` that cannot be used (the parser's error).
    case invalidAdapterConfig(MergeError)
    /// `merge --no-commit` with a reversible merge.
    case reversibleMergeNoCommit
    /// Reversible merge experts that are adapters of different base models (`bases[i]` is `experts[i]`'s).
    case adapterBasesDiffer(experts: [String], bases: [String])
    /// Reversible merge experts that are partly adapters, partly full models.
    case mixedExpertKinds(experts: [String], kinds: [RMMExpertKind])
    /// Adapters of a reversible merge that adapt different modules than the first one, `reference`.
    case adapterModulesDiffer(expert: String, adds: [String], lacks: [String], reference: String)
    /// `--expert`, `--view` or `experts` on a commit that is no reversible merge (`revision` as given, when known).
    case notAReversibleMerge(commit: String, revision: String?)
    /// `--expert NAME` names none of a reversible merge's experts.
    case unknownExpert(String, merge: String, experts: [String])
    /// A refusal about linked working trees (`mrepo worktree`, a branch checked out elsewhere).
    case worktree(WorktreeError)
    /// The request itself is wrong (bad flag combination, bad value).
    case invalidArgument(String)
    /// Anything else, already phrased for the user.
    case failed(String)
    /// A remote failed or refused a request: what it said, with the remote's URL.
    case remote(String)
    /// A push that is not a fast-forward of what the remote's ref holds now.
    case nonFastForward(ref: String, remote: String)
    /// A remote ref moved between reading it and updating it (another pusher won).
    case remoteRefMoved(ref: String, remote: String)

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
            let takesForce = RepoError.takesForce(operation)
            if operation.hasPrefix("finishing the interrupted") || operation.hasPrefix("undoing the interrupted") {
                // Settling a killed command's checkout: the caller says what to run (a commit is
                // the command being refused).
                return "\(operation) would overwrite changes made since in \(list)"
            }
            if operation == "finishing the merge" {
                return "\(operation) would overwrite uncommitted changes in \(list); move them away or restore them ('mrepo restore PATH'), "
                    + "then run 'mrepo merge --continue' again (or 'mrepo merge --abort')"
            }
            return "\(operation) would overwrite uncommitted changes in \(list); "
                + (takesForce ? "commit them, or pass --force to discard them" : "commit them first, or move them away ('mrepo checkout --force HEAD' discards changes to tracked files; an untracked file must be moved or removed)")
        case let .repositoryLocked(path, pid):
            let who = pid.map { "pid \($0)" } ?? "another process"
            return "\(path): repository is locked by \(who) (another mrepo command is writing); retry, or pass --wait"
        case let .corruptObject(object, problem):
            return "object \(object): \(problem)"
        case let .unsafePath(path, reason):
            return "\(path): \(reason)"
        case let .hookRejected(hook, status):
            return "\(hook) hook rejected the operation (exit status \(status)); nothing was written"
        case let .hookKilled(hook, signal):
            return "\(hook) hook was ended by signal \(signal)\(RepoError.signalName(signal).map { " (\($0))" } ?? ""); nothing was written"
        case .nothingToStash:
            return "no local changes to save"
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
        case let .unbornBranch(name):
            return "HEAD has no commits yet (branch '\(name)' is unborn)"
        case let .missingParent(revision, commit, parents):
            return "'\(revision)': \(commit) has \(parents == 0 ? "no parent" : "\(parents) parent\(parents == 1 ? "" : "s")")"
        case let .deletingCurrentBranch(name):
            return "cannot delete branch '\(name)': it is the current branch; switch to another branch first"
        case let .branchNotMerged(name):
            return "branch '\(name)' is not fully merged into HEAD; use -D to delete it anyway"
        case let .switchToTag(name):
            return "'\(name)' is a tag; use 'mrepo checkout \(name)' to look at it (detached HEAD)"
        case .exportIntoWorktree:
            return "export into the working tree itself; use 'mrepo checkout' instead"
        case let .exportIntoStore(directory):
            return "export into \(directory): the folder is inside the repository's own store (\(Repository.directoryName)); choose a folder outside it"
        case let .notAnAdapter(commit):
            return "commit \(commit) was not committed as a LoRA adapter (a folder with adapter_config.json and adapter_model.safetensors is one; a DoRA adapter, which mrepo cannot fold or merge as an adapter, is stored as plain files)"
        case .notAnAdapterFolder:
            return "--adapter-of: the folder has no adapter_config.json and adapter_model.safetensors"
        case let .adapterWithoutBase(file):
            return "\(file): an adapter needs its base model in the repository; commit the base first and name it with --adapter-of REV"
        case let .adapterBaseMismatch(file, base, problem):
            return "\(file) is not an adapter of commit \(base): \(problem); name its base model commit with --adapter-of REV"
        case let .invalidAdapterConfig(error):
            return error.description
        case .reversibleMergeNoCommit:
            return "rmm: --no-commit is not supported for reversible merges; use --dry-run to plan"
        case let .adapterBasesDiffer(experts, bases):
            let list = zip(experts, bases).map { "\($0) → \($1)" }.joined(separator: ", ")
            return "rmm: the adapters have different base models (\(list)); a reversible merge needs one base"
        case let .mixedExpertKinds(experts, kinds):
            let list = zip(experts, kinds).map { "\($0): \($1 == .adapter ? "adapter" : "full model")" }.joined(separator: ", ")
            return "rmm: the experts mix LoRA adapters and full models (\(list))"
        case let .adapterModulesDiffer(expert, adds, lacks, reference):
            let adding = adds.isEmpty ? "" : "adds \(adds.joined(separator: ", "))"
            let lacking = lacks.isEmpty ? "" : "lacks \(lacks.joined(separator: ", "))"
            return "rmm: the adapters adapt different modules: \(expert) \(adding)\(adds.isEmpty || lacks.isEmpty ? "" : " and ")\(lacking) compared with \(reference); a reversible merge needs the same target modules"
        case let .notAReversibleMerge(commit, revision?):
            return "\(revision) (\(commit)) is not a reversible merge (merge with --method rmm)"
        case let .notAReversibleMerge(commit, nil):
            return "commit \(commit) is not a reversible merge; --expert and --view apply to merges made with --method rmm"
        case let .unknownExpert(name, merge, experts):
            return "'\(name)' is not an expert of the merge \(merge) (experts: \(experts.joined(separator: ", ")))"
        case let .worktree(error):
            return error.description
        case let .invalidArgument(message):
            return message
        case let .failed(message):
            return message
        case let .remote(message):
            return message
        case let .nonFastForward(ref, remote):
            return "\(remote): push of '\(ref)' refused: not a fast-forward of the remote's '\(ref)' (fetch and merge first, or pass --force); the remote is unchanged"
        case let .remoteRefMoved(ref, remote):
            return "\(remote): '\(ref)' moved on the remote while this command ran (another push won); the remote ref is unchanged, fetch and try again"
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

extension RepoError {
    /// Whether the command a refusal names (its `operation`) takes `--force`: only switch and checkout.
    static func takesForce(_ operation: String) -> Bool {
        operation.hasPrefix("switching") || operation.hasPrefix("checking out") || operation.hasPrefix("commit --from")
    }
}

extension RepoError {
    /// A full disk, said where the user can act on it; nil for any other error.
    ///
    /// A write that fails for want of space names the file being written, which is often one of
    /// mrepo's own: a temporary file in the working tree (`.mrepo-tmp-<tag>-<random>-NAME`) stands
    /// for NAME, and anything inside `.mrepo` (an object being stored, a commit's copies) is the
    /// repository's store, so it is named by its `.mrepo` folder.
    public static func fullDisk(_ error: any Error) -> RepoError? {
        let path: String
        switch error {
        case let RepoError.diskFull(p): path = p
        case let RepoError.io(p, reason) where DeltaError.isDiskFull(reason: reason): path = p
        case let RepoError.delta(.io(p, reason)) where DeltaError.isDiskFull(reason: reason): path = p
        case let DeltaError.io(p, reason) where DeltaError.isDiskFull(reason: reason): path = p
        default: return nil
        }
        return .diskFull(path: shownPath(path))
    }

    /// `path` without mrepo's internal names (``fullDisk(_:)``).
    static func shownPath(_ path: String) -> String {
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        if let store = parts.firstIndex(of: Substring(Repository.directoryName)), store < parts.count - 1 {
            return parts[...store].joined(separator: "/")
        }
        guard let k = parts.firstIndex(where: { $0.hasPrefix(AtomicFileWriter.temporaryPrefix) }) else { return path }
        // `.mrepo-tmp-<tag>-<random>-NAME`: NAME follows the second dash after the prefix.
        let rest = parts[k].dropFirst(AtomicFileWriter.temporaryPrefix.count)
        guard let dash = rest.firstIndex(of: "-"), let second = rest[rest.index(after: dash)...].firstIndex(of: "-") else { return path }
        let name = rest[rest.index(after: second)...]
        guard !name.isEmpty else { return path }
        return (parts[..<k] + [name]).joined(separator: "/")
    }
}

extension RepoError {
    /// The usual name of a signal number (Linux's numbering), for messages about processes it ended.
    static func signalName(_ signal: Int32) -> String? {
        let names: [Int32: String] = [1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE",
                                      9: "SIGKILL", 11: "SIGSEGV", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM"]
        return names[signal]
    }
}
