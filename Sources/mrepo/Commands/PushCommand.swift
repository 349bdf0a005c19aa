import ArgumentParser
import Foundation
import Repo

struct PushCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "push",
        abstract: "Send branches and tags to a remote.",
        discussion: """
            Sends the commits the remote lacks and only the objects it does not hold (it is asked first, by \
            id), each verified by the receiving repository, then moves each remote ref by compare-and-swap. \
            A push that is not a fast-forward of what the remote holds is refused and changes nothing, \
            unless --force; of two pushes racing for one branch, one wins and the other is refused. REF is \
            a branch or tag, or LOCAL:REMOTE; the default is the current branch, to the remote branch of its name (refused when its upstream there has another name: push BRANCH:UPSTREAM then, as git's default).
            """)

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: ArgumentHelp("The remote (default: the current branch's upstream remote, else origin).", valueName: "remote"))
    var remote: String?

    @Argument(help: ArgumentHelp("Branches or tags to push: NAME (HEAD: the current branch), or SOURCE:REMOTE with any revision as SOURCE (a commit id, origin/main, main~1) and the remote branch or tag as REMOTE (refs/heads/X or refs/tags/X to say which); :REMOTE, with no source, deletes REMOTE there, as --delete does.", valueName: "ref"))
    var refs: [String] = []

    @Flag(help: "Push every branch.")
    var all = false

    @Flag(help: "Push every tag too.")
    var tags = false

    @Flag(name: .shortAndLong, help: "Move remote refs even when that is not a fast-forward (still refused if the remote ref moved meanwhile).")
    var force = false

    @Flag(name: [.customShort("d"), .customLong("delete")], help: "Delete the named branches or tags on the remote instead of pushing them (push origin --delete NAME..., or push --delete origin NAME..., as git).")
    var delete = false

    @Flag(name: [.customShort("u"), .long], help: "Make the remote branch the upstream of each branch pushed (for pull, status and push).")
    var setUpstream = false

    @Flag(name: [.customShort("n"), .customLong("dry-run")], help: "Say what would be sent and which remote refs would move; send and change nothing.")
    var dryRun = false

    @Flag(help: "Print what was sent as JSON.")
    var json = false

    func run() throws {
        let repo = try repository.open()
        if json { repo.progress = nil }
        var options = PushOptions(remote: try remote ?? repo.defaultPushRemote())
        if refs.contains(":") { throw ValidationError("':' alone (git's matching push) is not supported: name the branches, or pass --all") }
        if delete {
            guard !refs.isEmpty, !all, !tags else { throw ValidationError("--delete takes the names of the remote branches or tags to delete, and no --all or --tags") }
            options.delete = refs.map { $0.hasPrefix(":") ? String($0.dropFirst()) : $0 }
        } else {
            // git's `:NAME` refspec deletes NAME there, beside what else is pushed.
            options.refs = refs.filter { !$0.hasPrefix(":") }
            options.delete = refs.filter { $0.hasPrefix(":") }.map { String($0.dropFirst()) }
        }
        options.all = all
        options.tags = tags
        options.force = force
        options.setUpstream = setUpstream
        options.dryRun = dryRun
        let opts = options
        let result: TransferResult
        var refusal: RepoError?
        do {
            result = try runBlocking { try await repo.push(opts) }
        } catch let partly as PushPartlyRejected {
            // Some refs moved: they are reported as any push's, the refused ones after them, and
            // the command still fails.
            result = partly.result
            refusal = partly.error
        }
        for w in result.warnings { ErrorReporter.warn(w) }
        if json {
            try printJSON(TransferDocument(result, sent: true, dryRun: dryRun))
        } else if !repository.quiet || refusal != nil {
            print("To \(try repo.remote(named: options.remote)?.url ?? options.remote)")
            TransferOutput.printRefs(result)
            for r in result.rejected { print(" ! [rejected]    \(r.name) (\(r.reason))") }
            if result.refs.isEmpty { print("Everything up-to-date") }
            print(TransferOutput.summary(result, verb: dryRun ? "Would send" : "Sent") + (dryRun ? " (dry run: nothing sent, no ref moved)" : ""))
        }
        if let refusal { throw refusal }
    }
}
