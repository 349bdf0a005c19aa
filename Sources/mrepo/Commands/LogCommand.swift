import ArgumentParser
import Delta
import Foundation
import Merge
import Repo

struct LogCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log",
        abstract: "List commits, newest first.",
        discussion: """
            Revisions may be ranges: A..B (commits of B that A lacks), A...B (of either, not of both), \
            ^A (not A's). After --, paths, folders or globs over paths list only the commits that \
            changed those files; a tensor name or a glob over tensor names ('*.attention.*') lists the \
            commits that changed those tensors. -N and -nN are --max-count N. --format takes git's \
            placeholders: %H %h %T %t %P %p %an %ae %ad %ai %aI %at %ar %s %b %B %d %D %N %n %%, %xNN (an ASCII character by its hex code: %x09 a tab), and \
            %(metric:NAME). --decorate (git's) is accepted and changes nothing: branch and tag names are \
            always shown (with format:TEXT, where %d or %D puts them).
            """)

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: ArgumentHelp("Revisions or ranges to start from. The default is HEAD.", valueName: "rev"), completion: CompletionNames.revisions)
    var revisions: [String] = []

    @Option(name: .customLong("pathspec"), help: ArgumentHelp("Only commits that changed these files or tensors (also: the arguments after --).", valueName: "path-or-tensor"))
    var specs: [String] = []

    @Flag(help: "One line per commit: short id, branch and tag names, subject.")
    var oneline = false

    @Flag(help: "Print the commits as a JSON array.")
    var json = false

    @Option(name: [.customShort("n"), .customLong("max-count")], help: ArgumentHelp("Show at most this many commits (also -N).", valueName: "n"))
    var maxCount: Int?

    @Flag(help: "Follow only the first parent of merge commits.")
    var firstParent = false

    @Flag(help: "Start from every branch, remote-tracking branch and tag, and HEAD.")
    var all = false

    @Flag(help: "Draw the history as an ASCII graph beside the commits.")
    var graph = false

    @Flag(help: "Per commit and file: tensors changed and bytes newly stored.")
    var stat = false

    @Flag(name: [.customShort("p"), .customLong("patch")], help: "Per commit: the numeric per-tensor diff against its first parent.")
    var patch = false

    @Option(name: [.customLong("format"), .customLong("pretty")], help: ArgumentHelp(
        "oneline, short, medium, full, or format:TEXT with placeholders (see above).", valueName: "format"))
    var format: String?

    @Option(name: [.customLong("since"), .customLong("after")], help: ArgumentHelp("Only commits after this date (2026-01-31, '2 weeks ago', seconds since 1970).", valueName: "date"))
    var since: String?

    @Option(name: [.customLong("until"), .customLong("before")], help: ArgumentHelp("Only commits before this date.", valueName: "date"))
    var until: String?

    @Option(help: ArgumentHelp("Only commits whose author contains this text (case-insensitive).", valueName: "text"))
    var author: String?

    @Option(help: ArgumentHelp("Only commits whose message contains this text (case-insensitive).", valueName: "text"))
    var grep: String?

    @Flag(help: "Oldest first.")
    var reverse = false

    @Option(help: ArgumentHelp("Show this metric of every commit (repeatable): a column with --oneline; otherwise the Metrics line lists the metrics named, in order, '-' where a commit has none.", valueName: "name"))
    var metric: [String] = []

    func validate() throws {
        if graph && reverse { throw ValidationError("--graph and --reverse: give one of them") }
        if json && (graph || stat || patch || format != nil) { throw ValidationError("--json prints every field; it takes no --graph, --stat, -p or --format") }
        for d in [since, until].compactMap({ $0 }) where DateText.parse(d) == nil {
            throw ValidationError("'\(d)': expected a date (2026-01-31, 2026-01-31T12:00:00, '3 days ago', yesterday, or seconds since 1970)")
        }
        if let format { _ = try LogFormat(format) }
    }

    func run() throws {
        let repo = try repository.open(access: .readOnly)
        // `log notes.txt`, as git takes it: an argument that names no revision but a file or folder
        // (in the working tree, or in HEAD's tree: a file deleted since) is a path.
        var revs: [String] = []
        // An absolute path or one that climbs out of this folder is a path, never a tensor name:
        // from the top of the working tree, and refused outside it (as diff and restore refuse it).
        var specs = try self.specs.map { spec in
            spec.hasPrefix("/") || spec.hasPrefix("../") || spec == ".."
                ? try repo.rootRelative([spec], from: FileManager.default.currentDirectoryPath)[0] : spec
        }
        let headFiles = (try? repo.headCommit()).flatMap { $0 }.flatMap { try? repo.tree(of: $0).files.map(\.path) } ?? []
        let cwd = FileManager.default.currentDirectoryPath
        for r in revisions {
            // The path as given from the current folder, as the tree names it (from the top).
            let absolute = URL(fileURLWithPath: r.hasPrefix("/") ? r : cwd + "/" + r).standardizedFileURL.path
            let inTree = absolute.hasPrefix(repo.root + "/") ? String(absolute.dropFirst(repo.root.count + 1)) : nil
            let isRevision = (try? repo.logStarts([r])) != nil
            let isPath = inTree.map { p in FileManager.default.fileExists(atPath: absolute) || headFiles.contains { $0 == p || $0.hasPrefix(p + "/") } } ?? false
            if !isRevision, isPath, let inTree { specs.append(inTree) } else { revs.append(r) }
        }
        if all { revs += try repo.allStartingPoints().map(\.hex) }
        if revs.isEmpty {
            guard try repo.headCommit() != nil else {
                if json { try printJSON([CommitDocument]()) } else if !repository.quiet { print("No commits yet.") }
                return
            }
            revs = ["HEAD"]
        }
        let (starts, excluded) = try repo.logStarts(revs)
        var commits = graph
            ? try repo.topologicalLog(from: starts, excluded: excluded, firstParent: firstParent)
            : try repo.log(from: starts, firstParent: firstParent).filter { !excluded.contains($0.id) }
        let sinceTime = since.flatMap { DateText.parse($0) }, untilTime = until.flatMap { DateText.parse($0) }
        let filtered = sinceTime != nil || untilTime != nil || author != nil || grep != nil || !specs.isEmpty
        if filtered {
            commits = try commits.filter { c in
                if let s = sinceTime, c.timestamp < s { return false }
                if let u = untilTime, c.timestamp > u { return false }
                if let a = author, !c.author.localizedCaseInsensitiveContains(a) { return false }
                if let g = grep, !c.message.localizedCaseInsensitiveContains(g) { return false }
                if !specs.isEmpty, try !repo.touches(c, specs: specs) { return false }
                return true
            }
        }
        // A negative count is no limit, as in git.
        if let maxCount, maxCount >= 0 { commits = Array(commits.prefix(maxCount)) }
        if reverse { commits.reverse() }
        let names = try repo.decorations()
        let head = try repo.head()
        if json {
            try printJSON(try commits.map { c in
                CommitDocument(c, names: names[c.id] ?? [], metrics: try repo.metrics(of: c), notes: try repo.notes(of: c.id))
            })
            return
        }
        let style = try format.map(LogFormat.init) ?? (oneline ? .oneline : .medium)
        var drawing = LogGraph()
        let shown = Set(commits.map(\.id))
        for (i, c) in commits.enumerated() {
            var lines = try render(c, style: style, repo: repo, names: names, head: head)
            if (stat || patch), c.parents.count <= 1 {
                if stat { lines += try statLines(c, repo: repo) }
                if patch, let parent = c.parents.first {
                    lines += [""] + DiffPrinter.lines(try repo.diff(old: parent.hex, new: c.id.hex), all: false, header: false)
                }
            }
            if style.separated, i > 0, !graph { print("") }
            guard graph else {
                for line in lines { print(line) }
                continue
            }
            let parents = (firstParent ? Array(c.parents.prefix(1)) : c.parents).filter { shown.contains($0) }
            let drawn = drawing.draw(c.id, parents: parents)
            for line in drawn.before { print(line) }
            print(drawn.commit + " " + (lines.first ?? ""))
            var rest = Array(lines.dropFirst())
            if style.separated, i < commits.count - 1 { rest.append("") }
            for (k, line) in drawn.after.enumerated() {
                print(line + (k < rest.count ? " " + rest[k] : ""))
            }
            let pad = drawing.padding.isEmpty ? "" : drawing.padding + " "
            for line in rest.dropFirst(drawn.after.count) { print(line.isEmpty ? drawing.padding : pad + line) }
        }
    }

    /// A commit's ref names as git decorates them: `HEAD -> main` first where HEAD is (`log`, `show`).
    static func decoration(_ names: [String], of id: ObjectID, head: Head) -> [String] {
        var decoration = names
        if head.commit == id {
            if let b = head.branchName, let k = decoration.firstIndex(of: b) {
                decoration.remove(at: k)
                decoration.insert("HEAD -> \(b)", at: 0)
            } else {
                decoration.insert("HEAD", at: 0)
            }
        }
        return decoration
    }

    /// A commit's lines in the chosen style.
    func render(_ c: Commit, style: LogFormat, repo: Repository, names: [ObjectID: [String]], head: Head) throws -> [String] {
        var decoration = LogCommand.decoration(names[c.id] ?? [], of: c.id, head: head)
        // A shallow clone's boundary (its parents were not fetched), marked as git marks it.
        if c.isShallowBoundary { decoration.insert("grafted", at: 0) }
        let metrics = try repo.metrics(of: c)
        let columns = metric.map { name in "\(name)=" + (metrics.first { $0.name == name }.map { Format.metric($0.value) } ?? "-") }
        let notes = try repo.notes(of: c.id)
        let deco = decoration.isEmpty ? "" : " (" + decoration.map { d in
            Terminal.paint(d, d.hasPrefix("HEAD") ? "1;36" : d.hasPrefix("tag: ") ? "1;33" : "1;32")
        }.joined(separator: ", ") + ")"
        switch style {
        case .oneline:
            return [Terminal.paint(c.id.short, "33") + deco + columns.map { " \($0)" }.joined() + " \(c.subject)"]
        case let .template(text):
            return LogFormat.expand(text, commit: c, decoration: decoration, metrics: metrics, notes: notes)
                .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        case .short, .medium, .full:
            var out = [Terminal.paint("commit \(c.id.hex)", "33") + deco]
            if c.parents.count > 1 { out.append("Merge:   \(c.parents.map(\.short).joined(separator: " "))") }
            out.append("Author:  \(c.author)")
            if style != .short { out.append("Date:    \(Format.date(c.timestamp))") }
            if style == .full, let base = c.base { out.append("Base:    \(base.short)") }
            // --metric: the named metrics, in that order, on every commit ("-" where missing).
            if !columns.isEmpty {
                out.append("Metrics: " + columns.joined(separator: " "))
            } else if style != .short, !metrics.isEmpty {
                out.append("Metrics: " + metrics.map { "\($0.name)=\(Format.metric($0.value))" }.joined(separator: " "))
            }
            out.append("")
            let body = style == .short ? [Substring(c.subject)] : c.message.split(separator: "\n", omittingEmptySubsequences: false)
            out += body.map { "    \($0)" }
            if !notes.isEmpty, style != .short {
                out += ["", "Notes:"] + notes.flatMap { n in n.text.split(separator: "\n", omittingEmptySubsequences: false).map { "    \($0)" } }
            }
            return out
        }
    }

    func statLines(_ c: Commit, repo: Repository) throws -> [String] {
        let stats = try repo.fileStats(of: c)
        guard !stats.isEmpty else { return [] }
        let width = stats.map(\.path.count).max() ?? 0
        var out = [""]
        for s in stats {
            let what = s.status == .removed ? "removed" : (s.tensorCount > 0 ? "\(s.tensorsChanged) of \(s.tensorCount) tensors" : s.status.rawValue)
            out.append(" \(Format.pad(s.path, width)) | \(what), \(Format.bytes(s.storedBytes)) stored")
        }
        let tensors = stats.reduce(0) { $0 + $1.tensorsChanged }, stored = stats.reduce(0) { $0 + $1.storedBytes }
        out.append(" \(stats.count) file\(stats.count == 1 ? "" : "s") changed, \(tensors) tensor\(tensors == 1 ? "" : "s") changed, \(Format.bytes(stored)) stored")
        return out
    }
}
