import ArgumentParser
import Delta
import Foundation
import Repo

extension WorktreeCommand {
    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add",
            abstract: "Create a working tree at PATH and check out a branch or revision there.",
            discussion: """
                'add PATH BRANCH' checks out BRANCH; any other revision is checked out detached. With -b NEW, \
                NEW is created at the revision (default HEAD); with --detach, the revision (default HEAD) is \
                detached. With no revision and neither option, the branch named after PATH's last component \
                is checked out, created at HEAD if missing. PATH must be new or an empty folder.
                """)

        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var lock: LockOptions

        @Argument(help: ArgumentHelp("The folder of the new working tree.", valueName: "path"))
        var path: String

        @Argument(help: ArgumentHelp("The branch or revision to check out there.", valueName: "revision"))
        var revision: String?

        @Option(name: .customShort("b"), help: ArgumentHelp("Create this branch at the revision (default HEAD) and check it out.", valueName: "new-branch"))
        var newBranch: String?

        @Flag(help: "Detach HEAD at the revision (default HEAD) instead of checking out a branch.")
        var detach = false

        @Flag(name: .shortAndLong, help: "Check out a branch even if another working tree has it checked out.")
        var force = false

        @OptionGroup var tracking: TrackingOptions

        @Flag(help: "Print the new working tree as JSON.")
        var json = false

        func validate() throws {
            if newBranch != nil && detach { throw ValidationError("-b and --detach: give one of them") }
            if detach && tracking.isGiven { throw ValidationError("--track and --no-track go with a branch, not --detach") }
        }

        func run() throws {
            let repo = try repository.open()
            let added = try repo.addWorktree(at: path, revision: revision, newBranch: newBranch, detach: detach, force: force,
                                             tracking: tracking.tracking, wait: lock.wait)
            if json { return try printJSON(AddedWorktreeDocument(added)) }
            guard !repository.quiet else { return }
            let what: String
            switch added.head {
            case let .branch(name, commit):
                what = (added.createdBranch != nil ? "new branch '\(name)'" : "branch '\(name)'") + " at \(commit?.short ?? "?")"
            case let .detached(id):
                what = "HEAD detached at \(id.short)"
            }
            if let upstream = added.upstream, let created = added.createdBranch { print("branch '\(created)' set up to track '\(upstream)'.") }
            print("Prepared working tree \(added.record.path) (\(what); \(added.checkout.writtenFiles) \(added.checkout.writtenFiles == 1 ? "file" : "files") written)")
        }
    }
}
