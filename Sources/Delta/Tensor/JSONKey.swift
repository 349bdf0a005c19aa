/// A coding key spelled at run time: members whose names are data (metric names, notes, class
/// counts) in a document encoded in a fixed order.
public struct JSONKey: CodingKey, Sendable {
    public var stringValue: String
    public var intValue: Int? { nil }
    public init(_ name: String) { stringValue = name }
    public init(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { nil }
}

extension KeyedEncodingContainer {
    /// Encodes a number that reports may lack or compute as NaN: nil and non-finite values are
    /// written as `null` (JSON has no NaN), as ``JSONValue/double(_:)`` does, rather than refused.
    public mutating func encodeNumber(_ value: Double?, forKey key: Key) throws {
        if let value, value.isFinite { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
    }

    /// Encodes numbers as ``encodeNumber(_:forKey:)`` does, as an array.
    public mutating func encodeNumbers(_ values: [Double?], forKey key: Key) throws {
        try encode(values.map { $0.flatMap { $0.isFinite ? $0 : nil } }, forKey: key)
    }

    /// Encodes name → number members in the given order.
    public mutating func encodeNumbers(_ members: [(String, Double?)], forKey key: Key) throws {
        var object = nestedContainer(keyedBy: JSONKey.self, forKey: key)
        for (name, value) in members { try object.encodeNumber(value, forKey: JSONKey(name)) }
    }
}

extension KeyedDecodingContainer {
    /// Reads a number written by ``KeyedEncodingContainer/encodeNumber(_:forKey:)``: `null` (a
    /// non-finite value) reads as NaN; a missing member or another type is an error.
    public func decodeNumber(forKey key: Key) throws -> Double {
        try decodeNil(forKey: key) ? .nan : decode(Double.self, forKey: key)
    }

    /// Reads an array written by ``KeyedEncodingContainer/encodeNumbers(_:forKey:)-([Double?],_)``.
    public func decodeNumbers(forKey key: Key) throws -> [Double] {
        try decode([Double?].self, forKey: key).map { $0 ?? .nan }
    }
}
