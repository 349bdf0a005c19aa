import ArgumentParser
import Foundation
import Repo

struct CherryPickCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cherry-pick",
        abstract: "Record a commit that applies another commit's change (its task vector) onto HEAD.",
        discussion: """
            Exact where HEAD's files and tensors equal REV's parent's: REV's bytes are taken. Elsewhere \
            REV's task vector (REV − REV^) is added to HEAD through the merge machinery (task \
            arithmetic), with its conflict report. The commit keeps REV's message and metrics. 'mrepo \
            reset --hard ORIG_HEAD' undoes it.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions
    @OptionGroup var noEdit: NoEditOption

    @Argument(help: ArgumentHelp("The commit whose change to apply.", valueName: "rev"), completion: CompletionNames.revisions)
    var revision: String

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let repo = try repository.open()
        try ApplyPrinter.present(try repo.cherryPick(revision, wait: lock.wait), verb: "cherry-pick", json: json,
                                 quiet: repository.quiet, repo: repo)
    }
}
