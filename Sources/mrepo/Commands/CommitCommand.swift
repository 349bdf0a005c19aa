import ArgumentParser
import Delta
import Foundation
import Merge
import Repo

struct CommitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commit",
        abstract: "Record the working tree (or a checkpoint folder) as a new commit.",
        discussion: """
            Every file of the folder is recorded (like 'git add -A && git commit'); list files to leave \
            out in .mrepoignore. Safetensors files are validated and stored tensor by tensor: a tensor \
            whose name, dtype and shape match a tensor of the base commit is stored as a lossless \
            delta against it, other tensors are stored whole, identical tensors once. Unchanged files \
            are recognised by the stat cache and not read again.

            --from DIR --branch B commits the folder onto branch B (created at HEAD's commit if it \
            does not exist) without touching HEAD or the working tree: parallel jobs, one per branch, \
            can each commit their checkpoints (with --wait, each waits for the others' commits).

            A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors) is recorded \
            as an adapter of a base model commit: --adapter-of, else the base of the parent's \
            adapter, else the parent commit itself. Its lora_A/lora_B pairs are checked against the \
            base's weights; 'mrepo export --fold' then writes the dense model θ + (alpha/r)·B·A.

            --lowrank R or --energy E store each 2-D task vector (a matrix changed against the \
            base) as a truncated SVD instead: lossy, opt-in, and recorded in the commit with the \
            relative Frobenius error of every tensor. 1-D tensors stay exact.

            While a merge is in progress (after 'merge --no-commit', or once 'mrepo resolve' has \
            settled its conflicts), 'mrepo commit' commits the merge, as 'merge --continue' does; -m \
            replaces its prepared message. It refuses while a tracked file differs from what the merge \
            wrote ('merge --continue' commits the merge and keeps such an edit as a local change).
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions
    @OptionGroup var noEdit: NoEditOption

    @Option(name: .shortAndLong, help: ArgumentHelp("The commit message (required, except with --amend or when committing a merge in progress).", valueName: "message"))
    var message: String?

    @Flag(help: "Replace HEAD instead of adding a commit: same parents, the working tree's files, HEAD's message and metrics unless given again. ORIG_HEAD keeps the replaced commit.")
    var amend = false

    @Option(name: .customLong("from"), help: ArgumentHelp(
        "Import this checkpoint folder (as a trainer wrote it) instead of the working tree; the working tree is then updated to the new commit.",
        valueName: "dir"))
    var source: String?

    @Option(help: ArgumentHelp(
        "With --from: commit onto this branch instead of HEAD's (created at HEAD if it does not exist), leaving HEAD and the working tree as they are.",
        valueName: "branch"))
    var branch: String?

    @Option(help: ArgumentHelp(
        "Store tensors as deltas against this revision's tensors. The default is the first commit of the current history.",
        valueName: "rev"), completion: CompletionNames.revisions)
    var base: String?

    @Option(name: .customLong("metric"), help: ArgumentHelp(
        "Record an evaluation number with the commit, e.g. --metric eval_loss=1.83 (repeatable; used by 'mrepo merge --method mwa' and hooks).",
        valueName: "name=value"))
    var metrics: [String] = []

    @Option(help: ArgumentHelp("Author as 'Name <email>'. The default is $MREPO_AUTHOR (or 'mrepo config user.author'), else git's user.name and user.email, else the login name.", valueName: "author"))
    var author: String?

    @Flag(name: [.customShort("a"), .customLong("all")], help: "Accepted as in git ('git commit -am MESSAGE'): mrepo has no staging area, so every change of the working tree is recorded anyway.")
    var all = false

    @Flag(help: "Record a commit even if nothing changed.")
    var allowEmpty = false

    @Flag(name: [.customShort("n"), .customLong("no-verify")], help: "Skip the pre-commit hook (as git's --no-verify); post-commit still runs.")
    var noVerify = false

    @Flag(help: "Follow symbolic links to files in the working tree and store what they point to (a Hugging Face cache snapshot given to --from is read through its links without it).")
    var dereference = false

    @Flag(help: "With --from: overwrite uncommitted changes in the working tree.")
    var force = false

    @Flag(help: "With --from: record the folder without writing it into the working tree, which keeps its files (as after 'reset --soft'; 'mrepo checkout --force HEAD' writes it later).")
    var noCheckout = false

    @Option(name: .customLong("adapter-of"), help: ArgumentHelp(
        "The base model commit of the LoRA adapter being committed (default: the parent's adapter base, else the parent commit).",
        valueName: "rev"), completion: CompletionNames.revisions)
    var adapterOf: String?

    @Option(name: .customLong("lowrank"), help: ArgumentHelp(
        "Lossy: store each 2-D task vector as a truncated SVD of this rank (its error is measured and recorded).", valueName: "rank"))
    var lowRank: Int?

    @Option(help: ArgumentHelp(
        "Lossy: like --lowrank, with the smallest rank that keeps this fraction of each task vector's energy (e.g. 0.99).",
        valueName: "fraction"))
    var energy: Double?

    @Flag(help: "Print the result as JSON.")
    var json = false

    /// git's form, 'Name <email>', without control characters (`--author`, `user.author`).
    static func isAuthor(_ author: String) -> Bool {
        !author.unicodeScalars.contains(where: { $0.properties.generalCategory == .control })
            && author.range(of: #"^[^<>]*[^<>\s][^<>]* <[^<>\s]*>$"#, options: .regularExpression) != nil
    }

    func validate() throws {
        // As git aborts a commit whose message is empty.
        if let message, message.allSatisfy(\.isWhitespace) { throw ValidationError("-m: the commit message is empty; commit aborted") }
        // git's form, which `log --author` and the Hub's commit listing read (git refuses one without it).
        if let author, !CommitCommand.isAuthor(author) {
            throw ValidationError("--author '\(DisplayText.escaping(author))' is not 'Name <email>'")
        }
        if noCheckout && source == nil { throw ValidationError("--no-checkout goes with --from DIR") }
        if branch != nil, source == nil { throw ValidationError("--branch needs --from DIR (the working tree belongs to HEAD's branch)") }
        if branch != nil, force { throw ValidationError("--force has no effect with --branch, which leaves the working tree alone") }
        if branch != nil && (amend || noCheckout) { throw ValidationError("--branch does not go with --amend or --no-checkout") }
        if lowRank != nil, energy != nil { throw ValidationError("--lowrank and --energy: give one of them") }
        if let r = lowRank, r < 1 { throw ValidationError("--lowrank must be at least 1, got \(r)") }
        if let e = energy, !(e > 0 && e <= 1) { throw ValidationError("--energy must be in (0, 1], got \(e)") }
        for m in metrics where Metric.parse(m) == nil {
            throw ValidationError("--metric '\(m)': expected name=value with a number, e.g. eval_loss=1.83")
        }
        let names = metrics.compactMap { Metric.parse($0)?.name }
        if Set(names).count != names.count { throw ValidationError("--metric: each name may be given once") }
    }

    func run() throws {
        let repo = try repository.open()
        // As git's: a plain commit while a merge is in progress (after 'merge --no-commit', or
        // once its conflicts are resolved) concludes the merge, as 'merge --continue' does.
        if source == nil, try repo.mergeInProgress() != nil {
            let others = [(amend, "--amend"), (base != nil, "--base"), (!metrics.isEmpty, "--metric"), (author != nil, "--author"),
                          (allowEmpty, "--allow-empty"), (dereference, "--dereference"), (adapterOf != nil, "--adapter-of"),
                          (lowRank != nil, "--lowrank"), (energy != nil, "--energy"), (noVerify, "--no-verify"), (force, "--force")]
                .filter(\.0).map(\.1)
            if let first = others.first {
                throw ValidationError("\(first) does not apply while a merge is in progress: 'mrepo commit [-m MESSAGE]' commits the merge, 'mrepo merge --abort' abandons it")
            }
            guard case let .finished(commit, branch, warnings, kept) = try repo.merge(.commit(message: message), wait: lock.wait) else { return }
            try MergeFinishDocument.present(commit, branch: branch, warnings: warnings, keptLocal: kept, json: json, quiet: repository.quiet)
            return
        }
        if message == nil && !amend { throw ValidationError("Missing expected argument '--message <message>'") }
        var options = CommitOptions(message: message ?? "", sourceDirectory: source, base: base,
                                    metrics: metrics.compactMap(Metric.parse), author: author, allowEmpty: allowEmpty,
                                    followSymlinks: dereference, force: force, adapterOf: adapterOf,
                                    lowRank: lowRank.map { LowRankPolicy(choice: .rank($0)) } ?? energy.map { LowRankPolicy(choice: .energy($0)) },
                                    branch: branch)
        options.amend = amend
        options.noCheckout = noCheckout
        options.skipPreCommitHook = noVerify
        let started = Date()
        let result = try repo.commit(options, wait: lock.wait)
        for w in result.warnings { ErrorReporter.warn(w) }
        let seconds = Date().timeIntervalSince(started)
        if json {
            try printJSON(CommitResultDocument(result, seconds: seconds))
            return
        }
        guard !repository.quiet else { return }
        for note in result.notes { ErrorReporter.note(note) }
        let root = result.commit.parents.isEmpty ? " (root-commit)" : ""
        print("[\(result.branch ?? "detached HEAD") \(result.commit.id.short)\(root)] \(result.commit.subject)")
        let objects = result.newObjectCount == 1 ? "1 object" : "\(result.newObjectCount) objects"
        let stored = result.newObjectCount == 0 ? "nothing new to store"
            : "stored \(Format.bytes(result.newStoredByteCount)) new in \(objects) (\(Format.ratio(result.newStoredByteCount, result.logicalByteCount)) of the files' size)"
        print(" \(result.fileCount) file\(result.fileCount == 1 ? "" : "s"), \(result.tensorCount) tensors, \(Format.bytes(result.logicalByteCount)); \(stored)")
        if let a = result.adapter {
            print(" LoRA adapter of \(a.base.short): r=\(a.rank), alpha=\(Format.number(a.alpha, digits: 1)), \(a.moduleCount) modules (\(a.targets.joined(separator: ", ")))")
        }
        if !result.lowRankTensors.isEmpty {
            let t = result.lowRankTensors
            let stored = t.reduce(0) { $0 + $1.storedByteCount }, dense = t.reduce(0) { $0 + $1.logicalByteCount }
            let errors = t.map(\.relativeError)
            print(" lossy: \(t.count) tensors stored low-rank in \(Format.bytes(stored)) instead of \(Format.bytes(dense)) (\(Format.ratio(stored, dense))); relative error mean \(String(format: "%.4f", errors.reduce(0, +) / Double(errors.count))), max \(String(format: "%.4f", errors.max() ?? 0))")
        }
    }
}
