import Delta
import Foundation

/// `mrepo config`: settings in `.mrepo/config` (the repository's) and `~/.config/mrepo/config`
/// (the user's; `$XDG_CONFIG_HOME/mrepo/config` when set), in git's format:
///
///     [user]
///         author = Ada Lovelace <ada@example.com>
///     [merge]
///         method = ties
///
/// The repository's file wins over the user's, and the environment variable of a key wins over both.
public struct MrepoConfig: Sendable, Equatable {
    /// The keys mrepo reads, with the environment variable that overrides each.
    public static let keys: [(key: String, environment: String, help: String)] = [
        ("user.author", "MREPO_AUTHOR", "the default commit author, 'Name <email>'"),
        ("merge.method", "MREPO_MERGE_METHOD", "the method of 'mrepo merge' without --method or --config"),
        ("core.threads", "MREPO_THREADS", "worker threads for hashing and coding"),
        ("core.fsync", "MREPO_FSYNC", "false (or 0) skips waiting for the disk (scratch repositories only)"),
    ]

    /// Values by key (`section.name`), in file order.
    public private(set) var values: [(key: String, value: String)] = []

    public init() {}

    public static func == (a: MrepoConfig, b: MrepoConfig) -> Bool {
        a.values.map(\.key) == b.values.map(\.key) && a.values.map(\.value) == b.values.map(\.value)
    }

    public subscript(key: String) -> String? { values.last { $0.key == key }?.value }

    public mutating func set(_ key: String, _ value: String?) {
        values.removeAll { $0.key == key }
        if let value { values.append((key, value)) }
    }

    /// Parses a config file; a line that is neither `[section]`, `name = value`, blank nor a
    /// `#`/`;` comment is an error naming the file and line.
    public static func parse(_ text: String, file: String) throws -> MrepoConfig {
        var config = MrepoConfig()
        var section = ""
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("["), line.hasSuffix("]") {
                section = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces).lowercased()
                continue
            }
            guard let eq = line.firstIndex(of: "="), !section.isEmpty else {
                throw RepoError.invalidArgument("\(file):\(i + 1): expected '[section]' or 'name = value'")
            }
            let name = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            var value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            config.set("\(section).\(name)", value)
        }
        return config
    }

    /// The file's text, one section per key prefix.
    public var text: String {
        var out = ""
        var sections: [String: [(String, String)]] = [:]
        var order: [String] = []
        for (key, value) in values {
            let dot = key.firstIndex(of: ".")!
            let section = String(key[..<dot])
            if sections[section] == nil { order.append(section) }
            sections[section, default: []].append((String(key[key.index(after: dot)...]), value))
        }
        for s in order {
            out += "[\(s)]\n"
            for (name, value) in sections[s]! { out += "\t\(name) = \(value)\n" }
        }
        return out
    }

    /// The user's file: `$XDG_CONFIG_HOME/mrepo/config`, else `~/.config/mrepo/config`.
    public static var userFile: String {
        let env = ProcessInfo.processInfo.environment
        if let xdg = env["XDG_CONFIG_HOME"], !xdg.isEmpty { return xdg + "/mrepo/config" }
        return (env["HOME"] ?? NSHomeDirectory()) + "/.config/mrepo/config"
    }

    /// The repository's file for the folder `path` is in (searching parents), or nil outside one.
    public static func repositoryFile(from path: String = FileManager.default.currentDirectoryPath) -> String? {
        var dir = URL(fileURLWithPath: path).standardizedFileURL.path
        while true {
            if FileStat.of(dir + "/" + Repository.directoryName, followLinks: true)?.isDirectory == true {
                return dir + "/" + Repository.directoryName + "/config"
            }
            if dir == "/" || dir.isEmpty { return nil }
            dir = splitPath(dir).dir
        }
    }

    /// Reads a file (an empty config when it does not exist).
    public static func load(_ file: String) throws -> MrepoConfig {
        guard FileManager.default.fileExists(atPath: file) else { return MrepoConfig() }
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw RepoError.io(path: file, reason: "cannot read the config file")
        }
        return try parse(text, file: file)
    }

    /// Writes a file atomically, creating its folder.
    public func save(to file: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: splitPath(file).dir, withIntermediateDirectories: true)
        } catch {
            throw RepoError.io(path: splitPath(file).dir, reason: "cannot create directory")
        }
        try AtomicFileWriter.write(Array(text.utf8), to: file)
    }

    /// The user's settings overridden by the repository's, and with `environment`, by the
    /// variables the process was started with (what is in effect: `config KEY`, `config --list`).
    public static func effective(from path: String = FileManager.default.currentDirectoryPath, environment: Bool = false) throws -> MrepoConfig {
        var merged = try load(userFile)
        if let repo = repositoryFile(from: path) {
            for (k, v) in try load(repo).values { merged.set(k, v) }
        }
        if environment {
            for (key, variable, _) in keys {
                if let v = launchEnvironment[variable], !v.isEmpty { merged.set(key, v) }
            }
        }
        return merged
    }

    /// The file whose setting of `key` is in effect (the repository's, else the user's), or nil
    /// when neither sets it.
    public static func file(setting key: String, from path: String = FileManager.default.currentDirectoryPath) -> String? {
        if let repo = repositoryFile(from: path), (try? load(repo))?[key] != nil { return repo }
        return (try? load(userFile))?[key] != nil ? userFile : nil
    }

    /// The environment as the process started, before ``applyToEnvironment(_:)`` added the files'
    /// settings to it.
    public static let launchEnvironment = ProcessInfo.processInfo.environment

    /// Sets the environment variable of each configured key that the environment does not set,
    /// so every layer reads one place. `core.fsync = false` becomes `MREPO_FSYNC=0`.
    public static func applyToEnvironment(_ config: MrepoConfig) {
        _ = launchEnvironment
        for (key, variable, _) in keys {
            // An empty variable counts as unset, as everywhere.
            guard var value = config[key], getenv(variable).map({ $0.pointee == 0 }) ?? true else { continue }
            // A word it does not know is passed on as it is, for the check of every command
            // (``TuningVariables``) to name (`flase` was taken for "sync on").
            if key == "core.fsync", let bit = TuningVariables.fsyncWords[value.lowercased()] { value = bit }
            setenv(variable, value, 1)
        }
    }
}
