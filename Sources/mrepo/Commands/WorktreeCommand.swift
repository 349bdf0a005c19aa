import ArgumentParser
import Delta
import Foundation
import Repo

struct WorktreeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "worktree",
        abstract: "Manage several working trees over one repository.",
        discussion: """
            A linked working tree is a folder with its own HEAD, files, stat cache and merge in progress, \
            sharing the repository's objects, branches, tags, reflog and hooks: jobs on different branches \
            commit each in its own folder. A branch is checked out in one working tree at a time. Its \
            .mrepo is a small file naming the repository's .mrepo directory.
            """,
        subcommands: [Add.self, List.self, Remove.self, Prune.self])
}
