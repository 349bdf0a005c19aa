import Delta
import Foundation

/// A bisection in progress in one working tree (`mrepo bisect`, table `bisect`, docs/format.md
/// §6.9): where HEAD was when it started, and every commit marked since, in order.
public struct BisectState: Sendable, Equatable, Codable {
    /// What a commit was marked as: `bad` (git's "new": it has the change looked for), `good`
    /// ("old": it does not), or `skip` (it cannot be tested).
    public enum Term: String, Sendable, Codable, CaseIterable {
        case bad, good, skip
    }

    public struct Mark: Sendable, Equatable, Codable {
        public var term: Term
        public var commit: ObjectID

        public init(term: Term, commit: ObjectID) {
            self.term = term
            self.commit = commit
        }
    }

    /// The branch HEAD was on when the bisection started (nil: HEAD was detached).
    public var startBranch: String?
    /// The commit HEAD was at then (nil on a branch without commits, which cannot bisect).
    public var startCommit: ObjectID?
    /// Every mark, oldest first (`bisect log`).
    public var marks: [Mark]

    public init(startBranch: String?, startCommit: ObjectID?, marks: [Mark] = []) {
        self.startBranch = startBranch
        self.startCommit = startCommit
        self.marks = marks
    }

    /// The newest commit marked bad: the one the search narrows down from (git's refs/bisect/bad).
    public var bad: ObjectID? { marks.last { $0.term == .bad }?.commit }
    /// Every commit marked good, without repeats, in the order marked.
    public var good: [ObjectID] { unique(marks.filter { $0.term == .good }.map(\.commit)) }
    /// Every commit marked skip and not marked otherwise later.
    public var skipped: [ObjectID] {
        var last: [ObjectID: Term] = [:]
        for m in marks { last[m.commit] = m.term }
        return unique(marks.filter { $0.term == .skip && last[$0.commit] == .skip }.map(\.commit))
    }

    /// Every commit the state names (gc keeps them, with their history).
    public var commits: [ObjectID] { unique(marks.map(\.commit) + (startCommit.map { [$0] } ?? [])) }

    private func unique(_ ids: [ObjectID]) -> [ObjectID] {
        var seen = Set<ObjectID>()
        return ids.filter { seen.insert($0).inserted }
    }
}

/// Where a bisection stands: the commits still suspect and the next one to test, or the answer.
public struct BisectStep: Sendable, Equatable {
    /// The commits that may still be the first bad one (the bad commit included), newest first.
    public var suspects: [ObjectID]
    /// The commit to test next; nil when the answer is known (or only skipped commits are left).
    public var next: ObjectID?
    /// The first bad commit, once only it is left.
    public var firstBad: ObjectID?
    /// How many suspects the next commit reaches (itself included): the suspects left if it is bad.
    public var nextWeight = 0
    /// True when `next` is the merge base of the bad commit and a good one it does not contain,
    /// tested before the suspects (git's merge-base check).
    public var testsMergeBase = false
    /// Commits left to test if the next one is good, as git counts them ("left to test after this").
    public var leftAfterNext: Int { next == nil ? 0 : max(0, suspects.count - nextWeight - 1) }
    /// About how many more tests the answer needs, as git estimates it: log2 of the suspects,
    /// one less when their count sits just above a power of two.
    public var stepsLeft: Int {
        let all = suspects.count
        guard all >= 2 else { return 0 }
        let n = Int.bitWidth - 1 - all.leadingZeroBitCount
        let e = 1 << n
        return e < 3 * (all - e) ? n : n - 1
    }
    /// True when only the bad commit and skipped commits are left: the first bad commit is one
    /// of `suspects`, and testing cannot tell which.
    public var onlySkippedLeft: Bool { next == nil && firstBad == nil }
}

/// The choice of the next commit to test (git's `rev-list --bisect`): among the commits the bad
/// one reaches and no good one does, the one that splits them most evenly.
public enum BisectPlanner {
    /// One commit of the graph: its parents (as held here; a shallow clone's boundary has none).
    public struct Node: Sendable {
        public var parents: [ObjectID]
        public var generation: Int

        public init(parents: [ObjectID], generation: Int) {
            self.parents = parents
            self.generation = generation
        }
    }

    /// Up to this many suspects, each is weighed exactly (a bit set of its suspect ancestors);
    /// above, by generation alone (the middle of the range), which is exact on a straight history.
    static let exactLimit = 4096

    /// - Parameters:
    ///   - node: the commit graph, looked up by id (nil: the commit is not held).
    public static func step(bad: ObjectID, good: [ObjectID], skipped: Set<ObjectID>,
                            node: (ObjectID) throws -> Node?) throws -> BisectStep {
        var cache: [ObjectID: Node] = [:]
        func lookup(_ id: ObjectID) throws -> Node? {
            if let n = cache[id] { return n }
            let n = try node(id)
            cache[id] = n
            return n
        }
        // Everything a good commit reaches is good.
        var cleared = Set<ObjectID>()
        var stack = good
        while let id = stack.popLast() {
            guard cleared.insert(id).inserted, let n = try lookup(id) else { continue }
            stack += n.parents
        }
        // The suspects: what the bad commit reaches, short of those.
        var suspects = Set<ObjectID>()
        stack = [bad]
        while let id = stack.popLast() {
            guard !cleared.contains(id), suspects.insert(id).inserted, let n = try lookup(id) else { continue }
            stack += n.parents
        }
        let ordered = try suspects.sorted { a, b in
            let ga = try lookup(a)?.generation ?? 0, gb = try lookup(b)?.generation ?? 0
            return ga != gb ? ga > gb : a.hex < b.hex
        }
        let testable = ordered.filter { $0 != bad && !skipped.contains($0) }
        if testable.isEmpty {
            let onlyBad = ordered.allSatisfy { $0 == bad }
            return BisectStep(suspects: ordered, next: nil, firstBad: onlyBad ? bad : nil)
        }
        let total = ordered.count
        let weights = try ancestorCounts(ordered, lookup: lookup)
        var best: (score: Int, id: ObjectID)?
        // Newest first: on a tie, the newer commit (as git prefers the first found from the top).
        for id in testable {
            let w = weights[id] ?? 0
            let score = min(w, total - w)
            if best == nil || score > best!.score { best = (score, id) }
        }
        return BisectStep(suspects: ordered, next: best?.id, firstBad: nil, nextWeight: best.map { weights[$0.id] ?? 0 } ?? 0)
    }

    /// For each suspect, how many suspects it reaches (itself included).
    private static func ancestorCounts(_ newestFirst: [ObjectID], lookup: (ObjectID) throws -> Node?) throws -> [ObjectID: Int] {
        let oldestFirst = Array(newestFirst.reversed())
        let index = Dictionary(uniqueKeysWithValues: oldestFirst.enumerated().map { ($1, $0) })
        if oldestFirst.count > exactLimit {
            // Generation order: the count of suspects at or below each generation.
            var counts: [ObjectID: Int] = [:]
            for (i, id) in oldestFirst.enumerated() { counts[id] = i + 1 }
            return counts
        }
        let words = (oldestFirst.count + 63) / 64
        var bits = [UInt64](repeating: 0, count: oldestFirst.count * words)
        var counts: [ObjectID: Int] = [:]
        for (i, id) in oldestFirst.enumerated() {
            bits[i * words + i / 64] |= 1 << UInt64(i % 64)
            for p in try lookup(id)?.parents ?? [] {
                // Parents come earlier in generation order.
                guard let j = index[p] else { continue }
                for w in 0..<words { bits[i * words + w] |= bits[j * words + w] }
            }
            var n = 0
            for w in 0..<words { n += bits[i * words + w].nonzeroBitCount }
            counts[id] = n
        }
        return counts
    }
}
