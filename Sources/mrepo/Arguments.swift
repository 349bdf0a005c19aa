import ArgumentParser
import Merge
import Repo

// Choices of the library, typed on the command line: help lists their values and a wrong one is a
// usage error naming them.
extension VocabularyPolicy: ExpressibleByArgument {}
extension FileConflictRule: ExpressibleByArgument {}
extension OneSidedRule: ExpressibleByArgument {}
extension ReversibleView: ExpressibleByArgument {}

/// `NAME=VALUE` metrics (`commit --metric`, `merge --metric`).
enum Metric {
    /// The metric, or nil unless the value is a finite number and the name is not empty.
    static func parse(_ text: String) -> Commit.Metric? {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else { return nil }
        let name = String(text[..<eq]).trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty, let value = Double(text[text.index(after: eq)...].trimmingCharacters(in: .whitespaces)), value.isFinite else { return nil }
        return Commit.Metric(name: name, value: value)
    }
}
