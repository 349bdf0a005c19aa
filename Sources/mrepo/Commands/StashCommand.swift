import ArgumentParser
import Delta
import Foundation
import Repo

/// What `stash` does.
enum StashAction: String, ExpressibleByArgument, CaseIterable {
    case push, save, pop, apply, list, drop

    /// For help and completion: `show` too, which ``CommandLineHabits`` turns into `log --stat -1
    /// stash@{N}` before the command line is parsed.
    static var allValueStrings: [String] { allCases.map(\.rawValue) + ["show"] }
}

struct StashCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stash",
        abstract: "Put uncommitted changes aside and bring them back later.",
        discussion: """
            'mrepo stash' (or 'stash push [-m MESSAGE]') records the changes to tracked files as a stash \
            entry (a commit on no branch, whose parent is HEAD) and puts those files back to HEAD; untracked \
            files stay where they are unless -u (then they are stashed and removed too). With nothing to \
            put aside it says so and succeeds, as git's. 'stash \
            list' lists the entries, newest first as stash@{0}. 'stash pop [N]' writes entry N's \
            changes back and drops it ('stash apply [N]' keeps it); when HEAD moved since, the changes \
            are applied file by file and tensor by tensor, and refused where HEAD changed the same \
            things. 'stash drop [N]' drops an entry. 'stash show [N]' prints the entry and what it \
            changed, per file ('log --stat -1 stash@{N}'); stash@{N} names entry N wherever a revision \
            goes (diff, show, export). Stashes are never collected by gc.
            """)

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("push (the default), list, pop, apply, drop, or show (an entry and what it changed).", valueName: "action"))
    var action: StashAction = .push

    @Argument(help: ArgumentHelp("The entry: N or stash@{N}. The default is 0, the newest.", valueName: "stash"))
    var entry: String?

    @Option(name: .shortAndLong, help: ArgumentHelp("The entry's message (push).", valueName: "message"))
    var message: String?

    @Flag(name: [.customShort("u"), .customLong("include-untracked")],
          help: "push: stash untracked files too (and remove them from the working tree), as git's -u.")
    var includeUntracked = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        if entry != nil, [.push, .save, .list].contains(action) { throw ValidationError("stash \(action.rawValue) takes no entry") }
        if message != nil, ![.push, .save].contains(action) { throw ValidationError("-m goes with stash push") }
        if includeUntracked, ![.push, .save].contains(action) { throw ValidationError("-u goes with stash push") }
        if let entry, StashCommand.index(entry) == nil { throw ValidationError("'\(entry)': expected N or stash@{N}") }
    }

    static func index(_ text: String) -> Int? {
        if let n = Int(text), n >= 0 { return n }
        if text.hasPrefix("stash@{"), text.hasSuffix("}"), let n = Int(text.dropFirst(7).dropLast()), n >= 0 { return n }
        return nil
    }

    func run() throws {
        let repo = try repository.open()
        let index = entry.flatMap(StashCommand.index) ?? 0
        switch action {
        case .push, .save:
            let e: StashEntry
            do {
                e = try repo.stash(message: message, includeUntracked: includeUntracked, wait: lock.wait)
            } catch RepoError.nothingToStash {
                // As git's: nothing to put aside is no failure (`set -e` scripts go on); JSON says null.
                if json { try printJSON(OrNull<StashDocument>(nil)) } else if !repository.quiet { print("No local changes to save") }
                return
            }
            try output(e, "Saved working directory as stash@{0}: \(e.message)")
        case .pop, .apply:
            let e = try repo.stashPop(index: index, drop: action == .pop, wait: lock.wait)
            try output(e, action == .pop ? "Dropped stash@{\(index)} (\(e.commit.short)) after writing its changes to the working tree"
                : "Applied stash@{\(index)} (\(e.commit.short)) to the working tree")
        case .drop:
            let e = try repo.stashDrop(index: index, wait: lock.wait)
            try output(e, "Dropped stash@{\(index)} (\(e.commit.short))")
        case .list:
            let all = try repo.stashes()
            if json {
                try printJSON(all.map(StashDocument.init))
                return
            }
            // As git lists them: "WIP on B: ..." for a default message, "On B: MESSAGE" for one given.
            for e in all {
                let line = e.message.split(separator: "\n").first.map(String.init) ?? ""
                let on = line.hasPrefix("WIP on ") ? "" : e.branch.map { "On \($0): " } ?? ""
                print("stash@{\(e.index)}: \(on)\(line)")
            }
        }
    }

    func output(_ e: StashEntry, _ text: String) throws {
        if json { try printJSON(StashDocument(e)) } else if !repository.quiet { print(text) }
    }
}
