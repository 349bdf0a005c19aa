import Delta
import Foundation
import Merge

/// An unfinished merge, as `status` shows it.
public struct MergeInProgress: Sendable {
    public var branches: [String]
    public var base: ObjectID
    public var method: String
    /// Tensor name → why it is unresolved.
    public var unresolved: [(tensor: String, reason: String)]
    /// True after `--no-commit`: everything is merged and the working tree holds the result.
    public var ready: Bool
}

extension Repository {
    /// The merge in progress, if any.
    public func mergeInProgress() throws -> MergeInProgress? {
        guard let state = try history.mergeState() else { return nil }
        return MergeInProgress(branches: state.branches.map(\.name), base: state.base,
                               method: state.recipe["method"]?.stringValue ?? "?",
                               unresolved: state.unresolved.keys.sorted().map { ($0, state.unresolved[$0]!) },
                               ready: state.readyTree != nil)
    }

    /// Rebuilds the merge's context from its saved state.
    func context(of state: MergeState) throws -> MergeContext {
        guard let recipe = MergeRecipe(json: state.recipe) else { throw RepoError.failed("the saved merge recipe is unreadable; run 'mrepo merge --abort'") }
        let headName = try history.head().branchName ?? "HEAD"
        var experts: [(name: String, commit: ObjectID)] = []
        if state.head != state.base { experts.append((headName, state.head)) }
        experts += state.branches
        let o = state.options
        var options = MergeOptions(branches: state.branches.map(\.name), recipe: recipe,
                                   vocabulary: o["vocabulary"]?.stringValue.flatMap(VocabularyPolicy.init(rawValue:)),
                                   fileRule: o["file_rule"]?.stringValue.flatMap(FileConflictRule.init(rawValue:)) ?? .ours)
        options.outputDType = o["dtype"]?.stringValue.flatMap(DType.init(rawValue:))
        return try MergeContext(repository: self, base: state.base, experts: experts, plan: try MergePlan(recipe), options: options)
    }

    /// Settles unresolved tensors whose names match any of `patterns` (globs).
    /// - Returns: the tensors settled now, and those still unresolved.
    public func resolveMerge(_ patterns: [String], with resolution: Resolution, wait: Bool = false) throws -> (resolved: [String], remaining: [String]) {
        try withWriteLock(wait: wait) {
            guard var state = try history.mergeState() else { throw RepoError.invalidArgument("no merge in progress") }
            let matching = state.unresolved.keys.filter { name in patterns.contains { fnmatch($0, name, 0) == 0 } }.sorted()
            guard !matching.isEmpty else {
                throw RepoError.invalidArgument("no unresolved tensor matches \(patterns.joined(separator: " ")); unresolved: \(state.unresolved.keys.sorted().prefix(5).joined(separator: ", "))")
            }
            let context = try self.context(of: state)
            let batch = objects.makeBatch()
            var newObjects: [ObjectInfo] = []
            do {
                let layerCount = TensorContext.layerCount(of: context.allNames)
                let overridePlan: MergePlan? = try {
                    guard case var .method(recipe) = resolution else { return nil }
                    recipe.experts = context.experts.map(\.name)
                    if recipe.expertParameters.count != recipe.experts.count {
                        recipe.expertParameters = Array(repeating: [:], count: recipe.experts.count)
                    }
                    return try MergePlan(recipe)
                }()
                for name in matching {
                    var chosen: ObjectID?
                    switch resolution {
                    case .ours:
                        chosen = context.expertTensors.first?[name]?.tensor.objectID
                    case let .theirs(branch):
                        let index = branch.map { b in context.experts.firstIndex { $0.name == b } } ?? context.experts.indices.last
                        guard let index else { throw RepoError.invalidArgument("'\(branch ?? "")' is not an input of this merge") }
                        chosen = context.expertTensors[index][name]?.tensor.objectID
                    case .base:
                        chosen = context.baseTensors[name]?.tensor.objectID
                    case .method:
                        let plan = overridePlan!
                        guard context.baseTensors[name] != nil, context.expertTensors.allSatisfy({ $0[name]?.tensor.shape == context.baseTensors[name]?.tensor.shape }) else {
                            throw RepoError.invalidArgument("'\(name)' cannot be merged by a method (its shapes differ or it has no merge base); use --ours, --theirs or --base")
                        }
                        let shape = context.baseTensors[name]!.tensor.shape
                        let (info, _, _) = try context.mergeTensor(name, context: TensorContext(name: name, shape: shape, layerCount: layerCount),
                                                                   batch: batch, thresholds: ConflictThresholds(), plan: plan)
                        if let info {
                            chosen = info.id
                            if !newObjects.contains(where: { $0.id == info.id }) { newObjects.append(info) }
                        }
                    }
                    state.unresolved[name] = nil
                    state.decided[name] = chosen
                }
                try batch.finish()
                try history.setMergeState(state, objects: newObjects)
            } catch {
                batch.rollback()
                throw error
            }
            return (matching, state.unresolved.keys.sorted())
        }
    }

    /// Finishes a merge: all conflicts must be resolved.
    public func continueMerge(message: String? = nil, wait: Bool = false) throws -> Commit {
        try withWriteLock(wait: wait) {
            guard var state = try history.mergeState() else { throw RepoError.invalidArgument("no merge in progress") }
            guard state.unresolved.isEmpty else {
                throw RepoError.invalidArgument("\(state.unresolved.count) tensors are still unresolved (\(state.unresolved.keys.sorted().prefix(3).joined(separator: ", ")), ...); settle them with 'mrepo resolve'")
            }
            if let message { state.message = message }
            let report = try savedReport(state)
            if let ready = state.readyTree {
                let recorded = try recordMerge(state: state, tree: try history.tree(ready), objects: [], report: report)
                try finishMerge(recorded)
                return recorded.commit
            }
            let context = try self.context(of: state)
            let batch = objects.makeBatch()
            let recorded: RecordedMerge
            do {
                var newObjects: [ObjectInfo] = []
                let recipe = context.plan.recipe
                let tree = try context.buildTree(decided: state.decided, recipe: recipe, report: report,
                                                 recipeYAML: recipeYAML(recipe, base: state.base), batch: batch, newObjects: &newObjects)
                try batch.finish()
                recorded = try recordMerge(state: state, tree: tree, objects: newObjects, report: report)
            } catch {
                batch.rollback()
                throw error
            }
            try finishMerge(recorded)
            return recorded.commit
        }
    }

    /// Abandons a merge: the state is dropped and the working tree goes back to HEAD.
    public func abortMerge(wait: Bool = false) throws {
        try withWriteLock(wait: wait) {
            guard let state = try history.mergeState() else { throw RepoError.invalidArgument("no merge in progress") }
            if let ready = state.readyTree {
                let entries = try materialize(try tree(of: state.head), over: try history.tree(ready), force: true)
                history.saveStatCacheOpportunistically(entries, removing: [])
                try history.clearWorktreeView()
            }
            try history.setMergeState(nil)
        }
    }

    private func savedReport(_ state: MergeState) throws -> ConflictReport {
        // The summary needed for the card comes from the saved JSON; the per-tensor details stay in the blob.
        var report = ConflictReport(method: state.recipe["method"]?.stringValue ?? "", experts: state.branches.map(\.name),
                                    baseName: state.base.short, tensors: [], files: [])
        if let id = state.reportObject, let bytes = try? objects.read(id), let v = try? JSONValue.parse(bytes) {
            report.tensors = (v["tensors"]?.arrayValue ?? []).compactMap { t in
                guard let name = t["name"]?.stringValue, let cls = t["class"]?.stringValue.flatMap(MergeClass.init(rawValue:)) else { return nil }
                var r = TensorReport(name: name, mergeClass: cls, elementCount: t["elements"]?.intValue ?? 0)
                if let m = t["metrics"] {
                    var metrics = ConflictMetrics()
                    metrics.conflictingMass = m["conflicting_mass"]?.doubleValue ?? 0
                    metrics.signConflict = m["sign_conflict"]?.doubleValue ?? 0
                    metrics.cosines = (m["cosines"]?.arrayValue ?? []).map(\.doubleValue)
                    r.metrics = metrics
                }
                return r
            }
        }
        return report
    }

    /// The conflict report recorded with a merge commit, as JSON (nil for other commits).
    public func mergeReport(of id: ObjectID) throws -> JSONValue? {
        guard let hex = try commit(id).extra["merge"]?["report_object"]?.stringValue, let report = ObjectID(hex: hex) else { return nil }
        return try JSONValue.parse(try objects.read(report))
    }
}
