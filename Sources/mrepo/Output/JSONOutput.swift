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

/// Prints a `--json` document (an `Encodable` type) to standard output, members in declaration order.
func printJSON(_ value: some Encodable) throws {
    let json: JSONValue
    do {
        json = try JSONValueCoding.encode(value)
    } catch {
        throw RepoError.failed("cannot print the result as JSON: \(error)")
    }
    print(json.prettySerialized())
}

/// A number member that `--json` prints as `null` when absent or not finite (a cosine of a zero
/// vector, a ratio of nothing): JSON has no NaN, and a script reads `null` as "not measured".
struct Number: Encodable {
    var value: Double?

    init(_ value: Double?) { self.value = value }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        if let value, value.isFinite { try c.encode(value) } else { try c.encodeNil() }
    }
}

/// A document that prints a few members of the command's own before a library report's
/// members, in one object (`merge --json`: the outcome, then the conflict report).
struct PrefixedDocument<Head: Encodable, Body: Encodable>: Encodable {
    var head: Head
    var body: Body

    func encode(to encoder: any Encoder) throws {
        try head.encode(to: encoder)
        try body.encode(to: encoder)
    }
}

/// What a failed command prints on standard error with `--json`, on one line: the message `mrepo:
/// error:` would print, and the exit status.
struct ErrorDocument: Encodable {
    var error: String
    var code: Int
}
