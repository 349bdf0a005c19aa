import ArgumentParser
import Delta
import Foundation
import Merge
import Repo

/// `merge --search`'s options (docs/merging.md, "Recipe search").
struct SearchArguments: ParsableArguments {
    @Flag(help: "Search the recipe: propose candidates, score each with --eval, commit the best as a normal merge (docs/merging.md, 'Recipe search').")
    var search = false

    @Option(name: .customLong("eval"), help: ArgumentHelp("The evaluation command: it gets the candidate folder as its last argument (and MREPO_CANDIDATE), and its last line of output is a JSON object of task scores, higher is better.", valueName: "command"))
    var command: String?

    @Option(help: ArgumentHelp("How many candidates to evaluate (1 to 10000).", valueName: "n"))
    var trials: Int = 30

    @Option(help: ArgumentHelp("Start no evaluation after this long, e.g. 90m, 2h, 600s (default: no limit).", valueName: "duration"))
    var timeBudget: String?

    @Option(help: ArgumentHelp("Evaluations to run at once (1 to 64).", valueName: "n"))
    var jobs: Int = 1

    @Option(help: ArgumentHelp("A YAML file narrowing or fixing the search space: methods, balance, parameter ranges, per-expert ranges. Without it: task_arithmetic, ties, dare_ties, tsv, iso_c, iso_cts, plus regmean and fisher when every expert has their statistics committed (mrepo_stats/).", valueName: "file"))
    var space: String?

    @Option(help: ArgumentHelp("What the search maximises: mean (of the task scores, default), min (the worst task), or pareto (the trade-off across tasks, with a quadratic surrogate).", valueName: "objective"))
    var objective: SearchObjective?

    @Option(help: ArgumentHelp("Kill an evaluation that runs longer than this, e.g. 10m (it is recorded as timed out and skipped).", valueName: "duration"))
    var evalTimeout: String?

    var isUsed: Bool {
        command != nil || trials != 30 || timeBudget != nil || jobs != 1 || space != nil || objective != nil || evalTimeout != nil
    }

    func validate(_ merge: MergeCommand) throws {
        guard command != nil else { throw ValidationError("--search needs --eval COMMAND") }
        if let command, command.trimmingCharacters(in: .whitespaces).isEmpty { throw ValidationError("--eval: the command is empty") }
        guard (1...10_000).contains(trials) else { throw ValidationError("--trials must be 1 to 10000, got \(trials)") }
        guard (1...64).contains(jobs) else { throw ValidationError("--jobs must be 1 to 64, got \(jobs)") }
        if let timeBudget, Self.seconds(timeBudget) == nil { throw ValidationError("--time-budget: expected a duration such as 90m, 2h or 600s, got '\(timeBudget)'") }
        if let evalTimeout, Self.seconds(evalTimeout) == nil { throw ValidationError("--eval-timeout: expected a duration such as 10m or 300s, got '\(evalTimeout)'") }
        if merge.branches.isEmpty { throw ValidationError("--search: name the branches to merge") }
        if merge.abort || merge.listMethods || merge.helpMethod != nil || merge.noCommit || merge.dryRun || merge.config != nil {
            throw ValidationError("--search excludes --abort, --list-methods, --help-method, --no-commit, --dry-run and --config")
        }
        if merge.fastForwardOnly {
            throw ValidationError("--ff-only: a searched merge is a merge with a method, never a fast-forward")
        }
        if !merge.settings.isEmpty || !merge.weights.isEmpty || !merge.expertSettings.isEmpty || merge.basis != nil {
            throw ValidationError("--search chooses the parameters itself; fix or narrow them with --space FILE instead of --set, --weight, --expert or --basis")
        }
        if let report = merge.report {
            let folder = URL(fileURLWithPath: report).deletingLastPathComponent().path
            guard FileManager.default.isWritableFile(atPath: folder) else {
                throw ValidationError("--report \(report): folder '\(folder)' does not exist or is not writable")
            }
        }
    }

    /// `90`, `90s`, `15m`, `2h`, `1.5h`.
    static func seconds(_ text: String) -> Double? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, scale) in units where t.hasSuffix(suffix) {
            if let x = Double(t.dropLast(suffix.count)), x.isFinite, x > 0 { return x * scale }
            if suffix == "ms" { continue }
            return nil
        }
        if let x = Double(t), x.isFinite, x > 0 { return x }
        return nil
    }
}

extension MergeCommand {
    func runSearch(_ repo: Repository) throws {
        var space = SearchSpace()
        var file = "search space"
        if let path = search.space {
            guard let data = FileManager.default.contents(atPath: path) else {
                let reason = FileManager.default.fileExists(atPath: path) ? "it cannot be read (a folder, or no permission)" : "no such file"
                throw RepoError.io(path: path, reason: "cannot read the search space: \(reason)")
            }
            guard let text = String(data: data, encoding: .utf8) else {
                throw RepoError.io(path: path, reason: "cannot read the search space: it is not UTF-8 text")
            }
            file = path
            space = try SearchSpace.parse(text, file: path)
        }
        // --reversible is --method rmm, which the space refuses by name (it cannot be searched).
        space = try space.fixing(method: reversible ? RMM.id : method, balance: balance, file: file)
        var options = try makeOptions()
        options.recipe.method = space.methods[0]
        let settings = SearchOptions(command: search.command!, trials: search.trials, timeBudget: search.timeBudget.flatMap(SearchArguments.seconds),
                                     seed: seed ?? 0, jobs: search.jobs, space: space, spaceFile: file,
                                     objective: search.objective ?? .mean,
                                     evalTimeout: search.evalTimeout.flatMap(SearchArguments.seconds), resume: continueMerge)
        if json { repo.progress = nil }
        let outcome = try repo.search(options, settings, wait: lock.wait)
        for w in outcome.merge.warnings { ErrorReporter.warn(w) }
        let section = SearchReportHTML(objective: outcome.objective,
                                       trials: outcome.trials.map { .init(number: $0.number, scores: $0.scores, status: $0.status.rawValue) },
                                       winner: outcome.winner, front: outcome.front)
        if let path = report {
            let html = outcome.merge.report.html(title: "mrepo merge --search: \(outcome.merge.report.experts.joined(separator: ", ")) (\(outcome.merge.report.method))",
                                                 recipe: outcome.merge.recipeYAML)
            try repo.writeFile(Array(section.insert(into: html).utf8), to: path)
        }
        let winner = outcome.trials.first { $0.number == outcome.winner }
        var commitID: String?
        if case let .committed(c) = outcome.merge.status { commitID = c.id.hex }
        if json {
            try printJSON(SearchResultDocument(outcome, commit: commitID))
        } else if !repository.quiet {
            let failed = outcome.trials.filter { $0.status != .ok }.count
            print("search \(outcome.searchID): \(outcome.trials.count) trials (\(failed) failed\(outcome.resumed > 0 ? ", \(outcome.resumed) resumed from the store" : "")), objective \(outcome.objective.rawValue)")
            if let winner, let scores = winner.scores {
                let method = winner.recipe["method"]?.stringValue ?? "?"
                print("winner: trial \(winner.number) (\(method)): " + scores.keys.sorted().map { "\($0) \(Format.score(scores[$0]!))" }.joined(separator: ", "))
            }
            if let commitID { print("[\(try repo.currentBranch() ?? "detached HEAD") \(commitID.prefix(12))] 'mrepo show --trials \(commitID.prefix(12))' lists every trial") }
        }
        if case .conflicted = outcome.merge.status { throw ExitCode(1) }
    }
}

extension Format {
    static func score(_ x: Double) -> String { String(format: "%.4g", x) }
}
