import ArgumentParser
import Delta
import Foundation
import Repo

/// `log --format/--pretty`: git's named styles, or a template with placeholders.
enum LogFormat: Equatable {
    case oneline, short, medium, full
    case template(String)

    init(_ text: String) throws {
        switch text {
        case "oneline": self = .oneline
        case "short": self = .short
        case "medium": self = .medium
        case "full", "fuller": self = .full
        default:
            if text.hasPrefix("format:") { self = .template(String(text.dropFirst(7))) }
            else if text.hasPrefix("tformat:") { self = .template(String(text.dropFirst(8))) }
            else if text.contains("%") { self = .template(text) }
            else { throw ValidationError("--format '\(text)': expected oneline, short, medium, full, or format:TEXT with %-placeholders") }
        }
    }

    /// Whether commits are separated by an empty line (git's multi-line styles).
    var separated: Bool {
        switch self {
        case .short, .medium, .full: return true
        default: return false
        }
    }

    /// A template with git's placeholders filled in; unknown ones are kept as written.
    static func expand(_ text: String, commit c: Commit, decoration: [String], metrics: [Commit.Metric], notes: [CommitNote]) -> String {
        var out = ""
        var rest = Substring(text)
        func take(_ prefix: String) -> Bool {
            guard rest.hasPrefix(prefix) else { return false }
            rest = rest.dropFirst(prefix.count)
            return true
        }
        let body = c.message.split(separator: "\n", omittingEmptySubsequences: false).dropFirst().drop { $0.isEmpty }.joined(separator: "\n")
        while let ch = rest.first {
            rest = rest.dropFirst()
            guard ch == "%" else {
                out.append(ch)
                continue
            }
            if take("(metric:"), let close = rest.firstIndex(of: ")") {
                let name = String(rest[..<close])
                rest = rest[rest.index(after: close)...]
                out += metrics.first { $0.name == name }.map { Format.metric($0.value) } ?? ""
            } else if take("H") { out += c.id.hex }
            else if take("h") { out += c.id.short }
            else if take("T") { out += c.treeID.hex }
            else if take("t") { out += c.treeID.short }
            else if take("P") { out += c.parents.map(\.hex).joined(separator: " ") }
            else if take("p") { out += c.parents.map(\.short).joined(separator: " ") }
            else if take("an") { out += authorName(c.author) }
            else if take("ae") { out += authorEmail(c.author) }
            else if take("ad") { out += Format.date(c.timestamp) }
            else if take("ai") { out += Format.date(c.timestamp) }
            else if take("aI") { out += Format.iso(c.timestamp) }
            else if take("at") { out += String(Int64(c.timestamp)) }
            else if take("ar") { out += relative(c.timestamp) }
            else if take("s") { out += c.subject }
            else if take("b") { out += body }
            else if take("B") { out += c.message }
            else if take("d") { out += decoration.isEmpty ? "" : " (\(decoration.joined(separator: ", ")))" }
            else if take("D") { out += decoration.joined(separator: ", ") }
            else if take("N") { out += notes.map(\.text).joined(separator: "\n") }
            else if take("n") { out += "\n" }
            else if take("%") { out += "%" }
            else if rest.hasPrefix("x"), rest.count >= 3, let byte = UInt8(rest.dropFirst().prefix(2), radix: 16), byte < 0x80 {
                // %xNN: the character NN (hex, ASCII), as git (%x09 is a tab, %x00 a NUL, for scripts).
                rest = rest.dropFirst(3)
                out.unicodeScalars.append(Unicode.Scalar(byte))
            }
            else { out += "%" }
        }
        return out
    }

    static func authorName(_ author: String) -> String {
        guard let lt = author.firstIndex(of: "<") else { return author }
        return author[..<lt].trimmingCharacters(in: .whitespaces)
    }

    static func authorEmail(_ author: String) -> String {
        guard let lt = author.firstIndex(of: "<"), let gt = author.lastIndex(of: ">"), lt < gt else { return "" }
        return String(author[author.index(after: lt)..<gt])
    }

    static func relative(_ timestamp: Double) -> String {
        let s = max(0, Date().timeIntervalSince1970 - timestamp)
        for (unit, seconds) in [("year", 31_536_000.0), ("month", 2_592_000), ("week", 604_800), ("day", 86_400), ("hour", 3_600), ("minute", 60)] where s >= seconds {
            let n = Int(s / seconds)
            return "\(n) \(unit)\(n == 1 ? "" : "s") ago"
        }
        return "\(Int(s)) seconds ago"
    }
}

/// Dates as `--since` and `--until` take them.
enum DateText {
    /// Seconds since 1970, or nil.
    static func parse(_ text: String, now: Date = Date()) -> Double? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        if let n = Double(t), t.allSatisfy({ $0.isNumber || $0 == "." }) { return n }
        if t == "now" { return now.timeIntervalSince1970 }
        if t == "yesterday" { return now.timeIntervalSince1970 - 86_400 }
        let words = t.split(separator: " ")
        if words.count == 3, words[2] == "ago", let n = Double(words[0]) {
            let unit = words[1].hasSuffix("s") ? String(words[1].dropLast()) : String(words[1])
            let seconds: [String: Double] = ["second": 1, "minute": 60, "hour": 3_600, "day": 86_400, "week": 604_800, "month": 2_592_000, "year": 31_536_000]
            guard let s = seconds[unit] else { return nil }
            return now.timeIntervalSince1970 - n * s
        }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        for pattern in ["yyyy-MM-dd'T'HH:mm:ssXXXXX", "yyyy-MM-dd'T'HH:mm:ss", "yyyy-MM-dd HH:mm:ss", "yyyy-MM-dd HH:mm", "yyyy-MM-dd"] {
            f.dateFormat = pattern
            if let d = f.date(from: text.trimmingCharacters(in: .whitespaces)) { return d.timeIntervalSince1970 }
        }
        return nil
    }
}

/// `log --graph`: one column per line of history being followed, drawn with `*`, `|`, `\` and `/`,
/// as git draws it. Lines move at most one column per row, so a line that has several columns
/// to go (a branch joining its parent further left, an octopus merge's parents) takes several
/// rows and crosses the columns on its way (`|/|`) instead of ending in another branch's column.
/// A merge whose parent another column already waits for joins that column.
struct LogGraph {
    /// The commit each column waits for.
    private var columns: [ObjectID] = []

    /// One line of history between two rows: where it is and where it goes (column indices).
    private struct Edge {
        var at: Int
        var to: Int
    }

    /// The lines before the commit (columns joining, or making room for an octopus's parents),
    /// the commit's own prefix, and the lines after it (a merge opening columns for its further
    /// parents, lines moving to their columns).
    mutating func draw(_ id: ObjectID, parents: [ObjectID]) -> (before: [String], commit: String, after: [String]) {
        var before: [String] = []
        if !columns.contains(id) { columns.append(id) }
        // Several children led here: their columns join the first one, one column per row.
        let col = columns.firstIndex(of: id)!
        let joining = columns.indices.filter { $0 != col && columns[$0] == id }
        if !joining.isEmpty {
            let kept = columns.indices.filter { !joining.contains($0) }
            let newIndex = { (i: Int) in joining.contains(i) ? col : kept.firstIndex(of: i)! }
            before += LogGraph.rows(columns.indices.map { Edge(at: $0, to: newIndex($0)) })
            columns = kept.map { columns[$0] }
        }
        // Parents other lines already wait for are joined; the others get columns of their own,
        // the first parent this column, further ones new columns on its right.
        let current = columns
        let waiting = { (p: ObjectID) in current.indices.first { current[$0] == p && $0 != col } }
        // A first parent another column to the right waits for stays in this column, and that
        // column joins it (moving left): lines only converge. One waited for on the left takes
        // this line there instead.
        let firstWaiting = parents.first.flatMap { waiting($0) }
        let first: ObjectID? = parents.first.flatMap { p in firstWaiting.map { $0 > col ? p : nil } ?? p }
        let dropped: Int? = firstWaiting.flatMap { $0 > col ? $0 : nil }
        let opened = parents.dropFirst().filter { waiting($0) == nil }.reduce(into: [ObjectID]()) { if !$0.contains($1) { $0.append($1) } }
        // The columns after the commit: the others keep their order, this one becomes its first
        // parent (or closes), the opened ones follow it.
        var next = Array(columns[..<col])
        if let first { next.append(first) }
        next += opened.filter { $0 != first }
        next += columns.indices.filter { $0 > col && $0 != dropped }.map { columns[$0] }
        let index = { (p: ObjectID) in next.firstIndex(of: p)! }
        // An octopus (two or more new columns) spreads its parents along the commit's row
        // (`*-.`, `*---.`), as git does; the columns right of it move right first to make room.
        let spread = max(0, opened.count - 1)
        let shifted = columns.indices.map { $0 > col ? $0 + spread : $0 }
        if spread > 0, col + 1 < columns.count {
            before += LogGraph.rows(columns.indices.map { Edge(at: $0, to: shifted[$0]) })
        }
        var commitLine = (0..<columns.count).map { $0 == col ? "*" : "|" }
        if spread > 0 { commitLine[col] = "*" + String(repeating: "-", count: 2 * spread - 1) + "." }
        let commit = LogGraph.join(columns.indices.map { ($0 == col ? 2 * col : 2 * shifted[$0], commitLine[$0]) })
        // The lines after the commit: each other column to its new place; from the commit, one
        // line per parent, the k-th opened one leaving from the k-th mark of the row.
        var edges: [Edge] = []
        for i in columns.indices where i != col { edges.append(Edge(at: shifted[i], to: index(columns[i]))) }
        var k = 0
        for p in parents {
            if p == first {
                edges.append(Edge(at: col, to: index(p)))
            } else if opened.contains(p) {
                edges.append(Edge(at: col + min(k, spread), to: index(p)))
                k += 1
            } else if let w = waiting(p) {
                edges.append(Edge(at: col, to: index(current[w])))
            }
        }
        columns = next
        return (before, commit, LogGraph.rows(edges, atLeastOne: parents.count > 1))
    }

    /// The rows that take every edge to its column, one step per row; none when every edge is
    /// there already (one row of `|` with `atLeastOne`, under a merge whose lines go straight on).
    private static func rows(_ edges: [Edge], atLeastOne: Bool = false) -> [String] {
        var edges = edges
        var out: [String] = []
        while edges.contains(where: { $0.at != $0.to }) || (atLeastOne && out.isEmpty && !edges.isEmpty) {
            var marks: [(Int, String)] = []
            for i in edges.indices {
                let e = edges[i]
                if e.to > e.at {
                    marks.append((2 * e.at + 1, "\\"))
                    edges[i].at += 1
                } else if e.to < e.at {
                    marks.append((2 * e.at - 1, "/"))
                    edges[i].at -= 1
                } else {
                    marks.append((2 * e.at, "|"))
                }
            }
            out.append(join(marks))
            if out.count > 4096 { break }  // a guard: every edge reaches its column in at most that many rows
        }
        return out
    }

    /// A row from marks at character positions (a cell marked twice in different ways is a crossing).
    private static func join(_ marks: [(Int, String)]) -> String {
        guard let width = marks.map({ $0.0 + $0.1.count }).max() else { return "" }
        var chars = [String](repeating: " ", count: width)
        for (at, mark) in marks {
            for (offset, c) in mark.enumerated() {
                let cell = String(c)
                chars[at + offset] = chars[at + offset] == " " || chars[at + offset] == cell ? cell : "X"
            }
        }
        return chars.joined()
    }

    /// The prefix of a text line below a commit: one `|` per open column.
    var padding: String { columns.map { _ in "|" }.joined(separator: " ") }
}
