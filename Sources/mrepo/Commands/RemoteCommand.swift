import ArgumentParser
import Foundation
import Repo
struct RemoteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remote",
        abstract: "List, add, remove, rename remotes or change their URL.",
        discussion: """
            A remote is another repository that clone, fetch, push and pull talk to: a path or file:// URL \
            (another repository on this machine), http(s)://HOST:PORT/NAMESPACE/NAME ('mrepo serve') or \
            s3://BUCKET/[PREFIX/]NAME (an S3-compatible store; see docs/remotes.md). 'mrepo remote' lists \
            their names; -v adds their URLs, --json prints them as JSON; 'mrepo remote show NAME' tells how \
            the branches stand against one.
            """,
        subcommands: [RemoteListCommand.self, RemoteAddCommand.self, RemoteRemoveCommand.self, RemoteRenameCommand.self, RemoteSetURLCommand.self,
                      RemoteShowCommand.self],
        defaultSubcommand: RemoteListCommand.self)
}

/// `mrepo remote [-v] [--json]`: the listing, as a default subcommand, so that its flags do not
/// shadow the subcommands' own (`remote show NAME --json`).
struct RemoteListCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the remotes (what 'mrepo remote' does).",
                                                    shouldDisplay: false)

    @OptionGroup var repository: RepositoryOptions

    @Flag(name: .shortAndLong, help: "Show each remote's URL.")
    var verbose = false

    @Flag(help: "Print the remotes as JSON.")
    var json = false

    func run() throws {
        let repo = try repository.open()
        let remotes = try repo.remotes()
        if json {
            try printJSON(remotes.map { RemoteDocument(name: $0.name, url: $0.url, lazy: $0.lazy) })
            return
        }
        for r in remotes {
            if verbose {
                print("\(r.name)\t\(r.url) (fetch)\(r.lazy ? " (lazy)" : "")")
                print("\(r.name)\t\(r.url) (push)")
            } else {
                print(r.name)
            }
        }
    }
}
