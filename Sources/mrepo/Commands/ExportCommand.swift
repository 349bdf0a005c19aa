import ArgumentParser
import Delta
import Foundation
import Repo

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the files of a revision into a folder, byte for byte as committed.",
        discussion: """
            Every tensor's hash is verified before its file is renamed into place; a file that does not \
            verify is never written. Existing files of the same names are replaced; a folder that holds \
            other files is refused, naming them, unless --clean, which deletes them once the export's \
            files are in place. \
            A lossy commit (commit --lowrank) exports its approximation, with a warning.

            --fold writes a LoRA adapter commit as its dense model: the base commit's files with every \
            adapted weight replaced by θ + (alpha/r)·B·A. On a reversible merge, --expert NAME writes \
            that expert rebuilt from the basis, --view another view (see 'mrepo checkout --help').
            """)

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: ArgumentHelp("The revision to export; REV:path exports one file (or the files under a folder) of it.", valueName: "rev"), completion: CompletionNames.revisions)
    var revision: String

    @Argument(help: ArgumentHelp("The folder to write into (created if missing).", valueName: "dir"))
    var directory: String

    @Flag(help: "Adapters: write the dense model θ_base + ΔW instead of the adapter files.")
    var fold = false

    @OptionGroup var reversible: ReversibleViewOptions

    @Flag(help: "Delete the files of the folder that the export does not write (else they make it fail).")
    var clean = false

    @Flag(name: .customLong("no-stats"), help: "Leave out the merge statistics folder (mrepo_stats/: Fisher, RegMean Grams), which is exported by default.")
    var noStats = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let repo = try repository.open(access: .readOnly)
        let started = Date()
        let result = try repo.export(revision, as: Materialization(expert: reversible.expert, view: reversible.parsedView, fold: fold),
                                     to: directory, clean: clean, noStatistics: noStats)
        let seconds = Date().timeIntervalSince(started)
        let lossy = result.lossy
        if let lossy, !json {
            let whose = result.lossyCommit.map { "the base model \($0.short) this adapter is folded into" } ?? result.commit.short
            ErrorReporter.warn("\(whose) is a lossy commit (\(lossy.method), \(lossy.settingDescription)): \(lossy.tensorCount) tensors are approximate, relative error up to \(Format.number(lossy.maxRelativeError, digits: 4))")
        }
        if json {
            try printJSON(ExportDocument(commit: result.commit.hex, directory: result.directory, files: result.fileCount,
                                         bytes: result.byteCount, seconds: seconds, lossy: lossy != nil,
                                         maxRelativeError: OrNull(lossy?.maxRelativeError)))
        } else if !repository.quiet {
            let what = reversible.expert.map { "expert \($0) of " } ?? reversible.view.map { "view \($0.rawValue) of " } ?? ""
            print("Exported \(what)\(result.commit.short)\(fold ? " (folded)" : "") to \(result.directory): \(result.fileCount) files, \(Format.bytes(result.byteCount))")
        }
    }
}
