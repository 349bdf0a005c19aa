import Foundation
import Testing

/// A running mrepo process whose standard input and error the test holds: with `MREPO_PAUSE_AT`
/// it stops at a named point, says so on standard error, and goes on when a line arrives.
final class RunningCommand {
    let process = Process()
    private let input = Pipe(), output = Pipe(), errors = Pipe()
    private var errorText = ""
    private var resumed = false

    /// - Parameter unblockingSignals: start mrepo with no signal blocked, as a shell starts it (the
    ///   test runner's threads block SIGTERM and SIGINT, and a child inherits its mask), through
    ///   python3, which clears the mask and executes mrepo in its place (same pid).
    init(_ s: CLISandbox, _ args: [String], in directory: String, environment extra: [String: String], unblockingSignals: Bool = false) throws {
        if unblockingSignals {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            process.arguments = ["-c", "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execv(sys.argv[1], sys.argv[1:])",
                                 CLISandbox.binary] + args
        } else {
            process.executableURL = URL(fileURLWithPath: CLISandbox.binary)
            process.arguments = args
        }
        process.currentDirectoryURL = URL(fileURLWithPath: s.path(directory))
        var env = ProcessInfo.processInfo.environment
        for (k, v) in s.environment { env[k] = v }
        for (k, v) in extra { env[k] = v }
        process.environment = env
        process.standardInput = input
        process.standardOutput = output
        process.standardError = errors
        try process.run()
    }

    deinit {
        // A test that failed half-way must not leave a paused process behind.
        if process.isRunning { process.terminate() }
    }

    /// Reads standard error until the process says it paused at `point`; false when it ended first.
    func waitUntilPaused(at point: String) -> Bool {
        while !errorText.contains("mrepo: paused at \(point)\n") {
            let data = errors.fileHandleForReading.availableData
            if data.isEmpty { return false }
            errorText += String(decoding: data, as: UTF8.self)
        }
        return true
    }

    /// Lets a paused process go on (once: a paused process reads one line).
    func resume() {
        guard !resumed, process.isRunning else { return }
        resumed = true
        input.fileHandleForWriting.write(Data("\n".utf8))
    }

    /// Waits for the end; the status is negative for a signal, as `CLISandbox.run` reports it.
    func finish() -> CLIResult {
        resumed = true
        try? input.fileHandleForWriting.close()
        let out = output.fileHandleForReading.readDataToEndOfFile()
        let err = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let status = process.terminationReason == .uncaughtSignal ? -process.terminationStatus : process.terminationStatus
        return CLIResult(status: status, stdout: String(decoding: out, as: UTF8.self),
                         stderr: errorText + String(decoding: err, as: UTF8.self))
    }
}

/// Readers that need objects to stay (export, diff, status) hold `.mrepo/gc.lock` shared; gc
/// holds it exclusively, so it never deletes what a reader is reading.
@Suite struct ReaderLockTests {
    /// base on main, math on the branch math, which HEAD is on.
    func baseAndMath() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        try s.ok(["switch", "-q", "-c", "math"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../family/math", "-m", "math"], in: "repo")
        return s
    }

    @Test func gcWaitsForAnExportItWouldPull() throws {
        let s = try baseAndMath()
        let math = String(try s.ok(["log", "--oneline", "-n", "1"], in: "repo").stdout.prefix(12))
        try s.ok(["switch", "-q", "main"], in: "repo")

        // The export has resolved the commit and read its tree, and holds the read lock.
        let export = try RunningCommand(s, ["export", "-q", math, "../out"], in: "repo", environment: ["MREPO_PAUSE_AT": "export.resolved"])
        #expect(export.waitUntilPaused(at: "export.resolved"))
        // Now nothing but the export reaches the commit: a gc would delete every object it needs.
        try s.ok(["branch", "-q", "-D", "math"], in: "repo")
        let gc = try RunningCommand(s, ["gc", "--prune-reflog"], in: "repo", environment: ["MREPO_PAUSE_AT": "gc.wait-readers"])
        // gc found the reader (its lock attempt failed) and waits for it.
        #expect(gc.waitUntilPaused(at: "gc.wait-readers"), "gc did not wait for the reader")
        gc.resume()

        export.resume()
        let exported = export.finish()
        #expect(exported.status == 0, "the export failed: \(exported.stderr)")
        #expect(s.sameFiles("out", "family/math"), "the export is not the committed model")

        let collected = gc.finish()
        #expect(collected.status == 0, "gc failed: \(collected.stderr)")
        #expect(collected.stdout.contains("removed 1 commit,"), "gc ran after the export: \(collected.stdout)")
        #expect(collected.stderr.contains("waiting for commands reading the repository"))
        expectOneLineError(try s.run(["export", math, "../again"], in: "repo"), contains: "unknown revision")
        try s.ok(["fsck"], in: "repo")
    }

    /// flock grants a shared lock while an exclusive one waits, so readers that keep overlapping
    /// held gc off for ever. Past its grace (0 here), gc claims `.mrepo/gc.intent`: a reader
    /// started then waits for gc, which runs as soon as the readers it waited for end.
    @Test func gcGoesBeforeReadersThatStartAfterItsGrace() throws {
        let s = try baseAndMath()
        let export = try RunningCommand(s, ["export", "-q", "HEAD", "../out"], in: "repo", environment: ["MREPO_PAUSE_AT": "export.resolved"])
        #expect(export.waitUntilPaused(at: "export.resolved"))
        try s.ok(["switch", "-q", "main"], in: "repo")
        try s.ok(["branch", "-q", "-D", "math"], in: "repo")
        let gc = try RunningCommand(s, ["gc", "--prune-reflog"], in: "repo",
                                    environment: ["MREPO_PAUSE_AT": "gc.priority", "MREPO_GC_GRACE_SECONDS": "0"])
        #expect(gc.waitUntilPaused(at: "gc.priority"), "gc did not claim its turn")
        // Before, this reader was let in beside the export and gc kept waiting.
        let diff = try RunningCommand(s, ["diff", "HEAD"], in: "repo", environment: ["MREPO_PAUSE_AT": "read.wait-gc"])
        #expect(diff.waitUntilPaused(at: "read.wait-gc"), "the new reader did not wait for gc")
        diff.resume()
        gc.resume()
        export.resume()
        #expect(export.finish().status == 0)
        #expect(s.sameFiles("out", "family/math"))
        let collected = gc.finish()
        #expect(collected.status == 0, "\(collected.stderr)")
        #expect(collected.stdout.contains("removed 1 commit,"), "\(collected.stdout)")
        #expect(collected.stderr.contains("readers still running after 0 s: commands that start reading now wait for this gc"), "\(collected.stderr)")
        let read = diff.finish()
        #expect(read.status == 0, "\(read.stderr)")
        #expect(read.stderr.components(separatedBy: "waiting for gc (pid \(gc.process.processIdentifier)) to finish").count == 2, "said once: \(read.stderr)")
        try s.ok(["fsck"], in: "repo")
        expectOneLineError(try s.run(["gc"], in: "repo", environment: ["MREPO_GC_GRACE_SECONDS": "soon"]), status: 64,
                           contains: "MREPO_GC_GRACE_SECONDS is 'soon'")
    }

    /// A hook ends with the command that ran it: one that never returns was left running after a
    /// `timeout`'s SIGTERM ended mrepo. (The hook holds mrepo's standard error: `finish` reads it
    /// to its end, which comes only when the hook is gone too.)
    @Test func aHookEndsWithTheCommandThatRanIt() throws {
        let s = try CLISandbox()
        try s.ok(["init", "-q", "repo"])
        let hook = s.path("repo/.mrepo/hooks/pre-commit")
        try "#!/bin/sh\necho 'mrepo: paused at hook' >&2\nexec tail -f /dev/null\n".write(toFile: hook, atomically: true, encoding: .utf8)
        chmod(hook, 0o755)
        try Data("a".utf8).write(to: URL(fileURLWithPath: s.path("repo/a.txt")))
        let commit = try RunningCommand(s, ["commit", "-m", "a"], in: "repo", environment: [:], unblockingSignals: true)
        #expect(commit.waitUntilPaused(at: "hook"))
        commit.process.terminate()
        let ended = commit.finish()
        #expect(ended.status == -SIGTERM, "\(ended.stderr)")
        #expect(try s.ok(["log"], in: "repo").stdout.contains("No commits yet"))
    }

    /// A reader started while gc deletes objects waits for it, then reads the collected repository.
    @Test func aReaderWaitsForGC() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        let gc = try RunningCommand(s, ["gc"], in: "repo", environment: ["MREPO_PAUSE_AT": "gc.recorded"])
        #expect(gc.waitUntilPaused(at: "gc.recorded"))
        // The diff finds gc's exclusive lock taken and waits.
        let diff = try RunningCommand(s, ["diff", "HEAD"], in: "repo", environment: ["MREPO_PAUSE_AT": "read.wait-gc"])
        #expect(diff.waitUntilPaused(at: "read.wait-gc"), "the reader did not wait for gc")
        diff.resume()
        gc.resume()
        #expect(gc.finish().status == 0)
        let r = diff.finish()
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("mrepo: note: waiting for gc (pid \(gc.process.processIdentifier)) to finish"))
    }
}
