import ArgumentParser
import Delta
import Foundation
import Repo

extension WorktreeCommand {
    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "remove",
            abstract: "Delete a linked working tree's folder and forget it.",
            discussion: """
                Refuses a working tree with uncommitted changes, a merge in progress, or files mrepo does not \
                track (ignored ones included), unless --force. Never deletes a nested repository. Its commits \
                stay in the repository; its branch is free to check out elsewhere.
                """)

        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var lock: LockOptions

        @Argument(help: ArgumentHelp("The folder of the working tree.", valueName: "path"))
        var path: String

        @Flag(name: .shortAndLong, help: "Delete it even with uncommitted changes or untracked files.")
        var force = false

        @Flag(help: "Print the working tree removed as JSON.")
        var json = false

        func run() throws {
            let repo = try repository.open()
            let record = try repo.removeWorktree(path, force: force, wait: lock.wait)
            if json { return try printJSON(ForgottenWorktreeDocument(path: record.path, id: record.id)) }
            if !repository.quiet { print("Removed working tree \(record.path)") }
        }
    }
}
