/// Choices that shape a merge beyond the method and its parameters. Each is recorded in the merge
/// commit and in its recipe, so a re-run gives the same bytes.

/// What to do with vocabulary matrices (embeddings, LM heads) whose row counts differ.
public enum VocabularyPolicy: String, Sendable, CaseIterable, Codable {
    /// Keep the base's rows: rows beyond them are dropped (and listed in the report).
    case base
    /// Keep every row of the largest input: rows only some inputs have are averaged over those.
    case union
    /// Keep the rows all inputs share.
    case common
}

/// How a non-tensor file changed on several sides is settled.
public enum FileConflictRule: String, Sendable, CaseIterable, Codable {
    /// Take the current branch's version (the first expert's when HEAD is the merge base).
    case ours
    /// Take the last merged branch's version.
    case theirs
    /// Keep the merge base's version.
    case base
}

/// What happens to a floating-point tensor that only some experts changed.
public enum OneSidedRule: String, Sendable, CaseIterable, Codable {
    /// The method's math applies to it, as to every tensor some expert changed (mergekit's
    /// behaviour: a recipe gives the same numbers whatever each branch touched). The default.
    case merge
    /// git's rule: a tensor changed on one side only (or identically on several) is taken bit for bit.
    case take
}

/// How an unresolved tensor of a stopped merge was settled, as recorded in the merge commit and
/// its recipe. Replaying it on a re-run reproduces the merge bit for bit.
public struct RecordedResolution: Sendable, Equatable, Codable {
    public enum How: String, Sendable, Codable, CaseIterable {
        /// One expert's tensor, taken as is (`resolve --ours` or `--theirs`).
        case expert
        /// The merge base's tensor (`resolve --base`).
        case base
        /// Merged by another method (`resolve --method`).
        case method
    }

    /// The tensor's name.
    public var tensor: String
    public var how: How
    /// The option that settled it, as typed: `ours`, `theirs`, `base` or `method`.
    public var option: String
    /// For `.expert`: the commit of the expert whose tensor was taken.
    public var expert: String?
    /// For `.method`: the method and its parameters (the experts are the merge's).
    public var method: String?
    public var parameters: [String: ParameterValue]?
    public var seed: UInt64?

    public init(tensor: String, how: How, option: String, expert: String? = nil, method: String? = nil,
                parameters: [String: ParameterValue]? = nil, seed: UInt64? = nil) {
        self.tensor = tensor
        self.how = how
        self.option = option
        self.expert = expert
        self.method = method
        self.parameters = parameters
        self.seed = seed
    }

    /// One line for `show` and the report: `ours (a1b2c3d4)`, `base`, `method ties density=0.3`.
    public var summary: String {
        switch how {
        case .expert: return "\(option)" + (expert.map { " (\($0.prefix(12)))" } ?? "")
        case .base: return "base"
        case .method:
            let params = (parameters ?? [:]).keys.sorted().map { "\($0)=\(parameters![$0]!)" }
            return (["method", method ?? "?"] + params).joined(separator: " ")
        }
    }
}

/// Options of a merge that are not the method's parameters: recorded with the merge (as the
/// `mrepo:` block of its recipe) and read back from a recipe file.
public struct MergeExtensions: Sendable, Equatable {
    /// The merge base, for methods whose recipe has no `base_model` (linear: mergekit would take a
    /// `base_model` as one more input).
    public var mergeBase: String?
    public var oneSided: OneSidedRule?
    public var vocabulary: VocabularyPolicy?
    public var fileConflict: FileConflictRule?
    public var thresholds: ConflictThresholds
    /// Tensors settled by `resolve` in the recorded merge, replayed when the recipe runs again.
    public var resolutions: [RecordedResolution]

    public init(mergeBase: String? = nil, oneSided: OneSidedRule? = nil, vocabulary: VocabularyPolicy? = nil, fileConflict: FileConflictRule? = nil,
                thresholds: ConflictThresholds = ConflictThresholds(), resolutions: [RecordedResolution] = []) {
        self.mergeBase = mergeBase
        self.oneSided = oneSided
        self.vocabulary = vocabulary
        self.fileConflict = fileConflict
        self.thresholds = thresholds
        self.resolutions = resolutions
    }

    public var isEmpty: Bool {
        mergeBase == nil && oneSided == nil && vocabulary == nil && fileConflict == nil && thresholds.isEmpty && resolutions.isEmpty
    }
}

extension ParameterValue: Codable {
    public init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let b = try? c.decode(Bool.self) {
            self = .flag(b)
        } else if let x = try? c.decode(Double.self) {
            self = .number(x)
        } else if let s = try? c.decode(String.self) {
            self = .text(s)
        } else if let xs = try? c.decode([Double].self) {
            self = .gradient(xs)
        } else {
            self = .conditional(try c.decode([ParameterCondition].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        // Non-finite numbers as null, as the hand-built recipe JSON of earlier versions wrote them.
        case let .number(x): if x.isFinite { try c.encode(x) } else { try c.encodeNil() }
        case let .gradient(xs): try c.encode(xs.map { $0.isFinite ? $0 : nil })
        case let .flag(b): try c.encode(b)
        case let .text(s): try c.encode(s)
        case let .conditional(cs): try c.encode(cs)
        }
    }
}

