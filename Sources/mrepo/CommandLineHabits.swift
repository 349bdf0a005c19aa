import ArgumentParser
import Foundation

/// What git users type that swift-argument-parser does not take as it is: a mistyped command
/// name gets a suggestion, `help NAME` must name a command, `log -5` and `log -n5` mean
/// `--max-count 5`, `switch -` / `checkout -` mean the previous branch, `log --decorate` is what
/// log does anyway, `tag -l` without a pattern lists every tag, `tag -n[N]` shows N lines of each message, `show --stat REV` is
/// `log --stat -1 REV`, `stash show [N]` is `log --stat -1 stash@{N}`, and `checkout [REV] --
/// PATH...` is `restore [--source REV] PATH...`.
enum CommandLineHabits {
    /// Every command name.
    static var commandNames: [String] {
        let c = MrepoCommand.configuration
        return (c.groupedSubcommands.flatMap(\.subcommands) + c.subcommands).compactMap { $0.configuration.commandName }
    }

    /// The arguments with git's short forms spelled out; exits with status 64 on an unknown command.
    /// Where the command that `bisect run` runs begins (its first word after mrepo's own options),
    /// if this is `bisect run`: everything from there is that command's, as typed.
    static func passthroughStart(_ arguments: [String]) -> Int? {
        // The first two words (mrepo's own options may come before or between them).
        let words = arguments.indices.filter { !arguments[$0].hasPrefix("-") }.prefix(2)
        guard words.count == 2, arguments[words.first!] == "bisect", arguments[words.last!] == "run" else { return nil }
        let after = words.last! + 1
        return arguments[after...].firstIndex { !$0.hasPrefix("-") || $0 == "--" } ?? arguments.endIndex
    }

    /// Where mrepo's own options end: at `--`, or at the command `bisect run` runs.
    static func optionsEnd(_ arguments: [String]) -> Int {
        min(arguments.firstIndex(of: "--") ?? arguments.endIndex, passthroughStart(arguments) ?? arguments.endIndex)
    }

    /// For the parser's "Missing value for '--name <value>'" where `--name` is followed by a
    /// negative number (`-1`, `-0.5`, `-.5`, `-1e-3`): the arguments with the two joined as
    /// `--name=-1` (`-n=-1` for a short option); nil otherwise. Each call joins one pair, so a loop
    /// over it ends.
    static func joiningNegativeValue(_ arguments: [String], missingValueError message: String) -> [String]? {
        let prefix = "Missing value for '"
        guard let start = message.range(of: prefix)?.upperBound else { return nil }
        let option = String(message[start...].prefix { $0 != " " && $0 != "'" })
        guard option.hasPrefix("-"), option.count > 1 else { return nil }
        let end = optionsEnd(arguments)
        for i in arguments.indices where i + 1 < end && arguments[i] == option && isNegativeNumber(arguments[i + 1]) {
            var joined = arguments
            joined[i] = option + "=" + arguments[i + 1]
            joined.remove(at: i + 1)
            return joined
        }
        return nil
    }

    static func isNegativeNumber(_ text: String) -> Bool {
        guard text.hasPrefix("-"), text.count > 1 else { return false }
        let rest = text.dropFirst()
        guard let first = rest.first, first.isNumber || (first == "." && rest.count > 1) else { return false }
        return Double(text) != nil
    }

    static func rewrite(_ arguments: [String]) -> [String] {
        // --no-color and --no-pager, as git takes them, before or after the command name.
        let terminator = optionsEnd(arguments)
        var arguments = arguments
        for (i, a) in arguments.enumerated().reversed() where i < terminator && (a == "--no-color" || a == "--no-pager") {
            if a == "--no-color" { Terminal.noColorFlag.store(true, ordering: .relaxed) } else { Terminal.noPagerFlag.store(true, ordering: .relaxed) }
            arguments.remove(at: i)
        }
        guard let first = arguments.first else { return arguments }
        let names = commandNames
        if first == "help" {
            if arguments.count == 2, arguments[1] == "--man" {
                print(ManPage.render())
                exit(0)
            }
            if arguments.count > 1, !arguments[1].hasPrefix("-"), !names.contains(arguments[1]) { unknown(arguments[1], names: names) }
            // `help worktree nosuch`: a subcommand the command does not have (it printed the
            // command's help, exit 0).
            if arguments.count > 2, !arguments[2].hasPrefix("-") {
                let subcommands = subcommandNames(of: arguments[1])
                if !subcommands.isEmpty, !subcommands.contains(arguments[2]) {
                    let hint = suggestion(for: arguments[2], among: subcommands).map { "; did you mean '\($0)'?" } ?? " (see 'mrepo \(arguments[1]) --help')"
                    ErrorReporter.fail("unknown \(arguments[1]) command '\(arguments[2])'\(hint)", status: 64)
                }
            }
            return arguments
        }
        if first.hasPrefix("-") { return arguments }
        guard names.contains(first) else { unknown(first, names: names) }
        if arguments.count == 1, !hasDefaultSubcommand(first) {
            // A command of commands without its command (`mrepo worktree`): a usage error, as git's
            // (it printed the help and exited 0).
            let subcommands = subcommandNames(of: first)
            if !subcommands.isEmpty {
                ErrorReporter.fail("'mrepo \(first)' needs a command: \(subcommands.joined(separator: ", ")) (see 'mrepo \(first) --help')", status: 64)
            }
        }
        if first == "checkout", let dashes = arguments.firstIndex(of: "--"), dashes + 1 < arguments.endIndex {
            // `checkout [REV] -- PATH...` puts files back, as `restore [--source REV] PATH...`.
            let before = arguments[1..<dashes], paths = arguments[(dashes + 1)...]
            let revisions = before.filter { !$0.hasPrefix("-") }
            if revisions.count <= 1 {
                return rewrite(["restore"] + before.filter { $0.hasPrefix("-") } + revisions.flatMap { ["--source", $0] } + ["--"] + paths)
            }
        }
        if first == "reflog", arguments.count >= 2, arguments[1] == "show" {
            // git's `reflog show [REF]` is `reflog [REF]`.
            return rewrite([first] + arguments.dropFirst(2))
        }
        if first == "stash", arguments.count >= 2, arguments[1] == "show" {
            // `stash show [N | stash@{N}]`: the entry's commit and what it changed, per file.
            let entry = arguments.dropFirst(2).first { !$0.hasPrefix("-") }
            let revision = entry.map { Int($0) != nil ? "stash@{\($0)}" : $0 } ?? "stash@{0}"
            let options = arguments.dropFirst(2).filter { $0.hasPrefix("-") }
            // With --json, the entry's commit as `show --json` gives it (log --stat has no JSON).
            if options.contains("--json") { return rewrite(["show"] + options + [revision]) }
            return rewrite(["log", "--stat", "--max-count=1"] + options + [revision])
        }
        if first == "show", arguments.contains("--stat") {
            // `show --stat REV` is `log --stat -1 REV`: the commit and what each file's tensors did.
            return rewrite(["log", "--max-count=1"] + arguments.dropFirst())
        }
        Terminal.startPager(for: first)
        let end = optionsEnd(arguments)
        var out = [first]
        for (i, a) in arguments.enumerated().dropFirst() {
            guard i < end else {
                // `log -- PATH`, `diff -- PATH`: what follows -- is a path (or tensor) spec.
                if i == end, pathspecCommands.contains(first) { continue }
                out.append(pathspecCommands.contains(first) ? "--pathspec=\(a)" : a)
                continue
            }
            if first == "gc", a.hasPrefix("--prune-reflog=") {
                // git's `reflog expire --expire=AGE`, as one option.
                out.append("--prune-reflog-older-than=" + a.dropFirst("--prune-reflog=".count))
            } else if first == "log" || first == "reflog", let n = maxCount(a), i == 0 || !["-n", "--max-count"].contains(arguments[i - 1]) {
                // (`-n -1`: the value of -n, a negative count, not git's -1.)
                out.append("--max-count=\(n)")
            } else if a == "-", ["switch", "checkout", "merge"].contains(first) {
                out.append("@{-1}")
            } else if first == "log" || first == "show", a == "--decorate" || a.hasPrefix("--decorate=") {
                // git decorates by default since 2.13; mrepo always does.
                continue
            } else if first == "branch", ["--merged", "--no-merged", "--contains"].contains(a), i + 1 >= end || arguments[i + 1].hasPrefix("-") {
                // git's REV of these defaults to HEAD.
                out.append(a + "=HEAD")
            } else if first == "tag", a == "-n" || (a.hasPrefix("-n") && Int(a.dropFirst(2)).map { $0 >= 0 } == true) {
                // `tag -n[N]`: each tag with N lines of its message (1 when N is left out).
                out.append("--message-lines=\(a == "-n" ? 1 : Int(a.dropFirst(2))!)")
            } else if first == "config", a == "--get" {
                // git's `config --get KEY` is `config KEY`; with anything else it could write.
                let others = arguments.dropFirst().filter { $0 != "--get" }
                let readOnly: Set<String> = ["--global", "--json", "-q", "--quiet"]
                let keys = others.filter { !readOnly.contains($0) }
                guard keys.count == 1, let key = keys.first, !key.hasPrefix("-") else {
                    ErrorReporter.fail("config --get takes one key (and --global or --json), nothing else (see 'mrepo config --help')", status: 64)
                }
                continue
            } else if first == "describe", a.hasPrefix("--dirty=") {
                // git's `--dirty[=MARK]`: the suffix of a working tree with changes.
                // An empty MARK as a value of its own ("--dirty-mark=" reads as a missing value),
                // any other with "=" (a MARK such as "-mod" would read as an option).
                let mark = String(a.dropFirst("--dirty=".count))
                out += mark.isEmpty ? ["--dirty", "--dirty-mark", ""] : ["--dirty", "--dirty-mark=" + mark]
            } else if first == "tag", a == "-l" || a == "--list", i + 1 >= end || arguments[i + 1].hasPrefix("-") {
                // `tag -l` alone lists every tag, as git (names after it are patterns).
                out.append("--list-every-tag")
            } else {
                out.append(a)
            }
        }
        return out
    }

    /// Commands whose arguments after `--` are paths (given to them as `--pathspec`).
    static let pathspecCommands: Set<String> = ["log", "diff"]

    /// N of `-N` or `-nN`.
    static func maxCount(_ a: String) -> Int? {
        if a.count > 1, a.hasPrefix("-"), let n = Int(a.dropFirst()), n >= 0 { return n }
        if a.count > 2, a.hasPrefix("-n"), let n = Int(a.dropFirst(2)), n >= 0 { return n }
        return nil
    }

    /// The command named `name` (a top-level one).
    static func command(named name: String) -> ParsableCommand.Type? {
        let c = MrepoCommand.configuration
        for command in c.groupedSubcommands.flatMap(\.subcommands) + c.subcommands where command.configuration.commandName == name {
            return command
        }
        return nil
    }

    /// The names of a top-level command's own commands (`worktree`: add, list, ...); none for a plain command.
    static func subcommandNames(of name: String) -> [String] {
        guard let command = command(named: name) else { return [] }
        let c = command.configuration
        var out: [String] = []
        for sub in c.groupedSubcommands.flatMap(\.subcommands) + c.subcommands {
            if let n = sub.configuration.commandName { out.append(n) }
            out += sub.configuration.aliases
        }
        return out
    }

    static func hasDefaultSubcommand(_ name: String) -> Bool {
        command(named: name)?.configuration.defaultSubcommand != nil
    }

    private static let noIndex = "mrepo has no staging area: 'mrepo commit' records every file of the working tree (list files to leave out in .mrepoignore)"

    /// git's commands that an index-less tool has no use for, with what to do instead.
    static let gitOnly: [String: String] = [
        "add": noIndex,
        "stage": noIndex,
        "rm": "mrepo has no staging area: delete the file, and 'mrepo commit' records its removal",
        "mv": "mrepo has no staging area: rename the file, and 'mrepo commit' records the move (the objects are not stored again)",
    ]

    static func unknown(_ name: String, names: [String]) -> Never {
        if let advice = gitOnly[name] { ErrorReporter.fail("unknown command '\(name)': \(advice)", status: 64) }
        let hint = suggestion(for: name, among: names).map { "; did you mean '\($0)'?" } ?? " (see 'mrepo --help')"
        ErrorReporter.fail("unknown command '\(name)'\(hint)", status: 64)
    }

    /// The closest name within a small edit distance, as git's `help.autocorrect` suggests.
    static func suggestion(for name: String, among names: [String]) -> String? {
        let scored = names.map { ($0, distance(name.lowercased(), $0)) }.sorted { ($0.1, $0.0) < ($1.1, $1.0) }
        guard let best = scored.first else { return nil }
        if best.1 <= max(2, name.count / 3) { return best.0 }
        return names.first { $0.hasPrefix(name) && name.count >= 2 }
    }

    /// Damerau–Levenshtein distance (adjacent transpositions cost 1).
    static func distance(_ a: String, _ b: String) -> Int {
        let x = Array(a), y = Array(b)
        if x.isEmpty { return y.count }
        if y.isEmpty { return x.count }
        var d = [[Int]](repeating: [Int](repeating: 0, count: y.count + 1), count: x.count + 1)
        for i in 0...x.count { d[i][0] = i }
        for j in 0...y.count { d[0][j] = j }
        for i in 1...x.count {
            for j in 1...y.count {
                let cost = x[i - 1] == y[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, x[i - 1] == y[j - 2], x[i - 2] == y[j - 1] { d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1) }
            }
        }
        return d[x.count][y.count]
    }
}
