import ArgumentParser
import Delta
import Foundation
import Repo

struct CheckoutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkout",
        abstract: "Update the working tree to a revision.",
        discussion: """
            A branch name switches to the branch. Any other revision (a tag, a commit id, HEAD~2) \
            detaches HEAD at that commit. - is the previous branch; -b NAME [START] creates a branch \
            and switches to it (as 'switch -c').

            On a reversible merge (merge --method rmm), --expert NAME writes that expert rebuilt from \
            the merge's basis, and --view picks another view than the stored default (task \
            arithmetic of the rebuilt experts). HEAD is then detached at the merge, and 'status' \
            compares the working tree with what was written.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("The revision to check out (with -b: where the new branch starts, default HEAD).", valueName: "rev"), completion: CompletionNames.revisions)
    var revision: String?

    @Option(name: .customShort("b"), help: ArgumentHelp("Create this branch at the revision and switch to it.", valueName: "branch"))
    var newBranch: String?

    @Option(name: .customShort("B"), help: ArgumentHelp("git's create-or-reset: refused, naming what to run instead.", valueName: "branch", visibility: .hidden))
    var forceNewBranch: String?

    @Flag(help: "Print the result as JSON.")
    var json = false

    @OptionGroup var reversible: ReversibleViewOptions

    @Flag(help: "On an adapter commit, or with --expert or --view on an adapter merge: write the dense model θ_base + ΔW instead of the adapter.")
    var fold = false

    @Flag(name: .shortAndLong, help: "Discard uncommitted changes in files the checkout rewrites.")
    var force = false

    @Flag(help: "Detach HEAD at the revision (default HEAD), a branch's commit too, instead of checking the branch out.")
    var detach = false

    @OptionGroup var tracking: TrackingOptions

    func validate() throws {
        if let name = forceNewBranch {
            throw ValidationError("checkout -B (git's create-or-reset) is not supported: 'mrepo branch -f \(name) START' moves an existing branch, then 'mrepo switch \(name)'")
        }
        if tracking.noTrack && newBranch == nil { throw ValidationError("--no-track goes with -b (a branch the checkout creates)") }
        if tracking.track && newBranch == nil && revision == nil { throw ValidationError("--track needs the remote-tracking branch to start from") }
        if tracking.track && (reversible.isGiven || fold) { throw ValidationError("--track does not go with --expert, --view or --fold") }
        if detach && (newBranch != nil || tracking.track || tracking.noTrack || reversible.isGiven || fold) {
            throw ValidationError("--detach takes only a revision")
        }
        if revision == nil && newBranch == nil && !detach { throw ValidationError("name the revision to check out (or -b NAME)") }
        if newBranch != nil && (reversible.isGiven || fold) { throw ValidationError("-b does not go with --expert, --view or --fold") }
    }

    func run() throws {
        let repo = try repository.open()
        let before = try? repo.head()
        defer { LeftBehindWarning.report(repo, before: before) }
        if detach {
            try repo.detachHead(at: revision ?? "HEAD", force: force, wait: lock.wait).printDetached(json: json, quiet: repository.quiet)
            return
        }
        // `checkout --track origin/X` creates X there, tracking it, as git does.
        let derived = newBranch == nil && tracking.track ? try TrackingOptions.derivedName(revision!) : nil
        if let newBranch = newBranch ?? derived {
            let result = try repo.switchTo(.newBranch(newBranch, startPoint: revision, tracking: tracking.tracking), force: force, wait: lock.wait)
            guard let checkout = result.checkout else { return }
            if json { try printJSON(CheckoutDocument(checkout, upstream: result.upstream)) } else if !repository.quiet {
                if let upstream = result.upstream { print("branch '\(newBranch)' set up to track '\(upstream)'.") }
                print("Switched to a new branch '\(newBranch)' (\(checkout.filesSummary))")
            }
            return
        }
        let (result, description) = try repo.checkout(revision!, as: Materialization(expert: reversible.expert, view: reversible.parsedView, fold: fold),
                                                      force: force, wait: lock.wait)
        if json {
            try printJSON(CheckoutDocument(result, view: description, upstream: result.createdFrom))
            return
        }
        guard !repository.quiet else { return }
        if let upstream = result.createdFrom, let name = result.head.branchName {
            // A branch only a remote had, created tracking it, as git says it.
            print("branch '\(name)' set up to track '\(upstream)'.")
            print("Switched to a new branch '\(name)'")
            print(result.filesSummary)
            return
        }
        if let description {
            print("HEAD is now at \(result.head.commit?.short ?? "") (detached); the working tree holds \(description)")
            print(result.filesSummary)
            return
        }
        switch result.head {
        case let .branch(name, _): print("Switched to branch '\(name)'")
        case let .detached(id): print("HEAD is now at \(id.short) (detached)")
        }
        print(result.filesSummary)
    }
}
