import Delta
import Merge

/// What a merge made by `merge --search` records (`extra.search`, docs/format.md §3.6): the
/// search's definition, its outcome and every trial without its recipe. Members in this order:
/// the member is hashed into the commit's id.
public struct SearchRecord: CommitExtraRecord {
    public static let member = "search"

    /// The search's id in the trial store.
    public var id: String
    /// The space searched, as recorded: shown, never interpreted again (a fixed value is recorded
    /// as its text), so it stays the JSON that was written.
    public var space: JSONValue
    public var seed: UInt64
    public var objective: SearchObjective
    /// `--trials`.
    public var budget: Int
    /// The evaluation command.
    public var eval: String
    public var evaluated: Int
    public var failed: Int
    /// The winning trial's number.
    public var winner: Int
    /// Numbers of the trials no other trial dominates.
    public var front: [Int]
    public var trials: [Trial]
}

/// A search's definition as the trial store keeps it (`search.spec`, docs/format.md §6.8). Its
/// serialized text is digested to find an interrupted search again (`--continue`), so members
/// stay in this order.
public struct SearchSpec: Codable, Sendable {
    public struct Expert: Codable, Sendable, Equatable {
        public var name: String
        public var commit: ObjectID
    }

    public var experts: [Expert]
    public var base: ObjectID
    public var head: ObjectID
    /// As in ``SearchRecord/space``.
    public var space: JSONValue
    public var seed: UInt64
    public var objective: SearchObjective
    public var trials: Int
    public var eval: String
}

extension TrialStatus: Codable {}

/// A trial as the merge commit's search record and `show --trials --json` give it: without its
/// recipe and point (the trial store has those).
extension Trial: Codable {
    private enum Keys: String, CodingKey { case number, status, scores, seconds, message }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(number, forKey: .number)
        try c.encode(status, forKey: .status)
        if let scores { try c.encodeNumbers(scores.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, forKey: .scores) }
        try c.encodeNumber((seconds * 1000).rounded() / 1000, forKey: .seconds)
        try c.encodeIfPresent(message, forKey: .message)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        self.init(number: try c.decode(Int.self, forKey: .number), mergeRecipe: nil, point: [],
                  scores: try c.decodeIfPresent([String: Double].self, forKey: .scores), status: try c.decode(TrialStatus.self, forKey: .status),
                  message: try c.decodeIfPresent(String.self, forKey: .message), seconds: try c.decodeNumber(forKey: .seconds))
    }

    /// The trial as recorded (its ``Encodable`` form).
    public var json: JSONValue {
        do {
            return try JSONValueCoding.encode(self)
        } catch {
            preconditionFailure("a trial always encodes (non-finite numbers become null): \(error)")
        }
    }
}
