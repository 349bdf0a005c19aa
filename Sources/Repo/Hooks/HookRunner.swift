import Foundation

/// Runs repository hooks: executable files in `.mrepo/hooks`, named after the event.
///
/// A hook runs in the working tree with the event's details in `MREPO_*` environment variables
/// (docs/guide.md, "Hooks"). Its standard output and error go to mrepo's standard error, so
/// `--json` output stays clean.
public enum HookRunner {
    /// Runs the hook at `path` if it exists and is executable.
    /// - Throws: ``RepoError/hookRejected(hook:status:)`` when it exits non-zero.
    public static func run(path: String, name: String, workingDirectory: String, environment: [String: String]) throws {
        guard FileManager.default.isExecutableFile(atPath: path) else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory)
        var env = ProcessInfo.processInfo.environment
        env["MREPO_HOOK"] = name
        env["MREPO_ROOT"] = workingDirectory
        env["MREPO_EXE"] = executablePath
        for (k, v) in environment { env[k] = v }
        process.environment = env
        process.standardOutput = FileHandle.standardError
        process.standardError = FileHandle.standardError
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw RepoError.io(path: path, reason: "cannot run \(name) hook: \(error.localizedDescription)")
        }
        process.waitUntilExit()
        if process.terminationReason == .uncaughtSignal || process.terminationStatus != 0 {
            throw RepoError.hookRejected(hook: name, status: process.terminationStatus)
        }
    }

    /// The path of the running mrepo executable, for hooks that call mrepo back.
    public static var executablePath: String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        return CommandLine.arguments.first ?? "mrepo"
    }
}

/// The sample hooks that `mrepo init --hooks` installs (the same files ship in `hooks/`).
public enum HookSamples {
    public struct Sample: Sendable {
        public var name: String
        public var script: String
    }

    public static let all: [Sample] = [preCommit, postCommit]

    /// Refuses a commit whose tensors hold NaN or Inf.
    public static let preCommit = Sample(name: "pre-commit", script: """
        #!/bin/sh
        # mrepo pre-commit hook: refuse checkpoints whose tensors hold NaN or Inf.
        #
        # Runs before anything is written. Environment: MREPO_SOURCE (the folder being committed),
        # MREPO_MESSAGE, MREPO_BRANCH, MREPO_PARENT, MREPO_AUTHOR, MREPO_METRICS (JSON), MREPO_EXE.
        # A non-zero exit aborts the commit and leaves the repository untouched.
        exec "${MREPO_EXE:-mrepo}" check --finite "$MREPO_SOURCE"

        """)

    /// Appends each commit and its metrics to `.mrepo/commits.log`.
    public static let postCommit = Sample(name: "post-commit", script: """
        #!/bin/sh
        # mrepo post-commit hook: append each commit and its recorded metrics to .mrepo/commits.log.
        #
        # Environment: MREPO_COMMIT (the new commit id), MREPO_BRANCH, MREPO_MESSAGE, MREPO_METRICS (JSON).
        # Its exit status is reported but cannot undo the commit.
        printf '%s\\t%s\\t%s\\t%s\\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$MREPO_COMMIT" "${MREPO_BRANCH:-detached}" "$MREPO_METRICS" \\
            >> "$MREPO_ROOT/.mrepo/commits.log"

        """)
}
