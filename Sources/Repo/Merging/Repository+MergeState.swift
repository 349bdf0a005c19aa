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
    /// The first line of the message the commit will have (`Revert "…"` for a revert).
    public var subject: String
    /// A revert or cherry-pick that went through task arithmetic, not a merge of branches.
    public var appliesChange: Bool
    /// Which of the two ("revert" or "cherry-pick"), as the merge state records it (told by the
    /// message a cherry-pick ends with for a state written before); nil for a merge.
    public var operation: String?
}

extension Repository {
    /// The merge in progress, if any.
    public func mergeInProgress() throws -> MergeInProgress? {
        guard let state = try history.mergeState() else { return nil }
        return MergeInProgress(branches: state.branches.map(\.name), base: state.base,
                               method: state.recipe.method,
                               unresolved: state.unresolved.sorted { $0.key < $1.key }.map { ($0.key, $0.value) },
                               ready: state.readyTree != nil,
                               subject: String(state.message.split(separator: "\n", omittingEmptySubsequences: false).first ?? ""),
                               appliesChange: state.options.noMergeFiles == true,
                               operation: state.operation ?? (state.options.noMergeFiles != true ? nil
                                   // A state written before the operation was recorded: told by the message.
                                   : state.message.contains("\n\n(cherry picked from commit ") ? "cherry-pick" : "revert"))
    }

    /// The recipe and options of a merge in progress, as the merge started.
    func savedOptions(_ state: MergeState) throws -> MergeOptions {
        let o = state.options
        var options = MergeOptions(branches: state.branches.map(\.name), recipe: state.recipe, vocabulary: o.vocabulary, fileRule: o.fileRule)
        options.outputDType = o.dtype.flatMap(DType.init(rawValue:))
        options.oneSided = o.oneSided ?? .take
        options.thresholds = o.thresholds ?? ConflictThresholds()
        options.dtype = o.recipeDType
        options.tokenizerSource = o.tokenizerSource
        options.addsMergeFiles = o.noMergeFiles != true
        options.metrics = state.metrics ?? []
        return options
    }

    /// Rebuilds the merge's context from its saved state.
    func context(of state: MergeState) throws -> MergeContext {
        let options = try savedOptions(state)
        let statistics = CommittedStatistics(expertNames: state.expertList.map(\.name), trees: try state.expertList.map { try tree(of: $0.commit) },
                                             objects: objects)
        return try MergeContext(repository: self, base: state.base, experts: state.expertList.map { ($0.name, $0.commit) },
                                plan: try MergePlan(options.recipe, statistics: statistics), options: options)
    }

    /// Settles unresolved tensors whose names match any of `patterns` (globs).
    /// - Returns: the tensors settled now, and those still unresolved.
    public func resolveMerge(_ patterns: [String], with resolution: Resolution, wait: Bool = false) throws -> (resolved: [String], remaining: [String]) {
        try withWriteLock(wait: wait) {
            guard var state = try history.mergeState() else { throw RepoError.invalidArgument("no merge in progress") }
            let matching = state.unresolved.keys.filter { name in patterns.contains { fnmatch($0, name, 0) == 0 } }.sorted()
            guard !matching.isEmpty else {
                if state.unresolved.isEmpty {
                    throw RepoError.invalidArgument("no unresolved tensor is left; run 'mrepo merge --continue' to commit the merge")
                }
                throw RepoError.invalidArgument("no unresolved tensor matches \(patterns.joined(separator: " ")); unresolved: \(state.unresolved.keys.sorted().prefix(5).joined(separator: ", "))")
            }
            let context = try self.context(of: state)
            // What each tensor is settled with, as it will be recorded (and replayed by a re-run).
            let template: RecordedResolution
            switch resolution {
            case .ours:
                guard let first = context.experts.first else { throw RepoError.invalidArgument("this merge has no expert") }
                template = RecordedResolution(tensor: "", how: .expert, option: "ours", expert: first.commit.hex)
            case let .theirs(branch):
                var index = branch.map { b in context.experts.firstIndex { $0.name == b } } ?? context.experts.indices.last
                if index == nil, let branch, let id = try? resolve(branch) { index = context.experts.firstIndex { $0.commit == id } }
                guard let index else {
                    throw RepoError.invalidArgument("'\(branch ?? "")' is not an expert of this merge (experts: \(context.experts.map(\.name).joined(separator: ", ")))")
                }
                template = RecordedResolution(tensor: "", how: .expert, option: "theirs", expert: context.experts[index].commit.hex)
            case .base:
                template = RecordedResolution(tensor: "", how: .base, option: "base")
            case let .method(recipe):
                var check = recipe
                check.experts = context.experts.map(\.name)
                check.expertParameters = Array(repeating: [:], count: check.experts.count)
                _ = try MergePlan(check, statistics: context.plan.statistics)
                template = RecordedResolution(tensor: "", how: .method, option: "method", method: recipe.method,
                                              parameters: recipe.parameters, seed: recipe.seed)
            }
            let batch = objects.makeBatch()
            var newObjects: [ObjectInfo] = []
            do {
                let layerCount = TensorContext.layerCount(of: context.allNames)
                var recorded = state.resolutions ?? []
                for name in matching {
                    var r = template
                    r.tensor = name
                    if r.how == .method, context.baseTensors[name] == nil {
                        throw RepoError.invalidArgument("'\(name)' cannot be merged by a method (it has no merge base); use --ours, --theirs or --base")
                    }
                    let chosen = try context.replay(r, name: name, layerCount: layerCount, batch: batch)
                    if let new = chosen?.new, !newObjects.contains(where: { $0.id == new.id }) { newObjects.append(new) }
                    state.unresolved[name] = nil
                    state.decided[name] = chosen?.id
                    recorded.append(r)
                }
                state.resolutions = recorded
                try batch.finish()
                try history.setMergeState(state, objects: try withLeftoverRows(newObjects, for: nil, also: state.objects))
            } catch {
                batch.rollback()
                throw error
            }
            return (matching, state.unresolved.keys.sorted())
        }
    }

    /// Finishes a merge: all conflicts must be resolved.
    /// - Returns: the merge commit, warnings (a failed post-merge hook), and the tracked files whose
    ///   local changes stay out of the commit (edits made since the merge stopped, to files the merge
    ///   leaves as HEAD had them: they are carried over as local changes, as git does).
    /// - Parameter refusingLocalChanges: refuse (changing nothing) while a tracked file differs
    ///   from what the merge wrote (`commit` during a merge, which would otherwise leave the edit
    ///   out of a commit git would have put it in).
    public func continueMerge(message: String? = nil, wait: Bool = false, refusingLocalChanges: Bool = false) throws -> (commit: Commit, warnings: [String], keptLocal: [String]) {
        try withWriteLock(wait: wait) {
            // (A stopped merge with tensors left says so first, in continueMergeLocked.)
            if refusingLocalChanges, let state = try history.mergeState(), state.unresolved.isEmpty {
                let written = try state.readyTree.map { try history.tree($0) } ?? worktreeBaseline(head: try history.head()).tree
                let edited = Repository.trackedChanges(try status(against: written).changes)
                if !edited.isEmpty {
                    let list = edited.prefix(3).joined(separator: ", ") + (edited.count > 3 ? " and \(edited.count - 3) more" : "")
                    throw RepoError.invalidArgument("commit during a merge records what the merge wrote, and \(list) \(edited.count == 1 ? "differs" : "differ") from it; 'mrepo merge --continue' commits the merge and keeps \(edited.count == 1 ? "that change" : "those changes") for a commit of \(edited.count == 1 ? "its" : "their") own")
                }
            }
            let (commit, warnings) = try continueMergeLocked(message: message)
            // The commit is made: a file status cannot read now only leaves the list shorter.
            let kept = Repository.trackedChanges((try? status())?.changes ?? [])
            return (commit, warnings, kept)
        }
    }

    /// The paths of `changes` to tracked files (new files left out), sorted.
    private static func trackedChanges(_ changes: [WorktreeStatus.Change]) -> [String] {
        changes.filter { $0.kind != .added }.map(\.path).sorted()
    }

    private func continueMergeLocked(message: String?) throws -> (commit: Commit, warnings: [String]) {
        guard var state = try history.mergeState() else { throw RepoError.invalidArgument("no merge in progress") }
        guard state.unresolved.isEmpty else {
            let n = state.unresolved.count
            let names = state.unresolved.keys.sorted().prefix(3).joined(separator: ", ") + (n > 3 ? " and \(n - 3) more" : "")
            throw RepoError.invalidArgument("\(n) \(n == 1 ? "tensor is" : "tensors are") still unresolved (\(names)); settle \(n == 1 ? "it" : "them") with 'mrepo resolve'")
        }
        if let message { state.message = message }
        if let ready = state.readyTree {
            let report = try savedReport(state)
            let recorded = try recordMerge(state: state, tree: try history.tree(ready), objects: [], report: report,
                                           extraMembers: state.extraMembers, operation: "finishing the merge")
            return (recorded.commit, try finishMerge(recorded))
        }
        let context = try self.context(of: state)
        let batch = objects.makeBatch()
        let recorded: RecordedMerge
        do {
            var newObjects: [ObjectInfo] = []
            // The stored report lists the settled tensors as resolved, and how.
            var report = try savedReport(state)
            let settled = Dictionary((state.resolutions ?? []).map { ($0.tensor, $0.summary) }, uniquingKeysWith: { _, last in last })
            for i in report.tensors.indices {
                let name = report.tensors[i].name
                guard let s = settled[name] else { continue }
                report.tensors[i].resolution = s
                // The figures of the merge are the settled tensor's, not those of the result it replaced.
                if let metrics = report.tensors[i].metrics, let id = state.decided[name] ?? nil {
                    report.tensors[i].metrics = try context.remeasured(metrics, name: name, settledWith: id)
                }
            }
            let blob = try objects.writeBlob(Array(report.json.serialized().utf8), options: codecOptions, batch: batch)
            if blob.isNew { newObjects.append(blob.info) }
            state.reportObject = blob.info.id
            let recipe = context.plan.recipe
            let yaml = recordedRecipe(recipe, options: context.options, base: state.base, experts: state.expertList,
                                      resolutions: state.resolutions ?? []).yaml()
            let tree = try context.buildTree(decided: state.decided, recipe: recipe, report: report,
                                             recipeYAML: yaml, batch: batch, newObjects: &newObjects)
            try batch.finish()
            recorded = try recordMerge(state: state, tree: tree, objects: newObjects, report: report, extraMembers: state.extraMembers,
                                       operation: "finishing the merge")
        } catch {
            batch.rollback()
            throw error
        }
        return (recorded.commit, try finishMerge(recorded))
    }

    /// Abandons a merge: the state is dropped and the working tree goes back to HEAD.
    public func abortMerge(wait: Bool = false) throws {
        try withWriteLock(wait: wait, pending: .leave) {
            let state: MergeState?
            do {
                state = try history.mergeState()
            } catch RepoError.corruptRecord(_, _) {
                // A state that no longer decodes can only be discarded: the working tree is left
                // as it is (which tree it would go back to is part of what cannot be read).
                // A merge --no-commit killed while renaming its candidate left the trees in its note.
                do {
                    if let done = try undoPendingCandidate() { waitNotice?(done) }
                } catch {
                    waitNotice?("putting back the files of an interrupted merge --no-commit failed: \(RepoError.wrap(error).description); see 'mrepo status'")
                }
                try history.setMergeState(nil)
                if let done = try finishPendingCheckout(.discard) { waitNotice?(done) }
                return
            }
            guard let state else { throw RepoError.invalidArgument("no merge in progress") }
            // Sure to run: an interrupted command's checkout (the candidate of a merge
            // --no-commit) is finished first, with force, and then undone below.
            if let done = try finishPendingCheckout(.discard) { waitNotice?(done) }
            if let ready = state.readyTree {
                // The merge's files go back to HEAD's; local changes to files it did not write stay
                // (as git's merge --abort keeps them).
                let entries = try materialize(try tree(of: state.head), over: try history.tree(ready), force: true, carryUnchanged: true)
                history.saveStatCacheOpportunistically(entries, removing: [])
                try history.clearWorktreeView()
            }
            try history.setMergeState(nil)
        }
    }

    /// The conflict report saved with a merge in progress.
    private func savedReport(_ state: MergeState) throws -> ConflictReport {
        guard let id = state.reportObject else {
            return ConflictReport(method: state.recipe.method, experts: state.expertList.map(\.name),
                                  baseName: state.base.hex, tensors: [], files: [])
        }
        return try StoredRecord.decode(ConflictReport.self, fromJSON: try objects.read(id), what: "the merge report (object \(id.short))")
    }

    /// A merge commit's stored report, read back into its type: a reversible merge's, or the
    /// per-tensor conflict report. nil when `id` is not a merge made by `mrepo merge`.
    /// - Throws: ``RepoError/corruptObject(object:problem:)`` when the stored report does not decode.
    public func mergeReport(of id: ObjectID) throws -> StoredMergeReport? {
        try withReadLock { try mergeReportLocked(of: id)?.report }
    }

    /// The report and the record that names it.
    private func mergeReportLocked(of id: ObjectID) throws -> (report: StoredMergeReport, record: MergeRecord)? {
        guard let record = try commit(id).record(MergeRecord.self), let reportID = record.reportObject else { return nil }
        do {
            let what = "the report of merge \(id.short)"
            let json = try StoredRecord.decode(JSONValue.self, fromJSON: try objects.read(reportID), what: what)
            // The report's own `method` says which record it is.
            if json["method"] == .string("rmm") {
                return (.reversible(try StoredRecord.decode(ReversibleMergeReport.self, from: json, what: what)), record)
            }
            return (.tensors(try StoredRecord.decode(ConflictReport.self, from: json, what: what)), record)
        } catch let error as MergeError {
            throw RepoError.corruptObject(object: reportID.short, problem: error.description)
        }
    }

    /// A merge commit's report as one self-contained HTML page (the conflict report with its
    /// heatmap, or a reversible merge's errors and storage).
    /// - Throws: when `id` is not a merge commit made by `mrepo merge`.
    public func mergeReportHTML(of id: ObjectID) throws -> String {
        try withReadLock {
            guard let (report, record) = try mergeReportLocked(of: id) else {
                throw RepoError.invalidArgument("\(id.short) is not a merge commit made by mrepo merge; it has no report")
            }
            let recipe = try tree(of: id).file(at: "merge_recipe.yml").map { String(decoding: try objects.read($0.objectID), as: UTF8.self) } ?? ""
            let experts = (record.experts ?? Array(record.inputs.dropFirst())).map(\.name).joined(separator: ", ")
            switch report {
            case let .reversible(r): return r.html(title: "mrepo merge \(id.short): \(experts) (rmm)", recipe: recipe)
            case let .tensors(r):
                let page = r.html(title: "mrepo merge \(id.short): \(experts) (\(r.method))", recipe: recipe)
                // A searched merge's page gains the search's score trace and Pareto front.
                return try searchReport(of: id)?.insert(into: page) ?? page
            }
        }
    }
}

/// A merge commit's stored report (``Repository/mergeReport(of:)``); encodes as it is stored.
public enum StoredMergeReport: Sendable, Encodable {
    /// The per-tensor conflict report of a method that merges tensor by tensor.
    case tensors(ConflictReport)
    /// A reversible merge's errors and storage.
    case reversible(ReversibleMergeReport)

    public func encode(to encoder: any Encoder) throws {
        switch self {
        case let .tensors(r): try r.encode(to: encoder)
        case let .reversible(r): try r.encode(to: encoder)
        }
    }
}
