import ArgumentParser
import Delta
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
            An interrupted fetch keeps the objects that arrived; running it again does not download them again. \
            In a shallow clone, --deepen N fetches N more commits below the history's boundary, \
            --unshallow all of it, and --depth N makes each branch's history at least N commits deep.
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

    @Option(help: ArgumentHelp("Fetch the tensor objects REV needs that a lazy clone has not read yet.", valueName: "rev"), completion: CompletionNames.revisions)
    var objects: String?

    @Option(help: ArgumentHelp("Fetch at most N commits of each branch and tag (deepening a shallow history to N).", valueName: "n"))
    var depth: Int?

    @Option(help: ArgumentHelp("Fetch N more commits below a shallow clone's boundary.", valueName: "n"))
    var deepen: Int?

    @Flag(help: "Fetch all of a shallow clone's missing history.")
    var unshallow = false

    @Flag(help: "Print what was fetched as JSON.")
    var json = false

    var fetchDepth: FetchDepth {
        if unshallow { return .unshallow }
        if let deepen { return .deepen(deepen) }
        if let depth { return .depth(depth) }
        return .full
    }

    func validate() throws {
        if [depth != nil, deepen != nil, unshallow].filter({ $0 }).count > 1 {
            throw ValidationError("--depth, --deepen and --unshallow exclude each other")
        }
        if let n = depth ?? deepen, n < 1 { throw ValidationError("--\(depth != nil ? "depth" : "deepen") must be at least 1 (got \(n))") }
        if objects != nil && (depth != nil || deepen != nil || unshallow) { throw ValidationError("--objects takes no other option") }
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
                try printJSON(TransferDocument(result, sent: false))
            } else if !repository.quiet {
                print(TransferOutput.summary(result, verb: "Fetched"))
            }
            return
        }
        let names = all ? try repo.remotes().map(\.name) : [remote ?? "origin"]
        let (prune, lazy, wait, depth) = (self.prune, self.lazy, lock.wait, fetchDepth)
        if unshallow, try !repo.isShallow() {
            throw RepoError.invalidArgument("--unshallow on a complete repository (it is not a shallow clone)")
        }
        var failed: [String] = []
        var documents: [TransferDocument] = []
        for name in names {
            let result: TransferResult
            do {
                result = try runBlocking { try await repo.fetch(remote: name, prune: prune, lazy: lazy ? true : nil, depth: depth, wait: wait) }
            } catch where all {
                // As git's fetch --all: one unreachable remote does not stop the others; the
                // command still fails at the end.
                let text = (error as? RepoError)?.description ?? (error as? DeltaError)?.description ?? "\(error)"
                ErrorReporter.error("could not fetch '\(name)': \(text)")
                failed.append(name)
                documents.append(TransferDocument(failedFetchOf: name, error: text))
                continue
            }
            documents.append(TransferDocument(result, sent: false))
            for w in result.warnings { ErrorReporter.warn(w) }
            if !json && !repository.quiet {
                print("From \(try repo.remote(named: name)?.url ?? name)")
                TransferOutput.printRefs(result)
                print(TransferOutput.summary(result, verb: "Received"))
            }
        }
        if json {
            // --all: one document per remote, in a list (a remote that failed with its `error`);
            // one remote: its document alone.
            if all { try printJSON(documents) } else { try printJSON(documents[0]) }
        }
        if !failed.isEmpty { throw ExitCode(2) }
    }
}
