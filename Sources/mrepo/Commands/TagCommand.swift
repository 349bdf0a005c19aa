import ArgumentParser
import Foundation
import Repo

struct TagCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tag",
        abstract: "List, create or delete tags (fixed names for commits, e.g. a release).",
        discussion: """
            'mrepo tag' lists tags; -l PATTERN lists those matching a glob. 'mrepo tag NAME [REV]' tags REV \
            (default HEAD); -a -m MESSAGE (or -m alone) stores a message with it (an annotated tag); -f \
            moves an existing tag. 'mrepo tag -d NAME...' deletes tags (all or none). The list shows each tag's commit and the \
            first line of its message; -n[N] lists as git's 'tag -n' does, with N lines of each message.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Name of the tag to create or delete.", valueName: "name"), completion: CompletionNames.tags)
    var name: String?

    @Argument(help: ArgumentHelp("The commit to tag. The default is HEAD. (With -d: more tags to delete.)", valueName: "rev"), completion: CompletionNames.revisions)
    var revision: String?

    /// `tag -d A B C`: the third tag to delete and after.
    @Argument(help: .hidden)
    var moreNames: [String] = []

    @Option(name: .shortAndLong, help: ArgumentHelp("A message stored with the tag.", valueName: "message"))
    var message: String?

    @Flag(name: .customShort("a"), help: "An annotated tag: with -m MESSAGE.")
    var annotate = false

    @Flag(name: .shortAndLong, help: "Replace an existing tag of this name.")
    var force = false

    @Flag(name: .customShort("d"), help: "Delete the tag.")
    var delete = false

    @Option(name: [.customShort("l"), .customLong("list")], help: ArgumentHelp("List only tags whose names match this glob.", valueName: "pattern"))
    var pattern: String?

    /// `-l` with no pattern (``CommandLineHabits`` spells it so): list, every tag unless names follow.
    @Flag(name: .customLong("list-every-tag"), help: .hidden)
    var listEvery = false

    @Option(name: .customLong("message-lines"), help: ArgumentHelp("List each tag as git's 'tag -nN' does: the name, then up to N lines of its message (also written -n or -nN).", valueName: "n"))
    var messageLines: Int?

    @Flag(help: "Print the tags as JSON.")
    var json = false

    func validate() throws {
        if delete && name == nil { throw ValidationError("-d needs a tag name") }
        // Listing (-l or -n), as git: every name given is one more pattern.
        let listing = pattern != nil || messageLines != nil || listEvery
        if !delete && !listing && !moreNames.isEmpty { throw ValidationError("a tag takes a name and a revision; only -d takes more names") }
        if annotate && message == nil { throw ValidationError("-a needs a message: -a -m MESSAGE") }
        if listing && (delete || force || annotate || message != nil) { throw ValidationError("-l and -n list tags; they go with no -d, -f, -a or -m") }
        if force && (name == nil || delete) { throw ValidationError("-f needs a tag name to create or move") }
    }

    func run() throws {
        let repo = try repository.open()
        let listing = pattern != nil || messageLines != nil || listEvery
        if !listing, let name {
            if delete {
                let names = [name] + [revision].compactMap { $0 } + moreNames
                try DeletedRefDocument.present(try repo.deleteTags(names, wait: lock.wait), kind: "tag",
                                               several: names.count > 1, json: json, quiet: repository.quiet)
            } else {
                let target = force ? try repo.forceTag(name, at: revision, message: message, wait: lock.wait)
                    : try repo.createTag(name, at: revision, message: message, wait: lock.wait)
                if json {
                    try printJSON(CreatedTagDocument(created: name, commit: target.hex, message: OrNull(message)))
                } else if !repository.quiet {
                    print("Tagged \(target.short) as \(name).")
                }
            }
            return
        }
        let patterns = [pattern, name, revision].compactMap { $0 } + moreNames
        let tags = try repo.tags().filter { t in patterns.isEmpty || patterns.contains { PathSpec.glob($0, t.name) } }
        if json {
            try printJSON(tags.map { TagDocument(name: $0.name, commit: $0.target.hex, message: OrNull($0.message)) })
            return
        }
        if let n = messageLines {
            // git's layout: the name padded to 15 columns, the message's lines after it, the
            // following ones indented by four spaces.
            for t in tags {
                // A tag without a message shows its commit's subject, as git's -n does.
                let text = try t.message ?? repo.commit(t.target).subject
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false).prefix(max(n, 0))
                let name = t.name.count < 15 ? Format.pad(t.name, 15) : t.name + " "
                print((name + (lines.first.map(String.init) ?? "")).trimmingCharacters(in: .whitespaces))
                for line in lines.dropFirst() { print("    " + line) }
            }
            return
        }
        // A message's first line, as a subject (`-nN` or --json show more).
        for t in tags { print("\(t.name)  \(t.target.short)\(t.message.map { "  " + ($0.split(separator: "\n").first.map(String.init) ?? "") } ?? "")") }
    }
}
