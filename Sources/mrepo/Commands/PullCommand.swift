import ArgumentParser
import Foundation
import Repo

struct PullCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pull",
        abstract: "Fetch, then fast-forward the current branch to its remote branch.",
        discussion: """
            Runs 'mrepo fetch REMOTE', then moves the current branch and the working tree forward to \
            REMOTE/BRANCH (default: the branch's upstream, else the branch of the same name on origin). When \
            the two have diverged, pull stops: merging models needs a method, so run \
            'mrepo merge REMOTE/BRANCH [--method ...]' yourself.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("The remote (default: the branch's upstream remote, else origin).", valueName: "remote"))
    var remote: String?

    @Argument(help: ArgumentHelp("The remote branch (default: the upstream's branch, else the current branch's name).", valueName: "branch"))
    var branch: String?

    @Flag(help: "Accepted as in git: pull only ever fast-forwards (branches that diverged stop with a message; merge them with a method).")
    var ffOnly = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let repo = try repository.open()
        if json { repo.progress = nil }
        let (remote, branch, wait) = (self.remote, self.branch, lock.wait)
        let (outcome, fetched) = try runBlocking { try await repo.pull(remote: remote, branch: branch, wait: wait) }
        if json {
            try printJSON(PrefixedDocument(head: TransferDocument(fetched, sent: false), body: PullDocument(outcome)))
            return
        }
        guard !repository.quiet else { return }
        switch outcome {
        case .upToDate:
            print("Already up to date.")
        case let .fastForward(from, to):
            print("Fast-forward \(from?.short ?? "(none)")..\(to.short)")
        }
    }
}
