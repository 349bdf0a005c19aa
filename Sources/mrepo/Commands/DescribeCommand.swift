import ArgumentParser
import Foundation
import Repo

struct DescribeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "describe",
        abstract: "Name a commit after the nearest tag behind it (v1.2-3-gabcdef123456), as git describe.",
        discussion: """
            Prints TAG when REV is the tagged commit, else TAG-N-gID: N commits lie between the tag and \
            REV (reachable from REV, not from the tag), and ID is REV's short id after git's 'g'. The \
            nearest tag wins; among equals the newest. Only tags with a message (tag -a -m) count unless \
            --tags. Version strings in training scripts and model cards come from it.
            """)

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: ArgumentHelp("The commit to describe. The default is HEAD.", valueName: "rev"), completion: CompletionNames.revisions)
    var revision: String?

    @Flag(help: "Use any tag, not only tags with a message.")
    var tags = false

    @Flag(help: "Print REV's short id when no tag is behind it (instead of failing).")
    var always = false

    @Flag(help: "Always print TAG-N-gID, even when N is 0.")
    var long = false

    @Option(help: ArgumentHelp("Digits of the id to print (4 to 64; 0 prints the tag alone, as git; 12 is what mrepo prints everywhere).", valueName: "n"))
    var abbrev: Int = 12

    @Option(help: ArgumentHelp("Consider only tags whose names match this glob (repeatable).", valueName: "glob"))
    var match: [String] = []

    @Option(help: ArgumentHelp("Leave out tags whose names match this glob (repeatable).", valueName: "glob"))
    var exclude: [String] = []

    @Flag(help: "Append -dirty when the working tree has changes (REV must be HEAD); --dirty=MARK appends MARK instead, as git's.")
    var dirty = false

    @Option(name: .customLong("dirty-mark"), help: .hidden)
    var dirtyMark = "-dirty"

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard abbrev == 0 || (4...64).contains(abbrev) else { throw ValidationError("--abbrev takes 0, or 4 to 64 digits, not \(abbrev)") }
        if dirty, let revision, revision != "HEAD" { throw ValidationError("--dirty describes the working tree, so it takes no revision") }
    }

    func run() throws {
        let repo = try repository.open(access: dirty ? .readWrite : .readOnly)
        let rev = revision ?? "HEAD"
        let d = try repo.describe(rev, anyTag: tags, match: match, exclude: exclude, dirty: dirty)
        let id = String(d.commit.hex.prefix(abbrev == 0 ? 12 : abbrev))
        var text: String
        if let tag = d.tag, let distance = d.distance {
            // --abbrev=0: the nearest tag alone (`git describe --tags --abbrev=0`, the latest release).
            text = abbrev == 0 || (distance == 0 && !long) ? tag : "\(tag)-\(distance)-g\(id)"
        } else if always {
            text = id
        } else {
            let filtered = match.isEmpty && exclude.isEmpty ? "" : " that --match/--exclude let through"
            let what = tags ? "no tag\(filtered) is behind it" : "no tag with a message (tag -a -m)\(filtered) is behind it; --tags uses any tag"
            throw RepoError.invalidArgument("cannot describe \(rev): \(what), and --always prints its id instead")
        }
        if d.dirty == true { text += dirtyMark }
        if json {
            try printJSON(DescribeDocument(commit: d.commit.hex, description: text, tag: OrNull(d.tag), distance: OrNull(d.distance),
                                           dirty: OrNull(d.dirty)))
        } else {
            print(text)
        }
    }
}
