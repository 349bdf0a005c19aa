import ArgumentParser
import Delta
import Foundation
import Merge
import Repo
import Synchronization

@main
struct MrepoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mrepo",
        abstract: "Git for model checkpoints: version, diff, store and merge safetensors models.",
        discussion: """
            A repository is a folder of checkpoint files (safetensors, sharded or not, plus config and \
            tokenizer files) with a .mrepo directory beside them. Tensors are stored losslessly as \
            compressed deltas against the history's first commit, so ten fine-tunes of one base cost \
            far less than ten copies. Revisions are written as in git: a branch or tag name, HEAD, a \
            commit id or a unique prefix of at least 4 digits, followed by ~N or ^N. -C DIR (before \
            or after the command name; after it, not for branch and switch, whose -C is git's forced copy \
            and forced create) runs as if mrepo was started in DIR. Any command also takes --no-color \
            (or the NO_COLOR variable) and --no-pager; long output goes through MREPO_PAGER, else PAGER, \
            else less, on a terminal only. 'mrepo help COMMAND' is 'mrepo COMMAND --help'; 'mrepo help \
            --man' prints every command's help as one manual page.
            """,
        version: Repository.toolVersion,
        groupedSubcommands: [
            CommandGroup(name: "Start", subcommands: [InitCommand.self]),
            CommandGroup(name: "Record and inspect", subcommands: [
                CommitCommand.self, StatusCommand.self, LogCommand.self, ShowCommand.self, DiffCommand.self, ReflogCommand.self,
                RevParseCommand.self, DescribeCommand.self, NotesCommand.self, MetricCommand.self, BisectCommand.self,
            ]),
            CommandGroup(name: "Branches and tags", subcommands: [
                BranchCommand.self, SwitchCommand.self, CheckoutCommand.self, TagCommand.self, WorktreeCommand.self,
            ]),
            CommandGroup(name: "Undo and rewrite", subcommands: [
                ResetCommand.self, RestoreCommand.self, RevertCommand.self, CherryPickCommand.self, StashCommand.self, CleanCommand.self,
            ]),
            CommandGroup(name: "Share", subcommands: [
                RemoteCommand.self, CloneCommand.self, FetchCommand.self, PushCommand.self, PullCommand.self, LsRemoteCommand.self, ServeCommand.self,
            ]),
            CommandGroup(name: "Merge models", subcommands: [MergeCommand.self, ResolveCommand.self, ExpertsCommand.self]),
            CommandGroup(name: "Models", subcommands: [ExportCommand.self, CheckCommand.self, SynthCommand.self]),
            CommandGroup(name: "Maintenance", subcommands: [DuCommand.self, FsckCommand.self, GCCommand.self]),
            CommandGroup(name: "Shell", subcommands: [CompletionCommand.self, ConfigCommand.self]),
        ]
    )

    /// Runs the command; errors become one line on standard error and a non-zero exit status.
    static func main() {
        MemoryPolicy.configure()
        MappedFile.installGuard()
        // `-C DIR`, as git takes it (also after the command name): change directory before
        // parsing, in order, so every path on the command line is relative to DIR. The one place
        // that handles it.
        // Some commands take a -C of their own: `branch -C OLD NEW` (git's forced copy), `switch -C
        // NAME` (git's forced create, which mrepo refuses naming the way to do it: taking NAME for a
        // folder would switch another repository), and the command that `bisect run` runs (`make -C
        // build test`) is passed on as typed.
        var arguments: [String] = []
        var words: [String] = []
        var rest = Array(CommandLine.arguments.dropFirst())[...]
        // With --json, an error of the -C handling below is a JSON object too (set again, exactly,
        // once the arguments are known).
        let given = Array(rest)
        ErrorReporter.jsonFlag.store(CommandLineHabits.optionsEnd(given) > (given.firstIndex(of: "--json") ?? given.endIndex), ordering: .relaxed)
        if !OpenFileLimit.prepare() {
            ErrorReporter.fail("this process may open only \(OpenFileLimit.current) files, and mrepo needs at least 32: raise the limit with 'ulimit -n'", status: 2)
        }
        while let argument = rest.popFirst() {
            if argument == "--" || words == ["bisect", "run"] {
                arguments.append(argument)
                arguments += rest
                break
            }
            if argument == "-c", words.isEmpty {
                ErrorReporter.fail("-c NAME=VALUE before the command is git's; mrepo takes its settings from 'mrepo config NAME VALUE' or from the environment (MREPO_AUTHOR, MREPO_FSYNC, ...; 'mrepo config --help' lists them)", status: 64)
            }
            guard argument == "-C", words.first != "branch", words.first != "switch" else {
                arguments.append(argument)
                if !argument.hasPrefix("-") { words.append(argument) }
                continue
            }
            guard let dir = rest.popFirst() else { ErrorReporter.fail("-C needs a directory (see 'mrepo --help')", status: 64) }
            // git's `-C ''` changes nothing.
            guard dir.isEmpty || FileManager.default.changeCurrentDirectoryPath(dir) else {
                var isDirectory: ObjCBool = false
                let exists = FileManager.default.fileExists(atPath: dir, isDirectory: &isDirectory)
                ErrorReporter.fail("cannot change to '\(dir)': " + (!exists ? "no such directory" : isDirectory.boolValue ? "permission denied" : "not a directory"))
            }
        }
        // Settings from .mrepo/config and ~/.config/mrepo/config, under the environment's.
        do {
            MrepoConfig.applyToEnvironment(try MrepoConfig.effective())
        } catch {
            ErrorReporter.warn((error as? RepoError)?.description ?? "\(error)")
        }
        // A tuning variable (or its config key) set to something it does not take is refused, not
        // silently replaced by its default.
        // `mrepo config` itself is let through, to mend such a key.
        if words.first != "config", let problem = TuningVariables.checkProcessEnvironment() { ErrorReporter.fail(problem, status: 64) }
        // With --json, errors are a JSON object on standard error too.
        ErrorReporter.jsonFlag.store(CommandLineHabits.optionsEnd(arguments) > (arguments.firstIndex(of: "--json") ?? arguments.endIndex),
                                     ordering: .relaxed)
        arguments = CommandLineHabits.rewrite(arguments)
        var command: ParsableCommand
        do {
            command = try parseJoiningNegativeValues(arguments)
        } catch {
            // Help and --version print in full; a usage error is one line naming the command's help.
            let code = exitCode(for: error)
            guard code != .success else { exit(withError: error) }
            let message = MrepoCommand.oneLine(MrepoCommand.message(for: error))
            let text = message.hasPrefix("Error: ") ? String(message.dropFirst(7)) : message
            // The command's help, down to a subcommand (`mrepo remote add --help`).
            var name = ""
            var commands = MrepoCommand.configuration.groupedSubcommands.flatMap(\.subcommands)
            for word in arguments {
                guard let command = commands.first(where: { $0.configuration.commandName == word }) else { break }
                name += " " + word
                commands = command.configuration.subcommands + command.configuration.groupedSubcommands.flatMap(\.subcommands)
            }
            ErrorReporter.fail("\(text) (see 'mrepo\(name) --help')", status: code.rawValue)
        }
        do {
            do {
                try command.run()
            } catch {
                // A full disk names the user's file or the repository, not a temporary file of mrepo's.
                throw RepoError.fullDisk(error) ?? error
            }
        } catch let error as ValidationError {
            // A check that needs more than the command line (a recipe file, say): the same exit
            // status as a usage error found while parsing, in one line.
            let name = type(of: command).configuration.commandName.map { " \($0)" } ?? ""
            ErrorReporter.fail("\(error.message) (see 'mrepo\(name) --help')", status: ExitCode.validationFailure.rawValue)
        } catch let error as RepoError {
            ErrorReporter.fail(error.description)
        } catch let error as DeltaError {
            ErrorReporter.fail(error.description)
        } catch let error as MergeError {
            ErrorReporter.fail(error.description)
        } catch let error as DecodingError {
            ErrorReporter.fail("invalid input: \(error)")
        } catch let error as CocoaError {
            ErrorReporter.fail((error.filePath.map { "\($0): " } ?? "") + error.localizedDescription)
        } catch let error as ExitCode {
            // A status chosen by the command (1: differences or problems found); it printed why.
            Foundation.exit(error.rawValue)
        } catch {
            exit(withError: error)
        }
    }
}

extension MrepoCommand {
    /// Parses the arguments; where the parser took a negative number given as an option's value
    /// (`--lowrank -1`, `-n -1`) for an option and found the value missing, parses again with the
    /// two joined (`--lowrank=-1`), so that the option's own check says what is allowed.
    static func parseJoiningNegativeValues(_ arguments: [String]) throws -> ParsableCommand {
        var arguments = arguments
        while true {
            do {
                return try parseAsRoot(arguments)
            } catch {
                guard let joined = CommandLineHabits.joiningNegativeValue(arguments, missingValueError: message(for: error)) else { throw error }
                arguments = joined
            }
        }
    }

    /// A usage error in one line: its first line, with a list of allowed values that follows it
    /// (`- push`, `- save`, ...) folded in (it was cut off, leaving "one of the following:" and nothing).
    static func oneLine(_ message: String) -> String {
        let lines = message.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        guard let first = lines.first else { return "invalid usage" }
        let items = lines.dropFirst().prefix { $0.hasPrefix("- ") }.map { "'\($0.dropFirst(2))'" }
        return items.isEmpty ? first : first + " " + items.joined(separator: ", ")
    }
}

/// Prints `mrepo: error: ...` and exits with status 2 (or the one given); with `--json`, prints
/// `{"error": "...", "code": STATUS}` instead.
enum ErrorReporter {
    /// Whether the command line asked for JSON (set once, before parsing; an atomic because errors
    /// may be reported from any thread).
    static let jsonFlag = Atomic<Bool>(false)

    static var json: Bool { jsonFlag.load(ordering: .relaxed) }

    static func fail(_ message: String, status: Int32 = 2) -> Never {
        error(message, status: status)
        Foundation.exit(status)
    }

    /// Reports an error in one line and goes on (`fetch --all` past a remote it cannot reach); the
    /// command fails at its end.
    static func error(_ message: String, status: Int32 = 2) {
        let line = message.replacingOccurrences(of: "\n", with: " ")
        // Two plain members always encode; should that ever fail, the text line still reports the error.
        if json, let doc = try? JSONValueCoding.encode(ErrorDocument(error: line, code: Int(status))) {
            FileHandle.standardError.write(Data((doc.serialized() + "\n").utf8))
        } else {
            FileHandle.standardError.write(Data("mrepo: error: \(line)\n".utf8))
        }
    }

    static func note(_ message: String) {
        FileHandle.standardError.write(Data("mrepo: note: \(message)\n".utf8))
    }

    static func warn(_ message: String) {
        FileHandle.standardError.write(Data("mrepo: warning: \(message)\n".utf8))
    }
}

/// Options every command that works on a repository shares.
struct RepositoryOptions: ParsableArguments {
    @Flag(name: .shortAndLong, help: "Print no progress bar and no informational lines.")
    var quiet = false

    /// Opens the repository of the current folder (`-C DIR` has changed to it) and attaches a
    /// progress bar when standard error is a terminal.
    /// - Parameter access: ``HistoryAccess/readOnly`` for a command that records no history
    ///   (its database connections then sync nothing when they open and close).
    func open(access: HistoryAccess = .readWrite) throws -> Repository {
        let repo = try Repository.open(at: FileManager.default.currentDirectoryPath, access: access)
        repo.progress = ProgressBar.make(quiet: quiet)
        if !quiet { repo.waitNotice = { ErrorReporter.note($0) } }
        return repo
    }
}

/// `--expert NAME | --view V` of checkout and export: what to rebuild from a reversible merge.
struct ReversibleViewOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Reversible merges: rebuild this expert (its name in the merge, or a commit id prefix).", valueName: "name"),
            completion: CompletionNames.experts)
    var expert: String?

    @Option(help: ArgumentHelp(
        "Reversible merges: ta (the stored default: task arithmetic of the rebuilt experts, truncated), ta-full (the same, exact), mean (the experts' mean).",
        valueName: "view"))
    var view: ReversibleView?

    func validate() throws {
        if expert != nil, view != nil { throw ValidationError("--expert and --view: give one of them") }
    }

    /// Whether either option was given.
    var isGiven: Bool { expert != nil || view != nil }

    /// The parsed `--view`.
    var parsedView: ReversibleView? { view }
}

/// `-t/--track` and `--no-track`, for commands that create a branch.
struct TrackingOptions: ParsableArguments {
    @Flag(name: [.customShort("t"), .long], help: "The new branch tracks its start point, which must be a remote-tracking branch (origin/main). This is the default for such a start point.")
    var track = false

    @Flag(name: .customLong("no-track"), help: "The new branch tracks nothing, even when it starts at a remote-tracking branch.")
    var noTrack = false

    var tracking: BranchTracking { track ? .always : noTrack ? .never : .auto }

    var isGiven: Bool { track || noTrack }

    /// The branch `switch --track origin/X` and `checkout --track origin/X` create, as git names it:
    /// the remote-tracking branch's name without its remote (`X`).
    static func derivedName(_ start: String) throws -> String {
        guard let (_, name) = RemoteRefSpelling.split(start), !name.isEmpty else {
            throw ValidationError("--track without a new branch's name needs a remote-tracking branch (origin/NAME): '\(start)' is not one")
        }
        return name
    }

    func validate() throws {
        if track && noTrack { throw ValidationError("--track and --no-track: give one of them") }
    }
}

/// `--wait`, for commands that write.
struct LockOptions: ParsableArguments {
    @Flag(help: "If another mrepo command is writing to the repository, wait for it instead of failing.")
    var wait = false
}

/// `revert --continue/--abort` and `cherry-pick --continue/--abort`, as git's: a stopped revert or
/// cherry-pick is a merge in progress, so they do what `merge --continue` and `merge --abort` do.
struct SequencerOptions: ParsableArguments {
    @Flag(name: .customLong("continue"), help: "Commit the stopped revert or cherry-pick once its conflicts are settled ('mrepo merge --continue').")
    var continueOperation = false

    @Flag(help: "Give up the stopped revert or cherry-pick: HEAD and the working tree go back ('mrepo merge --abort').")
    var abort = false

    var isGiven: Bool { continueOperation || abort }

    /// A revision, or --continue, or --abort: exactly one.
    func validate(revision: String?) throws {
        if continueOperation && abort { throw ValidationError("--continue and --abort exclude each other") }
        if isGiven && revision != nil { throw ValidationError("--continue and --abort take no revision") }
        if !isGiven && revision == nil { throw ValidationError("name the commit (or --continue, --abort)") }
    }

    /// Finishes or abandons the stopped `verb`; refused when no revert or cherry-pick is stopped.
    func run(_ repo: Repository, verb: String, message: String?, wait: Bool, json: Bool, quiet: Bool) throws {
        let stopped = try repo.mergeInProgress()
        guard let stopped, stopped.operation == verb else {
            let other = stopped.map { $0.operation.map { "a \($0) is: 'mrepo \($0)" } ?? "a merge is: 'mrepo merge" }
            throw RepoError.invalidArgument("no \(verb) is in progress" + (other.map { " (\($0) --\(abort ? "abort" : "continue")')" } ?? ""))
        }
        switch try repo.merge(abort ? .abort : .finish(message: message), wait: wait) {
        case .aborted(let head):
            if json { try printJSON(MergeAbortDocument(head: OrNull(head?.hex))) }
            else if !quiet { print("\(verb) aborted; HEAD and the working tree are as before it.") }
        case let .finished(commit, branch, warnings, kept):
            try MergeFinishDocument.present(commit, branch: branch, warnings: warnings, keptLocal: kept, json: json, quiet: quiet)
        case .merged:
            break
        }
    }
}

/// git's `--no-edit`, which scripts pass to commands that would open an editor for the message.
struct NoEditOption: ParsableArguments {
    @Flag(name: .customLong("no-edit"), help: "Accepted as in git: mrepo never opens an editor (the message is -m's where the command takes -m, else the default one).")
    var noEdit = false
}
