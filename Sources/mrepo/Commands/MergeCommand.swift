import ArgumentParser
import Delta
import Foundation
import Merge
import Repo

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Merge branches into the current one, tensor by tensor, with a model-merging method.",
        discussion: """
            From the merge base (the branches' best common ancestor), the method merges every \
            floating-point tensor some expert changed (task vectors θ − θ_base, in float32), as mergekit \
            does, so a recipe gives the same numbers whatever each branch touched; --one-sided take \
            applies git's rule instead (a tensor changed on one side only is taken bit for bit). Dtype or \
            shape changes, tensors added differently, and tensors deleted on one side but changed on \
            another are conflicts. The result is a per-tensor conflict report (cosine between task \
            vectors, sign conflict, conflicting mass, what was trimmed). When HEAD is the merge base, the \
            branches are the experts (an octopus merge: mrepo merge math code chat); otherwise HEAD is \
            one of them. With --config, the recipe's models are the experts, in its order (a recipe without \
            models: takes the branches named beside it as its models, exactly). A single \
            branch that contains HEAD is fast-forwarded, as in git, unless a method, a parameter or a \
            recipe is given (then it is a real merge: mrepo merge code --method task_arithmetic --set \
            lambda=0.5 interpolates toward code), --metric (it needs a merge commit) or --no-ff; -m alone is ignored then, as in git. Thresholds turn bad tensors into \
            conflicts: the merge then stops (exit 1), 'mrepo resolve' settles them, and 'merge \
            --continue' or '--abort' ends it. Every merge commit holds merge_recipe.yml, which 'mrepo \
            merge --config merge_recipe.yml' re-runs bit for bit, resolutions included. Methods and their \
            parameters: 'mrepo merge --list-methods', 'mrepo merge --help-method NAME', and \
            docs/merging.md.

            --method rmm --basis K is a reversible merge of LoRA adapters of one base (or of full \
            fine-tunes, reduced to --set rank=R): the commit keeps a basis from which every expert is \
            rebuilt ('mrepo experts', 'mrepo checkout MERGE --expert NAME'); its working tree is a \
            task-arithmetic view of the rebuilt experts.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions
    @OptionGroup var noEdit: NoEditOption

    @Argument(help: ArgumentHelp("Branches (or any revisions) to merge into HEAD.", valueName: "branch"), completion: CompletionNames.revisions)
    var branches: [String] = []

    @Option(help: ArgumentHelp("Merge method (mergekit's ids): \(MethodRegistry.ids.joined(separator: ", ")). The default is ties, or 'mrepo config merge.method' / $MREPO_MERGE_METHOD.", valueName: "method"),
            completion: .list(MethodRegistry.ids))
    var method: String?

    @Option(help: ArgumentHelp("rmm: the basis size K, 1 ≤ K ≤ N − 1 (K = N − 1 rebuilds every expert exactly). Same as --set basis=K.", valueName: "K"))
    var basis: Int?

    @Flag(help: "A reversible merge: the same as --method rmm.")
    var reversible = false

    @Flag(help: "rmm: record the merge with HEAD as its only parent and the experts' small files in its record, so the basis replaces the experts: once their branches are deleted, gc drops their weights and every expert is still rebuilt (checkout/export --expert).")
    var squash = false

    @Option(name: .customLong("set"), help: ArgumentHelp(
        "A method parameter, e.g. --set lambda=0.8, --set 't=[0, 0.5, 1]' (a gradient over depth), or --set 'density[*.attention.*]=0.3' (only for tensors matching the glob). Repeatable.",
        valueName: "name=value"))
    var settings: [ParameterSetting] = []

    @Option(name: .customLong("weight"), help: ArgumentHelp("An expert's weight, e.g. --weight math=0.7 (repeatable; the current branch is named by its branch name).", valueName: "branch=w"))
    var weights: [ExpertWeight] = []

    @Option(name: .customLong("expert"), help: ArgumentHelp("Any per-expert parameter, e.g. --expert math:density=0.3, or for the tensors matching a glob, --expert 'math:density[*.attention.*]=0.2' (repeatable).", valueName: "branch:name=value"))
    var expertSettings: [ExpertSetting] = []

    @Option(help: ArgumentHelp("A mergekit YAML recipe (models named by branch, tag or commit); command-line options override it.", valueName: "file"))
    var config: String?

    @Option(help: ArgumentHelp("Use this revision as the merge base (required when the branches share no ancestor).", valueName: "rev"), completion: CompletionNames.revisions)
    var base: String?

    @Option(help: ArgumentHelp("Seed of the random methods (DARE, DELLA; default 0); the same recipe and seed give the same bytes.", valueName: "n"))
    var seed: UInt64?

    @Option(help: ArgumentHelp("Write every floating-point tensor in this dtype (F32, BF16, F16, or mergekit's float32, bfloat16, ...), as mergekit's out_dtype; the default is each tensor's own dtype (or the recipe's out_dtype, else its dtype).", valueName: "dtype"))
    var dtype: FloatDType?

    @Option(help: ArgumentHelp("Embedding and LM-head row counts that differ: keep the base's rows, the union of all rows, or the common rows (a recipe's tokenizer_source base|union sets it). Without it such tensors are conflicts.", valueName: "policy"))
    var vocab: VocabularyPolicy?

    @Option(help: ArgumentHelp("Tensors only some experts changed: merge (the method's math applies, as in mergekit; the default) or take (git's rule: taken bit for bit).", valueName: "rule"))
    var oneSided: OneSidedRule?

    @Flag(name: .customLong("no-ff"), help: "Record a merge commit even when HEAD could fast-forward (without a method, the branch's tensors are taken as they are).")
    var noFastForward = false

    @Flag(name: .customLong("ff-only"), help: "Only fast-forward; refuse when the branches have diverged or a method is given.")
    var fastForwardOnly = false

    @Option(name: .customLong("metric"), help: ArgumentHelp("Record an evaluation number with the merge commit, e.g. --metric eval_loss=1.71 (repeatable; 'mwa' and eval gates read it).", valueName: "name=value"))
    var metrics: [String] = []

    @Option(help: ArgumentHelp("LiNeS: scale the merged task vector by α + β·layer/(L−1) (α outside blocks), e.g. --lines 0.3,0.7.", valueName: "alpha,beta"))
    var lines: LinesArgument?

    @Option(help: ArgumentHelp("Consensus (TALL masks): keep elements selected by at least k experts' masks |τᵢ| > λ·|τ_merged − τᵢ|, e.g. --consensus 2 or --consensus 2,0.6 (default λ 1).", valueName: "k[,lambda]"))
    var consensus: ConsensusArgument?

    @Option(help: ArgumentHelp("Rescale each expert's task vector to the experts' mean norm (per tensor) before the method, so one large fine-tune does not drown the others: norm or none (default none). Recorded in the recipe.", valueName: "norm|none"))
    var balance: TaskVectorBalance?

    @Option(help: ArgumentHelp("Stop on tensors whose sign-conflict fraction exceeds this, e.g. 0.4.", valueName: "fraction"))
    var maxSignConflict: Double?

    @Option(help: ArgumentHelp("Stop on tensors whose smallest task-vector cosine is below this, e.g. -0.1.", valueName: "cosine"))
    var minCosine: Double?

    @Option(help: ArgumentHelp("Stop on tensors whose conflicting mass exceeds this.", valueName: "fraction"))
    var maxConflictingMass: Double?

    @Option(help: ArgumentHelp("Non-tensor files changed on several sides: keep ours, theirs (the last branch), or the base's. The default is ours.", valueName: "rule"))
    var fileConflict: FileConflictRule?

    @Option(name: .shortAndLong, help: ArgumentHelp("The merge commit's message.", valueName: "message"))
    var message: String?

    @Flag(help: "Merge, write the result to the working tree, but do not commit; 'merge --continue' commits it.")
    var noCommit = false

    @Flag(help: "Print the plan (each tensor's class) and the estimated peak memory; write nothing to the repository or the working tree (--report still writes the page it names).")
    var dryRun = false

    @Option(help: ArgumentHelp("Also write the report as a self-contained HTML page (the conflict report with a heatmap; for rmm, the reversible merge's errors and storage). 'mrepo show MERGE --report FILE' writes it later.", valueName: "file.html"))
    var report: String?

    @Flag(help: "Print the conflict report as JSON.")
    var json = false

    @Flag(name: .customLong("continue"), help: "Finish a merge whose conflicts are resolved.")
    var continueMerge = false

    @Flag(help: "Abandon the merge in progress; branches and the working tree return to how they were.")
    var abort = false

    @OptionGroup(title: "Recipe search") var search: SearchArguments

    @Flag(help: "List the merge methods.")
    var listMethods = false

    @Flag(help: "With --list-methods: print every method and its parameters as Markdown (docs/merging.md embeds it).")
    var markdown = false

    @Option(help: ArgumentHelp("Describe a method and its parameters.", valueName: "method"))
    var helpMethod: String?

    func validate() throws {
        if search.search {
            try search.validate(self)
            return
        }
        if search.isUsed { throw ValidationError("--eval, --trials, --time-budget, --jobs, --space, --objective and --eval-timeout go with --search") }
        let modes = [continueMerge, abort, listMethods, helpMethod != nil].filter { $0 }.count
        if modes > 1 { throw ValidationError("--continue, --abort, --list-methods and --help-method exclude each other") }
        if json && (helpMethod != nil || markdown) { throw ValidationError("--help-method and --markdown print text; they take no --json") }
        if modes == 0 && branches.isEmpty && config == nil { throw ValidationError("name the branches to merge (or --continue / --abort)") }
        if noCommit && dryRun { throw ValidationError("--no-commit and --dry-run exclude each other") }
        if noFastForward && fastForwardOnly { throw ValidationError("--no-ff and --ff-only exclude each other") }
        for m in metrics where Metric.parse(m) == nil {
            throw ValidationError("--metric '\(m)': expected name=value with a finite number, e.g. eval_loss=1.71")
        }
        if let report {
            // Checked before merging: the report is written after the merge is recorded.
            let folder = URL(fileURLWithPath: report).deletingLastPathComponent().path
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue,
                  FileManager.default.isWritableFile(atPath: folder) else {
                throw ValidationError("--report \(report): folder '\(folder)' does not exist or is not writable")
            }
        }
    }

    func run() throws {
        if listMethods {
            if markdown {
                print(MethodCatalog.markdown())
                return
            }
            if json {
                try printJSON(MethodRegistry.all.map(MethodDocument.init))
                return
            }
            for m in MethodRegistry.all { print("\(Format.pad(m.id, 18)) \(m.displayName): \(m.summary)") }
            return
        }
        if let helpMethod {
            // An unknown name is a usage error, as for --method (exit 64).
            let m: any MergeMethod.Type
            do { m = try MethodRegistry.method(named: helpMethod) } catch { throw ValidationError(error.description) }
            print("\(m.id): \(m.displayName)\n\(m.summary)\nPaper: \(m.paper)\nNeeds the merge base: \(m.requiresBase ? "yes" : "no"); experts: \(m.expertCount.lowerBound)...\(m.expertCount.upperBound); seeded: \(m.usesSeed ? "yes" : "no"); runs \(m.mergesTensorByTensor ? "tensor by tensor" : "on whole models")")
            let metrics = m.expertMetrics(m.defaultParameters)
            if !metrics.isEmpty { print("Reads each expert's commit metric: \(metrics.joined(separator: ", ")) (the 'metric' parameter; commit --metric records it)") }
            let stats = m.expertStatistics(m.defaultParameters).map(StatisticsLayout.path)
            if !stats.isEmpty { print("Reads each expert's committed statistics: \(stats.joined(separator: ", ")) (by default; docs/merging.md §11 describes the layout, scripts/compute_merge_stats.py computes it)") }
            print("")
            for (title, specs) in [("Parameters (--set NAME=VALUE)", m.parameters), ("Per-expert parameters (--weight BRANCH=W, --expert BRANCH:NAME=VALUE, or --set for all)", m.expertParameters)] where !specs.isEmpty {
                print(title + ":")
                for s in specs {
                    print("  \(Format.pad(s.name, 14)) \(s.rangeDescription), default \(s.defaultValue.map { "\($0)" } ?? "required"). \(s.help)")
                }
            }
            return
        }
        let repo = try repository.open()
        // Before anything is merged: the page is written after the merge is recorded.
        if let report { try repo.checkOutputFile(report, option: "--report", alsoWritten: ["merge_recipe.yml", "README.md"]) }
        if search.search {
            try runSearch(repo)
            return
        }
        let action: MergeAction = abort ? .abort : continueMerge ? .finish(message: message) : .start(try makeOptions())
        let result: MergeActionResult
        do {
            result = try repo.merge(action, wait: lock.wait)
        } catch {
            throw namingRecipe(error)
        }
        switch result {
        case .aborted(let head):
            if json { try printJSON(MergeAbortDocument(head: OrNull(head?.hex))) }
            else if !repository.quiet { print("Merge aborted; HEAD and the working tree are as before the merge.") }
        case let .finished(commit, branch, warnings, kept):
            try MergeFinishDocument.present(commit, branch: branch, warnings: warnings, keptLocal: kept, json: json, quiet: repository.quiet)
        case let .merged(outcome):
            for phase in outcome.phaseTimes {
                FileHandle.standardError.write(Data("\(phase.name): \(String(format: "%.2f", phase.seconds)) s\n".utf8))
            }
            for w in outcome.warnings { ErrorReporter.warn(w) }
            try present(outcome, repo: repo)
        }
    }

    /// An error about what a recipe says (a parameter out of range, a model that names no
    /// revision), said as being the recipe file's, as its parse errors are.
    func namingRecipe(_ error: any Error) -> any Error {
        guard let config, !abort, !continueMerge else { return error }
        switch error {
        case let e as MergeError:
            // Only what the recipe gave: a parameter, method or input named on the command line is
            // the user's own.
            let given = Set(settings.map(\.name) + expertSettings.map(\.setting.name) + (weights.isEmpty ? [] : ["weight"]))
            let recipes: Bool
            switch e {
            case let .unknownParameter(_, parameter, _), let .invalidParameter(_, parameter, _): recipes = !given.contains(parameter)
            case .missingParameter: recipes = method == nil && !reversible
            case .unknownMethod: recipes = method == nil && !reversible
            // The inputs are the recipe's models, or branches named beside a recipe that gives
            // the method: either way the count the recipe's method takes is the recipe's.
            case .invalidInputs: recipes = branches.isEmpty || (method == nil && !reversible)
            default: recipes = false
            }
            return recipes ? MergeError.invalidRecipe(file: config, problem: e.description) : error
        case let e as RepoError:
            // Only a name the recipe gives (the command line's revisions are the user's own).
            let recipe = (try? String(contentsOfFile: config, encoding: .utf8)).flatMap { try? MergekitRecipe.parse($0, file: config) }
            let names = Set((recipe?.models.map(\.name) ?? []) + [recipe?.baseModel].compactMap { $0 }).subtracting(branches + [base].compactMap { $0 })
            let named: Bool
            switch e {
            case let .unknownRevision(rev), let .ambiguousRevision(rev, _): named = names.contains(rev)
            case let .invalidArgument(message):
                named = message.hasPrefix("the recipe resolves ")
                    || names.contains { message.hasPrefix("'\($0)'") || message.hasPrefix("unknown revision '\($0)'") }
            default: named = false
            }
            return named ? RepoError.invalidArgument("\(config): \(e.description)") : error
        default:
            return error
        }
    }

    func makeOptions() throws -> MergeOptions {
        var request = MergeRequest()
        // `merge.method` (mrepo config) or MREPO_MERGE_METHOD: the method when none is given.
        if reversible, let method, method != RMM.id {
            throw ValidationError("--reversible is --method rmm; it cannot be combined with --method \(method)")
        }
        request.method = (reversible ? RMM.id : method) ?? (config == nil ? ProcessInfo.processInfo.environment["MREPO_MERGE_METHOD"].flatMap { $0.isEmpty ? nil : $0 } : nil)
        request.branches = branches
        request.base = base
        request.outputDType = dtype?.dtype
        request.seed = seed
        request.basis = basis
        request.oneSided = oneSided
        request.vocabulary = vocab
        request.fileConflict = fileConflict
        request.thresholds = ConflictThresholds(maxSignConflict: maxSignConflict, minCosine: minCosine, maxConflictingMass: maxConflictingMass)
        request.settings = settings.map { ($0.name, $0.glob, $0.value) }
        request.expertSettings = weights.map { ($0.expert, "weight", nil, .number($0.weight)) }
            + expertSettings.map { ($0.expert, $0.setting.name, $0.setting.glob, $0.setting.value) }
        request.lines = lines.map { ($0.alpha, $0.beta) }
        request.consensus = consensus.map { ($0.k, $0.lambda) }
        request.balance = balance
        var mergekit: MergekitRecipe?
        if let config {
            guard let text = try? String(contentsOfFile: config, encoding: .utf8) else {
                throw RepoError.io(path: config, reason: "cannot read the recipe")
            }
            mergekit = try MergekitRecipe.parse(text, file: config)
        }
        let assembled: MergeRequest.Assembled
        do {
            assembled = try request.assemble(over: mergekit, file: config ?? "recipe")
        } catch {
            // What the recipe file says is a bad input file (exit 2, naming it); what the command
            // line says, a usage error (64).
            if case MergeError.invalidRecipe? = namingRecipe(error) as? MergeError { throw namingRecipe(error) }
            throw ValidationError(error.description)
        }
        var options = MergeOptions(assembled, message: message, fastForward: noFastForward ? .never : fastForwardOnly ? .only : .allowed,
                                   metrics: metrics.compactMap(Metric.parse), noCommit: noCommit, dryRun: dryRun)
        options.squash = squash
        options.reportPath = report
        return options
    }
}

extension ConflictReport {
    var isEmptyMerge: Bool { tensors.isEmpty && files.isEmpty }
}
