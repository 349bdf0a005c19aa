import Foundation
import Repo

typealias RefNamesCheck = RefNames

/// A request path split into percent-decoded components, and the query.
///
/// The raw path is split on `/` before decoding, so an encoded slash (`%2F`, as clients send
/// revisions like `feature%2Fx`) stays inside its component. A component that decodes to `.`, `..`,
/// or holds NUL, a control character or (for file paths) a backslash is refused, whether it came
/// encoded or not.
struct RequestPath {
    var components: [String]
    var query: [String: String]

    init(rawPath: String, rawQuery: String?) throws {
        let parts = rawPath.split(separator: "/", omittingEmptySubsequences: false).dropFirst()
        var components: [String] = []
        for (i, part) in parts.enumerated() {
            // A trailing slash leaves one empty component: ignore it; any other empty one is refused.
            if part.isEmpty && i == parts.count - 1 { continue }
            guard let decoded = RequestPath.percentDecode(part) else { throw HubError.badRequest("malformed percent-encoding in the path") }
            guard !decoded.isEmpty, decoded != ".", decoded != "..",
                  !decoded.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                throw HubError.badRequest("invalid path component")
            }
            components.append(decoded)
        }
        self.components = components
        var query: [String: String] = [:]
        for pair in (rawQuery ?? "").split(separator: "&") {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = RequestPath.percentDecode(kv[0].replacingOccurrences(of: "+", with: " ")[...]) ?? ""
            let value = kv.count > 1 ? RequestPath.percentDecode(kv[1].replacingOccurrences(of: "+", with: " ")[...]) ?? "" : ""
            query[key] = value
        }
        self.query = query
    }

    /// A path inside a repository from the remaining components: each already checked; joined
    /// with `/`, with no backslash (a file name on no system mrepo writes to).
    static func repoPath(_ components: ArraySlice<String>) throws -> String {
        let path = components.joined(separator: "/")
        // Components may hold decoded slashes: check the pieces of the joined path again.
        for piece in path.split(separator: "/", omittingEmptySubsequences: false) {
            guard !piece.isEmpty, piece != ".", piece != "..", !piece.contains("\\") else {
                throw HubError.badRequest("invalid file path")
            }
        }
        return path
    }

    /// A revision from a URL: a branch or tag name by mrepo's rules, or a hex commit id.
    static func revision(_ text: String) throws -> String {
        if text.count <= 64, text.allSatisfy(\.isHexDigit) { return text }
        guard text.utf8.count <= 255, (try? RefNamesCheck.validate(text)) != nil else {
            throw HubError.revisionNotFound(text)
        }
        return text
    }

    /// Decodes `%XX` escapes into UTF-8; nil when an escape is malformed or the result is not UTF-8.
    static func percentDecode(_ text: Substring) -> String? {
        var bytes: [UInt8] = []
        var it = Array(text.utf8)[...]
        while let b = it.popFirst() {
            if b == UInt8(ascii: "%") {
                guard it.count >= 2, let hi = hexValue(it.popFirst()!), let lo = hexValue(it.popFirst()!) else { return nil }
                bytes.append(hi << 4 | lo)
            } else {
                bytes.append(b)
            }
        }
        return String(validating: bytes, as: UTF8.self)
    }

    private static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// Percent-encodes a path for a URL (`/` kept).
    static func encode(_ path: String, keepSlash: Bool = true) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~" + (keepSlash ? "/" : ""))
        var out = ""
        for b in path.utf8 {
            let s = Unicode.Scalar(b)
            if b < 0x80, allowed.contains(s) { out.append(Character(s)) } else { out += String(format: "%%%02X", b) }
        }
        return out
    }
}
