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
    /// Estimated peak memory of the tensor merges: the method's working memory on the largest
    /// tensor it merges (``MergeMethod/workingMemory(elements:experts:)``), plus fixed buffers.
    public var estimatedPeakBytes: Int
    /// The recipe in mergekit's YAML form (re-runnable with `mrepo merge --config`).
    public var recipeYAML: String
    /// How ``estimatedPeakBytes`` was counted, in words.
    public var estimatedPeakFormula = ""
    /// A reversible merge's measurements (``RMM``).
    public var reversible: ReversibleMergeReport? = nil
    /// Things the user should know that did not stop the merge (a failed post-merge hook).
    public var warnings: [String] = []
    /// Time per phase, when `MREPO_DEBUG_TIMING` is set (``PhaseTimer``).
    public var phaseTimes: [PhaseTimer.Phase] = []
}

extension MergeOutcome {
    /// An outcome of a merge that ran (or was planned): its inputs' base and candidates, and the
    /// context's memory estimate.
    init(status: Status, report: ConflictReport, inputs: ResolvedMerge, context: MergeContext, recipeYAML: String) {
        let peak = context.estimatedPeak
        self.init(status: status, report: report, base: inputs.base, baseCandidates: inputs.candidates,
                  estimatedPeakBytes: peak.bytes, recipeYAML: recipeYAML, estimatedPeakFormula: peak.formula)
        warnings = inputs.repeated.map { "\($0.name) names the same commit as \($0.sameAs) (\($0.commit.short)): it is merged once (to count it more, give it a larger weight)" }
            + inputs.leftOut.map { "\($0) is already in HEAD: it adds nothing and was left out of the merge" }
    }
}

/// How an unresolved tensor is settled by `mrepo resolve`.
public enum Resolution: Sendable {
    /// The current branch's tensor (the first expert's when HEAD is the merge base).
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

/// A merge's inputs, resolved to commits.
struct ResolvedMerge {
    var head: Head
    var headID: ObjectID
    /// The merge commit's parents beyond HEAD.
    var branches: [MergeInput]
    /// The models whose task vectors are merged, in order.
    var experts: [MergeInput]
    var base: ObjectID
    var candidates: [ObjectID]
    /// Branches named that HEAD already contains: they add nothing, and are left out (said as a warning).
    var leftOut: [String] = []
    /// Names given after another that names the same commit: merged once (said as a warning).
    var repeated: [(name: String, sameAs: String, commit: ObjectID)] = []
}

extension Repository {
    // MARK: - merge

    /// Merges branches into HEAD (docs/merging.md).
    ///
    /// By default the recipe's method applies to every floating-point tensor some expert changed,
    /// as in mergekit; with `oneSided = .take`, a tensor changed on one side only is taken bit for
    /// bit (git's rule). Shape or dtype changes, add/add and modify/delete are conflicts. Nothing
    /// is written before the recipe, the inputs and the working tree have been checked.
    public func merge(_ options: MergeOptions, wait: Bool = false) throws -> MergeOutcome {
        var outcome = try withWriteLock(wait: wait) { try mergeLocked(options) }
        // post-merge ran once the lock was released.
        outcome.warnings += takePostHookWarnings()
        return outcome
    }

    /// The local changes that stop a merge at its start, as in git: a change to a tracked file
    /// that some input has otherwise than the working tree's baseline (or that the merge writes
    /// itself: the model card, the recipe, an adapter merge's config, a reversible merge's basis),
    /// any change to a safetensors file or shard index, an unreadable file, and an untracked file where the merged tree could put something.
    /// For a change applied by revert or cherry-pick, only a file the change touches (three-way,
    /// as in git), whatever its kind.
    /// The others stay as local changes; the staging of the merged tree checks again, so nothing
    /// is ever overwritten.
    private func localChangesInTheWay(_ changes: [WorktreeStatus.Change], baseline: Tree, inputs: ResolvedMerge, trees byCommit: [ObjectID: Tree],
                                      options: MergeOptions) throws -> [WorktreeStatus.Change] {
        let generated: Set<String> = options.addsMergeFiles ? ["README.md", "merge_recipe.yml", LoRAConfig.fileName, RMMBasisFile.fileName] : []
        // A change applied by revert or cherry-pick writes no dtype and no card: a safetensors file
        // or shard index that every input has as the working tree's baseline keeps its bytes.
        let mayRewriteModelFiles = options.addsMergeFiles || options.outputDType != nil
        let trees = Array(byCommit.values)
        var paths = generated
        for t in trees { paths.formUnion(t.files.map(\.path)) }
        let folders = PathPolicy.folders(of: Array(paths))
        // A change applied by revert or cherry-pick writes a file only where the change (merge base
        // → the other input) touches it and leaves it otherwise than the working tree has it.
        let applied = options.addsMergeFiles ? nil : (base: byCommit[inputs.base]!, sides: inputs.experts.map { byCommit[$0.commit]! })
        return changes.filter { change in
            if change.kind == .added {
                return paths.contains(change.path) || folders.contains(change.path) || PathPolicy.hasFileAbove(change.path, in: paths)
            }
            // A shard index is rebuilt whenever tensors change dtype or file: as a safetensors file.
            if change.reason != nil || generated.contains(change.path) { return true }
            if mayRewriteModelFiles, isSafetensorsPath(change.path) || change.path.hasSuffix(".safetensors.index.json") { return true }
            // config.json follows the merged weights' dtype and vocabulary (ModelConfigText).
            if options.outputDType != nil || options.vocabulary != nil, change.path == "config.json" || change.path.hasSuffix("/config.json") { return true }
            let mine = baseline.file(at: change.path)?.identity
            if let applied {
                let before = applied.base.file(at: change.path)?.identity
                return applied.sides.contains { side in
                    let after = side.file(at: change.path)?.identity
                    return after != before && after != mine
                }
            }
            return !trees.allSatisfy { $0.file(at: change.path)?.identity == mine }
        }
    }

    /// A merge matches tensors by name across a checkpoint's files (shards move tensors between
    /// files): a name held by two files of one input cannot be matched, and one of the files would
    /// be lost. Refused before anything is written.
    private func refuseTensorNamesInSeveralFiles(_ trees: [ObjectID: Tree]) throws {
        for (id, tree) in trees.sorted(by: { $0.key.hex < $1.key.hex }) {
            var file: [String: String] = [:]
            // Statistics (mrepo_stats/) are never merged: their names repeat the model's by design.
            for (path, tensor) in tree.withoutStatistics.allTensors {
                if let other = file[tensor.name], other != path {
                    throw RepoError.invalidArgument("cannot merge: in \(id.short), tensor '\(tensor.name)' is in both \(other) and \(path), "
                        + "and a merge matches tensors by name across a checkpoint's files; keep one checkpoint per branch (a link "
                        + "committed with --dereference is a second copy)")
                }
                file[tensor.name] = path
            }
        }
    }

    func mergeLocked(_ options: MergeOptions) throws -> MergeOutcome {
        if try history.mergeState() != nil {
            throw RepoError.invalidArgument("a merge is in progress; finish it with 'mrepo merge --continue' or 'mrepo merge --abort'")
        }
        guard !options.branches.isEmpty else { throw RepoError.invalidArgument("name at least one branch to merge") }
        // The method must exist before anything else is looked at; the recipe is validated once,
        // by MergePlan, when the experts are known (nothing is written before that).
        _ = try MethodRegistry.method(named: options.recipe.method)
        let head = try history.head()
        let timer = PhaseTimer.fromEnvironment()
        guard let headID = head.commit else { throw RepoError.invalidArgument("HEAD has no commits yet; commit before merging") }
        let empty = ConflictReport(method: options.recipe.method, experts: [], baseName: "", tensors: [], files: [])
        let inputs: ResolvedMerge
        switch try resolveMerge(options, head: head, headID: headID) {
        case .upToDate:
            if options.fastForward == .only, options.isExplicit {
                throw RepoError.invalidArgument("--ff-only: nothing to merge, and a merge with a method is never a fast-forward")
            }
            return MergeOutcome(status: .upToDate, report: empty, base: nil, baseCandidates: [], estimatedPeakBytes: 0, recipeYAML: "")
        case let .fastForward(name, target, base):
            let result = try moveHeadForward(head, to: target, message: "merge \(name): fast-forward", operation: "merging")
            return MergeOutcome(status: .fastForward(result), report: ConflictReport(method: "fast-forward", experts: [name], baseName: "HEAD", tensors: [], files: []),
                                base: base, baseCandidates: [base], estimatedPeakBytes: 0, recipeYAML: "")
        case let .merge(resolved):
            inputs = resolved
        }
        // The commit's author is looked up while the merge runs: without MREPO_AUTHOR it asks git
        // twice (two processes, each waited for by polling), which would sit on the merge's tail.
        let author = options.dryRun || options.noCommit ? nil : BackgroundValue { Repository.defaultAuthor() }
        // Every input's tree, read once for the checks below.
        var inputTrees: [ObjectID: Tree] = [:]
        for id in [inputs.headID, inputs.base] + inputs.branches.map(\.commit) + inputs.experts.map(\.commit) where inputTrees[id] == nil {
            inputTrees[id] = try tree(of: id)
        }
        if !options.dryRun {
            let ts = timer.now()
            defer { timer.add("status", since: ts) }
            let baseline = try worktreeBaseline(head: head).tree
            let changes = try status(against: baseline).changes
            let dirty = changes.isEmpty ? [] : try localChangesInTheWay(changes, baseline: baseline, inputs: inputs, trees: inputTrees, options: options)
            if !dirty.isEmpty { throw RepoError.dirtyWorktree(operation: options.operation, paths: dirty.map(\.path)) }
        }
        try refuseTensorNamesInSeveralFiles(inputTrees)
        var options = options
        // One expert without a method is git's merge of a branch: its tensors as they are.
        if !options.isExplicit, inputs.experts.count == 1 { options.oneSided = .take }
        var recipe = options.recipe
        recipe.experts = inputs.experts.map(\.name)
        recipe.expertParameters = try orderedExpertParameters(options, experts: inputs.experts)
        try refuseAdapterExperts(inputs.experts, method: recipe.method)
        let metrics = try inputs.experts.map { e in
            Dictionary(try self.metrics(of: try commit(e.commit)).map { ($0.name, $0.value) }, uniquingKeysWith: { _, last in last })
        }
        // Statistics committed beside the experts (mrepo_stats/), for data-driven methods.
        let statistics = CommittedStatistics(expertNames: recipe.experts, trees: try inputs.experts.map { try tree(of: $0.commit) }, objects: objects)
        let plan = try MergePlan(recipe, expertMetrics: metrics, statistics: statistics)
        if options.squash, plan.method.mergesTensorByTensor {
            throw RepoError.invalidArgument("--squash replaces the experts by a reversible merge's basis; it needs --method rmm (or --reversible)")
        }
        if !plan.method.mergesTensorByTensor {
            return try mergeReversible(options: options, recipe: recipe, head: head, headID: inputs.headID, mergeBase: inputs.base,
                                       branches: inputs.branches.map { ($0.name, $0.commit) }, experts: inputs.experts.map { ($0.name, $0.commit) })
        }
        let yaml = recordedRecipe(recipe, options: options, base: inputs.base, experts: inputs.experts, resolutions: options.resolutions).yaml()

        let tc = timer.now()
        var context = try MergeContext(repository: self, base: inputs.base, experts: inputs.experts.map { ($0.name, $0.commit) },
                                       plan: plan, options: options)
        context.timer = timer
        timer.add("context", since: tc)
        let layerCount = TensorContext.layerCount(of: context.allNames)
        try plan.validate(layerCount: layerCount)
        if options.dryRun {
            let report = try context.classify(layerCount: layerCount)
            return MergeOutcome(status: .planned, report: report, inputs: inputs, context: context, recipeYAML: yaml)
        }
        let batch = objects.makeBatch()
        var committed: (RecordedMerge, ConflictReport)?
        var readyCheckout: (StagedCheckout, ConflictReport)?
        // The merged files are written as the merge goes, for the checkout (an optimisation only).
        if !options.noCommit {
            // The same merge recorded before stored this very recipe (it names the inputs' commits).
            let mayRepeat = objects.exists(Array(yaml.utf8).withUnsafeBytes { BlobHasher.hash($0) })
            context.prepared = try? PreparedCheckout(repository: self, template: context.layoutTemplate, mayRepeat: mayRepeat)
            let tp = timer.now()
            context.prepared?.prefill(context.unchangedTakes, store: objects)
            timer.add("prefill", since: tp)
        }
        defer { context.prepared?.discard() }
        let headName = head.branchName ?? "HEAD"
        do {
            let tr = timer.now()
            var result = try context.run(layerCount: layerCount, batch: batch, progress: progress)
            // Complete files are hashed on another core while the objects are made durable.
            context.prepared?.startDigests()
            timer.add("run", since: tr)
            let tb = timer.now()
            let message = options.message ?? "Merge \(inputs.branches.map(\.shownName).joined(separator: ", ")) into \(headName) (\(recipe.method))"
            let reportBlob = try objects.writeBlob(Array(result.report.json.serialized().utf8), options: codecOptions, batch: batch)
            if reportBlob.isNew { result.newObjects.append(reportBlob.info) }
            // Merged tensors become readable under their names (the tree is built from their headers).
            try batch.finish()
            timer.add("report+finish1", since: tb)
            var state = MergeState(head: inputs.headID, branches: inputs.branches, experts: inputs.experts, base: inputs.base,
                                   recipe: recipe, message: message, decided: result.decided, unresolved: result.unresolved,
                                   reportObject: reportBlob.info.id, readyTree: nil, options: RecordedMergeOptions(options),
                                   resolutions: result.replayed, metrics: options.metrics)
            // A search's record (and any other member) goes with a merge that stops or waits.
            if !options.extraMembers.isEmpty { state.extra = .object(options.extraMembers) }
            if options.operation != "merging" { state.operation = options.operation }
            if !result.unresolved.isEmpty {
                try history.setMergeState(state, objects: try withLeftoverRows(result.newObjects, for: nil, also: state.objects))
                return MergeOutcome(status: .conflicted, report: result.report, inputs: inputs, context: context, recipeYAML: yaml)
            }
            let tt = timer.now()
            let tree = try context.buildTree(decided: result.decided, recipe: recipe, report: result.report,
                                              recipeYAML: yaml, batch: batch, newObjects: &result.newObjects)
            try batch.finish()
            timer.add("tree+finish2", since: tt)
            // The HTML page is written after the record: never over a file the merge writes there
            // (one another branch brings, say), which is known only now.
            if let page = options.reportPath {
                try checkOutputFile(page, option: "--report", alsoWritten: tree.files.map(\.path))
            }
            if options.noCommit {
                // The candidate's files are staged (written and verified) before the merge state
                // names them: a corrupt object stops the merge with nothing recorded or written.
                let baseline = try worktreeBaseline(head: head).tree
                let checkout = try stageCheckout(tree, over: baseline, force: false, operation: options.operation)
                do {
                    state.readyTree = tree.id
                    try notePendingCheckout(operation: "merge --no-commit", from: baseline, to: tree, force: false, proof: .mergeCandidate(tree.id.hex))
                    try history.insertTree(tree.fillingDigests(from: checkout.staged), objects: try withLeftoverRows(result.newObjects, for: tree, also: state.objects),
                                           mergeState: state)
                } catch {
                    checkout.rollback()
                    clearPendingCheckout()
                    throw error
                }
                readyCheckout = (checkout, result.report)
            } else {
                // A revert or cherry-pick none of whose change applied (HEAD's version of each file
                // it touches kept) would be an empty commit under the change's message, which git
                // refuses. (Settled so by `resolve` before `--continue`, it is the user's choice.)
                if let kind = state.operation, state.branches.isEmpty, tree.id == (try commit(state.head)).treeID {
                    throw RepoError.invalidArgument("\(kind): nothing of the change could be applied: HEAD has changed the files it touches since (their HEAD versions are kept); no commit was made")
                }
                let trec = timer.now()
                let recorded = try recordMerge(state: state, tree: tree, objects: result.newObjects, report: result.report,
                                               extraMembers: options.extraMembers, prepared: context.prepared, author: author,
                                               operation: options.operation)
                timer.add("record", since: trec)
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
            return MergeOutcome(status: .ready, report: report, inputs: inputs, context: context, recipeYAML: yaml)
        }
        let (recorded, report) = committed!
        let tf = timer.now()
        let warnings = try finishMerge(recorded)
        timer.add("checkout", since: tf)
        var outcome = MergeOutcome(status: .committed(recorded.commit), report: report, inputs: inputs, context: context, recipeYAML: yaml)
        outcome.warnings += warnings
        outcome.phaseTimes = timer.phases
        return outcome
    }

    // MARK: - Inputs

    enum InputPlan {
        case upToDate
        case fastForward(name: String, target: ObjectID, base: ObjectID)
        case merge(ResolvedMerge)
    }

    /// Resolves the merge's inputs: the experts, the other parents, the merge base; or decides that
    /// there is nothing to merge, or that HEAD can move forward.
    func resolveMerge(_ options: MergeOptions, head: Head, headID: ObjectID) throws -> InputPlan {
        var named: [MergeInput] = []
        var repeated: [(name: String, sameAs: String, commit: ObjectID)] = []
        for name in options.branches {
            let id = try resolveInput(name)
            if let first = named.first(where: { $0.commit == id }) {
                repeated.append((name, first.name, id))
                continue
            }
            // `merge -` names the branch it means in the message and the record, not `@{-1}`
            // (which names another branch after the next switch); a whole commit id (a revert's or
            // cherry-pick's input) is shown as its short form.
            let shown = name.count == 64 && ObjectID(hex: name) == id ? id.short : name
            named.append(MergeInput(name: try previousBranchName(spelled: name) ?? shown, commit: id))
        }
        let headName = head.branchName ?? "HEAD"
        let headAncestors = try ancestors(of: headID)
        if options.inputsAreExperts {
            // A recipe's models are the experts, exactly; HEAD is the first parent.
            let base: ObjectID
            var candidates: [ObjectID]
            if let rev = options.base {
                base = try resolveInput(rev)
                candidates = [base]
            } else {
                candidates = try mergeBases(named.count == 1 ? [headID, named[0].commit] : named.map(\.commit))
                guard let first = candidates.first else {
                    if let shallow = try shallowMergeBaseError(named.map(\.commit) + [headID]) { throw shallow }
                    throw RepoError.invalidArgument("the recipe's models \(named.map(\.name).joined(separator: ", ")) have no common ancestor; give base_model (or --base REV)")
                }
                base = first
            }
            var contained = try ancestors(of: base).contains(headID)
            for e in named where !contained { contained = try ancestors(of: e.commit).contains(headID) }
            guard contained else {
                throw RepoError.invalidArgument("HEAD (\(headName), \(headID.short)) is neither the merge base nor one of the models merged (the recipe's, or the branches named beside a recipe without models), nor an ancestor of one: its changes would be dropped; name it among them, or switch to the merge base or to one of the models (mrepo switch -c NAME REV) and run the merge there")
            }
            let branches = options.singleParent ? [] : named.filter { $0.commit != headID && !headAncestors.contains($0.commit) }
            if branches.isEmpty, named.allSatisfy({ headAncestors.contains($0.commit) }), !named.contains(where: { $0.commit == headID }) {
                return .upToDate
            }
            return .merge(ResolvedMerge(head: head, headID: headID, branches: branches, experts: named, base: base, candidates: candidates,
                                        repeated: repeated))
        }
        // Branches HEAD already contains add nothing.
        let branches = named.filter { !headAncestors.contains($0.commit) }
        if branches.isEmpty { return .upToDate }
        let candidates: [ObjectID]
        let base: ObjectID
        if let rev = options.base {
            base = try resolveInput(rev)
            candidates = [base]
        } else {
            candidates = try mergeBases([headID] + branches.map(\.commit))
            guard let first = candidates.first else {
                if let shallow = try shallowMergeBaseError([headID] + branches.map(\.commit)) { throw shallow }
                throw RepoError.invalidArgument("\(options.branches.joined(separator: ", ")) and HEAD have no common ancestor; name one with --base REV")
            }
            base = first
        }
        // One branch that contains HEAD, and nothing asked of the method: fast-forward, as git does.
        let canFastForward = branches.count == 1 && base == headID && options.base == nil
        // A message alone does not stop it, as in git (there is no merge commit to carry it); --metric
        // does: it needs a merge commit to record.
        let plain = !options.isExplicit && !options.dryRun && !options.noCommit && options.metrics.isEmpty
        if options.fastForward == .only {
            guard canFastForward, !options.isExplicit else {
                throw RepoError.invalidArgument(options.isExplicit
                    ? "--ff-only: a merge with a method, parameters or a recipe is never a fast-forward"
                    : "--ff-only: HEAD (\(headName)) cannot fast-forward to \(branches.map(\.name).joined(separator: ", ")); the branches have diverged")
            }
            return .fastForward(name: branches[0].name, target: branches[0].commit, base: base)
        }
        if canFastForward, plain, options.fastForward == .allowed {
            return .fastForward(name: branches[0].name, target: branches[0].commit, base: base)
        }
        // Experts: HEAD (unless it is the merge base), then each branch.
        var experts: [MergeInput] = []
        if headID != base { experts.append(MergeInput(name: headName, commit: headID)) }
        experts += branches
        return .merge(ResolvedMerge(head: head, headID: headID, branches: branches, experts: experts, base: base, candidates: candidates,
                                    leftOut: named.filter { headAncestors.contains($0.commit) }.map(\.name), repeated: repeated))
    }

    /// Resolves a merge input; a name that is no revision gets a hint when it looks like a folder
    /// or a Hugging Face model id (mergekit recipes name models that way).
    func resolveInput(_ name: String) throws -> ObjectID {
        do {
            return try resolve(name)
        } catch RepoError.unknownRevision(_) {
            throw RepoError.invalidArgument(Repository.importHint(name))
        } catch RepoError.unknownRef(_) {
            throw RepoError.invalidArgument(Repository.importHint(name))
        }
    }

    static func importHint(_ name: String) -> String {
        var isFolder: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: name, isDirectory: &isFolder)
        if exists, !isFolder.boolValue {
            return "'\(name)' is a file, not a revision of this repository (merge inputs are branches, tags or commits)"
        }
        let looksLikePath = name.hasPrefix("/") || name.hasPrefix(".") || name.hasPrefix("~") || exists
        if looksLikePath {
            return "'\(name)' is a folder, not a revision of this repository; import it first (mrepo switch -c NAME BASE; mrepo commit --from \(name) -m MESSAGE) and name the branch NAME in the recipe"
        }
        let parts = name.split(separator: "/", omittingEmptySubsequences: false)
        if parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy { $0.isLetter || $0.isNumber || "-_.".contains($0) } }) {
            return "'\(name)' looks like a Hugging Face model id, not a revision of this repository; download it (huggingface-cli download \(name) --local-dir DIR), import it (mrepo switch -c NAME BASE; mrepo commit --from DIR -m MESSAGE) and name the branch NAME in the recipe"
        }
        return "unknown revision '\(name)' (a branch, tag or commit of this repository)"
    }

    /// Per-expert parameters, given by any name that resolves to an expert, in expert order.
    private func orderedExpertParameters(_ options: MergeOptions, experts: [MergeInput]) throws -> [[String: ParameterValue]] {
        var given = options.expertParameters
        if given.isEmpty {
            let recipe = options.recipe
            given = recipe.experts.enumerated().compactMap { i, name in
                i < recipe.expertParameters.count && !recipe.expertParameters[i].isEmpty ? (name, recipe.expertParameters[i]) : nil
            }
        }
        var out = [[String: ParameterValue]](repeating: [:], count: experts.count)
        // Who set each parameter of each expert: two names of one commit (merged once) must agree.
        var setBy = [[String: String]](repeating: [:], count: experts.count)
        for (name, parameters) in given {
            var index = experts.firstIndex { $0.name == name }
            if index == nil, let id = try? resolve(name) { index = experts.firstIndex { $0.commit == id } }
            guard let index else {
                throw RepoError.invalidArgument("per-expert parameters name '\(name)', which is not an expert of this merge (experts: \(experts.map(\.name).joined(separator: ", ")))")
            }
            for (key, value) in parameters.sorted(by: { $0.key < $1.key }) {
                if let earlier = setBy[index][key], earlier != name, let old = out[index][key], old != value {
                    throw RepoError.invalidArgument("'\(earlier)' and '\(name)' name the same commit (\(experts[index].commit.short)), merged once, "
                        + "and give it different values of '\(key)'; name it once")
                }
                setBy[index][key] = name
                out[index][key] = value
            }
        }
        return out
    }

    /// LoRA adapters merge as adapters (rmm) or folded into their base, not tensor by tensor against a full model.
    func refuseAdapterExperts(_ experts: [MergeInput], method: String) throws {
        guard method != RMM.id else { return }
        let adapters = try experts.filter { try commit($0.commit).record(AdapterRecord.self) != nil }
        guard !adapters.isEmpty else { return }
        throw RepoError.invalidArgument("\(adapters.map(\.name).joined(separator: ", ")) \(adapters.count == 1 ? "is a LoRA adapter" : "are LoRA adapters"): \(method) merges full models tensor by tensor; merge adapters with --method rmm (a reversible merge of the adapters), or fold each into its base model (mrepo export --fold REV DIR; mrepo commit --from DIR) and merge the folded models (knots is made for them)")
    }

    func moveHeadForward(_ head: Head, to target: ObjectID, message: String, operation: String) throws -> ObjectID {
        let oldTree = try worktreeBaseline(head: head).tree
        _ = try checkOutThenMoveHead(try tree(of: target), over: oldTree, to: target, force: false, refusal: operation,
                                     operation: operation == "pull" ? "pull" : "fast-forward merge") { entries in
            try history.moveHead(head, to: target, message: message, statEntries: entries)
        }
        return target
    }

    // MARK: - The recorded recipe

    /// The recipe in mergekit's YAML form, naming every model by its commit, with mrepo's options
    /// and the resolutions: `mrepo merge --config` re-runs it on any branch whose HEAD is the merge
    /// base or one of the models.
    func recordedRecipe(_ recipe: MergeRecipe, options: MergeOptions, base: ObjectID, experts: [MergeInput],
                        resolutions: [RecordedResolution]) -> MergekitRecipe {
        let method = try? MethodRegistry.method(named: recipe.method)
        // mergekit requires each model's `weight` where the method has one (mrepo defaults it to
        // 1): written out, the recipe runs in mergekit too.
        let weight = method?.expertParameters.first { $0.name == "weight" }?.defaultValue
        let models = experts.enumerated().map { i, e in
            var parameters = i < recipe.expertParameters.count ? recipe.expertParameters[i] : [:]
            if let weight, parameters["weight"] == nil, recipe.parameters["weight"] == nil { parameters["weight"] = weight }
            return MergekitRecipe.Model(name: e.commit.hex, parameters: parameters)
        }
        var baseModel: String?
        var ext = MergeExtensions(oneSided: options.oneSided, vocabulary: options.vocabulary, fileConflict: options.fileRule,
                                  thresholds: options.thresholds, resolutions: resolutions)
        if method?.requiresBase ?? true {
            baseModel = base.hex
        } else if recipe.method == SLERP.id {
            // mergekit's slerp: base_model is one of the two models, the t = 0 end.
            baseModel = models.first?.name
            if base != experts.first?.commit { ext.mergeBase = base.hex }
        } else {
            ext.mergeBase = base.hex
        }
        var out = MergekitRecipe(method: recipe.method, baseModel: baseModel, models: models, parameters: recipe.parameters,
                                 dtype: options.dtype, outDType: options.outputDType.map { $0.torchName.isEmpty ? $0.rawValue : $0.torchName },
                                 seed: recipe.seed, tokenizerSource: options.tokenizerSource, extensions: ext)
        out.lines = recipe.lines
        out.consensus = recipe.consensus
        out.balance = recipe.balance
        out.header = ["Recorded by mrepo \(Repository.toolVersion). Re-run with: mrepo merge --config merge_recipe.yml",
                      "(on a branch whose HEAD is the merge base or one of the models).",
                      "merge base \(base.short)" + experts.map { ", " + ($0.shownName == $0.commit.short ? $0.shownName : "\($0.name) = \($0.commit.short)") }.joined()]
        return out
    }

    /// mrepo's version: recorded in merge recipes and model cards, printed by `mrepo --version`.
    public static let toolVersion = "0.2.0"
}
