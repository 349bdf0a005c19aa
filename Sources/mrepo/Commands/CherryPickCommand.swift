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
    @OptionGroup var sequencer: SequencerOptions

    @Argument(help: ArgumentHelp("The commit whose change to apply.", valueName: "rev"), completion: CompletionNames.revisions)
    var revision: String?

    @Option(name: [.customShort("m"), .customLong("mainline")],
            help: ArgumentHelp("For a merge commit, the parent its change is taken against (1 for the branch the merge was made on), as git's -m.", valueName: "parent"))
    var mainline: Int?

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws { try sequencer.validate(revision: revision) }

    func run() throws {
        let repo = try repository.open()
        guard let revision else {
            return try sequencer.run(repo, verb: "cherry-pick", message: nil, wait: lock.wait, json: json, quiet: repository.quiet)
        }
        try ApplyPrinter.present(try repo.cherryPick(revision, mainline: mainline, wait: lock.wait), verb: "cherry-pick", json: json,
                                 quiet: repository.quiet, repo: repo)
    }
}
