import Delta

/// Reading stored records (merge reports, recipes) back into their `Codable` types: one place
/// that turns "does not parse" and "does not decode" into a named error, so a damaged record is
/// never read as absent or as defaults.
public enum StoredRecord {
    /// The record `T` held in `json`.
    /// - Parameter what: names the record in the error (`the report of merge 1a2b3c4d`).
    /// - Throws: ``MergeError/corruptRecord(_:problem:)`` naming `what` and the member that does not fit.
    public static func decode<T: Decodable>(_ type: T.Type, from json: JSONValue, what: String) throws(MergeError) -> T {
        do {
            return try JSONValueCoding.decode(T.self, from: json)
        } catch {
            throw .corruptRecord(what, problem: problem(error))
        }
    }

    /// The record `T` held in the JSON text `bytes`.
    public static func decode<T: Decodable>(_ type: T.Type, fromJSON bytes: [UInt8], what: String) throws(MergeError) -> T {
        let json: JSONValue
        do {
            json = try JSONValue.parse(bytes)
        } catch {
            throw .corruptRecord(what, problem: "not JSON: \(problem(error))")
        }
        return try decode(T.self, from: json, what: what)
    }

    /// A decoding error in one short line: the member's path and what was wrong with it.
    public static func problem(_ error: any Error) -> String {
        let text: String
        switch error as? DecodingError {
        case let .typeMismatch(_, c)?, let .valueNotFound(_, c)?, let .dataCorrupted(c)?:
            text = path(c.codingPath) + c.debugDescription
        case let .keyNotFound(key, c)?:
            text = path(c.codingPath + [key]) + "missing"
        default:
            text = "\(error)"
        }
        return String(text.prefix(200))
    }

    private static func path(_ keys: [any CodingKey]) -> String {
        keys.isEmpty ? "" : String(keys.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined().drop { $0 == "." }) + ": "
    }
}
