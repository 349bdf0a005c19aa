import Delta
import Foundation
import Merge

/// How a merge ended.
public struct MergeOutcome: Sendable {
    public enum Status: Sendable {
        /// The merge commit was recorded and checked out.
        case committed(Commit)
        /// HEAD was an ancestor of the only branch: it moved there, no merge commit.
        case fastForward(ObjectID)
        /// Every branch is already contained in HEAD.
        case upToDate
        /// Unresolved conflicts remain; `resolve`, then `merge --continue` (or `--abort`).
        case conflicted
        /// `--no-commit`: the merged model is in the working tree; `merge --continue` commits it.
        case ready
        /// `--dry-run`: nothing was written.
        case planned
    }

    public var status: Status
    public var report: ConflictReport
    /// The merge base used, and every best common ancestor when there were several.
    public var base: ObjectID?
    public var baseCandidates: [ObjectID]
    /// Estimated peak memory of the tensor merges: (experts + 2) × the largest merged tensor in Float32.
    public var estimatedPeakBytes: Int
    /// The recipe in mergekit's YAML form.
    public var recipeYAML: String
    /// A reversible merge's measurements (``RMM``).
    public var reversible: ReversibleMergeReport? = nil
}

/// How an unresolved tensor is settled by `mrepo resolve`.
public enum Resolution: Sendable {
    /// The current branch's tensor.
    case ours
    /// A merged branch's tensor (the last one when nil).
    case theirs(String?)
    /// The merge base's tensor.
    case base
    /// Merge it with another method (thresholds do not apply).
    case method(MergeRecipe)
}

/// A tensor as one input of a merge holds it.
struct InputTensor {
    var path: String
    var tensor: TreeTensor
}

extension Repository {
    // MARK: - merge

    /// Merges branches into HEAD (docs/merging.md).
    ///
    /// Tensors changed on one side only are taken bit for bit; tensors changed on several sides are
    /// merged by the recipe's method, from the merge base; shape or dtype changes, add/add and
    /// modify/delete are conflicts. Nothing is written before the recipe, the inputs and the
    /// working tree have been checked.
    public func merge(_ options: MergeOptions, wait: Bool = false) throws -> MergeOutcome {
        try withWriteLock(wait: wait) { try mergeLocked(options) }
    }

    func mergeLocked(_ options: MergeOptions) throws -> MergeOutcome {
        if try history.mergeState() != nil {
            throw RepoError.invalidArgument("a merge is in progress; finish it with 'mrepo merge --continue' or 'mrepo merge --abort'")
        }
        guard !options.branches.isEmpty else { throw RepoError.invalidArgument("name at least one branch to merge") }
        // The recipe is checked first, whatever the branches turn out to need.
        var check = options.recipe
        check.expertParameters = []
        if check.method == MWA.id { check.parameters["metric_value"] = .number(1) }
        try MergePlan.validateParameters(check)
        let head = try history.head()
        guard let headID = head.commit else { throw RepoError.invalidArgument("HEAD has no commits yet; commit before merging") }
        var branches: [(name: String, commit: ObjectID)] = []
        for name in options.branches {
            let id = try resolve(name)
            if branches.contains(where: { $0.commit == id }) { continue }
            branches.append((name, id))
        }
        // Branches HEAD already contains add nothing.
        let headAncestors = try ancestors(of: headID)
        branches.removeAll { headAncestors.contains($0.commit) }
        if branches.isEmpty {
            return MergeOutcome(status: .upToDate, report: ConflictReport(method: options.recipe.method, experts: [], baseName: "", tensors: [], files: []),
                                base: nil, baseCandidates: [], estimatedPeakBytes: 0, recipeYAML: "")
        }
        if !options.dryRun {
            let ts = Date()
            defer { Timing.add("status", Date().timeIntervalSince(ts)) }
            let dirty = try status(against: try worktreeBaseline(head: head).tree).changes.map(\.path)
            if !dirty.isEmpty { throw RepoError.dirtyWorktree(operation: "merging", paths: dirty) }
        }
        let candidates: [ObjectID]
        let baseID: ObjectID
        if let rev = options.base {
            baseID = try resolve(rev)
            candidates = [baseID]
        } else {
            candidates = try mergeBases([headID] + branches.map(\.commit))
            guard let first = candidates.first else {
                throw RepoError.invalidArgument("\(options.branches.joined(separator: ", ")) and HEAD have no common ancestor; name one with --base REV")
            }
            baseID = first
        }
        // One branch that contains HEAD: fast-forward, as git does.
        if branches.count == 1, baseID == headID, options.recipe.method != RMM.id, !options.dryRun, !options.noCommit, options.base == nil {
            let target = branches[0].commit
            let result = try moveHeadForward(head, to: target, message: "merge \(branches[0].name): fast-forward")
            return MergeOutcome(status: .fastForward(result), report: ConflictReport(method: "fast-forward", experts: [branches[0].name], baseName: "HEAD", tensors: [], files: []),
                                base: baseID, baseCandidates: candidates, estimatedPeakBytes: 0, recipeYAML: "")
        }
        // Experts: HEAD (unless it is the merge base), then each branch.
        let headName = head.branchName ?? "HEAD"
        var experts: [(name: String, commit: ObjectID)] = []
        if headID != baseID { experts.append((headName, headID)) }
        experts += branches
        var recipe = options.recipe
        recipe.experts = experts.map(\.name)
        // Per-expert parameters were given by branch name; order them by expert.
        recipe.expertParameters = try orderedExpertParameters(options.recipe, experts: experts.map(\.name))
        if recipe.method == MWA.id { try fillMetricValues(&recipe, experts: experts) }
        if recipe.method == RMM.id {
            return try mergeReversible(options: options, recipe: recipe, head: head, headID: headID, mergeBase: baseID,
                                       branches: branches, experts: experts)
        }
        let plan = try MergePlan(recipe)
        let yaml = recipeYAML(recipe, base: baseID)

        var context = try MergeContext(repository: self, base: baseID, experts: experts, plan: plan, options: options)
        let layerCount = TensorContext.layerCount(of: context.allNames)
        if options.dryRun {
            let report = try context.classify(layerCount: layerCount)
            return MergeOutcome(status: .planned, report: report, base: baseID, baseCandidates: candidates,
                                estimatedPeakBytes: context.estimatedPeakBytes, recipeYAML: yaml)
        }
        let batch = objects.makeBatch()
        var committed: (RecordedMerge, ConflictReport)?
        var readyCheckout: (StagedCheckout, ConflictReport)?
        // The merged files are written as the merge goes, for the checkout (an optimisation only).
        if !options.noCommit {
            context.prepared = try? PreparedCheckout(repository: self, template: context.layoutTemplate)
        }
        defer { context.prepared?.discard() }
        do {
            let tr = Date()
            var result = try context.run(layerCount: layerCount, batch: batch, progress: progress)
            Timing.add("run", Date().timeIntervalSince(tr))
            let message = options.message ?? "Merge \(branches.map(\.name).joined(separator: ", ")) into \(headName) (\(recipe.method))"
            let reportBlob = try objects.writeBlob(Array(result.report.json.serialized().utf8), options: codecOptions, batch: batch)
            if reportBlob.isNew { result.newObjects.append(reportBlob.info) }
            // Merged tensors become readable under their names (the tree is built from their headers).
            try batch.finish()
            var state = MergeState(head: headID, branches: branches, base: baseID, recipe: recipe.json, message: message,
                                   decided: result.decided, unresolved: result.unresolved, reportObject: reportBlob.info.id,
                                   readyTree: nil, options: context.optionsJSON)
            if !result.unresolved.isEmpty {
                try history.setMergeState(state, objects: result.newObjects)
                return MergeOutcome(status: .conflicted, report: result.report, base: baseID, baseCandidates: candidates,
                                    estimatedPeakBytes: context.estimatedPeakBytes, recipeYAML: yaml)
            }
            let tree = try context.buildTree(decided: result.decided, recipe: recipe, report: result.report,
                                              recipeYAML: yaml, batch: batch, newObjects: &result.newObjects)
            try batch.finish()
            if options.noCommit {
                // The candidate's files are staged (written and verified) before the merge state
                // names them: a corrupt object stops the merge with nothing recorded or written.
                let checkout = try stageCheckout(tree, over: try worktreeBaseline(head: head).tree, force: false)
                do {
                    try history.insertTree(tree, objects: result.newObjects)
                    state.readyTree = tree.id
                    try history.setMergeState(state)
                } catch {
                    checkout.rollback()
                    throw error
                }
                readyCheckout = (checkout, result.report)
            } else {
                let recorded = try recordMerge(state: state, tree: tree, objects: result.newObjects, report: result.report,
                                               prepared: context.prepared)
                committed = (recorded, result.report)
            }
        } catch {
            // Nothing refers to this batch's objects until the merge is recorded.
            batch.rollback()
            throw error
        }
        if case let (checkout, report)? = readyCheckout {
            let entries = try finishCheckout(checkout)
            history.saveStatCacheOpportunistically(entries, removing: [])
            // The working tree now holds the candidate, not a view written over HEAD.
            try history.clearWorktreeView()
            return MergeOutcome(status: .ready, report: report, base: baseID, baseCandidates: candidates,
                                estimatedPeakBytes: context.estimatedPeakBytes, recipeYAML: yaml)
        }
        let (recorded, report) = committed!
        let tf = Date()
        try finishMerge(recorded)
        Timing.add("checkout", Date().timeIntervalSince(tf))
        Timing.report()
        return MergeOutcome(status: .committed(recorded.commit), report: report, base: baseID, baseCandidates: candidates,
                            estimatedPeakBytes: context.estimatedPeakBytes, recipeYAML: yaml)
    }

    /// A recorded merge commit and what finishing it needs.
    struct RecordedMerge {
        var commit: Commit
        var tree: Tree
        /// The merge's files, staged in the working tree before the commit was recorded.
        var checkout: StagedCheckout
        var hookEnvironment: [String: String]
    }

    /// Renames the merge's staged files into place and runs post-merge (after the commit is
    /// recorded). Every file was written and verified before the commit was recorded, so only an
    /// I/O error while renaming can fail here; HEAD has then already moved to the recorded merge
    /// (which stays: the commit is complete), and the error says how to finish the checkout.
    func finishMerge(_ recorded: RecordedMerge) throws {
        let entries: [StatCacheEntry]
        do {
            entries = try finishCheckout(recorded.checkout)
        } catch {
            let branch = (try? history.head())?.branchName
            throw RepoError.failed("merge commit \(recorded.commit.id.short) was recorded, but updating the working tree to it failed: \(RepoError.wrap(error).description); run 'mrepo checkout --force \(branch ?? recorded.commit.id.short)'")
        }
        history.saveStatCacheOpportunistically(entries, removing: [])
        var env = recorded.hookEnvironment
        env["MREPO_COMMIT"] = recorded.commit.id.hex
        runHookReportingFailure("post-merge", environment: env)
    }

    /// Runs the pre-merge-commit hook on the candidate, stages the merge's files in the working tree
    /// (written and verified beside their destinations), then records the merge commit and clears
    /// any merge state, in one transaction. ``finishMerge(_:)`` then renames the files into place.
    /// A failure before the record (a refusing hook, a corrupt object) leaves the working tree, HEAD
    /// and the merge state as they were.
    ///
    /// - Parameter prepared: the merged files written while the merge ran, moved into place
    ///   instead of being decoded again.
    func recordMerge(state: MergeState, tree: Tree, objects newObjects: [ObjectInfo], report: ConflictReport,
                     extraMembers: [JSONMember] = [], hookReport: JSONValue? = nil,
                     prepared: PreparedCheckout? = nil) throws -> RecordedMerge {
        let head = try history.head()
        guard head.commit == state.head else { throw RepoError.concurrentUpdate(ref: head.branchName ?? "HEAD") }
        let headCommit = try commit(state.head)
        var hookEnv = ["MREPO_MERGE_BASE": state.base.hex, "MREPO_MERGE_HEAD": state.head.hex,
                       "MREPO_MERGE_BRANCHES": state.branches.map(\.name).joined(separator: " "),
                       "MREPO_MERGE_COMMITS": state.branches.map(\.commit.hex).joined(separator: " "),
                       "MREPO_MESSAGE": state.message, "MREPO_BRANCH": head.branchName ?? ""]
        let hookPath = metaDirectory + "/hooks/pre-merge-commit"
        if FileManager.default.isExecutableFile(atPath: hookPath) {
            // The gate sees the candidate as files, and the conflict report.
            let candidate = metaDirectory + "/merge-candidate"
            try? FileManager.default.removeItem(atPath: candidate)
            defer { try? FileManager.default.removeItem(atPath: candidate) }
            let staging = FileStaging()
            do {
                for file in tree.files {
                    try stage(file, at: candidate + "/" + file.path, in: staging, progress: nil)
                }
                try staging.commit()
            } catch {
                staging.rollback()
                throw error
            }
            let reportPath = metaDirectory + "/merge-report.json"
            try AtomicFileWriter.write(Array((hookReport ?? report.json).prettySerialized().utf8), to: reportPath)
            defer { try? FileManager.default.removeItem(atPath: reportPath) }
            hookEnv["MREPO_CANDIDATE"] = candidate
            hookEnv["MREPO_REPORT"] = reportPath
            hookEnv["MREPO_PARENT_METRICS"] = JSONValue.object(([headCommit] + (try state.branches.map { try self.commit($0.commit) })).map { c in
                JSONMember(c.id.hex, .object(c.metrics.map { JSONMember($0.name, .double($0.value)) }))
            }).serialized()
            try runHook("pre-merge-commit", environment: hookEnv)
        }
        let parents = [state.head] + state.branches.map(\.commit)
        var generation = 0
        for p in parents { generation = max(generation, (try history.commit(p)?.generation ?? 0) + 1) }
        let extra = JSONValue.object([
            JSONMember("storage", .string("lossless")),
            JSONMember("merge", .object([
                JSONMember("recipe", state.recipe),
                JSONMember("base", .string(state.base.hex)),
                JSONMember("inputs", .array(([("HEAD", state.head)] + state.branches).map {
                    .object([JSONMember("name", .string($0.0)), JSONMember("commit", .string($0.1.hex))])
                })),
                JSONMember("tool", .string("mrepo \(Repository.toolVersion)")),
                JSONMember("compute_dtype", .string("float32")),
                JSONMember("summary", .object(MergeClass.allCases.map { JSONMember($0.rawValue, .int(report.classCounts[$0] ?? 0)) })),
                JSONMember("report_object", state.reportObject.map { .string($0.hex) } ?? .null),
            ])),
        ] + extraMembers)
        let timestamp = (Date().timeIntervalSince1970 * 1000).rounded() / 1000
        let author = Repository.defaultAuthor()
        let baseForDeltas = headCommit.base ?? headCommit.id
        let id = Commit.computeID(treeID: tree.id, parents: parents, base: baseForDeltas, author: author, timestamp: timestamp,
                                  message: state.message, metrics: [], extra: extra)
        let commit = Commit(id: id, treeID: tree.id, parents: parents, base: baseForDeltas, author: author, timestamp: timestamp,
                            message: state.message, metrics: [], extra: extra, generation: generation)
        // The working tree holds HEAD's files (or a view written over them: an expert rebuilt from a
        // merge), or the candidate after --no-commit.
        let from = try state.readyTree.map { try history.tree($0) } ?? worktreeBaseline(head: head).tree
        // Every file of the merge is written and verified before the commit is recorded.
        let ready = prepared?.finish(for: tree, store: objects) ?? [:]
        let checkout = try stageCheckout(tree, over: from, force: true, prepared: ready)
        do {
            try history.recordCommit(objects: newObjects, tree: tree, commit: commit, expectedHead: state.head,
                                     reflogMessage: "merge \(state.branches.map(\.name).joined(separator: ", ")): \(commit.subject)",
                                     clearMergeState: true)
        } catch {
            checkout.rollback()
            throw error
        }
        return RecordedMerge(commit: commit, tree: tree, checkout: checkout, hookEnvironment: hookEnv)
    }

    private func moveHeadForward(_ head: Head, to target: ObjectID, message: String) throws -> ObjectID {
        let oldTree = try worktreeBaseline(head: head).tree
        let entries = try materialize(try tree(of: target), over: oldTree, force: false)
        try history.write { db in
            let current = try HistoryDatabase.head(db)
            guard current == head else { throw RepoError.concurrentUpdate(ref: head.branchName ?? "HEAD") }
            switch head {
            case let .branch(name, old):
                try HistoryDatabase.setRef(db, name: name, kind: .branch, target: target, old: old, message: message)
            case let .detached(old):
                try db.execute(sql: "UPDATE head SET commitID = ? WHERE id = 1", arguments: [target.hex])
                try HistoryDatabase.logRef(db, "HEAD", old: old, new: target, message: message)
            }
            try HistoryDatabase.clearView(db)
            for e in entries { try e.save(db) }
        }
        return target
    }

    /// Per-expert parameters keyed by expert name become a list in expert order.
    private func orderedExpertParameters(_ recipe: MergeRecipe, experts: [String]) throws -> [[String: ParameterValue]] {
        // The caller passes parameters in `expertParameters` aligned with `recipe.experts` (the names it used).
        var byName: [String: [String: ParameterValue]] = [:]
        for (i, name) in recipe.experts.enumerated() where i < recipe.expertParameters.count {
            byName[name] = recipe.expertParameters[i]
        }
        for name in byName.keys where !experts.contains(name) {
            throw RepoError.invalidArgument("per-expert parameters name '\(name)', which is not an expert of this merge (experts: \(experts.joined(separator: ", ")))")
        }
        return experts.map { byName[$0] ?? [:] }
    }

    /// MWA: each expert's metric value comes from its commit.
    private func fillMetricValues(_ recipe: inout MergeRecipe, experts: [(name: String, commit: ObjectID)]) throws {
        var metric = "eval_loss"
        if case let .text(m)? = recipe.parameters["metric"] { metric = m }
        for (i, e) in experts.enumerated() {
            guard let value = try commit(e.commit).metrics.first(where: { $0.name == metric })?.value else {
                throw RepoError.invalidArgument("mwa: \(e.name) (\(e.commit.short)) has no metric '\(metric)'; record it with 'mrepo commit --metric \(metric)=VALUE' or choose --set metric=NAME")
            }
            recipe.expertParameters[i]["metric_value"] = .number(value)
        }
    }

    /// The recipe in mergekit's YAML form (re-runnable with `mrepo merge --config`).
    func recipeYAML(_ recipe: MergeRecipe, base: ObjectID) -> String {
        // As ParameterValue prints itself, except conditions: mergekit's list of {filter, value}.
        func yaml(_ v: ParameterValue) -> String {
            guard case let .conditional(cs) = v else { return v.description }
            return "[" + cs.map { c in (c.filter.map { "{filter: \($0), value: " } ?? "{value: ") + yaml(c.value) + "}" }.joined(separator: ", ") + "]"
        }
        var out = "merge_method: \(recipe.method)\nbase_model: \(base.hex)\nmodels:\n"
        for (i, name) in recipe.experts.enumerated() {
            out += "  - model: \(name)\n"
            let params = i < recipe.expertParameters.count ? recipe.expertParameters[i] : [:]
            if !params.isEmpty {
                out += "    parameters:\n"
                for k in params.keys.sorted() { out += "      \(k): \(yaml(params[k]!))\n" }
            }
        }
        if !recipe.parameters.isEmpty {
            out += "parameters:\n"
            for k in recipe.parameters.keys.sorted() { out += "  \(k): \(yaml(recipe.parameters[k]!))\n" }
        }
        out += "dtype: float32\nseed: \(recipe.seed)\n"
        if let l = recipe.lines { out += "# mrepo: lines alpha=\(l.alpha) beta=\(l.beta)\n" }
        if let c = recipe.consensus { out += "# mrepo: consensus k=\(c.k) lambda=\(c.lambda)\n" }
        return out
    }

    /// mrepo's version: recorded in merge recipes and model cards, printed by `mrepo --version`.
    public static let toolVersion = "0.1.0"
}

extension HistoryDatabase {
    /// Records a tree (and the objects it needs) without a commit: a `--no-commit` merge's candidate.
    func insertTree(_ tree: Tree, objects: [ObjectInfo]) throws {
        try write { db in
            try HistoryDatabase.insert(db, objects: objects)
            try HistoryDatabase.insert(db, tree: tree)
        }
    }
}
