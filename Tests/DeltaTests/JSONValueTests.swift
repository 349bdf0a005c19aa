import Delta
import Testing

@Suite struct JSONValueTests {
    func parse(_ text: String) throws(JSONParseError) -> JSONValue {
        try JSONValue.parse(Array(text.utf8))
    }

    func parseError(_ text: String) -> JSONParseError? {
        do throws(JSONParseError) {
            _ = try parse(text)
            return nil
        } catch {
            return error
        }
    }

    /// Records with many members (a file of 200 000 tensors) encode and decode in linear time: the
    /// encoder appended to a copy of its array on every element, and both sides found a key by
    /// scanning every member (a commit of such a file ran for minutes). What they produce is
    /// unchanged: order kept, and the first of duplicate members read.
    @Test func largeRecordsRoundTripWithTheirOrderAndFirstMembers() throws {
        struct Row: Codable, Equatable { var name: String; var offsets: [Int] }
        let rows = (0..<20_000).map { Row(name: "t\($0)", offsets: [$0, $0 + 1]) }
        let byName = Dictionary(uniqueKeysWithValues: rows.map { ($0.name, $0.offsets) })
        let encoded = try JSONValueCoding.encode(rows)
        #expect(try JSONValueCoding.decode([Row].self, from: encoded) == rows)
        let map = try JSONValueCoding.encode(byName)
        #expect(try JSONValueCoding.decode([String: [Int]].self, from: map) == byName)
        // The first of two members with one key is the one read, large object or small.
        struct One: Decodable { var a: Int }
        let many = (0..<100).map { JSONMember("k\($0)", .number("\($0)")) }
        for members in [[JSONMember("a", .number("1")), JSONMember("a", .number("2"))],
                        many + [JSONMember("a", .number("1")), JSONMember("a", .number("2"))]] {
            #expect(try JSONValueCoding.decode(One.self, from: .object(members)).a == 1)
        }
    }

    @Test func objectMembersKeepDocumentOrder() throws {
        let value = try parse(#"{"zeta": 1, "alpha": 2, "mid": {"b": true, "a": null}}"#)
        let members = try #require(value.objectValue)
        #expect(members.map(\.key) == ["zeta", "alpha", "mid"])
        #expect(value["mid"]?.objectValue?.map(\.key) == ["b", "a"])
        #expect(value.serialized() == #"{"zeta":1,"alpha":2,"mid":{"b":true,"a":null}}"#)
    }

    @Test func duplicateKeyIsRejectedNamingTheKey() {
        let error = parseError(#"{"a": 1, "weight": 2, "weight": 3}"#)
        #expect(error?.message == "duplicate key 'weight'")
        // The offset points at the second occurrence of the key.
        #expect(error?.offset == 22)
        #expect(error?.description == "duplicate key 'weight' at byte 22")
    }

    @Test func duplicateKeysInDifferentObjectsAreAllowed() throws {
        let value = try parse(#"{"a": {"x": 1}, "b": {"x": 2}}"#)
        #expect(value["a"]?["x"] == .number("1"))
        #expect(value["b"]?["x"] == .number("2"))
    }

    @Test func escapesAreDecoded() throws {
        let value = try parse(#"["q\"b\\s\/n\nr\rt\tb\bf\f", "\u0041\u00e9\u4e2d"]"#)
        let items = try #require(value.arrayValue)
        #expect(items[0].stringValue == "q\"b\\s/n\nr\rt\tb\u{08}f\u{0C}")
        #expect(items[1].stringValue == "Aé中")
    }

    @Test func surrogatePairsBecomeOneScalar() throws {
        let value = try parse(#""\ud83d\ude00 and raw 😀""#)
        #expect(value.stringValue == "😀 and raw 😀")
        #expect(value.stringValue?.unicodeScalars.first?.value == 0x1F600)
    }

    @Test(arguments: [
        (#""\ud83d""#, "unpaired surrogate in string"),
        (#""\ud83d\u0041""#, "unpaired surrogate in string"),
        (#""\ude00""#, "unpaired surrogate in string"),
        (#""\u12G4""#, "invalid \\u escape"),
        (#""\x""#, "invalid escape"),
        ("\"tab\there\"", "control character in string"),
        (#""open"#, "unterminated string"),
    ])
    func badStringsAreRejected(text: String, message: String) {
        #expect(parseError(text)?.message == message)
    }

    @Test func invalidUTF8IsRejected() {
        let bytes: [UInt8] = [0x22, 0x61, 0xC3, 0x28, 0x22]
        var message: String?
        do throws(JSONParseError) {
            _ = try JSONValue.parse(bytes)
        } catch {
            message = error.message
        }
        #expect(message == "string is not valid UTF-8")
    }

    @Test func serializationEscapesControlCharactersAndRoundTrips() throws {
        let original = JSONValue.object([JSONMember("k\"ey", .string("a\\b\n\u{01}é😀")), JSONMember("list", .array([.bool(false), .null]))])
        let text = original.serialized()
        #expect(text == #"{"k\"ey":"a\\b\n\u0001é😀","list":[false,null]}"#)
        #expect(try parse(text) == original)
    }

    @Test func numbersAreKeptAsText() throws {
        let value = try parse("[12345678901234567890123, -0, 1.50, 2e10, -3.25E-2, 7]")
        let items = try #require(value.arrayValue)
        #expect(items == [.number("12345678901234567890123"), .number("-0"), .number("1.50"), .number("2e10"),
                          .number("-3.25E-2"), .number("7")])
        // Integers too large for Int are still kept exactly, but have no intValue.
        #expect(items[0].intValue == nil)
        #expect(items[5].intValue == 7)
        #expect(items[2].intValue == nil)
        #expect(items[4].doubleValue == -0.0325)
        #expect(value.serialized() == "[12345678901234567890123,-0,1.50,2e10,-3.25E-2,7]")
    }

    @Test(arguments: ["01", "1.", "-", "1e", ".5", "+1", "1.e3"])
    func malformedNumbersAreRejected(text: String) {
        #expect(parseError(text) != nil)
    }

    @Test func nestingLimitIsEnforced() throws {
        let ok = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        let tooDeep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(parseError(ok) == nil)
        let error = try #require(parseError(tooDeep))
        #expect(error.message == "nesting deeper than 64")
        #expect(error.offset == 64)
        // Objects count too, and a hostile depth does not exhaust the stack.
        let hostile = String(repeating: #"{"a":"#, count: 100_000)
        #expect(parseError(hostile)?.message == "nesting deeper than 64")
    }

    @Test func customDepthLimit() {
        let text = Array("[[[1]]]".utf8)
        let result: JSONParseError? = text.withUnsafeBytes { raw in
            do throws(JSONParseError) {
                _ = try JSONValue.parse(raw, maxDepth: 3)
                return nil
            } catch {
                return error
            }
        }
        #expect(result?.message == "nesting deeper than 3")
    }

    @Test func trailingGarbageIsRejected() throws {
        let error = try #require(parseError(#"{"a": 1} x"#))
        #expect(error.message == "unexpected text after the JSON value")
        #expect(error.offset == 9)
        #expect(parseError("[1] [2]")?.message == "unexpected text after the JSON value")
        // Surrounding white space is fine.
        #expect(try parse(" \n\t{\"a\": 1}\r\n ")["a"] == .number("1"))
    }

    @Test(arguments: [
        ("", "unexpected end of JSON"),
        ("{", "expected a member name"),
        (#"{"a" 1}"#, "expected ':'"),
        (#"{"a": 1 "b": 2}"#, "expected ',' or '}'"),
        ("[1 2]", "expected ',' or ']'"),
        ("[1,]", "unexpected character ']'"),
        ("tru", "unexpected end of JSON"),
        ("nul!", "invalid literal"),
        ("{\"a\": 1,}", "expected a member name"),
    ])
    func structuralErrors(text: String, message: String) {
        #expect(parseError(text)?.message == message)
    }

    @Test func accessorsReturnNilForOtherKinds() throws {
        let value = try parse(#"{"s": "x", "n": 3, "a": [1], "o": {}}"#)
        #expect(value["s"]?.stringValue == "x")
        #expect(value["n"]?.stringValue == nil)
        #expect(value["s"]?.intValue == nil)
        #expect(value["a"]?.arrayValue?.count == 1)
        #expect(value["a"]?.objectValue == nil)
        #expect(value["o"]?.objectValue?.isEmpty == true)
        #expect(value["missing"] == nil)
        #expect(value["a"]?["x"] == nil)
    }

    @Test func numberBuilders() {
        #expect(JSONValue.int(-42) == .number("-42"))
        #expect(JSONValue.double(3) == .number("3"))
        #expect(JSONValue.double(0.25) == .number("0.25"))
        #expect(JSONValue.double(.nan) == .null)
        #expect(JSONValue.double(.infinity) == .null)
    }

    @Test func prettySerializationKeepsOrderAndParsesBack() throws {
        let value = try parse(#"{"b": [1, 2], "a": {"x": "y"}, "e": [], "o": {}, "l": [{"k": 1}]}"#)
        let pretty = value.prettySerialized()
        #expect(pretty == """
            {
              "b": [1,2],
              "a": {
                "x": "y"
              },
              "e": [],
              "o": {},
              "l": [
                {
                  "k": 1
                }
              ]
            }
            """)
        #expect(try parse(pretty) == value)
    }
}
