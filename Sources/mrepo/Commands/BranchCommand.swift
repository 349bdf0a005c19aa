import ArgumentParser
import Foundation
import Repo

struct BranchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "branch",
        abstract: "List, create or delete branches.",
        discussion: """
            'mrepo branch' lists branches (* marks the current one). 'mrepo branch NAME [START]' creates a \
            branch at START (default HEAD) without switching to it. 'mrepo branch -d NAME' deletes a branch \
            whose commits HEAD contains; -D deletes it anyway.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Name of the branch to create or delete.", valueName: "name"))
    var name: String?

    @Argument(help: ArgumentHelp("Where the new branch starts. The default is HEAD.", valueName: "start"))
    var startPoint: String?

    @Flag(name: .customShort("d"), help: "Delete the branch (it must be merged into HEAD).")
    var delete = false

    @Flag(name: .customShort("D"), help: "Delete the branch even if HEAD does not contain its commits.")
    var forceDelete = false

    @Flag(help: "Print the branches as JSON.")
    var json = false

    func validate() throws {
        if (delete || forceDelete) && name == nil { throw ValidationError("-d and -D need a branch name") }
        if (delete || forceDelete) && startPoint != nil { throw ValidationError("-d and -D take only a branch name") }
    }

    func run() throws {
        let repo = try repository.open()
        if let name {
            if delete || forceDelete {
                let target = try repo.deleteBranch(name, force: forceDelete, wait: lock.wait)
                if !repository.quiet { print("Deleted branch \(name) (was \(target.short)).") }
            } else {
                let target = try repo.createBranch(name, at: startPoint, wait: lock.wait)
                if !repository.quiet { print("Created branch \(name) at \(target.short).") }
            }
            return
        }
        let branches = try repo.branches()
        if json {
            printJSON(.array(branches.map {
                .obj(["name": .string($0.name), "commit": .string($0.target.hex), "current": .bool($0.isCurrent), "subject": .string($0.subject)])
            }))
            return
        }
        if branches.isEmpty, let head = try? repo.history.head(), let b = head.branchName {
            print("* \(b) (no commits yet)")
            return
        }
        let width = branches.map(\.name.count).max() ?? 0
        for b in branches {
            print("\(b.isCurrent ? "*" : " ") \(b.name.padding(toLength: width, withPad: " ", startingAt: 0))  \(b.target.short)  \(b.subject)")
        }
    }
}

struct TagCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tag",
        abstract: "List, create or delete tags (fixed names for commits, e.g. a release).")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("Name of the tag to create or delete.", valueName: "name"))
    var name: String?

    @Argument(help: ArgumentHelp("The commit to tag. The default is HEAD.", valueName: "rev"))
    var revision: String?

    @Option(name: .shortAndLong, help: ArgumentHelp("A message stored with the tag.", valueName: "message"))
    var message: String?

    @Flag(name: .customShort("d"), help: "Delete the tag.")
    var delete = false

    @Flag(help: "Print the tags as JSON.")
    var json = false

    func validate() throws {
        if delete && name == nil { throw ValidationError("-d needs a tag name") }
    }

    func run() throws {
        let repo = try repository.open()
        if let name {
            if delete {
                try repo.deleteTag(name, wait: lock.wait)
                if !repository.quiet { print("Deleted tag \(name).") }
            } else {
                let target = try repo.createTag(name, at: revision, message: message, wait: lock.wait)
                if !repository.quiet { print("Tagged \(target.short) as \(name).") }
            }
            return
        }
        let tags = try repo.tags()
        if json {
            printJSON(.array(tags.map { .obj(["name": .string($0.name), "commit": .string($0.target.hex), "message": .opt($0.message)]) }))
            return
        }
        for t in tags { print("\(t.name)  \(t.target.short)\(t.message.map { "  \($0)" } ?? "")") }
    }
}

struct SwitchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switch",
        abstract: "Switch to a branch, updating the working tree.",
        discussion: "Only files that differ are rewritten. Uncommitted changes to files the switch would touch stop it, unless --force.")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("The branch to switch to (or to create with -c).", valueName: "branch"))
    var branch: String

    @Argument(help: ArgumentHelp("With -c: where the new branch starts. The default is HEAD.", valueName: "start"))
    var startPoint: String?

    @Flag(name: [.customShort("c"), .long], help: "Create the branch, then switch to it.")
    var create = false

    @Flag(help: "Start a new branch with no history (its first commit has no parent); the working tree is left as it is.")
    var orphan = false

    @Flag(name: .shortAndLong, help: "Discard uncommitted changes in files the switch rewrites.")
    var force = false

    func validate() throws {
        if startPoint != nil && !create { throw ValidationError("a start point is only allowed with -c") }
        if orphan && (create || startPoint != nil) { throw ValidationError("--orphan takes only a branch name") }
    }

    func run() throws {
        let repo = try repository.open()
        if orphan {
            try repo.switchToOrphan(branch, wait: lock.wait)
            if !repository.quiet { print("Switched to a new branch '\(branch)' with no history") }
            return
        }
        let result = try repo.switchBranch(branch, create: create, startPoint: startPoint, force: force, wait: lock.wait)
        guard !repository.quiet else { return }
        print((create ? "Switched to a new branch '\(branch)'" : "Switched to branch '\(branch)'")
            + " (\(result.filesSummary))")
    }
}

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
        if reversible.isGiven || fold {
            let (result, description) = try repo.checkoutReversible(revision, view: reversible.parsedView, expert: reversible.expert,
                                                                    fold: fold, force: force, wait: lock.wait)
            guard !repository.quiet else { return }
            print("HEAD is now at \(result.head.commit?.short ?? "") (detached); the working tree holds \(description)")
            print(result.filesSummary)
            return
        }
        let result = try repo.checkout(revision, force: force, wait: lock.wait)
        guard !repository.quiet else { return }
        switch result.head {
        case let .branch(name, _): print("Switched to branch '\(name)'")
        case let .detached(id): print("HEAD is now at \(id.short) (detached)")
        }
        print(result.filesSummary)
    }
}

extension CheckoutResult {
    /// "N files written, N removed, N unchanged".
    var filesSummary: String { "\(writtenFiles) files written, \(removedFiles) removed, \(unchangedFiles) unchanged" }
}
