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
            merge read exactly what they need); 'mrepo fetch --objects REV' fetches a revision's now. \
            With --depth N, only the last N commits of each branch and tag (and the objects they need) \
            are fetched: a shallow clone, whose history stops at boundary commits ('mrepo fetch \
            --deepen N' or 'mrepo fetch --unshallow' fetch more). A clone is built in a hidden folder \
            and moved into place when complete: an interrupted clone leaves no repository behind.
            """)

    @Argument(help: ArgumentHelp("The repository: a path, file://, http(s):// or s3:// URL.", valueName: "url"))
    var url: String

    @Argument(help: ArgumentHelp("Folder to clone into (created; must be empty if it exists).", valueName: "dir"))
    var directory: String?

    @Option(name: [.customShort("b"), .long], help: ArgumentHelp("Branch to check out, tracking origin/BRANCH; a tag checks out its commit with HEAD detached, as git does.", valueName: "branch"))
    var branch: String?

    @Option(help: ArgumentHelp("Fetch only the last N commits of each branch and tag (a shallow clone).", valueName: "n"))
    var depth: Int?

    @Flag(help: "Fetch tensor objects on first use instead of now.")
    var lazy = false

    @Flag(help: "Print what was fetched as JSON.")
    var json = false

    @Flag(name: .shortAndLong, help: "Print no progress bar and no informational lines.")
    var quiet = false

    func validate() throws {
        if let depth, depth < 1 { throw ValidationError("--depth must be at least 1 (got \(depth))") }
        try validateRemoteURL(url)
    }

    func run() throws {
        let progress = ProgressBar.make(quiet: quiet || json)
        let (url, directory, branch, lazy, depth) = (self.url, self.directory, self.branch, self.lazy, self.depth)
        let notice: (@Sendable (String) -> Void)? = quiet ? nil : { @Sendable message in ErrorReporter.note(message) }
        let (repo, result) = try runBlocking {
            try await Repository.clone(url: url, into: directory, branch: branch, lazy: lazy, depth: depth, progress: progress, notice: notice)
        }
        for w in result.warnings { ErrorReporter.warn(w) }
        if json {
            let clone = CloneDocument(directory: repo.root, lazy: lazy, shallow: try repo.isShallow(), branch: OrNull(try repo.currentBranch()),
                                      head: OrNull(try repo.headCommit()?.hex))
            try printJSON(PrefixedDocument(head: TransferDocument(result, sent: false), body: clone))
            return
        }
        if !quiet {
            print("Cloned \(url) into \(repo.root)")
            print(TransferOutput.summary(result, verb: "Received"))
            switch try repo.head() {
            case let .branch(name, commit?): print("On branch \(name) at \(commit.short), tracking origin/\(name)")
            case let .detached(id): print("HEAD detached at \(id.short) (tag \(branch ?? "")); 'mrepo switch -c NAME' starts a branch there")
            default: break
            }
        }
    }
}
