/// `Codable` types to and from ``JSONValue``.
///
/// Records (commit `extra` members, merge state, recipes) are `Codable` structs; this encoder
/// turns them into a ``JSONValue`` whose members are in the order the type encodes them (its
/// declaration order for synthesized conformances), so the canonical text that is hashed is
/// deterministic and readable. Optional members that are nil are left out. Non-finite doubles are
/// refused (JSON cannot hold them).
public enum JSONValueCoding {
    /// The JSON form of a value.
    public static func encode<T: Encodable>(_ value: T) throws -> JSONValue {
        let encoder = ValueEncoder(codingPath: [])
        try value.encode(to: encoder)
        return encoder.storage.value
    }

    /// A value read back from its JSON form.
    /// - Throws: `DecodingError` naming the path of the member that does not fit.
    public static func decode<T: Decodable>(_ type: T.Type, from json: JSONValue) throws -> T {
        try T(from: ValueDecoder(json, codingPath: []))
    }

    /// The compact JSON text of a value (what the history database stores).
    public static func text<T: Encodable>(_ value: T) throws -> String {
        try encode(value).serialized()
    }

    /// A value read back from its JSON text.
    /// - Throws: ``JSONParseError`` when the text is not JSON, `DecodingError` when it does not fit.
    public static func decode<T: Decodable>(_ type: T.Type, text: String) throws -> T {
        try decode(T.self, from: try JSONValue.parse(Array(text.utf8)))
    }
}

extension Digest: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        let text = try c.decode(String.self)
        guard let d = Digest(hex: text) else {
            throw DecodingError.dataCorruptedError(in: c, debugDescription: "'\(text.prefix(80))' is not 64 hex digits")
        }
        self = d
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(hex)
    }
}

// MARK: - Encoding

/// A node under construction: objects and arrays stay mutable until the encoder is done.
private final class Storage {
    enum Node {
        case value(JSONValue)
        case object([(String, Storage)])
        case array([Storage])
    }

    var node: Node {
        didSet { if case .object = node {} else { memberIndex = [:] } }
    }
    /// Where each key of an object sits among its members (found in O(1), not by a scan: an
    /// object of many members, a dictionary of every tensor, was quadratic to encode).
    private var memberIndex: [String: Int] = [:]

    init(_ node: Node) { self.node = node }

    var value: JSONValue {
        switch node {
        case let .value(v): return v
        case let .object(members): return .object(members.map { JSONMember($0.0, $0.1.value) })
        case let .array(items): return .array(items.map(\.value))
        }
    }

    func member(_ key: String) -> Storage {
        guard case var .object(members) = node else { preconditionFailure("a keyed container writes into an object") }
        if let i = memberIndex[key] { return members[i].1 }
        // The node lets go of its array first, so that the append happens in place (with the
        // node still holding it, every append copied the whole array: quadratic). An object node
        // keeps its index.
        node = .object([])
        let s = Storage(.value(.null))
        members.append((key, s))
        node = .object(members)
        memberIndex[key] = members.count - 1
        return s
    }

    func append() -> Storage {
        guard case var .array(items) = node else { preconditionFailure("an unkeyed container writes into an array") }
        node = .value(.null)  // lets go of the array: the append below is in place
        let s = Storage(.value(.null))
        items.append(s)
        node = .array(items)
        return s
    }
}

private func scalar(_ value: some BinaryInteger) -> JSONValue { .number(String(value)) }

private func scalar(_ value: Double, _ path: [any CodingKey]) throws -> JSONValue {
    guard value.isFinite else {
        throw EncodingError.invalidValue(value, .init(codingPath: path, debugDescription: "JSON cannot hold \(value)"))
    }
    return .double(value)
}

private struct ValueEncoder: Encoder {
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    let storage: Storage

    init(codingPath: [any CodingKey], storage: Storage = Storage(.value(.null))) {
        self.codingPath = codingPath
        self.storage = storage
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        if case .object = storage.node {} else { storage.node = .object([]) }
        return KeyedEncodingContainer(KeyedEncoder<Key>(codingPath: codingPath, storage: storage))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        if case .array = storage.node {} else { storage.node = .array([]) }
        return UnkeyedEncoder(codingPath: codingPath, storage: storage)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        SingleEncoder(codingPath: codingPath, storage: storage)
    }
}

private struct SingleEncoder: SingleValueEncodingContainer {
    let codingPath: [any CodingKey]
    let storage: Storage

    mutating func encodeNil() throws { storage.node = .value(.null) }
    mutating func encode(_ value: Bool) throws { storage.node = .value(.bool(value)) }
    mutating func encode(_ value: String) throws { storage.node = .value(.string(value)) }
    mutating func encode(_ value: Double) throws { storage.node = .value(try scalar(value, codingPath)) }
    mutating func encode(_ value: Float) throws { storage.node = .value(try scalar(Double(value), codingPath)) }
    mutating func encode(_ value: Int) throws { storage.node = .value(scalar(value)) }
    mutating func encode(_ value: Int8) throws { storage.node = .value(scalar(value)) }
    mutating func encode(_ value: Int16) throws { storage.node = .value(scalar(value)) }
    mutating func encode(_ value: Int32) throws { storage.node = .value(scalar(value)) }
    mutating func encode(_ value: Int64) throws { storage.node = .value(scalar(value)) }
    mutating func encode(_ value: UInt) throws { storage.node = .value(scalar(value)) }
    mutating func encode(_ value: UInt8) throws { storage.node = .value(scalar(value)) }
    mutating func encode(_ value: UInt16) throws { storage.node = .value(scalar(value)) }
    mutating func encode(_ value: UInt32) throws { storage.node = .value(scalar(value)) }
    mutating func encode(_ value: UInt64) throws { storage.node = .value(scalar(value)) }
    mutating func encode<T: Encodable>(_ value: T) throws {
        if let json = value as? JSONValue {
            storage.node = .value(json)
            return
        }
        try value.encode(to: ValueEncoder(codingPath: codingPath, storage: storage))
    }
}

private struct KeyedEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let codingPath: [any CodingKey]
    let storage: Storage

    func single(_ key: Key) -> SingleEncoder { SingleEncoder(codingPath: codingPath + [key], storage: storage.member(key.stringValue)) }

    mutating func encodeNil(forKey key: Key) throws { var s = single(key); try s.encodeNil() }
    mutating func encode(_ value: Bool, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: String, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Double, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Float, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Int, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Int8, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Int16, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Int32, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: Int64, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: UInt, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: UInt8, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: UInt16, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: UInt32, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode(_ value: UInt64, forKey key: Key) throws { var s = single(key); try s.encode(value) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { var s = single(key); try s.encode(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        ValueEncoder(codingPath: codingPath + [key], storage: storage.member(key.stringValue)).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        ValueEncoder(codingPath: codingPath + [key], storage: storage.member(key.stringValue)).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { ValueEncoder(codingPath: codingPath, storage: storage.member("super")) }
    mutating func superEncoder(forKey key: Key) -> any Encoder { ValueEncoder(codingPath: codingPath + [key], storage: storage.member(key.stringValue)) }
}

private struct IndexKey: CodingKey {
    var stringValue: String { "\(intValue!)" }
    var intValue: Int?
    init(_ index: Int) { intValue = index }
    init?(stringValue: String) { nil }
    init?(intValue: Int) { self.intValue = intValue }
}

private struct UnkeyedEncoder: UnkeyedEncodingContainer {
    let codingPath: [any CodingKey]
    let storage: Storage
    var count: Int {
        if case let .array(items) = storage.node { return items.count }
        return 0
    }

    func next() -> SingleEncoder { SingleEncoder(codingPath: codingPath + [IndexKey(count)], storage: storage.append()) }

    mutating func encodeNil() throws { var s = next(); try s.encodeNil() }
    mutating func encode(_ value: Bool) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: String) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Double) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Float) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Int) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: Int64) throws { var s = next(); try s.encode(value) }
    mutating func encode(_ value: UInt64) throws { var s = next(); try s.encode(value) }
    mutating func encode<T: Encodable>(_ value: T) throws { var s = next(); try s.encode(value) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        ValueEncoder(codingPath: codingPath + [IndexKey(count)], storage: storage.append()).container(keyedBy: keyType)
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        ValueEncoder(codingPath: codingPath + [IndexKey(count)], storage: storage.append()).unkeyedContainer()
    }

    mutating func superEncoder() -> any Encoder { ValueEncoder(codingPath: codingPath, storage: storage.append()) }
}

// MARK: - Decoding

private struct ValueDecoder: Decoder {
    let value: JSONValue
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    init(_ value: JSONValue, codingPath: [any CodingKey]) {
        self.value = value
        self.codingPath = codingPath
    }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case let .object(members) = value else {
            throw DecodingError.typeMismatch([String: Any].self, .init(codingPath: codingPath, debugDescription: "expected an object"))
        }
        return KeyedDecodingContainer(KeyedDecoder<Key>(members: members, codingPath: codingPath))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case let .array(items) = value else {
            throw DecodingError.typeMismatch([Any].self, .init(codingPath: codingPath, debugDescription: "expected an array"))
        }
        return UnkeyedDecoder(items: items, codingPath: codingPath)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleDecoder(value: value, codingPath: codingPath) }
}

private struct SingleDecoder: SingleValueDecodingContainer {
    let value: JSONValue
    let codingPath: [any CodingKey]

    func mismatch<T>(_ type: T.Type) -> DecodingError {
        .typeMismatch(type, .init(codingPath: codingPath, debugDescription: "expected \(type), found \(value.serialized().prefix(60))"))
    }

    func decodeNil() -> Bool { value == .null }

    func decode(_ type: Bool.Type) throws -> Bool {
        guard case let .bool(b) = value else { throw mismatch(type) }
        return b
    }

    func decode(_ type: String.Type) throws -> String {
        guard case let .string(s) = value else { throw mismatch(type) }
        return s
    }

    func decode(_ type: Double.Type) throws -> Double {
        guard let x = value.doubleValue else { throw mismatch(type) }
        return x
    }

    func decode(_ type: Float.Type) throws -> Float { Float(try decode(Double.self)) }

    func integer<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
        guard case let .number(text) = value, let x = T(text) else { throw mismatch(type) }
        return x
    }

    func decode(_ type: Int.Type) throws -> Int { try integer(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try integer(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try integer(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try integer(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try integer(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try integer(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try integer(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try integer(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try integer(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try integer(type) }

    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        if type == JSONValue.self { return value as! T }
        return try T(from: ValueDecoder(value, codingPath: codingPath))
    }
}

private struct KeyedDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let members: [JSONMember]
    let codingPath: [any CodingKey]
    /// The first member of each key, for objects of many members (a dictionary of every tensor
    /// was quadratic to decode by scanning); small objects are scanned.
    private let index: [String: Int]?

    init(members: [JSONMember], codingPath: [any CodingKey]) {
        self.members = members
        self.codingPath = codingPath
        if members.count > 32 {
            var index: [String: Int] = [:]
            for (i, m) in members.enumerated() where index[m.key] == nil { index[m.key] = i }
            self.index = index
        } else {
            index = nil
        }
    }

    var allKeys: [Key] { members.compactMap { Key(stringValue: $0.key) } }

    func contains(_ key: Key) -> Bool {
        if let index { return index[key.stringValue] != nil }
        return members.contains { $0.key == key.stringValue }
    }

    func member(_ key: Key) throws -> JSONValue {
        let found = index.map { $0[key.stringValue].map { members[$0] } } ?? members.first(where: { $0.key == key.stringValue })
        guard let m = found else {
            throw DecodingError.keyNotFound(key, .init(codingPath: codingPath, debugDescription: "missing member '\(key.stringValue)'"))
        }
        return m.value
    }

    func decodeNil(forKey key: Key) throws -> Bool { try member(key) == .null }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try SingleDecoder(value: try member(key), codingPath: codingPath + [key]).decode(type)
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try SingleDecoder(value: try member(key), codingPath: codingPath + [key]).decode(type) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try SingleDecoder(value: try member(key), codingPath: codingPath + [key]).decode(type) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try SingleDecoder(value: try member(key), codingPath: codingPath + [key]).decode(type) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try SingleDecoder(value: try member(key), codingPath: codingPath + [key]).decode(type) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try SingleDecoder(value: try member(key), codingPath: codingPath + [key]).decode(type) }

    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try ValueDecoder(try member(key), codingPath: codingPath + [key]).container(keyedBy: type)
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try ValueDecoder(try member(key), codingPath: codingPath + [key]).unkeyedContainer()
    }

    func superDecoder() throws -> any Decoder { ValueDecoder(.object(members), codingPath: codingPath) }
    func superDecoder(forKey key: Key) throws -> any Decoder { ValueDecoder(try member(key), codingPath: codingPath + [key]) }
}

private struct UnkeyedDecoder: UnkeyedDecodingContainer {
    let items: [JSONValue]
    let codingPath: [any CodingKey]
    var currentIndex = 0

    init(items: [JSONValue], codingPath: [any CodingKey]) {
        self.items = items
        self.codingPath = codingPath
    }

    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }

    mutating func next() throws -> SingleDecoder {
        guard !isAtEnd else {
            throw DecodingError.valueNotFound(Any.self, .init(codingPath: codingPath, debugDescription: "the array has only \(items.count) items"))
        }
        defer { currentIndex += 1 }
        return SingleDecoder(value: items[currentIndex], codingPath: codingPath + [IndexKey(currentIndex)])
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, items[currentIndex] == .null else { return false }
        currentIndex += 1
        return true
    }

    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try next().decode(type) }

    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let s = try next()
        return try ValueDecoder(s.value, codingPath: s.codingPath).container(keyedBy: type)
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let s = try next()
        return try ValueDecoder(s.value, codingPath: s.codingPath).unkeyedContainer()
    }

    mutating func superDecoder() throws -> any Decoder {
        let s = try next()
        return ValueDecoder(s.value, codingPath: s.codingPath)
    }
}

extension JSONValue: Codable {
    /// Through ``JSONValueCoding`` a value passes unchanged; through other coders it maps onto
    /// their containers (numbers as doubles).
    public init(from decoder: any Decoder) throws {
        if let d = decoder as? ValueDecoder {
            self = d.value
            return
        }
        if var a = try? decoder.unkeyedContainer() {
            var items: [JSONValue] = []
            while !a.isAtEnd { items.append(try a.decode(JSONValue.self)) }
            self = .array(items)
            return
        }
        if let o = try? decoder.container(keyedBy: AnyKey.self) {
            self = .object(try o.allKeys.map { JSONMember($0.stringValue, try o.decode(JSONValue.self, forKey: $0)) })
            return
        }
        let c = try decoder.singleValueContainer()
        if c.decodeNil() {
            self = .null
        } else if let b = try? c.decode(Bool.self) {
            self = .bool(b)
        } else if let x = try? c.decode(Double.self) {
            self = .double(x)
        } else {
            self = .string(try c.decode(String.self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        if let e = encoder as? ValueEncoder {
            e.storage.node = .value(self)
            return
        }
        switch self {
        case let .object(members):
            var c = encoder.container(keyedBy: AnyKey.self)
            for m in members { try c.encode(m.value, forKey: AnyKey(m.key)) }
        case let .array(items):
            var c = encoder.unkeyedContainer()
            for i in items { try c.encode(i) }
        case let .string(s):
            var c = encoder.singleValueContainer()
            try c.encode(s)
        case let .number(text):
            var c = encoder.singleValueContainer()
            if let i = Int(text) { try c.encode(i) } else { try c.encode(Double(text) ?? 0) }
        case let .bool(b):
            var c = encoder.singleValueContainer()
            try c.encode(b)
        case .null:
            var c = encoder.singleValueContainer()
            try c.encodeNil()
        }
    }
}

private struct AnyKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ s: String) { stringValue = s }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
