import ArgumentParser
import Delta
import Foundation
import Repo

extension ResetMode: EnumerableFlag {}

struct ResetCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reset",
        abstract: "Move the current branch (or a detached HEAD) to another commit.",
        discussion: """
            --soft moves only the branch: the working tree keeps its files, which then show as changes. \
            mrepo has no index, so --mixed (git's default) is the same as --soft. --hard also makes the \
            working tree hold the commit, discarding uncommitted changes to tracked files (untracked \
            files stay); during a merge it also abandons the merge, as git's does. ORIG_HEAD remembers where the branch was: 'mrepo reset --hard ORIG_HEAD' undoes \
            a reset, a commit --amend, a revert or a cherry-pick ('mrepo stash pop' undoes a stash).
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("The commit to move to.", valueName: "rev"), completion: CompletionNames.revisions)
    var revision = "HEAD"

    /// git's `reset [REV] -- PATH...` (unstaging): mrepo has no index, so it is refused, pointing to restore.
    @Argument(help: .hidden)
    var paths: [String] = []

    func validate() throws {
        if !paths.isEmpty {
            throw ValidationError("reset takes no paths: mrepo has no index to unstage from ('mrepo restore --source \(revision) \(paths.joined(separator: " "))' puts files back as \(revision) has them)")
        }
    }

    @Flag(help: "What to reset besides the branch.")
    var mode: ResetMode = .mixed

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let repo = try repository.open()
        let result: ResetResult
        do {
            result = try repo.reset(to: revision, mode: mode, wait: lock.wait)
        } catch RepoError.unknownRevision(let r) where FileManager.default.fileExists(atPath: r) {
            // `git reset PATH` unstages a file; mrepo has no index.
            throw RepoError.invalidArgument("unknown revision '\(r)': that is a file, and reset takes no paths (mrepo has no index to unstage from; 'mrepo restore \(r)' puts it back as HEAD has it)")
        }
        if json {
            try printJSON(ResetDocument(old: OrNull(result.old?.hex), new: result.new.hex, branch: OrNull(result.head.branchName),
                                        mode: mode.rawValue, writtenFiles: OrNull(result.checkout?.writtenFiles),
                                        removedFiles: OrNull(result.checkout?.removedFiles)))
            return
        }
        guard !repository.quiet else { return }
        let subject = try repo.commit(result.new).subject
        print("HEAD is now at \(result.new.short) \(subject)")
        if let c = result.checkout { print(c.filesSummary) }
    }
}
