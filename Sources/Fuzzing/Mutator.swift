import Delta

/// Seeded, deterministic mutations of byte strings: the same generator state always gives the
/// same mutant, so a run is reproduced by its seed alone.
///
/// Byte-level edits (bit flips, inserts, deletes, splices, interesting integers) reach the
/// framing of binary formats; token-level edits (numbers, strings, structure) get past the
/// JSON and YAML syntax checks to the validation behind them, where the interesting bugs are.
public struct Mutator {
    /// What the input looks like, which decides the token-level edits.
    public enum Dialect: Sendable {
        case binary
        case json
        case yaml
    }

    public var rng: SeededRandom
    public let dialect: Dialect
    public let maxBytes: Int

    public init(rng: SeededRandom, dialect: Dialect, maxBytes: Int) {
        self.rng = rng
        self.dialect = dialect
        self.maxBytes = maxBytes
    }

    /// Integers at the edges of the widths parsers use: zero, signs, 2³¹, 2³², 2⁶³, all ones.
    public static let interestingIntegers: [UInt64] = [
        0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x1_0000,
        0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000, 100_000_001, 1 << 40,
        0x7FFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, 0xFFFF_FFFF_FFFF_FFF8, UInt64.max,
    ]

    /// The same edges written as JSON/YAML numbers, plus what a strict integer parser must refuse.
    public static let interestingNumbers: [String] = [
        "0", "-0", "1", "-1", "2", "8", "255", "256", "65536", "2147483647", "2147483648", "-2147483649",
        "4294967295", "4294967296", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
        "18446744073709551615", "18446744073709551616", "99999999999999999999999999", "100000001",
        "1e308", "1e999", "-1e999", "0.5", "1.0", "1e2", "3037000500", "1099511627776",
    ]

    /// Strings that mean something to the parsers: path tricks, reserved names, regex traps,
    /// escapes, dtype spellings.
    public static let interestingStrings: [String] = [
        "", ".", "..", "../x", "../../etc/passwd", "/etc/passwd", "a/b", ".hidden", "a\\u0000b", "\\u0000",
        "\\n", "a\\nb", "\\r", "__metadata__", "dtype", "shape", "data_offsets", "F32", "BF16", "F16", "U8", "BOOL",
        "F8_E4M3", "I64", "weight_map", "metadata", "model.safetensors", "lora_A", "base_model.model.x.lora_A.weight",
        "(a+)+$", "[", "(", "*", ".*", "\\\\", "\\ud800", "\\udc00x", "\\uFFFF", "ü", "🙂", String(repeating: "A", count: 200),
        "LORA", "IA3", "ties", "linear", "slerp", "dare_ties", "null", "true", "~", "*a", "&a",
    ]

    /// Structural text inserted by JSON-aware edits.
    static let jsonTokens: [String] = [
        "{", "}", "[", "]", ",", ":", "\"", "null", "true", "false", "{}", "[]", "\"\":", "\"a\":1,", "\\",
        String(repeating: "[", count: 70), String(repeating: "{\"a\":", count: 70), " ", "\u{0}", "\u{FF}",
    ]

    /// Structural text inserted by YAML-aware edits: anchors and aliases, merge keys, tags,
    /// indentation, flow collections, document markers.
    static let yamlTokens: [String] = [
        "&a ", "*a", "<<: *a\n", "- ", ": ", "\n", "\n  ", "\n    ", "{", "}", "[", "]", ",", "!!binary ", "!!int ",
        "!!str ", "!!float ", "!!map ", "!!seq ", "!<tag:x> ", "? ", "|\n  ", ">\n  ", "---\n", "...\n", "%YAML 1.1\n",
        "# c\n", "\t", "'", "\"", "~", ".inf", ".nan", "-.inf", "0x7fffffffffffffff", "0o777", "yes", "null", "\u{0}",
        String(repeating: "[", count: 40), String(repeating: "- ", count: 40),
        "a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\n",
    ]

    /// A mutant of `input`, sometimes spliced with another corpus entry.
    public mutating func mutate(_ input: [UInt8], corpus: [[UInt8]]) -> [UInt8] {
        var out = input
        // Several edits at once reach states one edit cannot (a new field and its fixed-up length).
        let rounds = 1 + Int(below(4)) + (chance(8) ? Int(below(8)) : 0)
        for _ in 0..<rounds {
            if dialect != .binary, chance(2) {
                tokenEdit(&out)
            } else {
                byteEdit(&out, corpus: corpus)
            }
        }
        if out.count > maxBytes { out.removeLast(out.count - maxBytes) }
        return out
    }

    // MARK: - Random helpers

    public mutating func below(_ n: Int) -> Int {
        n <= 1 ? 0 : Int(rng.next() % UInt64(n))
    }

    /// True with probability 1/n.
    public mutating func chance(_ n: Int) -> Bool { below(n) == 0 }

    public mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }

    /// A position in `0...count`.
    mutating func position(_ count: Int) -> Int { below(count + 1) }

    // MARK: - Byte edits

    public mutating func byteEdit(_ out: inout [UInt8], corpus: [[UInt8]]) {
        switch below(10) {
        case 0 where !out.isEmpty:
            out[below(out.count)] ^= UInt8(1) << UInt8(below(8))
        case 1 where !out.isEmpty:
            out[below(out.count)] = UInt8(truncatingIfNeeded: rng.next())
        case 2:
            let n = 1 + below(chance(4) ? 64 : 8)
            let fill: [UInt8] = chance(2) ? [UInt8](repeating: UInt8(truncatingIfNeeded: rng.next()), count: n)
                : (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            out.insert(contentsOf: fill, at: position(out.count))
        case 3 where !out.isEmpty:
            let start = below(out.count)
            let n = 1 + below(min(out.count - start, chance(4) ? out.count : 16))
            out.removeSubrange(start..<(start + n))
        case 4 where !out.isEmpty:
            // Copy a run of the input somewhere else in it.
            let start = below(out.count)
            let n = 1 + below(min(out.count - start, 64))
            let run = Array(out[start..<(start + n)])
            out.insert(contentsOf: run, at: position(out.count))
        case 5 where !corpus.isEmpty:
            splice(&out, with: pick(corpus))
        case 6:
            writeInteger(&out, at: out.isEmpty ? 0 : below(out.count))
        case 7 where !out.isEmpty:
            out.removeLast(below(out.count))
        case 8 where out.count >= 2:
            // Swap two bytes (a length and what it counts, two neighbouring fields).
            let i = below(out.count), j = below(out.count)
            out.swapAt(i, j)
        default:
            out.append(UInt8(truncatingIfNeeded: rng.next()))
        }
    }

    /// Replaces the tail of `out` (from a random point) with the tail of `other`, or inserts a
    /// piece of `other`.
    mutating func splice(_ out: inout [UInt8], with other: [UInt8]) {
        guard !other.isEmpty else { return }
        let from = below(other.count)
        if chance(2) {
            out.removeSubrange(position(out.count)...)
            out.append(contentsOf: other[from...])
        } else {
            let n = 1 + below(min(other.count - from, 256))
            out.insert(contentsOf: other[from..<(from + n)], at: position(out.count))
        }
    }

    /// Overwrites (or inserts) an interesting integer, little-endian, 1 to 8 bytes wide.
    public mutating func writeInteger(_ out: inout [UInt8], at offset: Int) {
        let width = pick([1, 2, 4, 8])
        var value = pick(Mutator.interestingIntegers)
        if chance(4) { value = 0 &- value }  // negative, as a two's-complement field sees it
        if chance(4) { value = value &+ UInt64(below(3)) &- 1 }  // off by one
        let bytes = (0..<width).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) }
        if offset + width <= out.count, chance(4) == false {
            out.replaceSubrange(offset..<(offset + width), with: bytes)
        } else {
            out.insert(contentsOf: bytes, at: min(offset, out.count))
        }
    }

    // MARK: - Token edits

    public mutating func tokenEdit(_ out: inout [UInt8]) {
        switch below(7) {
        case 0, 1:
            if let r = randomToken(in: out, where: Mutator.isNumberByte) {
                out.replaceSubrange(r, with: Array(pick(Mutator.interestingNumbers).utf8))
                return
            }
        case 2, 3:
            if let r = randomString(in: out) {
                out.replaceSubrange(r, with: Array(pick(Mutator.interestingStrings).utf8))
                return
            }
        case 4:
            // Duplicate a line or a member: repeated keys, repeated list items.
            if let r = randomSegment(in: out) {
                out.insert(contentsOf: out[r], at: chance(2) ? r.upperBound : position(out.count))
                return
            }
        case 5 where !out.isEmpty:
            // Delete a line or a member.
            if let r = randomSegment(in: out) {
                out.removeSubrange(r)
                return
            }
        default:
            break
        }
        let tokens = dialect == .yaml ? Mutator.yamlTokens : Mutator.jsonTokens
        out.insert(contentsOf: Array(pick(tokens).utf8), at: position(out.count))
    }

    static func isNumberByte(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "-") || b == UInt8(ascii: ".")
            || b == UInt8(ascii: "e") || b == UInt8(ascii: "+")
    }

    /// A maximal run of bytes matching `predicate` that starts with a digit, picked at random.
    mutating func randomToken(in bytes: [UInt8], where predicate: (UInt8) -> Bool) -> Range<Int>? {
        var runs: [Range<Int>] = []
        var i = 0
        while i < bytes.count {
            if bytes[i] >= UInt8(ascii: "0") && bytes[i] <= UInt8(ascii: "9") {
                var start = i
                if start > 0, bytes[start - 1] == UInt8(ascii: "-") { start -= 1 }
                var end = i
                while end < bytes.count, predicate(bytes[end]) { end += 1 }
                runs.append(start..<end)
                i = end
            } else {
                i += 1
            }
        }
        return runs.isEmpty ? nil : pick(runs)
    }

    /// The contents (without quotes) of a double-quoted string, picked at random; for YAML, a
    /// plain word after `: ` or `- ` counts too.
    mutating func randomString(in bytes: [UInt8]) -> Range<Int>? {
        var spans: [Range<Int>] = []
        var i = 0
        let quote = UInt8(ascii: "\"")
        while i < bytes.count {
            if bytes[i] == quote {
                var end = i + 1
                while end < bytes.count, bytes[end] != quote {
                    end += bytes[end] == UInt8(ascii: "\\") ? 2 : 1
                }
                spans.append((i + 1)..<min(end, bytes.count))
                i = end + 1
            } else if dialect == .yaml, i + 1 < bytes.count, bytes[i] == UInt8(ascii: " "),
                      i > 0, bytes[i - 1] == UInt8(ascii: ":") || bytes[i - 1] == UInt8(ascii: "-") {
                var end = i + 1
                while end < bytes.count, bytes[end] != UInt8(ascii: "\n"), bytes[end] != UInt8(ascii: ",") { end += 1 }
                spans.append((i + 1)..<end)
                i = end
            } else {
                i += 1
            }
        }
        return spans.isEmpty ? nil : pick(spans)
    }

    /// A line (YAML) or a comma-separated piece (JSON), picked at random.
    mutating func randomSegment(in bytes: [UInt8]) -> Range<Int>? {
        let separator = dialect == .yaml ? UInt8(ascii: "\n") : UInt8(ascii: ",")
        var cuts = [0]
        for (i, b) in bytes.enumerated() where b == separator { cuts.append(i + 1) }
        cuts.append(bytes.count)
        guard cuts.count >= 2 else { return nil }
        let k = below(cuts.count - 1)
        let r = cuts[k]..<cuts[k + 1]
        return r.isEmpty ? nil : r
    }
}
