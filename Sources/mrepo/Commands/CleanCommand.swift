import ArgumentParser
import Foundation
import Repo

struct CleanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "clean",
        abstract: "Remove untracked files from the working tree (a training run's leftovers, say).",
        discussion: """
            As 'git clean': removes files that HEAD does not track, and with -d untracked folders too \
            (without -d an untracked folder is not entered). Files that .mrepoignore lists stay unless -x \
            (remove them too) or -X (remove only them). Tracked files, .mrepo, .git, temporary files and \
            nested repositories are never touched; a symbolic link is removed as a link, never followed. \
            It deletes for good, so it needs -f, or -n to list what would go.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Clean only these paths, folders or globs, relative to the current folder (default: the current folder and below, as git).", valueName: "path"))
    var paths: [String] = []

    @Flag(name: .shortAndLong, help: "Remove the files (clean refuses to run without -f or -n).")
    var force = false

    @Flag(name: [.customShort("n"), .customLong("dry-run")], help: "List what would be removed; remove nothing.")
    var dryRun = false

    @Flag(name: .customShort("d"), help: "Remove untracked folders too (and enter them).")
    var directories = false

    @Flag(name: .customShort("x"), help: "Remove the files .mrepoignore lists as well.")
    var ignoredToo = false

    @Flag(name: .customShort("X"), help: "Remove only the files .mrepoignore lists.")
    var onlyIgnored = false

    @Flag(help: "Print what was (or would be) removed as JSON.")
    var json = false

    func validate() throws {
        if !force && !dryRun { throw ValidationError("refusing to clean without -f (remove) or -n (list what would go): clean deletes untracked files for good") }
        if ignoredToo && onlyIgnored { throw ValidationError("-x and -X cannot be combined") }
    }

    func run() throws {
        let repo = try repository.open()
        let options = CleanOptions(dryRun: dryRun, directories: directories,
                                   ignored: ignoredToo ? .alsoRemoved : onlyIgnored ? .only : .kept, paths: paths,
                                   from: FileManager.default.currentDirectoryPath)
        let result = try repo.clean(options, wait: lock.wait)
        if json {
            try printJSON(CleanDocument(dryRun: dryRun, removed: result.removed, skippedRepositories: result.skippedRepositories))
            return
        }
        guard !repository.quiet else { return }
        // Paths from the current folder, as git's (JSON keeps them from the top).
        for path in result.skippedRepositories { print("\(dryRun ? "Would skip" : "Skipping") repository \(Format.fromCurrentFolder(path, root: repo.root))") }
        for path in result.removed { print("\(dryRun ? "Would remove" : "Removing") \(Format.fromCurrentFolder(path, root: repo.root))") }
    }
}
