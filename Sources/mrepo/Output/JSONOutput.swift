import Delta
import Foundation
import Repo

/// A member that `--json` prints as `null` when absent: the documents keep every key, so scripts
/// can test a value instead of its presence (synthesized `Encodable` would leave the key out).
struct OrNull<Value: Encodable>: Encodable {
    var value: Value?

    init(_ value: Value?) { self.value = value }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        if let value { try c.encode(value) } else { try c.encodeNil() }
    }
}

/// Prints a `--json` document (a `Codable` result type, or a ``JSONValue`` a library built) to
/// standard output, members in declaration order.
func printJSON(_ value: some Encodable) throws {
    let json: JSONValue
    do {
        json = try JSONValueCoding.encode(value)
    } catch {
        throw RepoError.failed("cannot print the result as JSON: \(error)")
    }
    print(json.prettySerialized())
}

/// Prints a JSON document built as a ``JSONValue`` (a report a library made).
func printJSON(_ value: JSONValue) throws {
    print(value.prettySerialized())
}
