import ArgumentParser
import Foundation
import Repo

struct FetchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fetch",
        abstract: "Download commits and objects from a remote and update its remote-tracking refs.",
        discussion: """
            Fetches every branch and tag of REMOTE (default: origin): the commits this repository lacks and \
            the objects they need, each verified before it is stored, then the remote-tracking refs \
            REMOTE/NAME (usable in every revision argument: log origin/main, diff main origin/main, merge \
            origin/main). Tags the repository lacks are created. Local branches do not move: see 'mrepo pull'. \
            An interrupted fetch keeps the objects that arrived; running it again does not download them again.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("The remote (default: origin).", valueName: "remote"))
    var remote: String?

    @Flag(help: "Fetch every remote.")
    var all = false

    @Flag(help: "Delete remote-tracking refs whose branch or tag the remote no longer has.")
    var prune = false

    @Flag(help: "Fetch no tensor objects now; read them from the remote on first use (as clone --lazy).")
    var lazy = false

    @Option(help: ArgumentHelp("Fetch the tensor objects REV needs that a lazy clone has not read yet.", valueName: "rev"))
    var objects: String?

    @Flag(help: "Print what was fetched as JSON.")
    var json = false

    func validate() throws {
        if all && remote != nil { throw ValidationError("--all fetches every remote; do not name one") }
        if objects != nil && (all || prune || lazy) { throw ValidationError("--objects takes no other option") }
    }

    func run() throws {
        let repo = try repository.open()
        if json { repo.progress = nil }
        if let rev = objects {
            let wait = lock.wait
            let result = try runBlocking { try await repo.fetchObjects(of: rev, wait: wait) }
            if json {
                try printJSON(TransferOutput.json(result, sent: false))
            } else if !repository.quiet {
                print(TransferOutput.summary(result, verb: "Fetched"))
            }
            return
        }
        let names = all ? try repo.history.remotes().map(\.name) : [remote ?? "origin"]
        var results: [TransferResult] = []
        let (prune, lazy, wait) = (self.prune, self.lazy, lock.wait)
        for name in names {
            let result = try runBlocking { try await repo.fetch(remote: name, prune: prune, lazy: lazy ? true : nil, wait: wait) }
            results.append(result)
            if !json && !repository.quiet {
                print("From \(try repo.history.remote(named: name)?.url ?? name)")
                TransferOutput.printRefs(result)
                print(TransferOutput.summary(result, verb: "Received"))
            }
        }
        if json {
            try printJSON(all ? .array(results.map { TransferOutput.json($0, sent: false) }) : TransferOutput.json(results[0], sent: false))
        }
    }
}
