/// An error from configuring or running a merge. ``description`` is one line.
extension MergeError {
    /// An input of a tensor's merge holds NaN or ±inf (`which`: "the merge base", "expert 'math'").
    static func nonFiniteInput(tensor: String, _ which: String) -> MergeError {
        .tensor(name: tensor, problem: "\(which) holds NaN or ±inf values, which no merge method can weigh ('mrepo check --finite' on its files lists them); nothing was written")
    }
}

public enum MergeError: Error, CustomStringConvertible, Equatable, Sendable {
    /// No method with this id; `known` lists the valid ones.
    case unknownMethod(String, known: [String])
    /// A parameter the method does not take; `known` lists the valid ones.
    case unknownParameter(method: String, parameter: String, known: [String])
    /// A parameter value outside its range, or of the wrong kind.
    case invalidParameter(method: String, parameter: String, problem: String)
    /// A required parameter was not given.
    case missingParameter(method: String, parameter: String)
    /// The inputs do not fit the method (count, base, shapes).
    case invalidInputs(method: String, problem: String)
    /// A tensor that cannot be merged as given.
    case tensor(name: String, problem: String)
    /// A recipe file that cannot be read.
    case invalidRecipe(file: String, problem: String)
    /// An expert lacks a commit metric the method needs (MWA), or its value is unusable.
    case missingExpertMetric(method: String, metric: String, expert: String)
    /// An expert lacks a statistics file the method needs (fisher, regmean).
    case missingExpertStatistics(method: String, file: String, expert: String)
    /// A stored record (a merge report, a recipe) that does not decode: what it is, and why.
    case corruptRecord(String, problem: String)

    /// One line whatever the names in it hold (``Swift/String/escapingControlCharacters``).
    public var description: String { message.escapingControlCharacters }

    private var message: String {
        switch self {
        case let .unknownMethod(name, known):
            return "unknown merge method '\(name)'; valid methods: \(known.joined(separator: ", "))"
        case let .unknownParameter(method, parameter, known):
            return "\(method) has no parameter '\(parameter)'; valid parameters: \(known.isEmpty ? "none" : known.joined(separator: ", "))"
        case let .invalidParameter(method, parameter, problem):
            return "\(method): parameter '\(parameter)' \(problem)"
        case let .missingParameter(method, parameter):
            return "\(method): parameter '\(parameter)' is required"
        case let .invalidInputs(method, problem):
            return "\(method): \(problem)"
        case let .tensor(name, problem):
            return "tensor '\(name)': \(problem)"
        case let .invalidRecipe(file, problem):
            return "\(file): \(problem)"
        case let .missingExpertMetric(method, metric, expert):
            return "\(method): \(expert) records no usable metric '\(metric)' (a finite, positive value); record it with 'mrepo commit --metric \(metric)=VALUE' (or 'mrepo merge --metric' on a merge), or choose another with --set metric=NAME"
        case let .missingExpertStatistics(method, file, expert):
            return "\(method): \(expert) has no \(file); compute it for that expert (scripts/compute_merge_stats.py) and commit it beside the model"
        case let .corruptRecord(what, problem):
            return "\(what) is unreadable (\(problem))"
        }
    }
}
