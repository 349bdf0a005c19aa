/// Names from hostile files printed safely: every error stays one line, and a name that is not
/// valid UTF-8 is shown byte for byte instead of being dropped or mangled.
public enum DisplayText {
    /// Whether a scalar is a control character mrepo refuses in tensor names and file paths
    /// (U+0000–U+001F and U+007F).
    public static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || scalar.value == 0x7F
    }

    /// The first control character of `text`, or nil.
    public static func firstControlCharacter(in text: String) -> Unicode.Scalar? {
        text.unicodeScalars.first(where: isControl)
    }

    /// `U+000A`: how errors name a character.
    public static func codePoint(_ scalar: Unicode.Scalar) -> String {
        let hex = String(scalar.value, radix: 16, uppercase: true)
        return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }

    /// `text` with every control character and backslash written as `\xNN` (a backslash as `\\`).
    public static func escaping(_ text: String) -> String {
        escaping(bytes: Array(text.utf8))
    }

    /// UTF-8 bytes as text: valid characters as they are, every control character and every byte
    /// that is not part of valid UTF-8 as `\xNN`, and a backslash as `\\`.
    public static func escaping(bytes: [UInt8]) -> String {
        var out = ""
        var i = 0
        while i < bytes.count {
            let lead = bytes[i]
            let length = lead < 0x80 ? 1 : lead >= 0xF0 && lead <= 0xF4 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC2 && lead < 0xE0 ? 2 : 0
            if length > 0, i + length <= bytes.count,
               let text = String(validating: bytes[i..<(i + length)], as: UTF8.self), let scalar = text.unicodeScalars.first {
                if isControl(scalar) {
                    out += hexEscape(lead)
                } else if scalar == "\\" {
                    out += "\\\\"
                } else {
                    out += text
                }
                i += length
            } else {
                out += hexEscape(lead)
                i += 1
            }
        }
        return out
    }

    /// `text` with every character outside printable ASCII written as `\u{XXXX}`: shows how two
    /// names that look the same differ (`\u{E9}` is NFC's é, `e\u{301}` NFD's).
    public static func escapingNonASCII(_ text: String) -> String {
        var out = ""
        for scalar in text.unicodeScalars {
            if scalar.value >= 0x20, scalar.value < 0x7F, scalar != "\\" {
                out.unicodeScalars.append(scalar)
            } else {
                out += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
        }
        return out
    }

    private static func hexEscape(_ byte: UInt8) -> String {
        let hex = String(byte, radix: 16, uppercase: true)
        return "\\x" + (hex.count == 1 ? "0" : "") + hex
    }
}
