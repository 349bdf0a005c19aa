import Delta
import Merge
import Repo

// The `--json` documents of `merge --search` and `show --trials`. A trial's members are those of the
// search record stored in the merge commit (`extra.search.trials`), so a script reads both alike.

/// One trial: its number and status, then (for `show --trials`) its objective value and recipe,
/// then its scores, seconds and why it failed. Absent members are left out, as in the record.
struct TrialDocument: Encodable {
    var number: Int
    var status: String
    var objective: Double?
    /// The candidate's recipe as the trial store recorded it, passed through verbatim: it is what
    /// `merge --config` would take, and its members depend on the method.
    var recipe: JSONValue?
    /// Task name → score, by task name.
    var scores: NamedValues<Double>?
    /// Rounded to the millisecond, as recorded.
    var seconds: Double
    var message: String?

    /// - Parameters:
    ///   - objective: the trial's objective value (`show --trials`).
    ///   - recipe: the trial's recipe, when the trial store has it (`show --trials`).
    init(_ t: Trial, objective: Double? = nil, recipe: JSONValue? = nil) {
        number = t.number
        status = t.status.rawValue
        self.objective = objective
        self.recipe = recipe
        scores = t.scores.map { s in NamedValues(members: s.keys.sorted().map { ($0, s[$0]!) }) }
        seconds = (t.seconds * 1000).rounded() / 1000
        message = t.message
    }
}

/// `merge --search --json`: the outcome, the winner and every trial.
struct SearchResultDocument: Encodable {
    /// `committed` or `conflicted` (a threshold stopped the winner's merge).
    var status: String
    var commit: OrNull<String>
    var search: String
    var objective: String
    var winner: Int
    /// The winning trial's recipe, verbatim (see ``TrialDocument/recipe``); `null` if unknown.
    var winnerRecipe: JSONValue
    var front: [Int]
    var resumed: Int
    var trials: [TrialDocument]

    enum CodingKeys: String, CodingKey {
        case status, commit, search, objective, winner, winnerRecipe = "winner_recipe", front, resumed, trials
    }

    init(_ outcome: SearchOutcome, commit: String?) {
        status = commit == nil ? "conflicted" : "committed"
        self.commit = OrNull(commit)
        search = outcome.searchID
        objective = outcome.objective.rawValue
        winner = outcome.winner
        winnerRecipe = outcome.trials.first { $0.number == outcome.winner }?.recipe ?? .null
        front = outcome.front
        resumed = outcome.resumed
        trials = outcome.trials.map { TrialDocument($0) }
    }
}

/// `show --trials --json`: the search behind a merge commit, from its record, and every trial.
struct TrialsDocument: Encodable {
    var commit: String
    var search: OrNull<String>
    var objective: String
    var seed: OrNull<UInt64>
    var budget: OrNull<Int>
    var eval: OrNull<String>
    /// The search space as recorded, verbatim: its members are the user's `--space` file's.
    var space: JSONValue
    var winner: OrNull<Int>
    var front: [Int]
    var trials: [TrialDocument]

    /// - Parameter record: the merge commit's `extra.search`.
    init(commit: ObjectID, record: JSONValue, objective: SearchObjective, trials: [Trial]) {
        self.commit = commit.hex
        search = OrNull(record["id"]?.stringValue)
        self.objective = objective.rawValue
        seed = OrNull(record["seed"].flatMap { UInt64($0.serialized()) })
        budget = OrNull(record["budget"]?.intValue)
        eval = OrNull(record["eval"]?.stringValue)
        space = record["space"] ?? .null
        winner = OrNull(record["winner"]?.intValue)
        front = (record["front"]?.arrayValue ?? []).compactMap(\.intValue)
        self.trials = trials.map { t in
            // A Pareto search has no objective value per trial (`front` lists the trials it kept).
            TrialDocument(t, objective: objective == .pareto ? nil : t.scores.flatMap(objective.scalar), recipe: t.recipe == .null ? nil : t.recipe)
        }
    }
}
