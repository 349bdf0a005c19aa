import CKernels
import CLinux
import Delta
import Foundation
import Glibc
import Synchronization

/// Runs the evaluation command of a search on one candidate folder, under the evaluation
/// contract (docs/merging.md, "The evaluation contract"): `sh -c 'CMD "$@"' sh FOLDER`, so the
/// folder is the command's last argument, with `MREPO_CANDIDATE` set too; the last non-empty line
/// of its standard output must be a JSON object of task scores (numbers, higher is better).
///
/// The command runs in a process group of its own, so a timeout kills everything it started
/// (a Python interpreter under a shell, say). Standard output and error go to files beside the
/// candidate: no pipe can fill up and stall it.
final class EvaluationRun {
    let pid: pid_t
    let started: Double
    let stdoutPath: String
    let stderrPath: String

    init(command: String, candidate: String, trial: Int, logs: String, environment: [String: String]) throws {
        stdoutPath = logs + "/trial-\(trial).out"
        stderrPath = logs + "/trial-\(trial).err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        // None of mrepo's own descriptors (the history, the repository's locks): a background
        // process the command leaves would otherwise keep them open.
        posix_spawn_file_actions_addclosefrom_np(&actions, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group (``LiveEvaluations`` ends it when mrepo is interrupted).
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        posix_spawnattr_setpgroup(&attributes, 0)
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        env["MREPO_CANDIDATE"] = candidate
        env["MREPO_TRIAL"] = String(trial)
        // For an evaluation that calls mrepo (an export, say), as hooks and bisect run get it.
        env["MREPO_EXE"] = HookRunner.executablePath
        let arguments = ["/bin/sh", "-c", command + " \"$@\"", "sh", candidate]
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        let (rc, pid) = LiveEvaluations.spawn("/bin/sh", &actions, &attributes, argv, envp) { CrashPoint.reach("search.spawned") }
        guard rc == 0 else { throw RepoError.failed("cannot run the evaluation command: \(String(cString: strerror(rc)))") }
        self.pid = pid
        started = EvaluationRun.now()
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
    }

    var elapsed: Double { EvaluationRun.now() - started }

    /// The exit status once the command has ended (nil: still running).
    func poll() -> Int32? {
        // Whether it ended, without reaping it: until it is reaped its id names its group and
        // nothing else.
        var info = siginfo_t()
        if waitid(P_PID, id_t(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0 { return errno == EINTR ? nil : -1 }
        guard info.si_signo != 0 else { return nil }
        // What the command left running in its group (a data loader it started in the background,
        // holding memory, or a GPU) ends with it.
        _ = Glibc.kill(-pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        LiveEvaluations.remove(pid)
        if status & 0x7f == 0 { return (status >> 8) & 0xff }
        return 128 + (status & 0x7f)
    }

    /// Kills the command's whole process group and reaps it.
    func kill() {
        _ = Glibc.kill(-pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0, errno == EINTR {}
        LiveEvaluations.remove(pid)
    }

    /// The outcome of an ended command with exit status `status`.
    func outcome(status: Int32) -> (TrialStatus, [String: Double]?, String?) {
        if status != 0 {
            // 128 + N: the shell's way of saying signal N ended the command (139: a segmentation fault).
            let signal = status > 128 && status < 160 ? " (signal \(status - 128)\(EvaluationRun.signalNames[status - 128].map { ", \($0)" } ?? ""))" : ""
            return (.failed, nil, "exit status \(status)\(signal)" + EvaluationRun.tail(stderrPath).map { ": \($0)" }.orEmpty)
        }
        let text = EvaluationRun.end(of: stdoutPath, bytes: EvaluationRun.lastLineLimit + 1)
        let line = text.split(whereSeparator: \.isNewline).last { !$0.trimmingCharacters(in: .whitespaces).isEmpty }.map(String.init) ?? ""
        switch EvaluationRun.scores(line) {
        case let .success(s): return (.ok, s, nil)
        case let .failure(problem): return (.garbled, nil, problem)
        }
    }

    static let signalNames: [Int32: String] = [SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGABRT: "SIGABRT",
                                               SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL, often the out-of-memory killer",
                                               SIGSEGV: "SIGSEGV", SIGPIPE: "SIGPIPE", SIGTERM: "SIGTERM"]

    enum ParseResult { case success([String: Double]), failure(String) }

    /// Reads a last line such as `{"code": 0.71, "prose": 0.64}`.
    /// The user's own JSON, parsed as a value (not a record) so that each bad member gets its own message.
    static func scores(_ line: String) -> ParseResult {
        let shown = String(line.prefix(120)).escapingControlCharacters
        guard line.utf8.count <= lastLineLimit, let value = try? JSONValue.parse(Array(line.utf8)), let members = value.objectValue else {
            return .failure("the last line of the output is not a JSON object: '\(shown)'")
        }
        guard !members.isEmpty else { return .failure("the last line of the output is an empty JSON object") }
        var out: [String: Double] = [:]
        for m in members {
            guard let x = m.value.doubleValue, x.isFinite else {
                return .failure("task '\(m.key.escapingControlCharacters)' has no finite number in '\(shown)'")
            }
            guard out[m.key] == nil else { return .failure("task '\(m.key.escapingControlCharacters)' appears twice") }
            out[m.key] = x
        }
        return .success(out)
    }

    /// The longest last line of output read as scores (1 MiB).
    static let lastLineLimit = 1 << 20

    /// The last `bytes` bytes of a log as text: an evaluation may print gigabytes of progress, and
    /// only its last line counts (it was read whole).
    static func end(of path: String, bytes: Int) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else { return "" }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        try? handle.seek(toOffset: size > UInt64(bytes) ? size - UInt64(bytes) : 0)
        let data = (try? handle.readToEnd()) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }

    /// The last line of a log, shortened, for the trial's message.
    static func tail(_ path: String) -> String? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let text = end(of: path, bytes: 64 << 10)
        return text.split(whereSeparator: \.isNewline).last.map { String($0.suffix(200)).escapingControlCharacters }
    }
}

extension Optional where Wrapped == String {
    var orEmpty: String { self ?? "" }
}

/// The evaluations running now, by process group. Each runs in a group of its own, so the
/// terminal's Ctrl-C reaches mrepo only: on SIGINT, SIGTERM or SIGHUP, mrepo kills those groups
/// (a GPU evaluation would otherwise run on for hours, orphaned), then dies of the signal as it
/// would have. The search resumes with `--continue`.
///
/// The handler only reads a fixed table of process group ids and calls `kill`, `signal` and
/// `raise`, which are async-signal-safe. A caught signal is reset to its default by `exec`, so
/// hooks and evaluations started later are not affected. Signals the parent ignores or blocks are
/// left so (`nohup` keeps a search and its evaluations alive).
enum LiveEvaluations {
    static let signals: [Int32] = [SIGINT, SIGTERM, SIGHUP]
    static let capacity = 256
    /// Process group ids (a single process's pid, negated), 0 for a free slot: written under
    /// ``lock``, read by the handler.
    nonisolated(unsafe) static let table: UnsafeMutablePointer<pid_t> = {
        let p = UnsafeMutablePointer<pid_t>.allocate(capacity: capacity)
        p.initialize(repeating: 0, count: capacity)
        return p
    }()
    private static let lock = Mutex<Bool>(false)

    /// Kills every evaluation's process group, then dies of `sig` as its default action would
    /// (async-signal-safe: reads the table, calls kill, signal and raise).
    static func endAll(andDieOf sig: Int32) {
        for i in 0..<capacity where table[i] != 0 {
            if table[i] > 0 {
                _ = Glibc.kill(-table[i], SIGKILL)
            } else {
                _ = Glibc.kill(-table[i], SIGTERM)
            }
        }
        signal(sig, SIG_DFL)
        raise(sig)
    }

    /// `posix_spawn` of a process whose attributes put it in a group of its own, added to the
    /// table. A signal between the spawn and the table's update is acted on here, once the group
    /// is in the table (spawnguard.c): the handler found no group to end.
    /// - Returns: posix_spawn's result and the pid.
    /// - Parameter group: the attributes give the process a group of its own, which is ended
    ///   whole; else (a hook, which stays in mrepo's group, the terminal's) the process alone is
    ///   sent SIGTERM.
    static func spawn(_ path: String, _ actions: inout posix_spawn_file_actions_t, _ attributes: inout posix_spawnattr_t,
                      _ argv: [UnsafeMutablePointer<CChar>?], _ envp: [UnsafeMutablePointer<CChar>?], group: Bool = true,
                      spawned: () -> Void = {}) -> (Int32, pid_t) {
        var pid: pid_t = 0
        installHandlers()
        mrepo_spawn_begin()
        let rc = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
        spawned()
        if rc == 0 { add(group ? pid : -pid) }
        let pending = mrepo_spawn_end()
        if pending != 0 { endAll(andDieOf: pending) }
        return (rc, pid)
    }

    static func add(_ pid: pid_t) {
        lock.withLock { _ in
            for i in 0..<capacity where table[i] == 0 {
                table[i] = pid
                return
            }
        }
    }

    static func remove(_ pid: pid_t) {
        lock.withLock { _ in
            for i in 0..<capacity where table[i] == pid || table[i] == -pid { table[i] = 0 }
        }
    }

    /// Installs the handler, once per process.
    static func installHandlers() {
        lock.withLock { installed in
            guard !installed else { return }
            installed = true
            _ = table
            for sig in signals {
                // A signal the parent ignores (`nohup`, a background job's SIGINT) stays ignored,
                // for mrepo and the evaluations it starts; one it blocks stays blocked.
                var current = sigaction()
                guard sigaction(sig, nil, &current) == 0 else { continue }
                let ignored = unsafeBitCast(current.__sigaction_handler.sa_handler, to: Int.self) == unsafeBitCast(SIG_IGN, to: Int.self)
                if ignored { continue }
                signal(sig) { sig in
                    // A spawn in progress acts on it once its group is in the table.
                    if mrepo_signal_defers(sig) != 0 { return }
                    LiveEvaluations.endAll(andDieOf: sig)
                }
            }
        }
    }
}
