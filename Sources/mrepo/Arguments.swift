import ArgumentParser
import Delta
import Merge
import Repo

// Choices of the library, typed on the command line: help lists their values and a wrong one is a
// usage error naming them.
extension VocabularyPolicy: ExpressibleByArgument {}
extension FileConflictRule: ExpressibleByArgument {}
extension OneSidedRule: ExpressibleByArgument {}
extension ReversibleView: ExpressibleByArgument {}
extension TaskVectorBalance: ExpressibleByArgument {}
extension SearchObjective: ExpressibleByArgument {}

/// `merge --dtype`: a floating-point dtype, spelled as safetensors does (F32, BF16) or as mergekit
/// does (float32, bfloat16); anything else is a usage error naming the option (the option's help
/// lists the common spellings).
struct FloatDType: ExpressibleByArgument {
    var dtype: DType

    init?(argument: String) {
        guard let dtype = DType(parsing: argument), dtype.isFloatingPoint else { return nil }
        self.dtype = dtype
    }
}

/// `--set NAME=VALUE` or `--set NAME[GLOB]=VALUE`: a method parameter, for every tensor or for the
/// tensors matching the glob (`merge`, `resolve`).
struct ParameterSetting: ExpressibleByArgument {
    /// As typed, for messages.
    var text: String
    var name: String
    var glob: String?
    var value: ParameterValue

    init?(argument: String) {
        guard let eq = argument.firstIndex(of: "="), eq != argument.startIndex else { return nil }
        text = argument
        name = String(argument[..<eq])
        if let open = name.firstIndex(of: "["), name.hasSuffix("]") {
            let inner = String(name[name.index(after: open)..<name.index(before: name.endIndex)])
            // `density[]=0.3` matched nothing, and `density[[]=0.3` was taken for the glob "[".
            guard !inner.isEmpty, ParameterCondition.isWellFormedGlob(inner) else { return nil }
            glob = inner
            name = String(name[..<open])
        }
        value = ParameterValue.parse(String(argument[argument.index(after: eq)...]))
    }
}

/// `--weight BRANCH=W`: an expert's weight.
struct ExpertWeight: ExpressibleByArgument {
    var expert: String
    var weight: Double

    init?(argument: String) {
        // The last `=`: a branch name may hold one, a number never does.
        guard let eq = argument.lastIndex(of: "="), let weight = Double(argument[argument.index(after: eq)...]) else { return nil }
        (expert, self.weight) = (String(argument[..<eq]), weight)
    }
}

/// `--expert BRANCH:NAME=VALUE`: any per-expert parameter.
struct ExpertSetting: ExpressibleByArgument {
    var expert: String
    var setting: ParameterSetting

    init?(argument: String) {
        guard let colon = argument.firstIndex(of: ":"), let setting = ParameterSetting(argument: String(argument[argument.index(after: colon)...])) else {
            return nil
        }
        (expert, self.setting) = (String(argument[..<colon]), setting)
    }
}

/// `--lines ALPHA,BETA` (LiNeS): two numbers, parsed with the command line so a malformed value is a
/// usage error naming the option.
struct LinesArgument: ExpressibleByArgument {
    var alpha: Double
    var beta: Double

    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false).map { Double($0) }
        guard parts.count == 2, let alpha = parts[0], let beta = parts[1] else { return nil }
        (self.alpha, self.beta) = (alpha, beta)
    }
}

/// `--consensus K[,LAMBDA]` (TALL masks): an expert count and a threshold factor (default 1).
struct ConsensusArgument: ExpressibleByArgument {
    var k: Int
    var lambda: Double

    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let k = Int(parts[0]), let lambda = parts.count == 2 ? Double(parts[1]) : 1 else { return nil }
        (self.k, self.lambda) = (k, lambda)
    }
}

/// `NAME=VALUE` metrics (`commit --metric`, `merge --metric`).
enum Metric {
    /// The metric, or nil unless the value is a finite number and the name is one word (no
    /// spaces or control characters: `eval loss=1` would print as an ambiguous `eval loss=1.0000`).
    static func parse(_ text: String) -> Commit.Metric? {
        guard let eq = text.firstIndex(of: "="), eq != text.startIndex else { return nil }
        let name = String(text[..<eq]).trimmingCharacters(in: .whitespaces)
        guard !name.isEmpty, !name.unicodeScalars.contains(where: { $0.properties.isWhitespace || $0.value < 0x20 || $0.value == 0x7F }),
              let value = Double(text[text.index(after: eq)...].trimmingCharacters(in: .whitespaces)), value.isFinite else { return nil }
        return Commit.Metric(name: name, value: value)
    }
}

/// A remote URL's shape is checked with the command line, so a malformed one is a usage error (exit 64)
/// like any other bad argument, before a repository is opened or a folder created.
func validateRemoteURL(_ url: String) throws {
    do { _ = try RemoteLocation(parsing: url) } catch let error as RepoError { throw ValidationError(error.description) }
}
