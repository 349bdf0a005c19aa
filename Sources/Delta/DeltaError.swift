/// An error from reading, writing, hashing or coding tensors.
///
/// Every case carries the file (or object) and, where one is involved, the tensor, so that
/// ``description`` is a single line a user can act on:
/// `model.safetensors: tensor 'lm_head.weight': data ends at byte 1048576, data section has 1000000`.
public enum DeltaError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The safetensors header is malformed; `problem` says how.
    case invalidHeader(file: String, problem: String)
    /// One tensor entry of a safetensors header is malformed.
    case invalidTensor(file: String, tensor: String, problem: String)
    /// The file ends before the data it announces.
    case truncatedData(file: String, expected: Int, actual: Int)
    /// A sharded checkpoint's index file is malformed or disagrees with its shards.
    case invalidShardIndex(file: String, problem: String)
    /// A stored chunk or object failed to decode, or decoded to bytes whose hash is wrong.
    case corruptData(object: String, problem: String)
    /// Two tensors that must agree in dtype or shape do not.
    case mismatch(tensor: String, problem: String)
    /// A system call failed.
    case io(path: String, reason: String)
    /// A feature of the data that this build does not support.
    case unsupported(what: String)

    /// One line whatever the names in it hold (``Swift/String/escapingControlCharacters``).
    public var description: String { message.escapingControlCharacters }

    /// Whether this is a system call that failed for want of space (ENOSPC or EDQUOT): its reason
    /// then holds ``errnoDescription(_:)``'s "disk full (...)".
    public var isDiskFull: Bool {
        if case let .io(_, reason) = self { return DeltaError.isDiskFull(reason: reason) }
        return false
    }

    /// Whether a failed call's reason (an `.io` case's) is ``errnoDescription(_:)``'s full disk.
    public static func isDiskFull(reason: String) -> Bool { reason.contains(diskFullWords) }

    private var message: String {
        switch self {
        case let .invalidHeader(file, problem):
            return "\(file): \(problem)"
        case let .invalidTensor(file, tensor, problem):
            return "\(file): tensor '\(tensor)': \(problem)"
        case let .truncatedData(file, expected, actual):
            return "\(file): truncated: expected \(expected) bytes, file has \(actual)"
        case let .invalidShardIndex(file, problem):
            return "\(file): \(problem)"
        case let .corruptData(object, problem):
            return "\(object): corrupt: \(problem)"
        case let .mismatch(tensor, problem):
            return "tensor '\(tensor)': \(problem)"
        case let .io(path, reason):
            return "\(path): \(reason)"
        case let .unsupported(what):
            return "unsupported: \(what)"
        }
    }
}

extension String {
    /// The text with control characters and line separators written as escapes (`\n`, `\r`,
    /// `\t`, `\u{1B}`): names taken from a file (a tensor, a key, a dtype) may hold any of them,
    /// and an error message must stay one line that a terminal shows as it is.
    public var escapingControlCharacters: String {
        guard unicodeScalars.contains(where: String.needsEscape) else { return self }
        var out = String.UnicodeScalarView()
        for scalar in unicodeScalars {
            guard String.needsEscape(scalar) else {
                out.append(scalar)
                continue
            }
            let escape: String
            switch scalar {
            case "\n": escape = "\\n"
            case "\r": escape = "\\r"
            case "\t": escape = "\\t"
            default: escape = "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
            }
            out.append(contentsOf: escape.unicodeScalars)
        }
        return String(out)
    }

    /// C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
    static func needsEscape(_ s: Unicode.Scalar) -> Bool {
        s.value < 0x20 || (0x7F...0x9F).contains(s.value) || s.value == 0x2028 || s.value == 0x2029
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The text of the current `errno`, e.g. "Permission denied"; a full disk (or quota) reads
/// "disk full (No space left on device)", so that every command says so in the same words.
@inline(never)
public func errnoDescription(_ code: Int32 = errno) -> String {
    let text = String(cString: strerror(code))
    if code == EMFILE { return "\(text) (this process may open \(OpenFileLimit.current); raise it with 'ulimit -n')" }
    return code == ENOSPC || code == EDQUOT ? "\(diskFullWords)\(text))" : text
}

/// How ``errnoDescription(_:)`` starts a full disk's text (``DeltaError/isDiskFull``).
let diskFullWords = "disk full ("
