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
            their names; -v adds their URLs.
            """,
        subcommands: [RemoteAddCommand.self, RemoteRemoveCommand.self, RemoteRenameCommand.self, RemoteSetURLCommand.self])

    @OptionGroup var repository: RepositoryOptions

    @Flag(name: .shortAndLong, help: "Show each remote's URL.")
    var verbose = false

    @Flag(help: "Print the remotes as JSON.")
    var json = false

    func run() throws {
        let repo = try repository.open()
        let remotes = try repo.history.remotes()
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

struct RemoteAddCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "add", abstract: "Add a remote.")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Name of the remote (origin, upstream, ...).", valueName: "name"))
    var name: String

    @Argument(help: ArgumentHelp("Its URL: a path, file://, http(s):// or s3://.", valueName: "url"))
    var url: String

    func run() throws {
        try repository.open().addRemote(name, url: url, wait: lock.wait)
    }
}

struct RemoteRemoveCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove a remote and its remote-tracking refs.", aliases: ["rm"])

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Name of the remote.", valueName: "name"))
    var name: String

    func run() throws {
        try repository.open().removeRemote(name, wait: lock.wait)
    }
}

struct RemoteRenameCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "rename", abstract: "Rename a remote (its remote-tracking refs follow).")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Current name.", valueName: "old"))
    var old: String

    @Argument(help: ArgumentHelp("New name.", valueName: "new"))
    var new: String

    func run() throws {
        try repository.open().renameRemote(old, to: new, wait: lock.wait)
    }
}

struct RemoteSetURLCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "set-url", abstract: "Change a remote's URL.")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Name of the remote.", valueName: "name"))
    var name: String

    @Argument(help: ArgumentHelp("Its new URL.", valueName: "url"))
    var url: String

    func run() throws {
        try repository.open().setRemoteURL(name, url: url, wait: lock.wait)
    }
}
