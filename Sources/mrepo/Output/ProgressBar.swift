import Foundation
import Repo
import Synchronization

/// Draws a progress bar with throughput and ETA on standard error, when standard output is a
/// terminal. Quiet otherwise, so pipes and scripts see only the result.
final class ProgressBar: ProgressSink, Sendable {
    /// What is drawn; updates come from worker threads.
    private struct State {
        var title = ""
        var total = 0
        var unit = ProgressUnit.bytes
        var started = Date()
        var lastDraw = Date.distantPast
        var drawn = false
    }

    private let state = Mutex(State())

    /// A bar if standard error is a terminal and output is not suppressed, else nil.
    static func make(quiet: Bool) -> ProgressBar? {
        guard !quiet, isatty(STDERR_FILENO) == 1 else { return nil }
        return ProgressBar()
    }

    func start(_ title: String, total: Int, unit: ProgressUnit) {
        state.withLock { s in
            s = State(title: title, total: total, unit: unit, started: Date(), lastDraw: .distantPast, drawn: false)
        }
    }

    func update(_ done: Int) {
        state.withLock { s in
            let now = Date()
            guard now.timeIntervalSince(s.lastDraw) >= 0.1, now.timeIntervalSince(s.started) >= 0.3 else { return }
            s.lastDraw = now
            ProgressBar.draw(done, now: now, &s)
        }
    }

    func finish() {
        state.withLock { s in
            if s.drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
            s.drawn = false
        }
    }

    private static func draw(_ done: Int, now: Date, _ s: inout State) {
        let (total, unit, title) = (s.total, s.unit, s.title)
        let elapsed = max(now.timeIntervalSince(s.started), 1e-3)
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 0
        let width = 24
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "=", count: filled) + (filled < width ? ">" : "") + String(repeating: " ", count: max(0, width - filled - 1))
        let rate = Double(done) / elapsed
        let eta = rate > 0 && total > done ? Double(total - done) / rate : 0
        let amounts = unit == .bytes
            ? "\(Format.bytes(done))/\(Format.bytes(total))  \(Format.bytes(Int(rate)))/s"
            : "\(done)/\(total)  \(String(format: "%.1f", rate))/s"
        let line = String(format: "%@ [%@] %3.0f%%  %@  ETA %@", title, bar, fraction * 100, amounts, ProgressBar.duration(eta))
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
        s.drawn = true
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 60 ? "\(s / 60)m\(String(format: "%02d", s % 60))s" : "\(s)s"
    }
}
