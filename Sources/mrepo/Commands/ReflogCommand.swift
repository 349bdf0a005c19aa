import ArgumentParser
import Delta
import Foundation
import Merge
import Repo

struct ReflogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reflog",
        abstract: "Show where HEAD and the branches have pointed, newest first.")

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: ArgumentHelp("Show only this ref (HEAD, a branch or tag name, or stash).", valueName: "ref"))
    var ref: String?

    @Option(name: [.customShort("n"), .customLong("max-count")], help: ArgumentHelp("Show at most this many entries.", valueName: "n"))
    var maxCount = 50

    @Flag(help: "Print the entries as JSON.")
    var json = false

    func run() throws {
        let repo = try repository.open(access: .readOnly)
        let entries = try repo.reflog(ref: ref, limit: maxCount)
        // A ref that never moved has no entries; a name that is no ref at all is an error, as elsewhere.
        if let ref, entries.isEmpty, ref != "HEAD", ref != "stash",
           try !repo.branches().contains(where: { $0.name == ref }), try !repo.tags().contains(where: { $0.name == ref }) {
            throw RepoError.unknownRef(ref)
        }
        if json {
            try printJSON(entries.map {
                ReflogDocument(ref: $0.ref, old: OrNull($0.old?.hex), new: OrNull($0.new?.hex), date: Format.iso($0.timestamp), message: $0.message)
            })
            return
        }
        for e in entries {
            print("\(e.new?.short ?? "(deleted)   ")  \(e.ref.count >= 12 ? e.ref : Format.pad(e.ref, 12))  \(Format.date(e.timestamp))  \(e.message)")
        }
    }
}
