/// A regular expression matched in bounded time, for the patterns of a PEFT `adapter_config.json`
/// (`rank_pattern`, `alpha_pattern`).
///
/// A backtracking engine (Python's `re`, Swift's `Regex`) takes exponential time on patterns such
/// as `(a+)+$`, and a config file is input mrepo does not control. This one compiles the pattern
/// to a Thompson NFA and simulates every state at once (a Pike VM without captures), so matching
/// costs at most (subject length + 1) × (program size) steps, and every match draws on a step
/// budget the caller sets. It answers only whether the whole subject matches (`fullmatch`).
///
/// Syntax: literals, `.`, `[...]`/`[^...]` with ranges, `\d \w \s \D \W \S`, escaped
/// punctuation, groups `(...)` and `(?:...)`, `|`, the quantifiers `* + ? {n} {n,} {n,m}` (lazy
/// forms match the same strings), and the anchors `^` and `$`. Back-references, look-around,
/// named groups and inline flags are refused with an error.
public struct BoundedRegex: Sendable {
    /// The longest pattern accepted, in characters.
    public static let maxPatternLength = 500
    /// The largest compiled program accepted (counted repetitions are expanded).
    public static let maxProgramSize = 5_000

    /// Why a pattern is refused.
    public struct SyntaxError: Error, Equatable, Sendable {
        public var message: String
    }

    /// Thrown when matching would exceed the caller's budget.
    public struct BudgetExceeded: Error, Equatable, Sendable {}

    enum Item: Sendable {
        case range(UInt32, UInt32)
        case digit(Bool), word(Bool), space(Bool)

        func matches(_ c: Unicode.Scalar) -> Bool {
            switch self {
            case let .range(lo, hi): return c.value >= lo && c.value <= hi
            case let .digit(positive): return BoundedRegex.isDigit(c) == positive
            case let .word(positive): return BoundedRegex.isWord(c) == positive
            case let .space(positive): return BoundedRegex.isSpace(c) == positive
            }
        }
    }

    struct CharSet: Sendable {
        var items: [Item]
        var negated: Bool
        func matches(_ c: Unicode.Scalar) -> Bool { items.contains { $0.matches(c) } != negated }
    }

    enum Instruction: Sendable {
        case set(CharSet)
        /// Any character but a line feed.
        case any
        case split(Int, Int)
        case jump(Int)
        case atStart, atEnd
        case match
    }

    let program: [Instruction]

    /// Compiles a pattern.
    public init(_ pattern: String) throws(SyntaxError) {
        let scalars = Array(pattern.unicodeScalars)
        guard scalars.count <= BoundedRegex.maxPatternLength else {
            throw SyntaxError(message: "longer than \(BoundedRegex.maxPatternLength) characters")
        }
        var parser = Parser(scalars: scalars)
        let node = try parser.parseAll()
        var compiler = Compiler()
        try compiler.emit(node)
        compiler.program.append(.match)
        program = compiler.program
    }

    /// Whether a pattern has any character that is special in a regular expression; one without
    /// matches exactly itself.
    public static func isLiteral(_ pattern: String) -> Bool {
        !pattern.unicodeScalars.contains { "\\.^$|?*+()[]{}".unicodeScalars.contains($0) }
    }

    /// Whether the whole of `subject` matches. Each step (one program instruction visited for one
    /// character) is taken from `budget`.
    public func wholeMatch(_ subject: String, budget: inout Int) throws(BudgetExceeded) -> Bool {
        let text = Array(subject.unicodeScalars)
        var current: [Int] = []
        var next: [Int] = []
        var mark = [Int](repeating: -1, count: program.count)
        var stack: [Int] = []
        // Adds the states reachable from `pc` without reading a character, at position `position`.
        func add(_ pc: Int, to list: inout [Int], position: Int, generation: Int) throws(BudgetExceeded) {
            stack.append(pc)
            while let p = stack.popLast() {
                guard mark[p] != generation else { continue }
                mark[p] = generation
                budget -= 1
                guard budget >= 0 else { throw BudgetExceeded() }
                switch program[p] {
                case let .jump(target): stack.append(target)
                case let .split(a, b): stack.append(b); stack.append(a)
                case .atStart: if position == 0 { stack.append(p + 1) }
                case .atEnd: if position == text.count { stack.append(p + 1) }
                case .set, .any, .match: list.append(p)
                }
            }
        }
        try add(0, to: &current, position: 0, generation: 0)
        for (i, c) in text.enumerated() {
            next.removeAll(keepingCapacity: true)
            for pc in current {
                let advances: Bool
                switch program[pc] {
                case let .set(set): advances = set.matches(c)
                case .any: advances = c != "\n"
                default: advances = false
                }
                if advances { try add(pc + 1, to: &next, position: i + 1, generation: i + 1) }
            }
            swap(&current, &next)
            if current.isEmpty { return false }
        }
        return current.contains { if case .match = program[$0] { return true } else { return false } }
    }

    static func isDigit(_ c: Unicode.Scalar) -> Bool { c.properties.numericType == .decimal }
    static func isWord(_ c: Unicode.Scalar) -> Bool { c == "_" || c.properties.isAlphabetic || isDigit(c) }
    static func isSpace(_ c: Unicode.Scalar) -> Bool { c.properties.isWhitespace }
}

// MARK: - Parsing

extension BoundedRegex {
    indirect enum Node {
        case empty
        case set(CharSet)
        case any
        case atStart, atEnd
        case sequence([Node])
        case alternation([Node])
        case repetition(Node, min: Int, max: Int?)
    }

    struct Parser {
        let scalars: [Unicode.Scalar]
        var i = 0
        var depth = 0

        init(scalars: [Unicode.Scalar]) { self.scalars = scalars }

        func fail(_ message: String) -> SyntaxError { SyntaxError(message: message) }

        mutating func parseAll() throws(SyntaxError) -> Node {
            let node = try parseAlternation()
            if i < scalars.count { throw fail("unbalanced ')' at character \(i + 1)") }
            return node
        }

        mutating func parseAlternation() throws(SyntaxError) -> Node {
            var branches = [try parseSequence()]
            while i < scalars.count, scalars[i] == "|" {
                i += 1
                branches.append(try parseSequence())
            }
            return branches.count == 1 ? branches[0] : .alternation(branches)
        }

        mutating func parseSequence() throws(SyntaxError) -> Node {
            var items: [Node] = []
            while i < scalars.count, scalars[i] != "|", scalars[i] != ")" {
                var atom = try parseAtom()
                while let (min, max) = try parseQuantifier() {
                    if case .atStart = atom { throw fail("nothing to repeat at character \(i)") }
                    if case .atEnd = atom { throw fail("nothing to repeat at character \(i)") }
                    atom = .repetition(atom, min: min, max: max)
                }
                items.append(atom)
            }
            return items.count == 1 ? items[0] : items.isEmpty ? .empty : .sequence(items)
        }

        /// `*`, `+`, `?`, `{n}`, `{n,}`, `{n,m}`, each optionally followed by `?` (lazy); nil when
        /// none follows. A `{` that does not open a quantifier is a literal, as in Python.
        mutating func parseQuantifier() throws(SyntaxError) -> (Int, Int?)? {
            guard i < scalars.count else { return nil }
            var result: (Int, Int?)
            switch scalars[i] {
            case "*": result = (0, nil); i += 1
            case "+": result = (1, nil); i += 1
            case "?": result = (0, 1); i += 1
            case "{":
                guard let (bounds, end) = counted(from: i) else { return nil }
                result = bounds
                i = end
            default: return nil
            }
            if i < scalars.count, scalars[i] == "?" { i += 1 }
            if i < scalars.count, "*+".unicodeScalars.contains(scalars[i]) { throw fail("multiple repeat at character \(i + 1)") }
            if let max = result.1, max < result.0 { throw fail("min repeat greater than max repeat") }
            if result.0 > 1000 || (result.1 ?? 0) > 1000 { throw fail("a repeat count above 1000") }
            return result
        }

        func counted(from start: Int) -> ((Int, Int?), Int)? {
            var j = start + 1
            func number() -> Int? {
                var digits = ""
                while j < scalars.count, let d = Character(scalars[j]).wholeNumberValue, scalars[j].isASCII, digits.count < 9 {
                    digits.append(String(d))
                    j += 1
                }
                return digits.isEmpty ? nil : Int(digits)
            }
            let low = number()
            if j < scalars.count, scalars[j] == "}" {
                guard let low else { return nil }
                return ((low, low), j + 1)
            }
            guard j < scalars.count, scalars[j] == "," else { return nil }
            j += 1
            let high = number()
            guard j < scalars.count, scalars[j] == "}" else { return nil }
            return ((low ?? 0, high), j + 1)
        }

        mutating func parseAtom() throws(SyntaxError) -> Node {
            let c = scalars[i]
            i += 1
            switch c {
            case "(":
                if i < scalars.count, scalars[i] == "?" {
                    guard i + 1 < scalars.count, scalars[i + 1] == ":" else {
                        throw fail("'(?' groups (look-around, named groups, flags) are beyond the patterns mrepo matches")
                    }
                    i += 2
                }
                depth += 1
                guard depth <= 100 else { throw fail("groups nested more than 100 deep") }
                let inner = try parseAlternation()
                guard i < scalars.count, scalars[i] == ")" else { throw fail("missing ')'") }
                i += 1
                depth -= 1
                return inner
            case ".": return .any
            case "^": return .atStart
            case "$": return .atEnd
            case "[": return .set(try parseClass())
            case "\\": return .set(try parseEscape(inClass: false))
            case "*", "+", "?": throw fail("nothing to repeat at character \(i)")
            default: return .set(CharSet(items: [.range(c.value, c.value)], negated: false))
            }
        }

        mutating func parseEscape(inClass: Bool) throws(SyntaxError) -> CharSet {
            guard i < scalars.count else { throw fail("a trailing backslash") }
            let c = scalars[i]
            i += 1
            func single(_ s: Unicode.Scalar) -> CharSet { CharSet(items: [.range(s.value, s.value)], negated: false) }
            switch c {
            case "d", "D": return CharSet(items: [.digit(c == "d")], negated: false)
            case "w", "W": return CharSet(items: [.word(c == "w")], negated: false)
            case "s", "S": return CharSet(items: [.space(c == "s")], negated: false)
            case "n": return single("\n")
            case "t": return single("\t")
            case "r": return single("\r")
            default:
                if c.properties.isAlphabetic || c.properties.numericType != nil {
                    throw fail("'\\\(c)' is beyond the patterns mrepo matches (back-references, and letter escapes other than \\d \\w \\s \\n \\t \\r)")
                }
                return single(c)
            }
        }

        mutating func parseClass() throws(SyntaxError) -> CharSet {
            var set = CharSet(items: [], negated: false)
            if i < scalars.count, scalars[i] == "^" {
                set.negated = true
                i += 1
            }
            var first = true
            while true {
                guard i < scalars.count else { throw fail("unterminated character set") }
                let c = scalars[i]
                if c == "]", !first {
                    i += 1
                    return set
                }
                first = false
                i += 1
                var low: UInt32
                if c == "\\" {
                    let escaped = try parseEscape(inClass: true)
                    guard case let .range(a, b) = escaped.items[0], a == b else {
                        set.items += escaped.items
                        continue
                    }
                    low = a
                } else {
                    low = c.value
                }
                if i + 1 < scalars.count, scalars[i] == "-", scalars[i + 1] != "]" {
                    i += 1
                    var high = scalars[i].value
                    i += 1
                    if scalars[i - 1] == "\\" {
                        let escaped = try parseEscape(inClass: true)
                        guard case let .range(a, b) = escaped.items[0], a == b else { throw fail("bad character range") }
                        high = a
                    }
                    guard low <= high else { throw fail("bad character range") }
                    set.items.append(.range(low, high))
                } else {
                    set.items.append(.range(low, low))
                }
            }
        }
    }

    struct Compiler {
        var program: [Instruction] = []

        mutating func append(_ instruction: Instruction) throws(SyntaxError) {
            guard program.count < BoundedRegex.maxProgramSize else {
                throw SyntaxError(message: "too complex (more than \(BoundedRegex.maxProgramSize) states once repeats are expanded)")
            }
            program.append(instruction)
        }

        mutating func emit(_ node: Node) throws(SyntaxError) {
            switch node {
            case .empty: break
            case let .set(set): try append(.set(set))
            case .any: try append(.any)
            case .atStart: try append(.atStart)
            case .atEnd: try append(.atEnd)
            case let .sequence(items):
                for item in items { try emit(item) }
            case let .alternation(branches):
                // split L1, next; L1: branch; jump end; next: split ...
                var jumps: [Int] = []
                for (k, branch) in branches.enumerated() {
                    if k + 1 < branches.count {
                        let split = program.count
                        try append(.split(split + 1, -1))
                        try emit(branch)
                        jumps.append(program.count)
                        try append(.jump(-1))
                        program[split] = .split(split + 1, program.count)
                    } else {
                        try emit(branch)
                    }
                }
                for j in jumps { program[j] = .jump(program.count) }
            case let .repetition(inner, min, max):
                for _ in 0..<min { try emit(inner) }
                if let max {
                    // Each optional copy may be skipped to the common end.
                    var splits: [Int] = []
                    for _ in min..<max {
                        splits.append(program.count)
                        try append(.split(program.count + 1, -1))
                        try emit(inner)
                    }
                    for s in splits { program[s] = .split(s + 1, program.count) }
                } else {
                    let loop = program.count
                    try append(.split(loop + 1, -1))
                    try emit(inner)
                    try append(.jump(loop))
                    program[loop] = .split(loop + 1, program.count)
                }
            }
        }
    }
}
