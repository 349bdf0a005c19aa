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

    @Flag(help: "The --short lines, for scripts: nothing at all when the working tree is clean (as git's --porcelain, without an index column).")
    var porcelain = false

    func run() throws {
        let repo = try repository.open(access: .readOnly)
        let status = try repo.status()
        let tracking = try repo.trackingStatus()
        let bisect = try repo.bisectInProgress()
        let interrupted = try repo.interruptedCheckout()
        if json {
            try printJSON(StatusDocument(status, merge: try repo.mergeInProgress(), view: try repo.currentView()?.description,
                                         tracking: tracking, bisect: bisect, interrupted: interrupted))
            return
        }
        if short || porcelain {
            // As git's: --short shows paths from the current folder, --porcelain from the top.
            for c in status.changes {
                print("\(c.kind == .added ? "A" : c.kind == .modified ? "M" : "D") \(porcelain ? c.path : Format.fromCurrentFolder(c.path, root: repo.root))")
            }
            return
        }
        switch status.head {
        case let .branch(name, commit):
            print("On branch \(name)" + (commit == nil ? " (no commits yet)" : ""))
            if let t = tracking { print(TrackingText.line(t)) }
        case let .detached(id):
            print("HEAD detached at \(id.short)")
        }
        if let bisect, let state = bisect.state {
            let from = state.startBranch.map { "branch '\($0)'" } ?? state.startCommit.map { "\($0.short)" } ?? "HEAD"
            print("You are bisecting, started from \(from) ('mrepo bisect reset' goes back).")
            for line in try BisectCommand.describe(bisect, repo: repo) { print("  " + line) }
        }
        if let interrupted {
            if let operation = interrupted.operation, interrupted.putsBack {
                print("An interrupted \(operation) left some of its files in the working tree: \(interrupted.advice).")
            } else if let operation = interrupted.operation {
                print("An interrupted \(operation) \(interrupted.recorded ? "left" : "may have left") the working tree partly updated: \(interrupted.advice).")
            } else {
                print(interrupted.advice + ".")
            }
        }
        if let view = try repo.currentView() {
            print("The working tree holds \(view.description) (written by 'mrepo checkout'); changes are relative to it.")
        }
        if let merge = try repo.mergeInProgress() {
            if merge.appliesChange {
                // A revert or cherry-pick that HEAD's own changes sent through task arithmetic.
                print("Applying '\(DisplayText.escaping(merge.subject))' onto HEAD (\(merge.method): a revert or cherry-pick), base \(merge.base.short).")
            } else {
                print("Merging \(merge.branches.joined(separator: ", ")) (\(merge.method)), merge base \(merge.base.short).")
            }
            let command = merge.operation ?? "merge"
            if merge.ready {
                print("  All tensors merged; the working tree holds the result. 'mrepo \(command) --continue' commits it.")
            } else if merge.unresolved.isEmpty {
                print("  All conflicts resolved; run 'mrepo \(command) --continue'.")
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
                    detail = c.unstorable ? "  (\(reason))" : "  (unreadable: \(reason))"
                } else if c.ignoredOnDisk {
                    detail = "  (\(WorktreeStatus.Change.ignoredOnDiskNote))"
                } else if c.kind == .modified, let n = c.changedTensors, let total = c.tensorCount {
                    detail = "  (\(n) of \(total) tensors differ)"
                } else if c.kind == .added, let n = c.tensorCount, n > 0 {
                    detail = "  (\(n) tensors)"
                }
                if let target = c.linkTarget, c.reason == nil {
                    // Read through the link; a commit stores what it points to only when asked.
                    detail += "  (symbolic link to \(target): commit --dereference stores the file it points to)"
                }
                let label = c.kind == .added ? "new file:" : c.kind == .modified ? "modified:" : "deleted: "
                print("  \(label)  \(Format.fromCurrentFolder(c.path, root: repo.root))\(detail)")
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


/// `Your branch is ahead of 'origin/main' by 2 commits.`, as git words it.
enum TrackingText {
    static func line(_ t: TrackingStatus) -> String {
        func commits(_ n: Int) -> String { "\(n) commit\(n == 1 ? "" : "s")" }
        if t.gone { return "Your branch is based on '\(t.upstream)', but the upstream is gone (use 'mrepo branch --unset-upstream' to fixup)." }
        switch (t.ahead, t.behind) {
        case (0, 0): return "Your branch is up to date with '\(t.upstream)'."
        case let (a, 0): return "Your branch is ahead of '\(t.upstream)' by \(commits(a))."
        case let (0, b): return "Your branch is behind '\(t.upstream)' by \(commits(b)) (use 'mrepo pull' to fast-forward)."
        case let (a, b): return "Your branch and '\(t.upstream)' have diverged: \(a) and \(b) different commits (merge with 'mrepo merge \(t.upstream)')."
        }
    }
}
