import ArgumentParser
import Delta
import Foundation
import Repo

extension WorktreeCommand {
    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "prune",
            abstract: "Forget the working trees whose folder is gone.",
            discussion: "A working tree deleted with rm instead of 'mrepo worktree remove' keeps its branch checked out until it is pruned.")

        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var lock: LockOptions

        @Flag(name: [.customShort("n"), .long], help: "Only say which working trees would be forgotten.")
        var dryRun = false

        @Flag(help: "Print the working trees forgotten (with -n: that would be) as a JSON list.")
        var json = false

        func run() throws {
            let repo = try repository.open()
            let gone = try repo.pruneWorktrees(dryRun: dryRun, wait: lock.wait)
            if json { return try printJSON(gone.map { ForgottenWorktreeDocument(path: $0.path, id: $0.id) }) }
            guard !repository.quiet else { return }
            for record in gone { print("\(dryRun ? "Would forget" : "Forgot") working tree \(record.path) ('\(record.id)')") }
        }
    }
}
