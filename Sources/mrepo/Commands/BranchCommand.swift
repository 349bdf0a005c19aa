import ArgumentParser
import Foundation
import Repo

struct BranchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "branch",
        abstract: "List, create or delete branches.",
        discussion: """
            'mrepo branch' lists branches (* marks the current one, + one checked out in another working tree). 'mrepo branch NAME [START]' creates a \
            branch at START (default HEAD) without switching to it. 'mrepo branch -d NAME' deletes a branch \
            whose commits HEAD contains; -D deletes it anyway.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Name of the branch to create or delete.", valueName: "name"))
    var name: String?

    @Argument(help: ArgumentHelp("Where the new branch starts. The default is HEAD.", valueName: "start"))
    var startPoint: String?

    @Flag(name: .customShort("d"), help: "Delete the branch (it must be merged into HEAD).")
    var delete = false

    @Flag(name: .customShort("D"), help: "Delete the branch even if HEAD does not contain its commits.")
    var forceDelete = false

    @Flag(help: "Print the branches as JSON.")
    var json = false

    func validate() throws {
        if (delete || forceDelete) && name == nil { throw ValidationError("-d and -D need a branch name") }
        if (delete || forceDelete) && startPoint != nil { throw ValidationError("-d and -D take only a branch name") }
    }

    func run() throws {
        let repo = try repository.open()
        if let name {
            if delete || forceDelete {
                let target = try repo.deleteBranch(name, force: forceDelete, wait: lock.wait)
                if !repository.quiet { print("Deleted branch \(name) (was \(target.short)).") }
            } else {
                let target = try repo.createBranch(name, at: startPoint, wait: lock.wait)
                if !repository.quiet { print("Created branch \(name) at \(target.short).") }
            }
            return
        }
        let branches = try repo.branches()
        if json {
            try printJSON(branches.map {
                BranchDocument(name: $0.name, commit: $0.target.hex, current: $0.isCurrent, subject: $0.subject, worktree: OrNull($0.worktree))
            })
            return
        }
        if branches.isEmpty, let head = try? repo.history.head(), let b = head.branchName {
            print("* \(b) (no commits yet)")
            return
        }
        let width = branches.map(\.name.count).max() ?? 0
        for b in branches {
            print("\(b.isCurrent ? "*" : b.worktree != nil ? "+" : " ") \(b.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(b.target.short)  \(b.subject)")
        }
    }
}
