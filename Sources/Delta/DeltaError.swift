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

    public var description: String {
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
    return code == ENOSPC || code == EDQUOT ? "disk full (\(text))" : text
}
