import ArgumentParser
import Delta
import Foundation
import Repo

extension WorktreeCommand {
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
                print("\(Format.pad(t.path, width))  \(t.head.commit?.short ?? "(unborn)     ")  \(label)"
                    + (t.isPrunable ? "  prunable" : ""))
            }
        }
    }
}
