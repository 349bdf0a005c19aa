import Delta
import Foundation
import Merge

extension Repository {
    /// `mrepo merge BRANCH... --search --eval CMD`: proposes recipes, writes each candidate to a
    /// scratch folder, scores it with the evaluation command, records every trial, and commits the
    /// winner as a normal merge whose commit records the search (docs/merging.md, "Recipe search").
    ///
    /// The write lock is held throughout: the inputs cannot move under the search, and the winner's
    /// merge is recorded against the HEAD the search started from.
    public func search(_ options: MergeOptions, _ search: SearchOptions, wait: Bool = false) throws -> SearchOutcome {
        var outcome = try withWriteLock(wait: wait) { try searchLocked(options, search) }
        outcome.merge.warnings += takePostHookWarnings()
        return outcome
    }

    func searchLocked(_ given: MergeOptions, _ search: SearchOptions) throws -> SearchOutcome {
        if try history.mergeState() != nil {
            throw RepoError.invalidArgument("a merge is in progress; finish it with 'mrepo merge --continue' or 'mrepo merge --abort'")
        }
        guard !given.branches.isEmpty else { throw RepoError.invalidArgument("name at least one branch to merge") }
        var options = given
        options.isExplicit = true
        options.fastForward = .never
        let head = try history.head()
        guard let headID = head.commit else { throw RepoError.invalidArgument("HEAD has no commits yet; commit before merging") }
        guard case let .merge(inputs) = try resolveMerge(options, head: head, headID: headID) else {
            throw RepoError.invalidArgument("--search: nothing to merge; HEAD already contains \(options.branches.joined(separator: ", "))")
        }
        let dirty = try status(against: try worktreeBaseline(head: head).tree).changes.map(\.path)
        if !dirty.isEmpty { throw RepoError.dirtyWorktree(operation: "merging", paths: dirty) }
        try refuseAdapterExperts(inputs.experts, method: "--search")
        let names = inputs.experts.map(\.name)
        // Statistics committed beside the experts (mrepo_stats/): with them, the built-in method list
        // also offers the data-driven methods (not with LiNeS or consensus masks, which need task vectors).
        let statistics = CommittedStatistics(expertNames: names, trees: try inputs.experts.map { try tree(of: $0.commit) }, objects: objects)
        var space = search.space
        if options.recipe.lines == nil, options.recipe.consensus == nil {
            space = space.offeringStatisticsMethods { m in
                m.expertStatistics(m.defaultParameters).allSatisfy { kind in names.indices.allSatisfy { statistics.hasFile(expert: $0, kind: kind) } }
            }
        }
        let layout = try SearchLayout(space: space, experts: names, seed: search.seed, file: search.spaceFile)
        let spec = SearchSpec(experts: inputs.experts.map { SearchSpec.Expert(name: $0.name, commit: $0.commit) }, base: inputs.base,
                              head: inputs.headID, space: space.json, seed: search.seed, objective: search.objective,
                              trials: search.trials, eval: search.command)
        let specText = try JSONValueCoding.text(spec)
        let digest = SHA256.hash(Array(specText.utf8)).hex
        var resumedID: String?
        if search.resume {
            guard let id = try history.unfinishedSearch(digest: digest) else {
                throw RepoError.invalidArgument("--continue: no interrupted search of \(names.joined(separator: ", ")) with these settings (the same branches, --eval, --space, --seed, --objective and --trials); run it without --continue to start one")
            }
            resumedID = id
        }
        func recipe(at point: [Double]) -> MergeRecipe {
            var r = layout.recipe(at: point)
            r.lines = options.recipe.lines
            r.consensus = options.recipe.consensus
            return r
        }
        // Every candidate method must take these experts (their count, statistics, --lines): refused
        // here, before anything is recorded, rather than as a failed trial each time it is proposed.
        for m in space.methods.indices {
            do {
                _ = try MergePlan(recipe(at: layout.defaultPoint(method: m, balance: 0)), statistics: statistics)
            } catch {
                throw MergeError.invalidRecipe(file: search.spaceFile, problem: "method \(space.methods[m]) cannot merge these experts: \(error)")
            }
        }
        let firstPlan = try MergePlan(recipe(at: Array(repeating: 0.5, count: layout.dimension)), statistics: statistics)
        let context = try MergeContext(repository: self, base: inputs.base, experts: inputs.experts.map { ($0.name, $0.commit) },
                                       plan: firstPlan, options: options)
        let scratch = TemporaryName.path(in: metaDirectory, name: "search")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let writer = try CandidateWriter(repository: self, context: context, directory: scratch)
        try createDirectory(scratch + "/logs")
        // Recorded only now: a search refused above leaves no row behind.
        let searchID: String
        if let resumedID {
            searchID = resumedID
        } else {
            var g = SystemRandomNumberGenerator()
            searchID = (0..<4).map { _ in String(format: "%04x", UInt16.random(in: 0...UInt16.max, using: &g)) }.joined()
            try history.insertSearch(id: searchID, spec: specText, digest: digest)
        }
        let recorded = Dictionary(try history.trials(search: searchID).map { ($0.number, $0) }, uniquingKeysWith: { a, _ in a })

        var planner = SearchPlanner(layout: layout, objective: search.objective, trials: search.trials)
        let counter = ProgressCounter(progress, title: "search", total: search.trials, unit: .items)
        defer { counter.finish() }
        var trials: [Trial] = []
        var next = 0
        let deadline = search.timeBudget.map { EvaluationRun.now() + $0 }
        var outOfTime = false
        while !outOfTime {
            let points = planner.propose()
            if points.isEmpty { break }
            var scores = [[String: Double]?](repeating: nil, count: points.count)
            var queue: [(index: Int, number: Int, recipe: MergeRecipe)] = []
            // Points clamped to the box's edge can decode to a recipe already proposed: such a trial
            // takes the scores of the first trial of that recipe instead of a second evaluation.
            var repeats: [(index: Int, number: Int, recipe: MergeRecipe, of: Int)] = []
            for (i, point) in points.enumerated() {
                let candidate = recipe(at: point)
                let json = candidate.json
                if let r = recorded[next + i] {
                    // Compared as recorded: a recipe read back lists every expert's (empty) parameters.
                    guard r.recipe == json else {
                        throw RepoError.failed("--continue: trial \(next + i) of search \(searchID) was recorded with another recipe; the search cannot resume (start it again without --continue)")
                    }
                    scores[i] = r.status == .ok ? r.scores : nil
                    trials.append(r)
                    counter.add(1)
                } else if let first = trials.first(where: { $0.status == .ok && $0.recipe == json })?.number
                            ?? queue.first(where: { $0.recipe.json == json })?.number {
                    repeats.append((i, next + i, candidate, first))
                } else {
                    queue.append((i, next + i, candidate))
                }
            }
            next += points.count
            var running: [(index: Int, trial: Trial, run: EvaluationRun, folder: String)] = []
            var queued = queue[...]
            while !queued.isEmpty || !running.isEmpty {
                if let deadline, EvaluationRun.now() >= deadline { outOfTime = true }
                while !outOfTime, running.count < max(1, search.jobs), let job = queued.popFirst() {
                    let started = EvaluationRun.now()
                    var trial = Trial(number: job.number, mergeRecipe: job.recipe, point: points[job.index], scores: nil, status: .failed,
                                      message: nil, seconds: 0)
                    do {
                        let plan = try MergePlan(job.recipe, statistics: statistics)
                        let folder = try writer.write(plan, number: job.number)
                        let run = try EvaluationRun(command: search.command, candidate: folder, trial: job.number, logs: scratch + "/logs",
                                                    environment: ["MREPO_SEARCH": searchID])
                        running.append((job.index, trial, run, folder))
                    } catch {
                        // A recipe the method refuses, or a candidate that cannot be written: recorded and skipped.
                        trial.message = RepoError.wrap(error).description
                        trial.seconds = EvaluationRun.now() - started
                        try history.insertTrial(trial, search: searchID)
                        trials.append(trial)
                        counter.add(1)
                    }
                }
                if outOfTime, running.isEmpty { break }
                var progressed = false
                for (k, job) in running.enumerated().reversed() {
                    var trial = job.trial
                    if let status = job.run.poll() {
                        (trial.status, trial.scores, trial.message) = job.run.outcome(status: status)
                    } else if let limit = search.evalTimeout, job.run.elapsed > limit {
                        job.run.kill()
                        trial.status = .timeout
                        trial.message = "killed after \(ParameterValue.format(limit)) s (--eval-timeout)"
                    } else {
                        continue
                    }
                    trial.seconds = job.run.elapsed
                    try history.insertTrial(trial, search: searchID)
                    CrashPoint.reach("search.trial")
                    try? FileManager.default.removeItem(atPath: job.folder)
                    scores[job.index] = trial.scores
                    trials.append(trial)
                    running.remove(at: k)
                    counter.add(1)
                    progressed = true
                }
                if !progressed, !running.isEmpty { usleep(20_000) }
            }
            // Every trial must report the same tasks (docs/merging.md): a trial that dropped or added
            // one cannot be ranked against the others. Settled once the batch has ended, against the
            // lowest-numbered trial that scored, so that the order in which --jobs evaluations end
            // changes nothing.
            let batchStart = next - points.count
            for t in try settleTaskSets(&trials, search: searchID, batch: batchStart..<next) where (batchStart..<next).contains(t) {
                scores[t - batchStart] = nil
            }
            for r in repeats where !outOfTime {
                guard let first = trials.first(where: { $0.number == r.of }) else { continue }
                let trial = Trial(number: r.number, mergeRecipe: r.recipe, point: points[r.index], scores: first.scores, status: first.status,
                                  message: "the recipe of trial \(r.of), not evaluated again", seconds: 0)
                try history.insertTrial(trial, search: searchID)
                scores[r.index] = trial.status == .ok ? trial.scores : nil
                trials.append(trial)
                counter.add(1)
            }
            if !outOfTime { planner.tell(points, scores: scores) }
        }
        trials.sort { $0.number < $1.number }
        let outcomes = trials.map { $0.status == .ok ? $0.scores : nil }
        guard let w = SearchPlanner.winner(outcomes, objective: search.objective) else {
            try history.finishSearch(id: searchID, commit: nil)
            let first = trials.first { $0.message != nil }
            // How they ended, counted, then the first one's reason: the search leaves no commit whose
            // trials `show --trials` could list.
            let counts = Dictionary(grouping: trials, by: { $0.status.rawValue }).sorted { $0.key < $1.key }.map { "\($0.value.count) \($0.key)" }
            let detail = counts + (first.map { ["trial \($0.number): \($0.status.rawValue), \($0.message!)"] } ?? [])
            throw RepoError.failed("--search: none of the \(trials.count) evaluations gave scores" + (detail.isEmpty ? "" : " (\(detail.joined(separator: "; ")))")
                + "; nothing was merged")
        }
        let front = SearchPlanner.observedFront(outcomes).map { trials[$0].number }
        let winner = trials[w]
        guard let winning = winner.mergeRecipe else {
            throw RepoError.corruptRecord("trial \(winner.number) of search \(searchID)", problem: "it records no recipe")
        }
        var merge = options
        merge.recipe = winning
        merge.expertParameters = []
        let failed = trials.filter { $0.status != .ok }.count
        merge.message = given.message ?? "Merge \(inputs.branches.map(\.shownName).joined(separator: ", ")) into \(head.branchName ?? "HEAD") (\(winning.method), searched: trial \(winner.number) of \(trials.count), \(search.objective.rawValue))"
        merge.extraMembers = [try SearchRecord(id: searchID, space: space.json, seed: search.seed, objective: search.objective,
                                               budget: search.trials, eval: search.command, evaluated: trials.count, failed: failed,
                                               winner: winner.number, front: front, trials: trials).jsonMember()]
        let outcome = try mergeLocked(merge)
        if case let .committed(c) = outcome.status { try history.finishSearch(id: searchID, commit: c.id) }
        return SearchOutcome(searchID: searchID, objective: search.objective, trials: trials, winner: winner.number, front: front,
                             resumed: recorded.count, merge: outcome)
    }

    /// The trials of a merge made by `merge --search`: from the trial store when it has them (with
    /// each recipe), else from the merge commit's record (a clone). Nil when the commit is no search.
    /// - Throws: ``RepoError/corruptRecord(_:problem:)`` when the record or a stored trial does not decode.
    public func searchRecord(of commit: ObjectID) throws -> (record: SearchRecord, trials: [Trial])? {
        guard let record = try self.commit(commit).record(SearchRecord.self) else { return nil }
        if try history.search(id: record.id) != nil {
            let stored = try history.trials(search: record.id)
            if !stored.isEmpty { return (record, stored) }
        }
        return (record, record.trials)
    }

    /// ``searchRecord(of:)`` with the record as its JSON (what `show --trials` reads).
    public func trials(of commit: ObjectID) throws -> (record: JSONValue, trials: [Trial])? {
        try searchRecord(of: commit).map { (try self.commit(commit).extra[SearchRecord.member] ?? .null, $0.trials) }
    }
}

extension Repository {
    /// The search section of a searched merge's HTML report (nil for other commits).
    func searchReport(of id: ObjectID) throws -> SearchReportHTML? {
        guard let (record, trials) = try searchRecord(of: id) else { return nil }
        return SearchReportHTML(objective: record.objective,
                                trials: trials.map { .init(number: $0.number, scores: $0.scores, status: $0.status.rawValue) },
                                winner: record.winner, front: record.front)
    }

    /// Marks as garbled each scored trial whose tasks differ from those of the lowest-numbered
    /// trial that scored, in `trials` and in the trial store.
    /// - Returns: the numbers of the trials marked.
    ///
    /// Trials of earlier batches were settled against the same trial already (the lowest-numbered
    /// one that scored can only be in the latest batch when none scored before it), so only the
    /// latest batch's are looked at then.
    private func settleTaskSets(_ trials: inout [Trial], search: String, batch: Range<Int>) throws -> [Int] {
        guard let first = trials.filter({ $0.status == .ok }).min(by: { $0.number < $1.number }),
              let expected = first.scores.map({ Set($0.keys) }) else { return [] }
        let all = batch.contains(first.number)
        var marked: [Int] = []
        for k in trials.indices where trials[k].status == .ok && (all || batch.contains(trials[k].number)) {
            guard let tasks = trials[k].scores.map({ Set($0.keys) }), tasks != expected else { continue }
            trials[k].status = .garbled
            trials[k].message = "it reports the tasks \(tasks.sorted().joined(separator: ", ")), trial \(first.number) reported \(expected.sorted().joined(separator: ", ")); every evaluation must report the same tasks"
            trials[k].scores = nil
            try history.updateTrialOutcome(trials[k], search: search)
            marked.append(trials[k].number)
        }
        return marked
    }
}
