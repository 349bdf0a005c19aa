import ArgumentParser
import Foundation
import Repo

struct RestoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Put files, or single tensors, of the working tree back as a revision has them.",
        discussion: """
            'mrepo restore PATH...' rewrites the files (or every file under a folder, or matching a glob) \
            as HEAD has them, or as --source REV has them. --tensor GLOB puts back only the tensors whose \
            names match, inside the working tree's safetensors files (under PATH, if given), keeping \
            every other tensor as it is; dtype and shape must agree. mrepo has no index: --staged \
            alone changes nothing and says so.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Files, folders or globs to restore.", valueName: "path"))
    var paths: [String] = []

    @Option(name: [.customShort("s"), .customLong("source")], help: ArgumentHelp("The revision to take them from. The default is HEAD.", valueName: "rev"), completion: CompletionNames.revisions)
    var source: String?

    @Option(name: .customLong("tensor"), help: ArgumentHelp("Put back only tensors whose names match this glob (repeatable).", valueName: "glob"))
    var tensors: [String] = []

    @Flag(help: "Accepted as in git; mrepo has no index (commit records the whole working tree).")
    var staged = false

    @Flag(name: .shortAndLong, help: "With --staged: restore the working tree too (the default without --staged).")
    var worktree = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        if paths.isEmpty && tensors.isEmpty { throw ValidationError("name the paths to restore (or --tensor GLOB)") }
    }

    func run() throws {
        let repo = try repository.open()
        if staged && !worktree {
            if json { try printJSON(RestoreDocument(files: [], tensors: [], removed: [], note: "no index")) }
            else { ErrorReporter.note("mrepo has no index: nothing is staged, so --staged changes nothing (add --worktree to restore the files)") }
            return
        }
        let r = try repo.restore(paths: paths, source: source, tensors: tensors, wait: lock.wait, from: FileManager.default.currentDirectoryPath)
        if json {
            try printJSON(RestoreDocument(source: r.source.hex, files: r.files, tensors: r.tensors, removed: r.removed, unchanged: r.unchanged))
            return
        }
        guard !repository.quiet else { return }
        if !r.tensors.isEmpty {
            print("Restored \(r.tensors.count) tensor\(r.tensors.count == 1 ? "" : "s") from \(r.source.short) in \(r.files.joined(separator: ", "))")
        } else {
            print("Restored \(r.files.count) file\(r.files.count == 1 ? "" : "s") from \(r.source.short)" + (r.removed.isEmpty ? "" : "; removed \(r.removed.joined(separator: ", "))")
                  + (r.unchanged.isEmpty ? "" : " (\(r.unchanged.count) unchanged)"))
        }
    }
}
