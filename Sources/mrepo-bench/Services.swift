import Foundation

#if canImport(Glibc)
import Glibc
#endif

// The servers the network section runs in the background (`mrepo serve`, SeaweedFS, static file
// servers) and the curl transfers that are its plain-download references.

/// A server running in the background for the duration of a measurement. It runs under a small
/// watcher shell that stops it when the benchmark ends, however it ends (the shell polls the
/// benchmark's pid, so even a `kill -9` of mrepo-bench leaves nothing running); ``stop()`` ends it
/// at once, and every caller stops its services in a `defer`.
final class Service {
    let name: String
    /// The server's standard output and error.
    let log: String
    private let shellPID: pid_t
    private let pidFile: String
    private var stopped = false

    init(name: String, arguments: [String], environment: [String: String] = [:], folder: String) throws {
        self.name = name
        log = folder + "/\(name).log"
        pidFile = folder + "/\(name).pid"
        unlink(pidFile)
        let script = #"""
            "$0" "$@" >"$BENCH_SERVICE_LOG" 2>&1 </dev/null & pid=$!
            echo $pid >"$BENCH_SERVICE_PIDFILE"
            trap 'kill $pid 2>/dev/null; wait $pid; exit 0' TERM
            while kill -0 "$BENCH_PARENT_PID" 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 1 & wait $!; done
            kill $pid 2>/dev/null; wait $pid
            """#
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        env["BENCH_SERVICE_LOG"] = log
        env["BENCH_SERVICE_PIDFILE"] = pidFile
        env["BENCH_PARENT_PID"] = "\(getpid())"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd in [Int32(0), 1, 2] {
            posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY, 0)
        }
        let argv = (["/bin/sh", "-c", script] + arguments).map { strdup($0) } + [nil]
        let envp = env.map { strdup("\($0)=\($1)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, "/bin/sh", &actions, nil, argv, envp)
        guard rc == 0 else { throw BenchError("cannot start \(name): \(String(cString: strerror(rc)))") }
        shellPID = pid
    }

    deinit { stop() }

    /// The server's own pid (not the watcher's), once it has started.
    var serverPID: pid_t? {
        (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    /// Whether the watcher (and so the server) still runs.
    var isRunning: Bool {
        !stopped && waitpid(shellPID, nil, WNOHANG) == 0
    }

    /// Stops the server (SIGTERM, then SIGKILL after 20 s) and reaps the watcher.
    func stop() {
        guard !stopped else { return }
        stopped = true
        let server = serverPID
        kill(shellPID, SIGTERM)
        let deadline = Subprocess.now() + 20
        while waitpid(shellPID, nil, WNOHANG) == 0 {
            if Subprocess.now() > deadline {
                if let server { kill(server, SIGKILL) }
                kill(shellPID, SIGKILL)
                _ = waitpid(shellPID, nil, 0)
                break
            }
            usleep(50_000)
        }
        if let server, kill(server, 0) == 0 { kill(server, SIGKILL) }
        unlink(pidFile)
    }

    /// Polls `ready` every 200 ms for up to `seconds`; fails with the end of the log otherwise.
    func waitUntil(seconds: Double = 60, _ ready: () -> Bool) throws {
        let deadline = Subprocess.now() + seconds
        while Subprocess.now() < deadline {
            if ready() { return }
            guard isRunning else { break }
            usleep(200_000)
        }
        let tail = ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").suffix(300)
        throw BenchError("\(name) did not start: \(tail.replacingOccurrences(of: "\n", with: " "))")
    }

    /// The server's peak resident set so far (VmHWM), in bytes.
    func peakRSS() -> Int? {
        guard let pid = serverPID, let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        guard let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return nil }
        return line.split(separator: " ").compactMap { Int($0) }.first.map { $0 * 1024 }
    }
}

/// `count` distinct TCP ports that were free on 127.0.0.1 (bound and released).
func freePorts(_ count: Int) throws -> [Int] {
    var sockets: [Int32] = []
    defer { sockets.forEach { close($0) } }
    var ports: [Int] = []
    while ports.count < count {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BenchError("cannot open a socket") }
        sockets.append(fd)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else { throw BenchError("cannot find a free port on 127.0.0.1") }
        let port = Int(UInt16(bigEndian: address.sin_port))
        // weed derives gRPC ports by adding 10000 where one is not given: stay below 55536.
        if port < 55_536 { ports.append(port) }
    }
    return ports
}

/// The HTTP status of a GET (0 when nothing answered).
func httpStatus(_ url: String, _ extra: [String] = []) -> Int {
    let m = try? Subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"] + extra + [url], captureOutput: true)
    return m.flatMap { Int($0.output.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
}

/// One curl process moving many files over `streams` parallel connections: the plain transfer
/// that mrepo's figures are compared with.
enum CurlJob {
    /// Downloads `urls` into the paired output paths. Returns the run (timed).
    static func download(_ pairs: [(url: String, output: String)], streams: Int, extra: [String], folder: String) throws -> Measured {
        try run(pairs.map { "url = \"\($0.url)\"\noutput = \"\($0.output)\"\n" }, streams: streams, extra: extra, folder: folder)
    }

    /// Uploads each file to its URL with PUT.
    static func upload(_ pairs: [(file: String, url: String)], streams: Int, extra: [String], folder: String) throws -> Measured {
        try run(pairs.map { "upload-file = \"\($0.file)\"\nurl = \"\($0.url)\"\n" }, streams: streams, extra: extra, folder: folder)
    }

    private static func run(_ entries: [String], streams: Int, extra: [String], folder: String) throws -> Measured {
        let config = folder + "/curl-\(getpid()).conf"
        try entries.joined().write(toFile: config, atomically: true, encoding: .utf8)
        defer { unlink(config) }
        let m = try Subprocess.run(["curl", "-s", "-S", "--no-progress-meter", "--fail", "--parallel", "--parallel-immediate", "--parallel-max", "\(streams)"] + extra + ["-K", config])
        guard m.status == 0 else { throw BenchError("curl (\(entries.count) transfers) exited with \(m.status)") }
        return m
    }
}

/// The median of some values (the middle one of an odd count).
func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

/// The load line of `uptime`, for the record.
func loadLine() -> String {
    ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?").split(separator: " ").prefix(3).joined(separator: " ")
}
