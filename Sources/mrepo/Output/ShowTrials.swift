import ArgumentParser
import Delta
import Foundation
import Merge
import Repo

extension ShowCommand {
    /// `mrepo show --trials MERGE`: the search behind a merge, one row per trial.
    func showTrials(_ repo: Repository, id: ObjectID) throws {
        guard let (record, trials) = try repo.trials(of: id) else {
            throw RepoError.invalidArgument("\(revision) (\(id.short)) is not a merge made by 'mrepo merge --search'; it has no trials")
        }
        let objective = record["objective"]?.stringValue.flatMap(SearchObjective.init(rawValue:)) ?? .mean
        let winner = record["winner"]?.intValue
        if json {
            try printJSON(TrialsDocument(commit: id, record: record, objective: objective, trials: trials))
            return
        }
        let tasks = Array(Set(trials.compactMap(\.scores).flatMap(\.keys))).sorted()
        // A Pareto search ranks by no single number: its column is the tasks' mean, for reading,
        // and the trials of the observed front are marked.
        let front = Set((record["front"]?.arrayValue ?? []).compactMap(\.intValue))
        let pareto = objective == .pareto
        var rows: [[String]] = []
        for t in trials {
            let mark = t.number == winner ? " *" : pareto && front.contains(t.number) ? " +" : ""
            var row = ["\(t.number)\(mark)", t.status.rawValue]
            row.append(t.scores.flatMap(objective.scalar).map(Format.score) ?? "-")
            for task in tasks { row.append(t.scores?[task].map(Format.score) ?? "-") }
            row.append(String(format: "%.1f", t.seconds))
            var recipe = t.recipe != .null ? Self.recipeSummary(t.recipe) : t.number == winner ? "(recorded in the commit)" : "(not recorded here: the trial store of the repository that searched has it)"
            if let m = t.message { recipe += "; " + m }
            row.append(recipe)
            rows.append(row)
        }
        let seedText = record["seed"].map { $0.serialized() } ?? "?"
        print("search \(record["id"]?.stringValue ?? "?"): \(trials.count) trials, objective \(objective.rawValue), seed \(seedText), eval: \(record["eval"]?.stringValue ?? "?")")
        print(Format.table(["trial", "status", pareto ? "mean" : objective.rawValue] + tasks + ["s", "recipe"], rows, right: Set(2..<(4 + tasks.count))))
        if let winner { print("* winner: trial \(winner) (this commit)" + (pareto ? "; + on the observed Pareto front (the mean column is for reading: a Pareto search ranks by none)" : "")) }
    }

    /// `ties norm λ=0.8 w=[0.5 0.7] d=[0.3 0.9]`: a recipe on one line.
    static func recipeSummary(_ r: JSONValue) -> String {
        var parts = [r["method"]?.stringValue ?? "?"]
        if let b = r["balance"]?.stringValue { parts.append("balance=\(b)") }
        for m in r["parameters"]?.objectValue ?? [] { parts.append("\(m.key)=\(short(m.value))") }
        let experts = r["experts"]?.arrayValue ?? []
        var perExpert: [String: [String]] = [:]
        var order: [String] = []
        for e in experts {
            for m in e["parameters"]?.objectValue ?? [] {
                if perExpert[m.key] == nil { order.append(m.key) }
                perExpert[m.key, default: []].append(short(m.value))
            }
        }
        for k in order { parts.append("\(k)=[\(perExpert[k]!.joined(separator: " "))]") }
        return parts.joined(separator: " ")
    }

    static func short(_ v: JSONValue) -> String {
        if let x = v.doubleValue { return Format.score(x) }
        if let a = v.arrayValue { return "(" + a.map(short).joined(separator: ",") + ")" }
        return v.stringValue ?? v.serialized()
    }
}
