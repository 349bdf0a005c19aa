import ArgumentParser
import Delta
import Foundation
import Merge
import Repo

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Get and set settings: author, default merge method, threads, fsync.",
        discussion: """
            'mrepo config KEY' prints a setting, 'mrepo config KEY VALUE' sets it in the repository's \
            .mrepo/config (--global: in ~/.config/mrepo/config), --unset removes it, --list lists every \
            setting in effect. The repository's file wins over the user's; the environment variable of a \
            key wins over both. Reading a key that is not set exits 1; --unset of one exits 5, as git's config. Keys: \(MrepoConfig.keys.map { "\($0.key) (\($0.environment)): \($0.help)" }.joined(separator: "; ")).
            """)

    @Argument(help: ArgumentHelp("The setting, e.g. user.author.", valueName: "key"), completion: .list(MrepoConfig.keys.map(\.key)))
    var key: String?

    @Argument(help: ArgumentHelp("Its new value.", valueName: "value"))
    var value: String?

    @Flag(help: "Read or write the user's file (~/.config/mrepo/config) instead of the repository's.")
    var global = false

    @Flag(help: "Remove the setting.")
    var unset = false

    @Flag(name: [.customShort("l"), .long], help: "List every setting in effect.")
    var list = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        if list && (key != nil || unset) { throw ValidationError("--list takes no key") }
        if !list && key == nil { throw ValidationError("name a key (or --list)") }
        if unset && value != nil { throw ValidationError("--unset takes only a key") }
        if let key, !MrepoConfig.keys.contains(where: { $0.key == key }) {
            throw ValidationError("unknown key '\(key)' (keys: \(MrepoConfig.keys.map(\.key).joined(separator: ", ")))")
        }
        guard let key, let value else { return }
        // One line of the file per value: a newline would write (or inject) other settings.
        if value.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            throw ValidationError("\(key): the value holds a control character (a newline, say): '\(DisplayText.escaping(value))'")
        }
        switch key {
        case "core.threads":
            // The rule every command checks MREPO_THREADS and this key by (TuningVariables).
            if let expected = TuningVariables.refusal(of: value, for: "MREPO_THREADS") {
                throw ValidationError("core.threads must be \(expected)")
            }
        case "core.fsync":
            if TuningVariables.fsyncWords[value.lowercased()] == nil {
                throw ValidationError("core.fsync must be true or false (also 1/0, yes/no, on/off)")
            }
        case "merge.method":
            if !MethodRegistry.ids.contains(value) {
                throw ValidationError("merge.method: unknown method '\(value)' (methods: \(MethodRegistry.ids.joined(separator: ", ")))")
            }
        case "user.author":
            if value.trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("user.author must not be empty; use --unset to remove it") }
            if !CommitCommand.isAuthor(value) { throw ValidationError("user.author '\(DisplayText.escaping(value))' is not 'Name <email>'") }
        default:
            break
        }
    }

    func run() throws {
        if list {
            let config = global ? try MrepoConfig.load(MrepoConfig.userFile) : try MrepoConfig.effective(environment: true)
            if json { try printJSON(NamedValues(members: config.values.map { ($0.key, $0.value) })) }
            else { for (k, v) in config.values { print("\(k)=\(v)") } }
            return
        }
        let key = key!
        guard value != nil || unset else {
            let config = global ? try MrepoConfig.load(MrepoConfig.userFile) : try MrepoConfig.effective(environment: true)
            guard let v = config[key] else {
                // As git: an unset key exits 1 and prints nothing, except a document for a script
                // that reads --json (its value null).
                if json { try printJSON(ConfigValueDocument(key: key, value: OrNull(nil))) }
                throw ExitCode(1)
            }
            if json { try printJSON(ConfigValueDocument(key: key, value: OrNull(v))) } else { print(v) }
            return
        }
        let file: String
        if global {
            file = MrepoConfig.userFile
        } else {
            guard let f = MrepoConfig.repositoryFile() else { throw RepoError.notARepository(path: FileManager.default.currentDirectoryPath) }
            file = f
        }
        var config = try MrepoConfig.load(file)
        // As git's `config --unset`: a key that is not set there exits 5, and the file is untouched.
        if unset, config[key] == nil { ErrorReporter.fail("\(key) is not set in \(file)", status: 5) }
        config.set(key, unset ? nil : value)
        try config.save(to: file)
        if json { try printJSON(ConfigValueDocument(key: key, value: OrNull(unset ? nil : value), file: file)) }
    }
}
