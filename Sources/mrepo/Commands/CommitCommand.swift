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
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Option(name: .shortAndLong, help: ArgumentHelp("The commit message.", valueName: "message"))
    var message: String

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
        valueName: "rev"))
    var base: String?

    @Option(name: .customLong("metric"), help: ArgumentHelp(
        "Record an evaluation number with the commit, e.g. --metric eval_loss=1.83 (repeatable; used by 'mrepo merge --method mwa' and hooks).",
        valueName: "name=value"))
    var metrics: [String] = []

    @Option(help: ArgumentHelp("Author as 'Name <email>'. The default is $MREPO_AUTHOR, else git's user.name and user.email.", valueName: "author"))
    var author: String?

    @Flag(help: "Record a commit even if nothing changed.")
    var allowEmpty = false

    @Flag(help: "Follow symbolic links to files (as in a Hugging Face cache snapshot) and store what they point to.")
    var dereference = false

    @Flag(help: "With --from: overwrite uncommitted changes in the working tree.")
    var force = false

    @Option(name: .customLong("adapter-of"), help: ArgumentHelp(
        "The base model commit of the LoRA adapter being committed (default: the parent's adapter base, else the parent commit).",
        valueName: "rev"))
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

    func validate() throws {
        if branch != nil, source == nil { throw ValidationError("--branch needs --from DIR (the working tree belongs to HEAD's branch)") }
        if branch != nil, force { throw ValidationError("--force has no effect with --branch, which leaves the working tree alone") }
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
        let options = CommitOptions(message: message, sourceDirectory: source.map(repository.path), base: base,
                                    metrics: metrics.compactMap(Metric.parse), author: author, allowEmpty: allowEmpty,
                                    followSymlinks: dereference, force: force, adapterOf: adapterOf,
                                    lowRank: lowRank.map { LowRankPolicy(choice: .rank($0)) } ?? energy.map { LowRankPolicy(choice: .energy($0)) },
                                    branch: branch)
        let started = Date()
        let result = try repo.commit(options, wait: lock.wait)
        let seconds = Date().timeIntervalSince(started)
        if json {
            printJSON(.obj([
                "commit": .string(result.commit.id.hex),
                "branch": .opt(result.branch),
                "files": .int(result.fileCount),
                "tensors": .int(result.tensorCount),
                "logical_bytes": .int(result.logicalByteCount),
                "new_objects": .int(result.newObjectCount),
                "new_stored_bytes": .int(result.newStoredByteCount),
                "unchanged_files": .int(result.unchangedFileCount),
                "copied_files": .int(result.copiedFileCount),
                "seconds": .double(seconds),
                "adapter": result.adapter.map { a in .obj(["base": .string(a.base.hex), "r": .int(a.rank), "alpha": .double(a.alpha),
                                                           "targets": .array(a.targets.map { .string($0) }), "modules": .int(a.moduleCount)]) } ?? .null,
                "lossy": result.lowRankTensors.isEmpty ? .null : .obj([
                    "tensors": .int(result.lowRankTensors.count),
                    "max_relative_error": .double(result.lowRankTensors.map(\.relativeError).max() ?? 0),
                    "stored_bytes": .int(result.lowRankTensors.reduce(0) { $0 + $1.storedByteCount }),
                    "dense_bytes": .int(result.lowRankTensors.reduce(0) { $0 + $1.logicalByteCount }),
                ]),
                "notes": .array(result.notes.map { .string($0) }),
            ]))
            return
        }
        for note in result.notes { ErrorReporter.note(note) }
        guard !repository.quiet else { return }
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

struct StatusCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show the branch and the files that differ from HEAD.",
        discussion: "Files whose size, modification time and inode match the stat cache are not read; other files are hashed tensor by tensor.")

    @OptionGroup var repository: RepositoryOptions

    @Flag(help: "Print the result as JSON.")
    var json = false

    @Flag(name: .shortAndLong, help: "One line per changed file: A (added), M (modified) or D (deleted), then the path.")
    var short = false

    func run() throws {
        let repo = try repository.open()
        let status = try repo.status()
        if json {
            let merge = try repo.mergeInProgress()
            printJSON(.obj([
                "merge_in_progress": merge.map { m in
                    .obj(["branches": .array(m.branches.map { .string($0) }), "method": .string(m.method), "ready": .bool(m.ready),
                          "unresolved": .array(m.unresolved.map { .obj(["tensor": .string($0.tensor), "reason": .string($0.reason)]) })])
                } ?? .null,
                "branch": .opt(status.head.branchName),
                "head": .opt(status.head.commit?.hex),
                "view": .opt(try repo.currentView()?.description),
                "clean": .bool(status.isClean),
                "nested_repositories": .array(status.nestedRepositories.map { .string($0) }),
                "normalization_twins": .array(status.normalizationTwins.map { .array([.string($0.0), .string($0.1)]) }),
                "changes": .array(status.changes.map { c in
                    .obj(["path": .string(c.path), "status": .string(c.kind.rawValue),
                          "changed_tensors": c.changedTensors.map { .int($0) } ?? .null,
                          "tensors": c.tensorCount.map { .int($0) } ?? .null,
                          "reason": c.reason.map { .string($0) } ?? .null])
                }),
            ]))
            return
        }
        if short {
            for c in status.changes {
                print("\(c.kind == .added ? "A" : c.kind == .modified ? "M" : "D") \(c.path)")
            }
            return
        }
        switch status.head {
        case let .branch(name, commit):
            print("On branch \(name)" + (commit == nil ? " (no commits yet)" : ""))
        case let .detached(id):
            print("HEAD detached at \(id.short)")
        }
        if let view = try repo.currentView() {
            print("The working tree holds \(view.description) (written by 'mrepo checkout'); changes are relative to it.")
        }
        if let merge = try repo.mergeInProgress() {
            print("Merging \(merge.branches.joined(separator: ", ")) (\(merge.method)), merge base \(merge.base.short).")
            if merge.ready {
                print("  All tensors merged; the working tree holds the result. 'mrepo merge --continue' commits it.")
            } else if merge.unresolved.isEmpty {
                print("  All conflicts resolved; run 'mrepo merge --continue'.")
            } else {
                print("  Unresolved tensors (settle with 'mrepo resolve GLOB --ours|--theirs|--base|--method M'):")
                for u in merge.unresolved { print("    \(u.tensor): \(u.reason)") }
            }
        }
        if status.isClean {
            print("nothing to commit, working tree clean")
        } else {
            print("Changes not committed:")
            for c in status.changes {
                var detail = ""
                if let reason = c.reason {
                    detail = "  (unreadable: \(reason))"
                } else if c.kind == .modified, let n = c.changedTensors, let total = c.tensorCount {
                    detail = "  (\(n) of \(total) tensors differ)"
                } else if c.kind == .added, let n = c.tensorCount, n > 0 {
                    detail = "  (\(n) tensors)"
                }
                let label = c.kind == .added ? "new file:" : c.kind == .modified ? "modified:" : "deleted: "
                print("  \(label)  \(c.path)\(detail)")
            }
        }
        if !status.normalizationTwins.isEmpty {
            print("Names that differ only in Unicode normalisation (commit refuses them; rename one):")
            for (a, b) in status.normalizationTwins {
                print("  \(DisplayText.escapingNonASCII(a))  \(DisplayText.escapingNonASCII(b))")
            }
        }
        if !status.nestedRepositories.isEmpty {
            print("Nested repositories (left out of commits, never touched by switch or checkout):")
            for path in status.nestedRepositories { print("  \(path)/") }
        }
    }
}
