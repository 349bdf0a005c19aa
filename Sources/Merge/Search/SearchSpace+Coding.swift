import Delta

// The space as a searched merge commit (`extra.search.space`) and the trial store record it. The
// commit's member is hashed into its id, and the store finds a search to continue by a digest of
// its definition, so this encoding is the format: members in this order, names sorted, `points`
// only above 1, a fixed value as its text.

extension SearchSpace: Encodable {
    private enum Keys: String, CodingKey { case methods, balance, parameters, experts }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(methods, forKey: .methods)
        try c.encode(balances, forKey: .balance)
        try Self.encode(parameters, into: c.nestedContainer(keyedBy: JSONKey.self, forKey: .parameters))
        var byExpert = c.nestedContainer(keyedBy: JSONKey.self, forKey: .experts)
        for (name, settings) in experts.sorted(by: { $0.key < $1.key }) {
            try Self.encode(settings, into: byExpert.nestedContainer(keyedBy: JSONKey.self, forKey: JSONKey(name)))
        }
    }

    private static func encode(_ settings: [String: Setting], into container: KeyedEncodingContainer<JSONKey>) throws {
        var container = container
        for (name, setting) in settings.sorted(by: { $0.key < $1.key }) { try container.encode(setting, forKey: JSONKey(name)) }
    }

    /// The space as recorded (its ``Encodable`` form).
    public var json: JSONValue {
        do {
            return try JSONValueCoding.encode(self)
        } catch {
            preconditionFailure("a search space always encodes (non-finite numbers become null): \(error)")
        }
    }
}

extension SearchSpace.Setting: Encodable {
    private enum Keys: String, CodingKey { case fixed, min, max, points }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        switch self {
        case let .fixed(value):
            try c.encode(value.description, forKey: .fixed)
        case let .range(lo, hi, points):
            try c.encodeNumber(lo, forKey: .min)
            try c.encodeNumber(hi, forKey: .max)
            if points > 1 { try c.encode(points, forKey: .points) }
        }
    }
}

extension SearchObjective: Codable {}
