import Delta
import Foundation

/// What a client may do.
public enum Access: Int, Sendable, Comparable {
    case read = 1
    case write = 2

    public static func < (a: Access, b: Access) -> Bool { a.rawValue < b.rawValue }
}

/// The tokens of `--tokens FILE`: one `TOKEN read|write` per line (`#` comments, blank lines).
///
/// Only SHA-256 digests of the tokens are kept, and a presented token is compared with every one of
/// them in constant time (no early exit, no branch on the bytes), so neither memory nor timing tells
/// a token. Tokens are never logged.
public struct TokenStore: Sendable {
    private let entries: [(digest: [UInt8], access: Access)]

    public init(entries: [(token: String, access: Access)]) {
        self.entries = entries.map { (SHA256.hash(Array($0.token.utf8)).bytes, $0.access) }
    }

    /// Reads a tokens file; a malformed line is an error naming the file and the line number
    /// (never the token).
    public static func load(path: String) throws -> TokenStore {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ServeError.invalidConfiguration("\(path): cannot read the tokens file")
        }
        var entries: [(token: String, access: Access)] = []
        var lineOf: [String: Int] = [:]
        // "\r\n" is one Character in Swift: split on it too.
        for (i, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" }).enumerated() {
            // A file written on Windows ends its lines with CR LF; a lone CR is stripped too.
            let line = raw.trimmingCharacters(in: .whitespaces.union(CharacterSet(charactersIn: "\r")))
            if line.isEmpty || line.hasPrefix("#") { continue }
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count == 2 else {
                throw ServeError.invalidConfiguration("\(path):\(i + 1): expected 'TOKEN read' or 'TOKEN write'")
            }
            let access: Access
            switch parts[1] {
            case "read": access = .read
            case "write": access = .write
            default: throw ServeError.invalidConfiguration("\(path):\(i + 1): the access must be 'read' or 'write'")
            }
            guard parts[0].count >= 8, parts[0].allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
                throw ServeError.invalidConfiguration("\(path):\(i + 1): a token must be at least 8 printable ASCII characters")
            }
            // Listed twice, the token would get the greater access whatever the other line says.
            if let first = lineOf[String(parts[0])] {
                throw ServeError.invalidConfiguration("\(path):\(i + 1): this token is listed already on line \(first); list each token once")
            }
            lineOf[String(parts[0])] = i + 1
            entries.append((String(parts[0]), access))
        }
        guard !entries.isEmpty else { throw ServeError.invalidConfiguration("\(path): no tokens") }
        return TokenStore(entries: entries)
    }

    public var count: Int { entries.count }

    /// The access a token grants, or nil for an unknown token.
    public func access(for token: String) -> Access? {
        let candidate = SHA256.hash(Array(token.utf8)).bytes
        var granted = 0
        for entry in entries {
            var difference: UInt8 = 0
            for i in 0..<32 { difference |= entry.digest[i] ^ candidate[i] }
            // 1 when equal, 0 otherwise, computed without a branch on the bytes.
            let equal = Int(((UInt16(difference) &- 1) >> 8) & 1)
            granted |= equal * entry.access.rawValue
        }
        return granted == 0 ? nil : Access(rawValue: granted & 2 != 0 ? 2 : 1)
    }
}

/// A configuration error of `mrepo serve` (bad tokens file, unusable root), one line.
public struct ServeError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public static func invalidConfiguration(_ message: String) -> ServeError { ServeError(description: message) }
}
