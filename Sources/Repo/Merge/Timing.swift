import Foundation
import Synchronization

/// Phase timings for `MREPO_DEBUG_TIMING=1` (printed at exit of a merge): wall time, and the
/// CPU time of every thread of the process over the same span.
enum Timing {
    /// Phases may end on several threads at once (tensors merged in parallel).
    static let totals = Mutex<[String: (wall: Double, cpu: Double)]>([:])
    static let enabled = getenv("MREPO_DEBUG_TIMING") != nil

    /// A point in time: wall clock and process CPU.
    struct Mark {
        var wall: Double
        var cpu: Double
    }

    static func now() -> Mark {
        guard enabled else { return Mark(wall: 0, cpu: 0) }
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        var cpu = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu)
        return Mark(wall: Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9, cpu: Double(cpu.tv_sec) + Double(cpu.tv_nsec) * 1e-9)
    }

    /// Adds the span from `start` to now to `phase`.
    static func add(_ phase: String, since start: Mark) {
        guard enabled else { return }
        let end = now()
        totals.withLock { t in
            let old = t[phase] ?? (0, 0)
            t[phase] = (old.wall + end.wall - start.wall, old.cpu + end.cpu - start.cpu)
        }
    }

    /// Wall seconds only (callers that time with `Date`).
    static func add(_ phase: String, _ seconds: Double) {
        guard enabled else { return }
        totals.withLock { t in
            let old = t[phase] ?? (0, 0)
            t[phase] = (old.wall + seconds, old.cpu)
        }
    }

    static func report() {
        guard enabled else { return }
        for (k, v) in totals.withLock({ $0 }).sorted(by: { $0.key < $1.key }) {
            FileHandle.standardError.write(Data("\(k): \(String(format: "%.3f", v.wall)) s wall, \(String(format: "%.3f", v.cpu)) s cpu\n".utf8))
        }
        var cpu = timespec()
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu)
        FileHandle.standardError.write(Data("process cpu so far: \(String(format: "%.3f", Double(cpu.tv_sec) + Double(cpu.tv_nsec) * 1e-9)) s\n".utf8))
    }
}
