import Foundation
import Synchronization

/// Terminal habits: colour and a pager when standard output is a terminal, as git does.
/// `--no-color`, `--no-pager` (any command) and `NO_COLOR` turn them off; `MREPO_PAGER`, else
/// `PAGER`, else `less` pages `log`, `diff`, `show` and `reflog`.
enum Terminal {
    /// `--no-color` and `--no-pager`, set once before parsing (atomics: process-wide, read from any thread).
    static let noColorFlag = Atomic<Bool>(false)
    static let noPagerFlag = Atomic<Bool>(false)
    /// The pager process, whose input is standard output, waited for at exit.
    private static let pager = Mutex<(process: Process, pipe: Pipe)?>(nil)

    static var noColor: Bool { noColorFlag.load(ordering: .relaxed) }
    static var noPager: Bool { noPagerFlag.load(ordering: .relaxed) }

    /// Whether standard output was a terminal when mrepo started (before a pager took it over).
    static let outputIsTerminal = isatty(STDOUT_FILENO) == 1

    /// The commands whose output is paged.
    static let pagedCommands: Set<String> = ["log", "diff", "show", "reflog"]

    /// Whether to colour standard output.
    static var useColor: Bool {
        let env = ProcessInfo.processInfo.environment
        if noColor || !(env["NO_COLOR"] ?? "").isEmpty || env["TERM"] == "dumb" { return false }
        return outputIsTerminal
    }

    /// `text` in an ANSI colour (yellow 33, green 32, red 31, cyan 36, magenta 35; bold 1) when colour is on.
    static func paint(_ text: String, _ code: String) -> String {
        useColor && !text.isEmpty ? "\u{1B}[\(code)m\(text)\u{1B}[m" : text
    }

    /// The pager command: MREPO_PAGER, else PAGER, else less; nil when it is empty or `cat`.
    static func pagerCommand(environment env: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        let command = (env["MREPO_PAGER"] ?? env["PAGER"] ?? "less").trimmingCharacters(in: .whitespaces)
        return command.isEmpty || command == "cat" ? nil : command
    }

    /// Sends standard output through the pager for the rest of the process, when it is a terminal.
    static func startPager(for command: String) {
        guard !noPager, pagedCommands.contains(command), outputIsTerminal, let line = pagerCommand() else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", line]
        var env = ProcessInfo.processInfo.environment
        // As git sets it: quit when the output fits, keep colours, do not clear the screen.
        if env["LESS"] == nil { env["LESS"] = "FRX" }
        process.environment = env
        let pipe = Pipe()
        process.standardInput = pipe
        guard (try? process.run()) != nil else { return }
        fflush(nil)
        dup2(pipe.fileHandleForWriting.fileDescriptor, STDOUT_FILENO)
        pager.withLock { $0 = (process, pipe) }
        atexit {
            guard let (process, pipe) = Terminal.pager.withLock({ $0 }) else { return }
            fflush(nil)
            close(STDOUT_FILENO)
            try? pipe.fileHandleForWriting.close()
            process.waitUntilExit()
        }
    }
}
