import Yams

extension MergekitRecipe.Reader {
    /// Refuses mapping keys that are aliases or collections, before the real parse.
    ///
    /// Yams checks every mapping for duplicate keys by hashing each key in full, following aliases:
    /// a key that names an alias bomb (nine levels of nine aliases, a few hundred bytes) takes
    /// exponential time, before the reader's node budget can count anything. So when the text holds
    /// a `*`, it is first parsed with every `*` replaced by a private-use character: that copy has
    /// no aliases, so it parses in time proportional to its size, and its keys show where the
    /// real document's keys would be aliases or collections. A recipe's keys are plain names.
    func refuseAliasKeys(_ text: String) throws {
        guard text.unicodeScalars.contains("*") else { return }
        let marker: Unicode.Scalar = "\u{E000}"
        var copy = String.UnicodeScalarView()
        for scalar in text.unicodeScalars { copy.append(scalar == "*" ? marker : scalar) }
        let document: Node?
        do {
            document = try Yams.compose(yaml: String(copy))
        } catch {
            // Refused here, not left to the real parse: that parse could meet an alias key before
            // it meets the error. The copy has the text's lines and columns.
            let line = String(describing: error).split(separator: "\n").first.map(String.init) ?? ""
            throw bad("not valid YAML: \(line.replacingOccurrences(of: String(marker), with: "*"))")
        }
        // Iterative: the copy may nest as deep as YAML allows.
        var pending = document.map { [$0] } ?? []
        while let node = pending.popLast() {
            switch node {
            case let .mapping(pairs):
                for (key, value) in pairs {
                    guard let name = key.scalar?.string else { throw bad("has a mapping key that is not a single value") }
                    if name.unicodeScalars.first == marker { throw bad("has a mapping key that starts with '*' (an alias)") }
                    pending.append(value)
                }
            case let .sequence(items):
                pending.append(contentsOf: items)
            case .scalar, .alias:
                break
            }
        }
    }
}
