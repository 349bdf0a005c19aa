import Delta
import Foundation
import Merge

/// What a merge commit records (`extra.merge`, docs/format.md §3.6).
struct MergeRecord: CommitExtraRecord {
    static let member = "merge"

    var recipe: MergeRecipe
    var base: ObjectID
    /// HEAD, then the other parents, with the names they were given.
    var inputs: [MergeInput]
    /// The experts whose task vectors were merged, in order (absent in older merges: `inputs`
    /// without HEAD when HEAD was the merge base).
    var experts: [MergeInput]?
    var tool: String
    var computeDType: String
    var summary: [String: Int]
    var reportObject: ObjectID?
    var options: RecordedMergeOptions?
    /// How the unresolved tensors were settled, in order.
    var resolutions: [RecordedResolution]?

    enum CodingKeys: String, CodingKey {
        case recipe, base, inputs, experts, tool, computeDType = "compute_dtype", summary, reportObject = "report_object", options, resolutions
    }

    /// The summary in class order (the canonical text keeps this order).
    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(recipe, forKey: .recipe)
        try c.encode(base, forKey: .base)
        try c.encode(inputs, forKey: .inputs)
        try c.encodeIfPresent(experts, forKey: .experts)
        try c.encode(tool, forKey: .tool)
        try c.encode(computeDType, forKey: .computeDType)
        var classes = c.nestedContainer(keyedBy: JSONKey.self, forKey: .summary)
        for cls in MergeClass.allCases { try classes.encode(summary[cls.rawValue] ?? 0, forKey: JSONKey(cls.rawValue)) }
        try c.encode(reportObject, forKey: .reportObject)
        try c.encodeIfPresent(options, forKey: .options)
        if let resolutions, !resolutions.isEmpty { try c.encode(resolutions, forKey: .resolutions) }
    }

    init(recipe: MergeRecipe, base: ObjectID, inputs: [MergeInput], experts: [MergeInput]?, summary: [String: Int], reportObject: ObjectID?,
         options: RecordedMergeOptions?, resolutions: [RecordedResolution]?) {
        self.recipe = recipe
        self.base = base
        self.inputs = inputs
        self.experts = experts
        tool = "mrepo \(Repository.toolVersion)"
        computeDType = "float32"
        self.summary = summary
        self.reportObject = reportObject
        self.options = options
        self.resolutions = resolutions
    }
}

/// A merge commit as `show` presents it.
public struct MergeSummary: Sendable {
    public var method: String
    public var base: ObjectID
    public var experts: [(name: String, commit: ObjectID)]
    public var resolutions: [RecordedResolution]
    public var thresholds: ConflictThresholds
    public var oneSided: OneSidedRule?
    public var outputDType: String?
    /// The recorded recipe's JSON (as `show --json` prints it).
    public var recipe: JSONValue
    /// The tool that made the merge (`mrepo 0.x`).
    public var tool: String
    /// How many tensors fell in each class, in class order.
    public var tensorClasses: [(name: String, count: Int)]
    /// Whether the tree holds the recipe as merge_recipe.yml (not for revert and cherry-pick).
    public var hasRecipeFile = true
}

extension Repository {
    /// A merge commit's record, for `show`; nil for other commits.
    public func mergeSummary(of id: ObjectID) throws -> MergeSummary? {
        guard let record = try commit(id).record(MergeRecord.self) else { return nil }
        let experts = record.experts ?? Array(record.inputs.dropFirst())
        return MergeSummary(method: record.recipe.method, base: record.base,
                            experts: experts.map { ($0.name, $0.commit) }, resolutions: record.resolutions ?? [],
                            thresholds: record.options?.thresholds ?? ConflictThresholds(), oneSided: record.options?.oneSided,
                            outputDType: record.options?.dtype, recipe: record.recipe.json, tool: record.tool,
                            tensorClasses: MergeClass.allCases.map { ($0.rawValue, record.summary[$0.rawValue] ?? 0) },
                            hasRecipeFile: record.options?.noMergeFiles != true)
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
    /// - Returns: warnings (a failed post-merge hook): the merge stands.
    func finishMerge(_ recorded: RecordedMerge) throws -> [String] {
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
        return runPostHook("post-merge", environment: env).map { [$0] } ?? []
    }

    /// Runs the pre-merge-commit hook on the candidate, stages the merge's files in the working tree
    /// (written and verified beside their destinations), then records the merge commit and clears
    /// any merge state, in one transaction. ``finishMerge(_:)`` then renames the files into place.
    /// A failure before the record (a refusing hook, a corrupt object) leaves the working tree, HEAD
    /// and the merge state as they were.
    ///
    /// - Parameter prepared: the merged files written while the merge ran, moved into place
    ///   instead of being decoded again.
    /// - Parameter operation: what a refusal to overwrite a local change names: "merging", or
    ///   "finishing the merge" from `merge --continue`.
    func recordMerge(state: MergeState, tree: Tree, objects newObjects: [ObjectInfo], report: ConflictReport,
                     extraMembers: [JSONMember] = [], hookReport: JSONValue? = nil,
                     prepared: PreparedCheckout? = nil, author pendingAuthor: BackgroundValue<String>? = nil,
                     operation: String = "merging") throws -> RecordedMerge {
        let head = try history.head()
        guard head.commit == state.head else { throw RepoError.concurrentUpdate(ref: head.branchName ?? "HEAD") }
        let headCommit = try commit(state.head)
        let experts = state.expertList
        var hookEnv = ["MREPO_MERGE_BASE": state.base.hex, "MREPO_MERGE_HEAD": state.head.hex,
                       "MREPO_MERGE_BRANCHES": state.branches.map(\.name).joined(separator: " "),
                       "MREPO_MERGE_COMMITS": state.branches.map(\.commit.hex).joined(separator: " "),
                       "MREPO_MERGE_EXPERTS": experts.map(\.commit.hex).joined(separator: " "),
                       "MREPO_MESSAGE": state.message, "MREPO_BRANCH": head.branchName ?? ""]
        if hookExists("pre-merge-commit") {
            // The gate sees the candidate as files, and the conflict report.
            // Temporary names: a crash leaves them to the next command's sweep.
            let candidate = TemporaryName.path(in: metaDirectory, name: "merge-candidate")
            defer { try? FileManager.default.removeItem(atPath: candidate) }
            let staging = FileStaging(journal: journal)
            do {
                for file in tree.files {
                    try stage(file, at: candidate + "/" + file.path, in: staging, progress: nil)
                }
                try staging.commit()
            } catch {
                staging.rollback()
                throw error
            }
            let reportPath = TemporaryName.path(in: metaDirectory, name: "merge-report.json")
            try AtomicFileWriter.write(Array((hookReport ?? report.json).prettySerialized().utf8), to: reportPath)
            defer { try? FileManager.default.removeItem(atPath: reportPath) }
            hookEnv["MREPO_CANDIDATE"] = candidate
            hookEnv["MREPO_REPORT"] = reportPath
            // Metrics added after the fact (`mrepo metric add`) count, as everywhere metrics are read.
            func metrics(_ commits: [Commit]) throws -> String {
                JSONValue.object(try commits.map { c in
                    JSONMember(c.id.hex, .object(try self.metrics(of: c).map { JSONMember($0.name, .double($0.value)) }))
                }).serialized()
            }
            hookEnv["MREPO_PARENT_METRICS"] = try metrics([headCommit] + (try state.branches.map { try self.commit($0.commit) }))
            // The gate compares the merge with its experts (not with a parent that is the merge base).
            hookEnv["MREPO_EXPERT_METRICS"] = try metrics(try experts.map { try self.commit($0.commit) })
            CrashPoint.reach("merge.candidate")
            try runHook("pre-merge-commit", environment: hookEnv)
        }
        let parents = [state.head] + state.branches.map(\.commit)
        var generation = 0
        for p in parents { generation = max(generation, (try history.commit(p)?.generation ?? 0) + 1) }
        let summary = Dictionary(uniqueKeysWithValues: MergeClass.allCases.map { ($0.rawValue, report.classCounts[$0] ?? 0) })
        let record = MergeRecord(recipe: state.recipe, base: state.base,
                                 inputs: [MergeInput(name: "HEAD", commit: state.head)] + state.branches,
                                 experts: state.experts, summary: summary, reportObject: state.reportObject,
                                 options: state.options, resolutions: state.resolutions)
        // Lossy when it keeps low-rank tensors of a lossy input unchanged (a cherry-pick of it as task
        // arithmetic, a merge that takes its tensors as they are).
        let storage = try carriedStorage(of: tree, from: [state.head] + state.branches.map(\.commit)) ?? [try CommitStorage.lossless.jsonMember()]
        let extra = JSONValue.object(storage + [
            JSONMember("merge", try JSONValueCoding.encode(record)),
        ] + extraMembers)
        let timestamp = (Date().timeIntervalSince1970 * 1000).rounded() / 1000
        let author = pendingAuthor?.value ?? Repository.defaultAuthor()
        let baseForDeltas = headCommit.base ?? headCommit.id
        let metrics = state.metrics ?? []
        let id = Commit.computeID(treeID: tree.id, parents: parents, base: baseForDeltas, author: author, timestamp: timestamp,
                                  message: state.message, metrics: metrics, extra: extra)
        let commit = Commit(id: id, treeID: tree.id, parents: parents, base: baseForDeltas, author: author, timestamp: timestamp,
                            message: state.message, metrics: metrics, extra: extra, generation: generation)
        // The working tree holds HEAD's files (or a view written over them: an expert rebuilt from a
        // merge), or the candidate after --no-commit.
        let from = try state.readyTree.map { try history.tree($0) } ?? worktreeBaseline(head: head).tree
        // Every file of the merge is written and verified before the commit is recorded.
        // A file the history records already (a merge done again) keeps its recorded SHA-256.
        let treeID = tree.id
        let ready = prepared?.finish(for: tree, store: objects, knownDigest: { file in
            (try? self.history.knownDigest(of: file, inTree: treeID)) ?? nil
        }) ?? [:]
        // Not forced: a merge that stopped (or ran with --no-commit) may find local edits when it is
        // continued. An edit to a file the merged tree leaves as it was is carried over, as git
        // does; one it would replace, or an untracked file in its way (its model card and recipe
        // included), stops the merge before anything is written.
        let checkout = try stageCheckout(tree, over: from, force: false, operation: operation, prepared: ready)
        // The staging hashed every file it wrote: the merge records their SHA-256 (the tree's id
        // does not include them).
        let tree = tree.fillingDigests(from: checkout.staged)
        CrashPoint.reach("merge.staged")
        do {
            try notePendingCheckout(operation: ["merging", "finishing the merge"].contains(operation) ? "merge" : operation, from: from, to: tree, force: false, proof: .head(commit.id.hex))
            try history.recordCommit(objects: try withLeftoverRows(newObjects, for: tree, also: state.objects), tree: tree, commit: commit, expectedHead: state.head,
                                     reflogMessage: "\(Repository.reflogAction(operation: operation, branches: state.branches)): \(commit.subject)",
                                     clearMergeState: true)
        } catch {
            checkout.rollback()
            clearPendingCheckout()
            throw error
        }
        return RecordedMerge(commit: commit, tree: tree, checkout: checkout, hookEnvironment: hookEnv)
    }

    /// What a merge's reflog entry says before its subject: `merge code, prose`, or the command that
    /// merged (`revert`, `cherry-pick` through task arithmetic), or `merge` when no branch is named.
    static func reflogAction(operation: String, branches: [MergeInput]) -> String {
        guard ["merging", "finishing the merge"].contains(operation) else { return operation }
        let names = branches.map(\.name).filter { !$0.isEmpty }
        return names.isEmpty ? "merge" : "merge \(names.joined(separator: ", "))"
    }
}
