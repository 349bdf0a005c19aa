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

        func validate() throws {
            if newBranch != nil && detach { throw ValidationError("-b and --detach: give one of them") }
        }

        func run() throws {
            let repo = try repository.open()
            let added = try repo.addWorktree(at: path, revision: revision, newBranch: newBranch, detach: detach, force: force, wait: lock.wait)
            guard !repository.quiet else { return }
            let what: String
            switch added.head {
            case let .branch(name, commit):
                what = (added.createdBranch != nil ? "new branch '\(name)'" : "branch '\(name)'") + " at \(commit?.short ?? "?")"
            case let .detached(id):
                what = "HEAD detached at \(id.short)"
            }
            print("Prepared working tree \(added.record.path) (\(what); \(added.checkout.writtenFiles) files written)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            abstract: "List the working trees: the main one first, then the linked ones.",
            discussion: "Each line: the folder, HEAD's commit, and the branch or (detached). 'prunable' marks a working tree whose folder is gone.")

        @OptionGroup var repository: RepositoryOptions

        @Flag(help: "Print the working trees as JSON.")
        var json = false

        func run() throws {
            let repo = try repository.open()
            let trees = try repo.worktrees()
            if json {
                try printJSON(trees.map { t in
                    WorktreeDocument(path: t.path, id: t.id, main: t.isMain, current: t.isCurrent, head: OrNull(t.head.commit?.hex),
                                     branch: OrNull(t.head.branchName), prunable: t.isPrunable)
                })
                return
            }
            let width = trees.map(\.path.count).max() ?? 0
            for t in trees {
                let label = t.head.branchName.map { "[\($0)]" } ?? "(detached HEAD)"
                print("\(t.path.padding(toLength: width, withPad: " ", startingAt: 0))  \(t.head.commit?.short ?? "(unborn)     ")  \(label)"
                    + (t.isPrunable ? "  prunable" : ""))
            }
        }
    }

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

        func run() throws {
            let repo = try repository.open()
            let record = try repo.removeWorktree(path, force: force, wait: lock.wait)
            if !repository.quiet { print("Removed working tree \(record.path)") }
        }
    }

    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "prune",
            abstract: "Forget the working trees whose folder is gone.",
            discussion: "A working tree deleted with rm instead of 'mrepo worktree remove' keeps its branch checked out until it is pruned.")

        @OptionGroup var repository: RepositoryOptions
        @OptionGroup var lock: LockOptions

        @Flag(name: [.customShort("n"), .long], help: "Only say which working trees would be forgotten.")
        var dryRun = false

        func run() throws {
            let repo = try repository.open()
            let gone = try repo.pruneWorktrees(dryRun: dryRun, wait: lock.wait)
            guard !repository.quiet else { return }
            for record in gone { print("\(dryRun ? "Would forget" : "Forgot") working tree \(record.path) ('\(record.id)')") }
        }
    }
}
