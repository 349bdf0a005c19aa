import Delta
import Foundation
import Merge

/// `merge --search`: how candidates are proposed, evaluated and chosen (docs/merging.md, "Recipe search").
public struct SearchOptions: Sendable {
    /// The evaluation command; the candidate folder is appended as its last argument.
    public var command: String
    public var trials: Int
    /// Stop starting evaluations after this many seconds (nil: no limit).
    public var timeBudget: Double?
    public var seed: UInt64
    /// Evaluations run at once.
    public var jobs: Int
    public var space: SearchSpace
    /// Where the space came from, for error messages ("search space" when built in).
    public var spaceFile: String
    public var objective: SearchObjective
    /// Kill an evaluation after this many seconds (nil: never).
    public var evalTimeout: Double?
    /// Resume the newest unfinished search with the same definition (`--continue`).
    public var resume: Bool

    public init(command: String, trials: Int = 30, timeBudget: Double? = nil, seed: UInt64 = 0, jobs: Int = 1,
                space: SearchSpace = SearchSpace(), spaceFile: String = "search space", objective: SearchObjective = .mean,
                evalTimeout: Double? = nil, resume: Bool = false) {
        self.command = command
        self.trials = trials
        self.timeBudget = timeBudget
        self.seed = seed
        self.jobs = jobs
        self.space = space
        self.spaceFile = spaceFile
        self.objective = objective
        self.evalTimeout = evalTimeout
        self.resume = resume
    }
}

/// What a search did: every trial, the winner and its merge.
public struct SearchOutcome: Sendable {
    public var searchID: String
    public var objective: SearchObjective
    public var trials: [Trial]
    /// The winning trial's number.
    public var winner: Int
    /// Numbers of the evaluated trials no other trial dominates (every task at least as good).
    public var front: [Int]
    /// Trials taken from the store instead of being evaluated again (`--continue`).
    public var resumed: Int
    /// The winner's merge (committed, or conflicted if a threshold stopped it).
    public var merge: MergeOutcome

    /// The objective of each trial (nil: failed), in trial order.
    public var trace: [(number: Int, value: Double?)] {
        trials.map { ($0.number, $0.scores.flatMap(objective.scalar)) }
    }
}
