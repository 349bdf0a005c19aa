import ArgumentParser
import Delta
import Foundation
import Repo

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Compare two revisions, or a revision and the working tree, tensor by tensor.",
        discussion: """
            'mrepo diff' compares HEAD with the working tree, 'mrepo diff REV' compares REV with the working \
            tree, 'mrepo diff A B' compares A with B. Per tensor: added, removed, changed or retyped (dtype \
            or shape changed); ‖Δ‖, the L2 norm of the change; rel, that norm relative to the old tensor's; \
            changed, the fraction of elements whose bits differ; cos, the cosine between the two sides' \
            task vectors against their merge base, when both sides changed the tensor since then.

            Between two LoRA adapter commits the comparison is per adapted module, computed from the \
            factors without forming ΔW = (alpha/r)·B·A: ‖ΔW‖ of each side, cos, the cosine between \
            the two ΔW's, ‖ΔW₂−ΔW₁‖, and each side's effective rank (exp of the entropy of its \
            normalised singular values). --tensors compares the adapter files tensor by tensor instead.

            'mrepo diff --no-index A B' compares two checkpoint folders, or two safetensors files, the same \
            way, with no repository needed (a training run's checkpoint-1000/ against checkpoint-2000/, say); \
            other files are compared byte for byte. As in git, it exits with status 1 when they differ.
            """)

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: ArgumentHelp("The old side (default HEAD) and the new side (default the working tree); also A..B, A...B (from their merge base), REV:path.", valueName: "rev"), completion: CompletionNames.revisions)
    var revisions: [String] = []

    @Option(name: .customLong("pathspec"), help: ArgumentHelp("Compare only these files: paths, folders or globs (also: the arguments after --).", valueName: "path"))
    var paths: [String] = []

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(help: "List unchanged tensors too.")
    var all = false

    @Flag(help: "Between adapters: compare the lora_A/lora_B tensors element by element instead of the ΔW's.")
    var tensors = false

    @Option(name: .customLong("tensor"), help: ArgumentHelp("Compare only tensors whose names match this glob (repeatable).", valueName: "glob"))
    var tensorGlobs: [String] = []

    @Flag(help: "Exit with status 1 when the sides differ, 0 when they do not (as git; -q/--quiet implies it and prints nothing).")
    var exitCode = false

    @Flag(help: "Per file: how many tensors changed.")
    var stat = false

    @Flag(help: "Print only the paths of the files that differ, one per line (as git).")
    var nameOnly = false

    @Flag(help: "Compare two folders or two safetensors files given as paths, outside any repository (exits 1 when they differ, as git).")
    var noIndex = false

    @Flag(name: [.customLong("cached"), .customLong("staged")], help: "Accepted as in git: mrepo has no index, so what a commit would record is the working tree (the same comparison without it).")
    var cached = false

    func validate() throws {
        if revisions.count > 2 { throw ValidationError("diff takes at most two revisions") }
        // A range's `..` is in the revision, not in a path (`REV:../file`, `../model.safetensors` from
        // a subfolder, or --no-index's folders).
        let isRange = { (r: String) in
            (r.split(separator: ":", maxSplits: 1).first.map { $0.contains("..") } ?? false) && !FileManager.default.fileExists(atPath: r)
                && !r.hasPrefix("../") && !r.hasPrefix("./") && !r.contains("/../")
        }
        if !noIndex, revisions.count == 2, revisions.contains(where: isRange) { throw ValidationError("a range A..B is one argument; give it alone") }
        if [stat, json, nameOnly].filter({ $0 }).count > 1 { throw ValidationError("--stat, --name-only and --json: give one of them") }
        if noIndex && revisions.count != 2 { throw ValidationError("--no-index compares two paths: mrepo diff --no-index A B") }
    }

    func run() throws {
        let report: DiffReport
        if noIndex {
            report = try Repository.diffFolders(old: revisions[0], new: revisions[1], filter: DiffFilter(paths: paths, tensors: tensorGlobs),
                                                progress: repository.quiet || json ? nil : ProgressBar.make(quiet: false))
        } else {
            let repo = try repository.open(access: .readOnly)
            switch try repo.diff(revisions: revisions, paths: paths, tensors: tensorGlobs, elementwise: tensors,
                                 from: FileManager.default.currentDirectoryPath) {
            case let .adapters(adapters):
                try printAdapterDiff(adapters)
                return
            case let .tensors(tensors):
                report = tensors
            }
        }
        let different = DiffPrinter.isDifferent(report)
        if repository.quiet {
            if different { throw ExitCode(1) }
            return
        }
        if json {
            try printJSON(DiffDocument(report, all: all))
        } else if stat {
            for line in DiffPrinter.statLines(report) { print(line) }
        } else if nameOnly {
            for path in DiffPrinter.changedPaths(report) { print(path) }
        } else {
            for line in DiffPrinter.lines(report, all: all) { print(line) }
        }
        if (exitCode || noIndex) && different { throw ExitCode(1) }
    }
}

extension DiffCommand {
    func printAdapterDiff(_ r: AdapterDiffReport) throws {
        if json {
            try printJSON(AdapterDiffDocument(r))
            return
        }
        print("adapter diff \(r.oldName) → \(r.newName) (ΔW per module, from the factors)")
        if r.oldBase != r.newBase { print("  note: the adapters have different bases (\(r.oldBase.short), \(r.newBase.short))") }
        let rows = r.rows.map { m -> [String] in
            [m.module, "\(m.oldRank.map(String.init) ?? "-")→\(m.newRank.map(String.init) ?? "-")", Format.number(m.oldNorm, digits: 4),
             Format.number(m.newNorm, digits: 4), Format.number(m.cosine), Format.number(m.differenceNorm, digits: 4),
             Format.number(m.oldEffectiveRank, digits: 2), Format.number(m.newEffectiveRank, digits: 2)]
        }
        print(Format.table(["module", "rank", "‖ΔW₁‖", "‖ΔW₂‖", "cos", "‖ΔW₂−ΔW₁‖", "erank₁", "erank₂"], rows, right: [2, 3, 4, 5, 6, 7]))
        let cosines = r.rows.compactMap(\.cosine)
        if !cosines.isEmpty {
            print(String(format: "%d modules; mean cos %.3f", r.rows.count, cosines.reduce(0, +) / Double(cosines.count)))
        }
    }
}
