import ArgumentParser
import Delta
import Foundation
import Merge
import Repo

struct LogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "List commits, newest first.")

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: ArgumentHelp("Revisions to start from. The default is HEAD.", valueName: "rev"))
    var revisions: [String] = []

    @Flag(help: "One line per commit: short id, branch and tag names, subject.")
    var oneline = false

    @Flag(help: "Print the commits as a JSON array.")
    var json = false

    @Option(name: [.customShort("n"), .customLong("max-count")], help: ArgumentHelp("Show at most this many commits.", valueName: "n"))
    var maxCount: Int?

    @Flag(help: "Follow only the first parent of merge commits.")
    var firstParent = false

    func run() throws {
        let repo = try repository.open()
        let starts: [ObjectID]
        if revisions.isEmpty {
            guard let head = try repo.headCommit() else {
                if json { try printJSON([CommitDocument]()) } else { print("No commits yet.") }
                return
            }
            starts = [head]
        } else {
            starts = try revisions.map { try repo.resolve($0) }
        }
        let commits = try repo.log(from: starts, limit: maxCount, firstParent: firstParent)
        let names = try repo.decorations()
        let head = try repo.history.head()
        if json {
            try printJSON(commits.map { CommitDocument($0, names: names[$0.id] ?? []) })
            return
        }
        for (i, c) in commits.enumerated() {
            var decoration = names[c.id] ?? []
            if head.commit == c.id {
                if let b = head.branchName, let k = decoration.firstIndex(of: b) {
                    decoration[k] = "HEAD -> \(b)"
                } else {
                    decoration.insert("HEAD", at: 0)
                }
            }
            let deco = decoration.isEmpty ? "" : " (\(decoration.joined(separator: ", ")))"
            if oneline {
                print("\(c.id.short)\(deco) \(c.subject)")
                continue
            }
            if i > 0 { print("") }
            print("commit \(c.id.hex)\(deco)")
            if c.parents.count > 1 { print("Merge:   \(c.parents.map(\.short).joined(separator: " "))") }
            print("Author:  \(c.author)")
            print("Date:    \(Format.date(c.timestamp))")
            if let base = c.base { print("Base:    \(base.short)") }
            if !c.metrics.isEmpty {
                print("Metrics: " + c.metrics.map { "\($0.name)=\(Format.number($0.value, digits: 4))" }.joined(separator: " "))
            }
            print("")
            for line in c.message.split(separator: "\n", omittingEmptySubsequences: false) { print("    \(line)") }
        }
    }
}
