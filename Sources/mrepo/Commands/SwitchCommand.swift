import ArgumentParser
import Foundation
import Repo

struct SwitchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switch",
        abstract: "Switch to a branch, updating the working tree.",
        discussion: "Only files that differ are rewritten. Uncommitted changes to files the switch would touch stop it, unless --force.")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("The branch to switch to (or to create with -c); - is the previous branch. With --detach: the revision (default HEAD).", valueName: "branch"), completion: CompletionNames.branches)
    var branchArgument: String?

    var branch: String { branchArgument ?? "HEAD" }

    @Argument(help: ArgumentHelp("With -c: where the new branch starts. The default is HEAD.", valueName: "start"))
    var startPoint: String?

    @Flag(name: [.customShort("c"), .long], help: "Create the branch, then switch to it.")
    var create = false

    @Option(name: .customShort("C"), help: ArgumentHelp("git's create-or-reset: refused, naming what to run instead (to run in a folder, put -C DIR before the command).", valueName: "branch", visibility: .hidden))
    var forceCreate: String?

    @Flag(help: "Start a new branch with no history (its first commit has no parent); the working tree is left as it is.")
    var orphan = false

    @Flag(name: .shortAndLong, help: "Discard uncommitted changes in files the switch rewrites.")
    var force = false

    @Flag(help: "Detach HEAD at the revision (a branch's commit too) instead of switching to a branch, for a look or a throw-away experiment; 'mrepo switch -c NAME' keeps what you commit there.")
    var detach = false

    @OptionGroup var tracking: TrackingOptions

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        if let name = forceCreate {
            throw ValidationError("switch -C (git's create-or-reset) is not supported: 'mrepo branch -f \(name) START' moves an existing branch, then 'mrepo switch \(name)'; to run in a folder, put -C DIR before the command")
        }
        if branchArgument == nil && !detach { throw ValidationError("name the branch to switch to") }
        if detach && (create || orphan || tracking.track || tracking.noTrack || startPoint != nil) {
            throw ValidationError("--detach takes only a revision")
        }
        if startPoint != nil && !create { throw ValidationError("a start point is only allowed with -c") }
        if orphan && (create || startPoint != nil) { throw ValidationError("--orphan takes only a branch name") }
        if tracking.noTrack && !create { throw ValidationError("--no-track goes with -c (a branch the switch creates)") }
        if tracking.track && !create && (orphan || startPoint != nil) { throw ValidationError("--track without -c takes only the remote-tracking branch to start from") }
    }

    func run() throws {
        let repo = try repository.open()
        let before = try? repo.head()
        defer { LeftBehindWarning.report(repo, before: before) }
        if detach {
            try repo.detachHead(at: branch, force: force, wait: lock.wait).printDetached(json: json, quiet: repository.quiet)
            return
        }
        let target: SwitchTarget
        if orphan {
            target = .orphan(branch)
        } else if create {
            target = .newBranch(branch, startPoint: startPoint, tracking: tracking.tracking)
        } else if tracking.track {
            // `switch --track origin/X`: creates X there, tracking it, as git does.
            target = .newBranch(try TrackingOptions.derivedName(branch), startPoint: branch, tracking: .always)
        } else {
            target = .branch(branch)
        }
        let result = try repo.switchTo(target, force: force, wait: lock.wait)
        guard let checkout = result.checkout else {
            if json { try printJSON(OrphanSwitchDocument(branch: result.branch)) }
            else if !repository.quiet { print("Switched to a new branch '\(result.branch)' with no history") }
            return
        }
        if json {
            try printJSON(CheckoutDocument(checkout, upstream: result.upstream))
            return
        }
        guard !repository.quiet else { return }
        if let upstream = result.upstream, result.created { print("branch '\(result.branch)' set up to track '\(upstream)'.") }
        print((result.created ? "Switched to a new branch '\(result.branch)'" : "Switched to branch '\(result.branch)'")
            + " (\(checkout.filesSummary))")
    }
}
