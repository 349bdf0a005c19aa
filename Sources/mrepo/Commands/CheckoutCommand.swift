import ArgumentParser
import Foundation
import Repo

struct CheckoutCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkout",
        abstract: "Update the working tree to a revision.",
        discussion: """
            A branch name switches to the branch. Any other revision (a tag, a commit id, HEAD~2) \
            detaches HEAD at that commit.

            On a reversible merge (merge --method rmm), --expert NAME writes that expert rebuilt from \
            the merge's basis, and --view picks another view than the stored default (task \
            arithmetic of the rebuilt experts). HEAD is then detached at the merge, and 'status' \
            compares the working tree with what was written.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("The revision to check out.", valueName: "rev"))
    var revision: String

    @OptionGroup var reversible: ReversibleViewOptions

    @Flag(help: "With --expert or --view on an adapter merge: write the dense model θ_base + ΔW instead of an adapter.")
    var fold = false

    @Flag(name: .shortAndLong, help: "Discard uncommitted changes in files the checkout rewrites.")
    var force = false

    func run() throws {
        let repo = try repository.open()
        let (result, description) = try repo.checkout(revision, as: Materialization(expert: reversible.expert, view: reversible.parsedView, fold: fold),
                                                      force: force, wait: lock.wait)
        guard !repository.quiet else { return }
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
