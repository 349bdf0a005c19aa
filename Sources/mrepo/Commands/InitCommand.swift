import ArgumentParser
import Foundation
import Repo

struct InitCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create a repository in a folder (the current one by default).",
        discussion: """
            Creates .mrepo (the history database and the object store) in the folder. The folder itself \
            becomes the working tree: put checkpoint files there and run 'mrepo commit', or import \
            folders from elsewhere with 'mrepo commit --from DIR'. Sample hooks are written to \
            .mrepo/hooks/*.sample; --hooks installs them as active hooks.
            """)

    @Argument(help: ArgumentHelp("Folder to create the repository in (created if missing).", valueName: "dir"))
    var directory: String = "."

    @Flag(help: "Install the sample hooks as active hooks: pre-commit refuses tensors holding NaN or Inf, post-commit logs each commit, pre-merge-commit gates merges on an evaluation command (MREPO_EVAL_CMD), post-merge logs each merge.")
    var hooks = false

    @Option(name: [.customShort("b"), .long], help: ArgumentHelp("Name of the first branch.", valueName: "name"))
    var initialBranch = "main"

    @Flag(help: "A repository others push to: a push may move the branch HEAD names (no one works in its working tree).")
    var bare = false

    @Flag(name: .shortAndLong, help: "Print nothing on success.")
    var quiet = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let repo = try Repository.initialize(at: directory, installSampleHooks: hooks, initialBranch: initialBranch, bare: bare)
        if json {
            try printJSON(InitDocument(root: repo.root, directory: repo.metaDirectory, branch: initialBranch, hooks: hooks, bare: bare))
        } else if !quiet {
            print("Initialized empty mrepo repository in \(repo.metaDirectory)")
            if hooks {
                print("Installed hooks: pre-commit (refuses NaN/Inf), post-commit (logs to .mrepo/commits.log),")
                print("  pre-merge-commit (evaluation gate, see MREPO_EVAL_CMD in it), post-merge (logs to .mrepo/merges.log)")
            }
        }
    }
}
