import Delta
import Foundation
import Repo

/// The numeric diff as `diff` and `log -p` print it.
enum DiffPrinter {
    /// Whether anything differs: a file or a tensor.
    static func isDifferent(_ report: DiffReport) -> Bool {
        !report.files.isEmpty || !report.changedTensors.isEmpty
    }

    /// The tensor table and its summary (`indent` prefixes every line).
    static func lines(_ report: DiffReport, all: Bool, header: Bool = true) -> [String] {
        var out: [String] = []
        let shown = all ? report.tensors : report.changedTensors
        if header {
            // The merge base says something only where the two diverged (not on a line of history).
            let base = report.mergeBase.flatMap { $0 == report.oldCommit || $0 == report.newCommit ? nil : $0 }
            out.append("diff \(report.oldName) → \(report.newName)" + (base.map { " (merge base \($0.short))" } ?? ""))
        }
        for f in report.files where f.status != .unchanged {
            out.append("  file \(f.status.rawValue): \(f.path)")
        }
        if shown.isEmpty {
            out.append("no tensor differs")
            return out
        }
        let hasCos = shown.contains { $0.cosine != nil }
        // A name several files hold is shown with its file.
        let ambiguous = Set(Dictionary(grouping: report.tensors, by: \.name).filter { $0.value.count > 1 }.keys)
        var head = ["", "tensor", "shape", "‖Δ‖", "rel", "changed"]
        if hasCos { head.append("cos") }
        let rows = shown.map { t -> [String] in
            let mark: String
            switch t.status {
            case .added: mark = Terminal.paint("A", "32")
            case .removed: mark = Terminal.paint("D", "31")
            case .changed: mark = Terminal.paint("M", "33")
            case .retyped: mark = Terminal.paint("T", "35")
            case .unchanged: mark = " "
            }
            var shape = Format.shape(t.newShape ?? t.oldShape)
            if t.status == .retyped {
                shape = "\(t.oldDType?.rawValue ?? "") \(Format.shape(t.oldShape)) → \(t.newDType?.rawValue ?? "") \(Format.shape(t.newShape))"
            }
            var row = [mark, ambiguous.contains(t.name) ? "\(t.path): \(t.name)" : t.name, shape, Format.number(t.changeNorm, digits: 4), Format.number(t.relativeChange), Format.percent(t.changedFraction)]
            if hasCos { row.append(Format.number(t.cosine)) }
            return row
        }
        out += Format.table(head, rows, right: [3, 4, 5, 6]).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let counts = Dictionary(grouping: report.tensors, by: \.status).mapValues(\.count)
        out.append("\(counts[.changed] ?? 0) changed, \(counts[.added] ?? 0) added, \(counts[.removed] ?? 0) removed, "
            + "\(counts[.retyped] ?? 0) retyped, \(counts[.unchanged] ?? 0) unchanged")
        return out
    }

    /// `--stat`: one line per file that differs, with how many of its tensors changed.
    /// The paths of the files that differ (a changed tensor, or the file itself), sorted: git's
    /// `--name-only`.
    static func changedPaths(_ report: DiffReport) -> [String] {
        Set(report.changedTensors.map(\.path)).union(report.files.map(\.path)).sorted()
    }

    static func statLines(_ report: DiffReport) -> [String] {
        var byPath: [String: Int] = [:]
        for t in report.changedTensors { byPath[t.path, default: 0] += 1 }
        let paths = changedPaths(report)
        let width = paths.map(\.count).max() ?? 0
        var out = paths.map { p -> String in
            let status = report.files.first { $0.path == p }?.status.rawValue
            let n = byPath[p] ?? 0
            return " \(Format.pad(p, width)) | \(n) tensor\(n == 1 ? "" : "s") changed" + (status.map { " (file \($0))" } ?? "")
        }
        out.append(" \(paths.count) file\(paths.count == 1 ? "" : "s") changed, \(report.changedTensors.count) tensor\(report.changedTensors.count == 1 ? "" : "s") changed")
        return out
    }
}
