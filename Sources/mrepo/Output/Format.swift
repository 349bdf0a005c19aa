import Delta
import Foundation
import Repo

/// Text formatting shared by the commands.
enum Format {
    /// `1.23 GB`, `512 kB`, `17 B` (decimal units, as model hubs print sizes).
    /// A working-tree path (relative to the top, `root`) as seen from the current folder, as git
    /// shows paths: `b` inside `sub/`, `../a` above it; unchanged from the top or from outside.
    static func fromCurrentFolder(_ path: String, root: String) -> String {
        func components(_ p: String) -> [Substring] { p.split(separator: "/") }
        let resolve = { (p: String) in URL(fileURLWithPath: p).resolvingSymlinksInPath().path }
        let top = components(resolve(root)), here = components(resolve(FileManager.default.currentDirectoryPath))
        guard here.count > top.count, Array(here.prefix(top.count)) == top else { return path }
        let inside = Array(here.dropFirst(top.count)), target = components(path)
        var common = 0
        while common < inside.count, common < target.count - 1, inside[common] == target[common] { common += 1 }
        let ups = Array(repeating: "..", count: inside.count - common)
        return (ups + target.dropFirst(common).map(String.init)).joined(separator: "/")
    }

    static func bytes(_ n: Int) -> String {
        let units = ["B", "kB", "MB", "GB", "TB"]
        var value = Double(n)
        var unit = 0
        while abs(value) >= 1000, unit < units.count - 1 {
            value /= 1000
            unit += 1
        }
        if unit == 0 { return "\(n) B" }
        return String(format: value >= 100 ? "%.0f %@" : (value >= 10 ? "%.1f %@" : "%.2f %@"), value, units[unit])
    }

    static func ratio(_ a: Int, _ b: Int) -> String {
        guard b > 0 else { return "-" }
        return String(format: "%.3f", Double(a) / Double(b))
    }

    static func number(_ x: Double?, digits: Int = 3) -> String {
        guard let x, x.isFinite else { return "-" }
        if x == 0 { return "0" }
        if abs(x) >= 1e-3 && abs(x) < 1e5 { return String(format: "%.\(digits)f", x) }
        return String(format: "%.\(max(1, digits - 1))e", x)
    }

    /// A recorded metric, exactly: the shortest text that reads back as the same number (`1.83`,
    /// `123456789.5`, `1.2345e-05`), whole numbers without a fraction (`1000`).
    static func metric(_ x: Double) -> String {
        if x.isFinite, x == x.rounded(), abs(x) < 1e15 { return String(Int64(x)) }
        return "\(x)"
    }

    static func percent(_ x: Double?) -> String {
        guard let x else { return "-" }
        if x > 0 && x < 0.001 { return "<0.1%" }
        return String(format: "%.1f%%", x * 100)
    }

    static func date(_ timestamp: Double) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss Z"
        return f.string(from: Date(timeIntervalSince1970: timestamp))
    }

    static func iso(_ timestamp: Double) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: Date(timeIntervalSince1970: timestamp))
    }

    /// `text` followed by spaces up to `width` characters; longer text is left whole. (Foundation's
    /// `padding(toLength:)` counts UTF-16 units and cuts: a name with a combining accent lost its
    /// last character.)
    static func pad(_ text: String, _ width: Int) -> String {
        text + String(repeating: " ", count: max(0, width - visibleCount(text)))
    }

    /// The characters a terminal shows: colour codes (`ESC [ … m`, ``Terminal/paint(_:_:)``) take no column.
    static func visibleCount(_ text: String) -> Int {
        guard text.contains("\u{1B}") else { return text.count }
        var count = 0, inEscape = false
        for ch in text {
            if inEscape {
                if ch == "m" { inEscape = false }
            } else if ch == "\u{1B}" {
                inEscape = true
            } else {
                count += 1
            }
        }
        return count
    }

    /// Left-aligned columns; columns listed in `right` are right-aligned.
    static func table(_ header: [String], _ rows: [[String]], right: Set<Int> = []) -> String {
        let all = [header] + rows
        let widths = header.indices.map { c in all.map { $0.indices.contains(c) ? visibleCount($0[c]) : 0 }.max() ?? 0 }
        return all.map { row in
            row.enumerated().map { c, cell in
                let pad = String(repeating: " ", count: max(0, widths[c] - visibleCount(cell)))
                return right.contains(c) ? pad + cell : cell + (c == row.count - 1 ? "" : pad)
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }

    /// A number as it was given: `16` for a whole one, else Swift's shortest exact form (`0.05`).
    static func plain(_ x: Double) -> String {
        if x.isFinite, x == x.rounded(), abs(x) < 1e15 { return String(Int(x)) }
        return "\(x)"
    }

    static func shape(_ s: Shape?) -> String {
        guard let s else { return "-" }
        return "[" + s.map(String.init).joined(separator: ", ") + "]"
    }
}
