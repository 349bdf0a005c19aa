import Delta

// The recipe's JSON form (a merge commit's `extra.merge.recipe`, the merge state's `recipe`, a
// search trial's `recipe`; docs/format.md §3.6). The commit's member is hashed into its id, so
// the encoding below is the format: members in this order, parameter names sorted, `lines`,
// `consensus` and `balance` only when set. Non-finite numbers are written as null, as the
// hand-built JSON of earlier versions wrote them.

extension MergeRecipe: Codable {
    private enum Keys: String, CodingKey { case method, parameters, experts, seed, lines, consensus, balance }
    private enum ExpertKeys: String, CodingKey { case name, parameters }
    private enum LinesKeys: String, CodingKey { case alpha, beta }
    private enum ConsensusKeys: String, CodingKey { case k, lambda }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Keys.self)
        try c.encode(method, forKey: .method)
        try Self.encode(parameters, into: c.nestedContainer(keyedBy: JSONKey.self, forKey: .parameters))
        var list = c.nestedUnkeyedContainer(forKey: .experts)
        for (i, name) in experts.enumerated() {
            var e = list.nestedContainer(keyedBy: ExpertKeys.self)
            try e.encode(name, forKey: .name)
            try Self.encode(i < expertParameters.count ? expertParameters[i] : [:], into: e.nestedContainer(keyedBy: JSONKey.self, forKey: .parameters))
        }
        try c.encode(seed, forKey: .seed)
        if let lines {
            var l = c.nestedContainer(keyedBy: LinesKeys.self, forKey: .lines)
            try l.encodeNumber(lines.alpha, forKey: .alpha)
            try l.encodeNumber(lines.beta, forKey: .beta)
        }
        if let consensus {
            var k = c.nestedContainer(keyedBy: ConsensusKeys.self, forKey: .consensus)
            try k.encode(consensus.k, forKey: .k)
            try k.encodeNumber(consensus.lambda, forKey: .lambda)
        }
        // Only when on: recipes (and commit ids) of merges without it are unchanged.
        if let balance, balance != .none { try c.encode(balance, forKey: .balance) }
    }

    private static func encode(_ parameters: [String: ParameterValue], into container: KeyedEncodingContainer<JSONKey>) throws {
        var container = container
        for (name, value) in parameters.sorted(by: { $0.key < $1.key }) { try container.encode(value, forKey: JSONKey(name)) }
    }

    /// - Throws: `DecodingError` naming the member that does not fit (a missing `method` or
    ///   `experts`, an expert without a name, a parameter of no known shape, an unknown balance).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        var list = try c.nestedUnkeyedContainer(forKey: .experts)
        var names: [String] = [], perExpert: [[String: ParameterValue]] = []
        while !list.isAtEnd {
            let e = try list.nestedContainer(keyedBy: ExpertKeys.self)
            names.append(try e.decode(String.self, forKey: .name))
            perExpert.append(try e.decodeIfPresent([String: ParameterValue].self, forKey: .parameters) ?? [:])
        }
        self.init(method: try c.decode(String.self, forKey: .method),
                  parameters: try c.decodeIfPresent([String: ParameterValue].self, forKey: .parameters) ?? [:],
                  expertParameters: perExpert, experts: names, seed: try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? 0)
        if c.contains(.lines) {
            let l = try c.nestedContainer(keyedBy: LinesKeys.self, forKey: .lines)
            lines = (try l.decode(Double.self, forKey: .alpha), try l.decode(Double.self, forKey: .beta))
        }
        if c.contains(.consensus) {
            let k = try c.nestedContainer(keyedBy: ConsensusKeys.self, forKey: .consensus)
            consensus = (try k.decode(Int.self, forKey: .k), try k.decode(Double.self, forKey: .lambda))
        }
        balance = try c.decodeIfPresent(TaskVectorBalance.self, forKey: .balance)
    }

    /// The recipe as JSON (its ``Encodable`` form).
    public var json: JSONValue {
        do {
            return try JSONValueCoding.encode(self)
        } catch {
            preconditionFailure("a recipe always encodes (non-finite numbers become null): \(error)")
        }
    }
}

extension TaskVectorBalance: Codable {}
