import ArgumentParser
import Foundation
import Repo

struct RemoteShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a remote: its URL, its branches, and how the local branches pull from and push to it.",
        discussion: """
            As 'git remote show': asks the remote for its branches and marks each as tracked, new (not \
            fetched yet) or stale (gone there; 'mrepo fetch --prune' removes it), lists the local branches \
            that pull from it, and says for each local branch with a branch there whether a push would be up \
            to date, a fast-forward, or refused (local out of date, or diverged). -n does not contact the \
            remote.
            """)

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: ArgumentHelp("Name of the remote.", valueName: "name"))
    var name: String

    @Flag(name: .customShort("n"), help: "Do not contact the remote: show what this repository recorded.")
    var noQuery = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let repo = try repository.open(access: .readOnly)
        let (name, query) = (name, !noQuery)
        let r = try runBlocking { try await repo.remoteReport(name, query: query) }
        if json {
            try printJSON(RemoteShowDocument(r))
            return
        }
        print("* remote \(r.name)")
        print("  Fetch URL: \(r.url)\(r.lazy ? " (lazy)" : "")")
        print("  Push  URL: \(r.url)")
        if r.branches.isEmpty {
            print("  Remote branches: none")
        } else {
            print(r.queried ? "  Remote branch\(r.branches.count == 1 ? "" : "es"):" : "  Remote branches (status not queried):")
            let width = r.branches.map(\.name.count).max() ?? 0
            for b in r.branches {
                let state: String
                switch b.state {
                case .tracked?: state = "tracked"
                case .new?: state = "new (next fetch will store in \(r.name)/\(b.name))"
                case .stale?: state = "stale (use 'mrepo fetch --prune \(r.name)' to remove)"
                case nil:
                    print("    \(b.name)")
                    continue
                }
                print("    \(Format.pad(b.name, width)) \(state)")
            }
        }
        if !r.pulls.isEmpty {
            print("  Local branch\(r.pulls.count == 1 ? "" : "es") configured for 'mrepo pull':")
            let width = r.pulls.map(\.local.count).max() ?? 0
            for p in r.pulls { print("    \(Format.pad(p.local, width)) merges with remote \(p.remoteBranch)") }
        }
        if !r.pushes.isEmpty {
            print("  Local ref\(r.pushes.count == 1 ? "" : "s") configured for 'mrepo push':")
            let width = r.pushes.map(\.local.count).max() ?? 0
            let target = r.pushes.map(\.remoteBranch.count).max() ?? 0
            for p in r.pushes {
                print("    \(Format.pad(p.local, width)) pushes to \(Format.pad(p.remoteBranch, target)) (\(p.state.rawValue))")
            }
        }
    }
}
