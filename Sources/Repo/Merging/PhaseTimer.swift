import Foundation
import Synchronization

/// Wall time spent in each phase of one merge, for `MREPO_DEBUG_TIMING=1`.
///
/// One timer per operation, passed to what it times (``MergeContext/timer``), never a global: two
/// merges in one process (the tests) keep separate totals, and phases timed on worker threads add
/// up under the lock. The totals travel back in ``MergeOutcome/phaseTimes``; the command line prints
/// them, the library does not.
public final class PhaseTimer: Sendable {
    /// One phase's total.
    public struct Phase: Sendable, Equatable {
        public var name: String
        public var seconds: Double
    }

    /// False: every call returns at once and nothing is kept.
    public let isEnabled: Bool
    private let totals = Mutex<[String: Double]>([:])

    public init(enabled: Bool) {
        isEnabled = enabled
    }

    /// A timer that keeps nothing (the default of a merge context).
    static let disabled = PhaseTimer(enabled: false)

    /// Enabled when `MREPO_DEBUG_TIMING` is set.
    static func fromEnvironment() -> PhaseTimer {
        PhaseTimer(enabled: ProcessInfo.processInfo.environment["MREPO_DEBUG_TIMING"] != nil)
    }

    /// The start of a span (a constant when disabled, so the clock is not read).
    func now() -> Date {
        isEnabled ? Date() : .distantPast
    }

    /// Adds the time from `start` to now to `phase`.
    func add(_ phase: String, since start: Date) {
        guard isEnabled else { return }
        let seconds = Date().timeIntervalSince(start)
        totals.withLock { $0[phase, default: 0] += seconds }
    }

    /// The phases by name.
    public var phases: [Phase] {
        totals.withLock { $0 }.sorted { $0.key < $1.key }.map { Phase(name: $0.key, seconds: $0.value) }
    }
}
