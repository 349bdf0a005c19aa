import Delta
import Merge
import Repo

/// One parser of untrusted bytes, as the fuzz driver exercises it.
///
/// A target either accepts an input or rejects it with a typed error (``DeltaError``,
/// ``MergeError``, ``RepoError``) whose description is one line. Anything else is a finding: a
/// different error type, a multi-line message, or a broken invariant (``FuzzViolation``). Crashes,
/// traps and hangs end the process; `mrepo-fuzz` saves the input that caused them.
public struct FuzzTarget: Sendable {
    /// Command-line name, e.g. `safetensors-header`.
    public let name: String
    /// What the target exercises, one line.
    public let summary: String
    /// How inputs are mutated.
    public let dialect: Mutator.Dialect
    /// Inputs are cut to this size: the parsers' own limits are tested by dedicated regression
    /// tests, and small inputs keep iterations fast.
    public let maxInputBytes: Int
    /// Text every error message must contain: the file (or object) the input came from.
    public let mention: String
    /// Valid inputs the mutator starts from; each must be accepted.
    public let seeds: @Sendable () throws -> [[UInt8]]
    /// Known-hostile inputs, run and mutated like the seeds; each must be rejected.
    public let hostile: @Sendable () throws -> [[UInt8]]
    /// Sets up whatever the target needs under `scratch` (a fresh folder) and returns the
    /// function called once per input.
    public let prepare: @Sendable (_ scratch: String) throws -> FuzzRunner
    /// A format-aware mutation used instead of the generic one half of the time (nil: none).
    public let mutate: (@Sendable (_ mutator: inout Mutator, _ input: [UInt8], _ corpus: [[UInt8]]) -> [UInt8])?

    public init(name: String, summary: String, dialect: Mutator.Dialect, maxInputBytes: Int, mention: String,
                seeds: @escaping @Sendable () throws -> [[UInt8]],
                hostile: @escaping @Sendable () throws -> [[UInt8]] = { [] },
                mutate: (@Sendable (_ mutator: inout Mutator, _ input: [UInt8], _ corpus: [[UInt8]]) -> [UInt8])? = nil,
                prepare: @escaping @Sendable (_ scratch: String) throws -> FuzzRunner) {
        self.name = name
        self.summary = summary
        self.dialect = dialect
        self.maxInputBytes = maxInputBytes
        self.mention = mention
        self.seeds = seeds
        self.hostile = hostile
        self.mutate = mutate
        self.prepare = prepare
    }

    /// Every target, in the order `mrepo-fuzz` runs them. The remote protocol's messages get an
    /// entry here when the protocol exists.
    public static let all: [FuzzTarget] = [
        SafetensorsHeaderTarget.target,
        ObjectTarget.target,
        RecipeTarget.target,
        AdapterConfigTarget.target,
        ShardIndexTarget.target,
    ]

    public static func named(_ name: String) -> FuzzTarget? {
        all.first { $0.name == name }
    }
}

/// Runs one input through a prepared target.
public final class FuzzRunner {
    private let body: ([UInt8]) throws -> Void
    private let cleanup: () -> Void

    public init(_ body: @escaping ([UInt8]) throws -> Void, cleanup: @escaping () -> Void = {}) {
        self.body = body
        self.cleanup = cleanup
    }

    public func callAsFunction(_ input: [UInt8]) throws {
        try body(input)
    }

    deinit { cleanup() }
}

/// A broken invariant: the parser accepted an input but what it returned is wrong.
public struct FuzzViolation: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// How one input ended.
public enum FuzzOutcome: Equatable, Sendable {
    /// Parsed (and every invariant held).
    case accepted
    /// Refused with a typed one-line error.
    case rejected
    /// Anything else; the text says what.
    case finding(String)

    /// Classifies what running an input did.
    public static func classify(mention: String, _ run: () throws -> Void) -> FuzzOutcome {
        do {
            try run()
            return .accepted
        } catch let error as FuzzViolation {
            return .finding("invariant: \(error.description)")
        } catch {
            let text: String
            switch error {
            case let e as DeltaError: text = e.description
            case let e as MergeError: text = e.description
            case let e as RepoError: text = e.description
            default: return .finding("untyped error \(type(of: error)): \(String(describing: error).prefix(300))")
            }
            if text.contains(where: \.isNewline) {
                return .finding("error message spans several lines: \(text.debugDescription.prefix(300))")
            }
            if !text.contains(mention) { return .finding("error message does not name '\(mention)': \(text.prefix(300))") }
            return .rejected
        }
    }
}

/// Checks an invariant of an accepted input.
func require(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) throws {
    if !condition() { throw FuzzViolation(message()) }
}

/// Whether the slower checks run for an input: one input in `n`, chosen by the input's bytes, so
/// `mrepo-fuzz replay` repeats exactly what the run did.
func slowChecks(_ input: [UInt8], oneIn n: UInt64) -> Bool {
    SeededRandom.fnv1a(bytes: input) % n == 0
}

extension SeededRandom {
    static func fnv1a(bytes: [UInt8]) -> UInt64 {
        var h: UInt64 = 0xCBF2_9CE4_8422_2325
        for b in bytes { h = (h ^ UInt64(b)) &* 0x100_0000_01B3 }
        return h
    }
}
