import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One run of a command: its wall time and peak resident set (reported by GNU time).
struct Measured {
    var seconds: Double
    var peakRSSBytes: Int
    var status: Int32
    var output: String
    /// User and system CPU time of the command and its children: on a shared machine, steadier
    /// than wall time (what other tenants take shows in wall time only).
    var cpuSeconds: Double = 0

    /// The fastest of several runs, with the largest peak memory among them.
    static func best(_ runs: [Measured]) -> Measured {
        var m = runs.min { $0.seconds < $1.seconds }!
        m.peakRSSBytes = runs.map(\.peakRSSBytes).max()!
        return m
    }

    /// The median run by time (the upper one of an even count), with the largest peak memory among them:
    /// on a shared machine the fastest run flatters whichever side had a quiet moment.
    static func median(_ runs: [Measured]) -> Measured {
        var m = runs.sorted { $0.seconds < $1.seconds }[runs.count / 2]
        m.peakRSSBytes = runs.map(\.peakRSSBytes).max()!
        m.cpuSeconds = runs.map(\.cpuSeconds).sorted()[runs.count / 2]
        return m
    }
}

enum Subprocess {
    /// Runs `arguments[0]` (searched in PATH) with the remaining arguments.
    /// - Parameters:
    ///   - captureOutput: capture standard output (else it is discarded).
    @discardableResult
    static func run(_ arguments: [String], captureOutput: Bool = false,
                    environment: [String: String] = [:]) throws -> Measured {
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        let outPath = NSTemporaryDirectory() + "/mrepo-bench-out-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        if captureOutput {
            posix_spawn_file_actions_addopen(&fileActions, 1, outPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        } else {
            posix_spawn_file_actions_addopen(&fileActions, 1, "/dev/null", O_WRONLY, 0)
        }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        // Peak RSS through GNU time: a child spawned from this (large) process inherits its high-water
        // mark at exec (posix_spawn shares the address space until then), so wait4's ru_maxrss would
        // report the benchmark's own size; time forks from a small process and reports the real child's.
        let rssPath = outPath + ".rss"
        let timed = FileManager.default.isExecutableFile(atPath: "/usr/bin/time")
        let arguments = timed ? ["/usr/bin/time", "-f", "%M", "-o", rssPath] + arguments : arguments
        let envStrings = env.map { "\($0)=\($1)" }
        var pid: pid_t = 0
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = envStrings.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        let start = now()
        let rc = posix_spawnp(&pid, arguments[0], &fileActions, nil, argv, envp)
        guard rc == 0 else { throw BenchError("cannot run \(arguments[0]): \(String(cString: strerror(rc)))") }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let seconds = now() - start
        var output = ""
        if captureOutput {
            output = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
            unlink(outPath)
        }
        let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        var peak = Int(usage.ru_maxrss) * 1024
        if timed {
            let text = (try? String(contentsOfFile: rssPath, encoding: .utf8)) ?? ""
            unlink(rssPath)
            if let kb = text.split(separator: "\n").last(where: { Int($0.trimmingCharacters(in: .whitespaces)) != nil }).flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }) {
                peak = kb * 1024
            }
        }
        let cpu = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
            + Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
        return Measured(seconds: seconds, peakRSSBytes: peak, status: exit, output: output, cpuSeconds: cpu)
    }

    /// Runs a command and fails unless it exits 0.
    @discardableResult
    static func check(_ arguments: [String], captureOutput: Bool = false) throws -> Measured {
        let m = try run(arguments, captureOutput: captureOutput)
        guard m.status == 0 else { throw BenchError("\(arguments.joined(separator: " ")) exited with \(m.status)") }
        return m
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
