import Foundation

/// The environment variables that tune mrepo (docs/guide.md, section 22), checked once when a
/// command starts. Each layer reads its variable where it is used and falls back to its default
/// when the text is not a value it takes; without this check a typo (`MREPO_THREADS=two`,
/// `MREPO_FSYNC=false`, a part size in the terabytes) would change nothing and say nothing. A
/// value that is set (and not empty, which counts as unset) must be one the variable takes.
public enum TuningVariables {
    struct Rule: Sendable {
        var variable: String
        /// What the variable takes, for the message ("a whole number from 1 to 1024").
        var expected: String
        var accepts: @Sendable (String) -> Bool
    }

    static func whole(_ range: ClosedRange<Int>) -> @Sendable (String) -> Bool {
        { text in Int(text).map(range.contains) ?? false }
    }

    static func flag(_ text: String) -> Bool { text == "0" || text == "1" }

    public static let fsyncWords = ["0": "0", "1": "1", "false": "0", "true": "1", "no": "0", "yes": "1", "off": "0", "on": "1"]

    static let rules: [Rule] = [
        Rule(variable: "MREPO_THREADS", expected: "a whole number from 1 to 1024", accepts: whole(1...1024)),
        Rule(variable: "MREPO_FSYNC", expected: "0 or 1 (also false/true, no/yes, off/on)",
             accepts: { fsyncWords[$0.lowercased()] != nil }),
        Rule(variable: "MREPO_VERIFY_WRITES", expected: "0 or 1", accepts: flag),
        Rule(variable: "MREPO_RANS", expected: "0 or 1", accepts: flag),
        Rule(variable: "MREPO_MERGE_SPILL", expected: "0 or 1", accepts: flag),
        Rule(variable: "MREPO_MERGE_WHOLE_MB", expected: "a whole number of MiB from 0 to 2^40 - 1",
             accepts: whole(0...((1 << 40) - 1))),
        Rule(variable: "MREPO_SEARCH_CACHE_MB", expected: "a whole number of MiB from 0 to 2^30",
             accepts: whole(0...(1 << 30))),
        Rule(variable: "MREPO_TRANSFER_BATCH_SECONDS", expected: "a number of seconds from 0 to 999999",
             accepts: { text in Double(text).map { $0 >= 0 && $0 < 1e6 } ?? false }),
        Rule(variable: "MREPO_GC_GRACE_SECONDS", expected: "a number of seconds from 0 to 999999",
             accepts: { text in Double(text).map { $0 >= 0 && $0 < 1e6 } ?? false }),
        // S3 allows parts of 5 MiB to 5 GiB (the last one smaller).
        Rule(variable: "MREPO_S3_PART_SIZE", expected: "a whole number of bytes from 5242880 (5 MiB) to 5368709120 (5 GiB)",
             accepts: whole((5 << 20)...(5 << 30))),
        Rule(variable: "MREPO_S3_MULTIPART_THRESHOLD", expected: "a whole number of bytes from 0 to 5368709120 (5 GiB)",
             accepts: whole(0...(5 << 30))),
    ]

    /// What `variable` takes, when `value` is not one of its values (nil: it is, or the variable
    /// is not one of these).
    public static func refusal(of value: String, for variable: String) -> String? {
        guard let rule = rules.first(where: { $0.variable == variable }), !value.isEmpty, !rule.accepts(value) else { return nil }
        return rule.expected
    }

    /// Where a variable's value came from when the process was not started with it.
    public struct ConfigSource: Sendable {
        public var setting: String
        public var file: String
        public var global: Bool
    }

    /// The first variable of `environment` whose value its variable does not take, as one line:
    /// where it was set (the environment, or the config file of its key, ``MrepoConfig/keys``)
    /// and what it takes. `configSource(variable)` names the file that set a variable the
    /// process was not started with.
    public static func problem(in environment: [String: String],
                               configSource: (String) -> ConfigSource? = { _ in nil }) -> String? {
        for rule in rules {
            guard let value = environment[rule.variable], !value.isEmpty, !rule.accepts(value) else { continue }
            let shown = value.unicodeScalars.count > 40 ? String(value.unicodeScalars.prefix(40)) + "..." : value
            if let source = configSource(rule.variable) {
                return "\(source.setting) in \(source.file) is '\(shown.escapingControls)': expected \(rule.expected)"
                    + " ('mrepo config\(source.global ? " --global" : "") \(source.setting) VALUE' changes it)"
            }
            return "\(rule.variable) is '\(shown.escapingControls)': expected \(rule.expected) (docs/guide.md, section 22)"
        }
        return nil
    }

    /// Checks the process's environment (after ``MrepoConfig/applyToEnvironment(_:)``), naming
    /// the config file a value came from, and writes `MREPO_FSYNC`'s words as the `0` or `1` the
    /// writers read.
    public static func checkProcessEnvironment() -> String? {
        let environment = ProcessInfo.processInfo.environment
        let problem = problem(in: environment) { variable in
            guard MrepoConfig.launchEnvironment[variable]?.isEmpty ?? true,
                  let key = MrepoConfig.keys.first(where: { $0.environment == variable })?.key else { return nil }
            guard let file = MrepoConfig.file(setting: key) else { return nil }
            return ConfigSource(setting: key, file: file, global: file == MrepoConfig.userFile)
        }
        if problem == nil, let fsync = environment["MREPO_FSYNC"], let bit = fsyncWords[fsync.lowercased()], bit != fsync {
            setenv("MREPO_FSYNC", bit, 1)
        }
        return problem
    }
}

private extension String {
    /// Control characters as escapes, so the message stays one line.
    var escapingControls: String {
        unicodeScalars.contains { $0.properties.generalCategory == .control } ? String(debugDescription.dropFirst().dropLast()) : self
    }
}
