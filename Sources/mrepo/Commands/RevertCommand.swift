import ArgumentParser
import Foundation
import Repo

struct RevertCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "revert",
        abstract: "Record a commit that undoes a commit's change.",
        discussion: """
            Byte-exact where no later commit touched what REV changed: those files and tensors get REV's \
            parent's bytes back. Where a later commit changed the same tensors, the inverse task vector \
            (REV^ − REV) is added to HEAD through the merge machinery (task arithmetic, tensors changed \
            on one side taken as they are), with its conflict report; a conflict stops it like a merge \
            ('mrepo resolve', then 'mrepo revert --continue'). A merge commit needs -m N, the parent whose \
            side is kept (REV^N stands for REV^ above). 'mrepo reset --hard ORIG_HEAD' undoes it.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions
    @OptionGroup var noEdit: NoEditOption
    @OptionGroup var sequencer: SequencerOptions

    @Argument(help: ArgumentHelp("The commit to undo.", valueName: "rev"), completion: CompletionNames.revisions)
    var revision: String?

    @Option(name: .long, help: ArgumentHelp("The message (default: Revert \"SUBJECT\").", valueName: "message"))
    var message: String?

    @Option(name: [.customShort("m"), .customLong("mainline")],
            help: ArgumentHelp("For a merge commit, the parent whose side is kept (1 for the branch the merge was made on), as git's -m: the change undone is the merge's against that parent.", valueName: "parent"))
    var mainline: Int?

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws { try sequencer.validate(revision: revision) }

    func run() throws {
        let repo = try repository.open()
        guard let revision else {
            return try sequencer.run(repo, verb: "revert", message: message, wait: lock.wait, json: json, quiet: repository.quiet)
        }
        try ApplyPrinter.present(try repo.revert(revision, message: message, mainline: mainline, wait: lock.wait), verb: "revert", json: json,
                                 quiet: repository.quiet, repo: repo)
    }
}
