import ArgumentParser
import Delta
import Foundation
import Merge
import Repo

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the branch and the files that differ from HEAD.",
        discussion: "Files whose size, modification time and inode match the stat cache are not read; other files are hashed tensor by tensor.")

    @OptionGroup var repository: RepositoryOptions

    @Flag(help: "Print the result as JSON.")
    var json = false

    @Flag(name: .shortAndLong, help: "One line per changed file: A (added), M (modified) or D (deleted), then the path.")
    var short = false

    func run() throws {
        let repo = try repository.open()
        let status = try repo.status()
        if json {
            try printJSON(StatusDocument(status, merge: try repo.mergeInProgress(), view: try repo.currentView()?.description))
            return
        }
        if short {
            for c in status.changes {
                print("\(c.kind == .added ? "A" : c.kind == .modified ? "M" : "D") \(c.path)")
            }
            return
        }
        switch status.head {
        case let .branch(name, commit):
            print("On branch \(name)" + (commit == nil ? " (no commits yet)" : ""))
        case let .detached(id):
            print("HEAD detached at \(id.short)")
        }
        if let view = try repo.currentView() {
            print("The working tree holds \(view.description) (written by 'mrepo checkout'); changes are relative to it.")
        }
        if let merge = try repo.mergeInProgress() {
            print("Merging \(merge.branches.joined(separator: ", ")) (\(merge.method)), merge base \(merge.base.short).")
            if merge.ready {
                print("  All tensors merged; the working tree holds the result. 'mrepo merge --continue' commits it.")
            } else if merge.unresolved.isEmpty {
                print("  All conflicts resolved; run 'mrepo merge --continue'.")
            } else {
                print("  Unresolved tensors (settle with 'mrepo resolve GLOB --ours|--theirs|--base|--method M'):")
                for u in merge.unresolved { print("    \(u.tensor): \(u.reason)") }
            }
        }
        if status.isClean {
            print("nothing to commit, working tree clean")
        } else {
            print("Changes not committed:")
            for c in status.changes {
                var detail = ""
                if let reason = c.reason {
                    detail = "  (unreadable: \(reason))"
                } else if c.kind == .modified, let n = c.changedTensors, let total = c.tensorCount {
                    detail = "  (\(n) of \(total) tensors differ)"
                } else if c.kind == .added, let n = c.tensorCount, n > 0 {
                    detail = "  (\(n) tensors)"
                }
                let label = c.kind == .added ? "new file:" : c.kind == .modified ? "modified:" : "deleted: "
                print("  \(label)  \(c.path)\(detail)")
            }
        }
        if !status.normalizationTwins.isEmpty {
            print("Names that differ only in Unicode normalisation (commit refuses them; rename one):")
            for (a, b) in status.normalizationTwins {
                print("  \(DisplayText.escapingNonASCII(a))  \(DisplayText.escapingNonASCII(b))")
            }
        }
        if !status.nestedRepositories.isEmpty {
            print("Nested repositories (left out of commits, never touched by switch or checkout):")
            for path in status.nestedRepositories { print("  \(path)/") }
        }
    }
}
