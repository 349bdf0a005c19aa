import ArgumentParser
import Delta
import Foundation
import Merge
import Repo

struct ShowCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show",
        abstract: "Show a commit: its message, metrics, files and how they are stored.",
        discussion: "'mrepo show --stat REV' prints what 'mrepo log --stat -1 REV' prints: the commit, and per file how many tensors changed and the bytes stored, as git's show --stat.")

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: ArgumentHelp("The commit to show; REV:path shows one file of it (a safetensors file's tensors, any other file's bytes).", valueName: "rev"), completion: CompletionNames.revisions)
    var revision = "HEAD"

    @Flag(help: "Print the commit as JSON.")
    var json = false

    @Flag(help: "List every tensor with its dtype, shape, object and encoding.")
    var tensors = false

    @Flag(help: "For a merge commit: print its conflict report, every tensor (with --json, the full report).")
    var conflicts = false

    @Option(help: ArgumentHelp("For a merge commit: write its report as a self-contained HTML page (the conflict report with its heatmap, or a reversible merge's errors and storage).", valueName: "file.html"))
    var report: String?

    @Flag(help: "For a merge made by 'merge --search': list every trial (recipe, scores, status, seconds).")
    var trials = false

    /// Listed for the help only: `show --stat REV` is rewritten to `log --stat -1 REV` before
    /// parsing (CommandLineHabits), so this is never set.
    @Flag(help: "The commit, and per file how many tensors changed and the bytes stored (git's show --stat; what 'log --stat -1 REV' prints).")
    var stat = false

    func validate() throws {
        if trials && (report != nil || conflicts || tensors) { throw ValidationError("--trials excludes --report, --conflicts and --tensors") }
        if json && report != nil { throw ValidationError("--report writes an HTML page; it takes no --json") }
    }

    func run() throws {
        let repo = try repository.open(access: .readOnly)
        if let (rev, path) = Repository.splitPathRevision(revision) {
            try showFile(repo, revision: rev, path: path)
            return
        }
        let id = try repo.resolve(revision)
        if trials {
            try showTrials(repo, id: id)
            return
        }
        if let report {
            try repo.checkOutputFile(report, option: "--report")
            try repo.writeFile(Array(try repo.mergeReportHTML(of: id).utf8), to: report)
            if !repository.quiet { print("Report: \(report)") }
            return
        }
        if conflicts {
            try showConflicts(repo, id: id)
            return
        }
        try showCommit(repo, id: id)
    }
}

extension ShowCommand {
    /// `show REV:path`: a safetensors file's tensors (name, dtype, shape, object, encoding, stored
    /// bytes); any other file's bytes as they are, to standard output.
    func showFile(_ repo: Repository, revision: String, path: String) throws {
        let (id, file) = try repo.file(at: path, in: revision)
        let infos = try repo.objectInfos(of: Tree(files: [file]))
        if json {
            try printJSON(ShowFileDocument(commit: id, file: file, objects: infos))
            return
        }
        guard file.kind == .safetensors else {
            try repo.readFile(file) { bytes in FileHandle.standardOutput.write(Data(bytes)) }
            return
        }
        print("\(file.path) at \(id.short): \(file.tensors.count) tensors, \(Format.bytes(file.byteCount))")
        let rows = file.tensors.map { t -> [String] in
            let info = infos[t.objectID]
            return [t.name, t.dtype.rawValue, Format.shape(t.shape), t.objectID.short, info?.encoding.description ?? "?",
                    info.map { Format.bytes($0.storedByteCount) } ?? "?"]
        }
        print(Format.table(["tensor", "dtype", "shape", "object", "encoding", "stored"], rows, right: [5]))
    }
}
