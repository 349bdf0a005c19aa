import ArgumentParser
import Foundation
import Repo

struct CloneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clone",
        abstract: "Copy a repository: its history, then a branch checked out.",
        discussion: """
            Creates DIR (default: the last part of the URL), adds the remote 'origin', fetches every branch \
            and tag (remote-tracking refs origin/NAME), and checks out --branch (default: main, else the \
            remote's first branch) as a local branch tracking origin/BRANCH. With --lazy, commits, trees \
            and small files are fetched now and tensor objects on first use (checkout, export, diff, \
            merge read exactly what they need); 'mrepo fetch --objects REV' fetches a revision's now.
            """)

    @Argument(help: ArgumentHelp("The repository: a path, file://, http(s):// or s3:// URL.", valueName: "url"))
    var url: String

    @Argument(help: ArgumentHelp("Folder to clone into (created; must be empty if it exists).", valueName: "dir"))
    var directory: String?

    @Option(name: [.customShort("b"), .long], help: ArgumentHelp("Branch to check out.", valueName: "branch"))
    var branch: String?

    @Option(help: ArgumentHelp("Accepted for git compatibility; must be absent: mrepo always clones the whole commit history (commits are small; use --lazy to defer tensors).", valueName: "n"))
    var depth: Int?

    @Flag(help: "Fetch tensor objects on first use instead of now.")
    var lazy = false

    @Flag(help: "Print what was fetched as JSON.")
    var json = false

    @Flag(name: .shortAndLong, help: "Print no progress bar and no informational lines.")
    var quiet = false

    func validate() throws {
        if depth != nil { throw ValidationError("--depth is not supported: a clone has every commit; use --lazy to fetch tensors on demand") }
    }

    func run() throws {
        let progress = ProgressBar.make(quiet: quiet || json)
        let (url, directory, branch, lazy) = (self.url, self.directory, self.branch, self.lazy)
        let (repo, result) = try runBlocking {
            try await Repository.clone(url: url, into: directory, branch: branch, lazy: lazy, progress: progress)
        }
        if json {
            try printJSON(TransferOutput.json(result, sent: false, extra: ["directory": .string(repo.root), "lazy": .bool(lazy),
                                                                       "branch": .opt(try repo.history.head().branchName)]))
            return
        }
        if !quiet {
            print("Cloned \(url) into \(repo.root)")
            print(TransferOutput.summary(result, verb: "Received"))
            if case let .branch(name, commit?) = try repo.history.head() { print("On branch \(name) at \(commit.short), tracking origin/\(name)") }
        }
    }
}
