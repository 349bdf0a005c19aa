import ArgumentParser
import Foundation
import Repo

struct LsRemoteCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls-remote",
        abstract: "List the branches and tags of a remote.",
        discussion: """
            Prints one line per branch and tag of REMOTE (a remote of this repository, default origin, or a \
            URL: a folder, http(s)://HOST:PORT/NAMESPACE/NAME or s3://BUCKET/PREFIX/NAME): the commit id, a tab, \
            and refs/heads/NAME or refs/tags/NAME, as git prints them. A URL needs no repository.
            """)

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: ArgumentHelp("A remote's name or a URL (default: origin).", valueName: "remote"))
    var remote: String?

    @Flag(help: "Print the refs as JSON.")
    var json = false

    struct Entry: Encodable {
        var name: String
        var kind: String
        var target: String
    }

    func run() throws {
        let name = remote ?? "origin"
        let refs: [RemoteRef]
        // Without an argument the repository's origin is meant; with one, a remote's name or a URL.
        let repo = remote == nil ? try repository.open() : try? repository.open()
        if let repo, try remote == nil || repo.remote(named: name) != nil {
            refs = try runBlocking { try await repo.listRemoteRefs(name) }
        } else {
            refs = try runBlocking { try await Repository.listRemoteRefs(url: name) }
        }
        if json {
            try printJSON(refs.map { Entry(name: $0.name, kind: $0.kind.rawValue, target: $0.target) })
            return
        }
        for r in refs { print("\(r.target)\t\(r.kind == .tag ? "refs/tags/" : "refs/heads/")\(r.name)") }
    }
}
