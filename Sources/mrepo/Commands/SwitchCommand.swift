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

    @Argument(help: ArgumentHelp("The branch to switch to (or to create with -c); - is the previous branch.", valueName: "branch"), completion: CompletionNames.branches)
    var branch: String

    @Argument(help: ArgumentHelp("With -c: where the new branch starts. The default is HEAD.", valueName: "start"))
    var startPoint: String?

    @Flag(name: [.customShort("c"), .long], help: "Create the branch, then switch to it.")
    var create = false

    @Flag(help: "Start a new branch with no history (its first commit has no parent); the working tree is left as it is.")
    var orphan = false

    @Flag(name: .shortAndLong, help: "Discard uncommitted changes in files the switch rewrites.")
    var force = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        if startPoint != nil && !create { throw ValidationError("a start point is only allowed with -c") }
        if orphan && (create || startPoint != nil) { throw ValidationError("--orphan takes only a branch name") }
    }

    func run() throws {
        let repo = try repository.open()
        if orphan {
            try repo.switchToOrphan(branch, wait: lock.wait)
            if json { try printJSON(.obj(["branch": .string(branch), "commit": .null, "orphan": .bool(true)])) }
            else if !repository.quiet { print("Switched to a new branch '\(branch)' with no history") }
            return
        }
        // `switch -` (spelled @{-1} by then): the branch HEAD was on before.
        let branch = self.branch.hasPrefix("@{-") && !create ? try repo.previousBranch(Int(self.branch.dropFirst(3).dropLast()) ?? 1) : self.branch
        let result = try repo.switchBranch(branch, create: create, startPoint: startPoint, force: force, wait: lock.wait)
        if json {
            try printJSON(CheckoutJSON.make(result))
            return
        }
        guard !repository.quiet else { return }
        print((create ? "Switched to a new branch '\(branch)'" : "Switched to branch '\(branch)'")
            + " (\(result.filesSummary))")
    }
}
