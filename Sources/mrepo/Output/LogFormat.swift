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
                out += metrics.first { $0.name == name }.map { Format.number($0.value, digits: 4) } ?? ""
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

/// `log --graph`: one column per line of history being followed, drawn with `*`, `|`, `\` and `/`.
struct LogGraph {
    /// The commit each column waits for.
    private var columns: [ObjectID] = []

    /// The lines before the commit (columns joining), the commit's own prefix, and the lines after
    /// it (a merge opening columns for its further parents).
    mutating func draw(_ id: ObjectID, parents: [ObjectID]) -> (before: [String], commit: String, after: [String]) {
        var before: [String] = []
        var col = columns.firstIndex(of: id) ?? {
            columns.append(id)
            return columns.count - 1
        }()
        // Several children led here: their columns join this one.
        let joining = columns.indices.filter { $0 != col && columns[$0] == id }
        if !joining.isEmpty {
            // A joining column leans toward the one on its left.
            var chars = [Character](repeating: " ", count: 2 * columns.count - 1)
            for i in columns.indices {
                if joining.contains(i), i > 0 { chars[2 * i - 1] = "/" } else { chars[2 * i] = "|" }
            }
            before.append(String(String(chars).reversed().drop { $0 == " " }.reversed()))
            for i in joining.reversed() {
                columns.remove(at: i)
                if i < col { col -= 1 }
            }
        }
        let commitLine = columns.indices.map { $0 == col ? "*" : "|" }.joined(separator: " ")
        var after: [String] = []
        if parents.isEmpty {
            columns.remove(at: col)
        } else {
            columns[col] = parents[0]
            let extra = Array(parents.dropFirst())
            if !extra.isEmpty {
                // A merge: one new column per further parent, right of this one (an octopus gets several).
                let left = columns[..<col].map { _ in "|" }
                let right = columns[(col + 1)...].map { _ in "\\" }
                var line = (left + ["|"]).joined(separator: " ")
                line += extra.count == 1 ? "\\" : "\\" + String(repeating: "-.", count: 1) + String(repeating: " \\", count: extra.count - 2)
                if !right.isEmpty { line += " " + right.joined(separator: " ") }
                after.append(line)
                if extra.count > 1 {
                    after.append((left + ["|"] + extra.map { _ in "\\" } + right).joined(separator: " "))
                }
                columns.insert(contentsOf: extra, at: col + 1)
            }
        }
        return (before, commitLine, after)
    }

    /// The prefix of a text line below a commit: one `|` per open column.
    var padding: String { columns.map { _ in "|" }.joined(separator: " ") }
}
