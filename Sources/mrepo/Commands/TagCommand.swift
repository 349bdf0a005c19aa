import ArgumentParser
import Foundation
import Repo

struct TagCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tag",
        abstract: "List, create or delete tags (fixed names for commits, e.g. a release).")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Name of the tag to create or delete.", valueName: "name"))
    var name: String?

    @Argument(help: ArgumentHelp("The commit to tag. The default is HEAD.", valueName: "rev"))
    var revision: String?

    @Option(name: .shortAndLong, help: ArgumentHelp("A message stored with the tag.", valueName: "message"))
    var message: String?

    @Flag(name: .customShort("d"), help: "Delete the tag.")
    var delete = false

    @Flag(help: "Print the tags as JSON.")
    var json = false

    func validate() throws {
        if delete && name == nil { throw ValidationError("-d needs a tag name") }
    }

    func run() throws {
        let repo = try repository.open()
        if let name {
            if delete {
                try repo.deleteTag(name, wait: lock.wait)
                if !repository.quiet { print("Deleted tag \(name).") }
            } else {
                let target = try repo.createTag(name, at: revision, message: message, wait: lock.wait)
                if !repository.quiet { print("Tagged \(target.short) as \(name).") }
            }
            return
        }
        let tags = try repo.tags()
        if json {
            try printJSON(tags.map { TagDocument(name: $0.name, commit: $0.target.hex, message: OrNull($0.message)) })
            return
        }
        for t in tags { print("\(t.name)  \(t.target.short)\(t.message.map { "  \($0)" } ?? "")") }
    }
}
