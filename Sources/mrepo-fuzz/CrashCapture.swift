#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Foundation
import Synchronization

/// Keeps the input being run where a signal handler can reach it, so a crash, a trap or a hang
/// leaves the input behind as a file: the one thing needed to reproduce it.
///
/// Everything the handler touches is allocated up front; the handler itself only calls
/// async-signal-safe functions (open, write, close, signal, raise, _exit).
enum CrashCapture {
    nonisolated(unsafe) static var buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: 1)
    nonisolated(unsafe) static var capacity = 1
    nonisolated(unsafe) static var length = 0
    nonisolated(unsafe) static var iteration = 0
    /// True while the driver makes the next input (a crash there is the mutator's, not the target's).
    nonisolated(unsafe) static var mutating = false
    nonisolated(unsafe) static var crashPath: UnsafeMutablePointer<CChar>?
    nonisolated(unsafe) static var hangPath: UnsafeMutablePointer<CChar>?
    nonisolated(unsafe) static var altStack: UnsafeMutableRawPointer?

    /// Nanoseconds (monotonic) when the current input started; 0 between inputs.
    static let startedAt = Atomic<UInt64>(0)

    /// Prepares the handlers for one target; crashing inputs go to `<folder>/crash-<target>`,
    /// inputs that run longer than `hangSeconds` to `<folder>/hang-<target>` (then the process exits 3).
    static func install(folder: String, target: String, maxInputBytes: Int, hangSeconds: Double) {
        buffer.deallocate()
        buffer = .allocate(capacity: max(1, maxInputBytes))
        capacity = max(1, maxInputBytes)
        crashPath = strdup(folder + "/crash-" + target)
        hangPath = strdup(folder + "/hang-" + target)
        if altStack == nil {
            // A stack overflow leaves no stack for the handler: give it its own.
            let size = 1 << 16
            altStack = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
            var ss = stack_t()
            ss.ss_sp = altStack
            ss.ss_size = size
            ss.ss_flags = 0
            sigaltstack(&ss, nil)
        }
        for sig in [SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGABRT, SIGFPE] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { sig in CrashCapture.handle(sig) }
            action.sa_flags = Int32(truncatingIfNeeded: Int(SA_ONSTACK) | Int(SA_NODEFER) | Int(SA_RESETHAND))
            sigemptyset(&action.sa_mask)
            sigaction(sig, &action, nil)
        }
        if hangSeconds > 0 { startWatchdog(limit: UInt64(hangSeconds * 1e9)) }
    }

    /// Called before each input.
    static func willRun(_ input: [UInt8], iteration: Int) {
        let n = min(input.count, capacity)
        input.withUnsafeBufferPointer { buffer.update(from: $0.baseAddress!, count: n) }
        length = n
        CrashCapture.iteration = iteration
        mutating = false
        startedAt.store(DispatchTime.now().uptimeNanoseconds, ordering: .releasing)
    }

    /// Called before the driver makes the input of `iteration`.
    static func willMutate(iteration: Int) {
        CrashCapture.iteration = iteration
        mutating = true
    }

    static func didRun() {
        startedAt.store(0, ordering: .releasing)
    }

    /// Saves the input, says where, and lets the signal take its course (the default action).
    static func handle(_ sig: Int32) {
        say("mrepo-fuzz: signal ")
        sayNumber(Int(sig))
        if mutating {
            // The mutator's own bug: the same seed and iteration count reproduce it.
            say(" while making the input of iteration ")
            sayNumber(iteration)
            say(" (a bug in the mutator; rerun with the same seed)\n")
            signal(sig, SIG_DFL)
            raise(sig)
            return
        }
        save(to: crashPath)
        say(" at iteration ")
        sayNumber(iteration)
        say("; input saved to ")
        if let crashPath { _ = write(2, crashPath, strlen(crashPath)) }
        say("\n")
        signal(sig, SIG_DFL)
        raise(sig)
    }

    static func save(to path: UnsafeMutablePointer<CChar>?) {
        guard let path else { return }
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return }
        _ = write(fd, buffer, length)
        close(fd)
    }

    static func say(_ text: StaticString) {
        _ = write(2, text.utf8Start, text.utf8CodeUnitCount)
    }

    /// Writes a decimal number without allocating.
    static func sayNumber(_ value: Int) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)  // 24 bytes of stack
        withUnsafeMutableBytes(of: &digits) { raw in
            var v = value < 0 ? -value : value
            var i = raw.count
            repeat {
                i -= 1
                raw[i] = UInt8(48 + v % 10)
                v /= 10
            } while v > 0 && i > 1
            if value < 0 { i -= 1; raw[i] = UInt8(ascii: "-") }
            _ = write(2, raw.baseAddress! + i, raw.count - i)
        }
    }

    /// A thread that ends the process when one input runs longer than `limit` nanoseconds.
    static func startWatchdog(limit: UInt64) {
        let thread = Thread {
            while true {
                usleep(200_000)
                let started = startedAt.load(ordering: .acquiring)
                guard started > 0 else { continue }
                let now = DispatchTime.now().uptimeNanoseconds
                if now > started, now - started > limit {
                    save(to: hangPath)
                    say("mrepo-fuzz: iteration ")
                    sayNumber(iteration)
                    say(" has run for more than the hang limit; input saved to ")
                    if let hangPath { _ = write(2, hangPath, strlen(hangPath)) }
                    say("\n")
                    _exit(3)
                }
            }
        }
        thread.start()
    }

    /// Caps the address space, so a parser that allocates far more than its input warrants fails
    /// (and is caught above) instead of swapping or being killed by the OOM killer.
    static func limitMemory(megabytes: Int) {
        guard megabytes > 0 else { return }
        var limit = rlimit(rlim_cur: rlim_t(megabytes) << 20, rlim_max: rlim_t(megabytes) << 20)
        if setrlimit(Int32(RLIMIT_AS.rawValue), &limit) != 0 {
            FileHandle.standardError.write(Data("mrepo-fuzz: cannot limit memory: \(String(cString: strerror(errno)))\n".utf8))
        }
    }
}
