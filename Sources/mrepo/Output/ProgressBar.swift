import Foundation
import Repo

/// Draws a progress bar with throughput and ETA on standard error, when standard error is a
/// terminal (as git and tqdm do: `mrepo commit ... | tee log` still shows it). Quiet otherwise.
final class ProgressBar: ProgressSink, @unchecked Sendable {
    private let lock = NSLock()
    private var title = ""
    private var total = 0
    private var unit = ProgressUnit.bytes
    private var started = Date()
    private var lastDraw = Date.distantPast
    private var drawn = false

    /// A bar if standard error is a terminal and output is not suppressed, else nil.
    static func make(quiet: Bool) -> ProgressBar? {
        guard !quiet, isatty(STDERR_FILENO) == 1 else { return nil }
        return ProgressBar()
    }

    func start(_ title: String, total: Int, unit: ProgressUnit) {
        lock.lock()
        defer { lock.unlock() }
        self.title = title
        self.total = total
        self.unit = unit
        started = Date()
        lastDraw = .distantPast
        drawn = false
    }

    func update(_ done: Int) {
        lock.lock()
        defer { lock.unlock() }
        let now = Date()
        guard now.timeIntervalSince(lastDraw) >= 0.1, now.timeIntervalSince(started) >= 0.3 else { return }
        lastDraw = now
        draw(done, now: now)
    }

    func finish() {
        lock.lock()
        defer { lock.unlock() }
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        drawn = false
    }

    private func draw(_ done: Int, now: Date) {
        let elapsed = max(now.timeIntervalSince(started), 1e-3)
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
        drawn = true
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 60 ? "\(s / 60)m\(String(format: "%02d", s % 60))s" : "\(s)s"
    }
}
