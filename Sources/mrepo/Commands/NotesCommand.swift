import ArgumentParser
import Delta
import Foundation
import Repo

/// What `notes` does.
enum NotesAction: String, ExpressibleByArgument, CaseIterable {
    case add, show, list, remove
}

struct NotesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "notes",
        abstract: "Add notes to commits without changing them (their ids stay).",
        discussion: "'mrepo notes add REV -m TEXT' adds a note; 'notes show REV' (or 'notes list REV') prints a commit's notes (exit status 1 when it has none, as git's); 'notes remove REV' removes them (exit status 1 when it had none). log and show print them too.")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Argument(help: ArgumentHelp("add, show (or list), or remove.", valueName: "action"))
    var action: NotesAction

    @Argument(help: ArgumentHelp("The commit.", valueName: "rev"), completion: CompletionNames.revisions)
    var revision = "HEAD"

    @Option(name: .shortAndLong, help: ArgumentHelp("The note's text (add).", valueName: "message"))
    var message: String?

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        if action == .add && (message ?? "").isEmpty { throw ValidationError("notes add needs -m TEXT") }
        if action != .add && message != nil { throw ValidationError("-m goes with notes add") }
    }

    func run() throws {
        let repo = try repository.open()
        if action == .remove {
            let (id, removed) = try repo.removeNotes(of: revision, wait: lock.wait)
            if removed == 0 { ErrorReporter.fail("no note found for commit \(id.short)", status: 1) }
            if json { try printJSON(NotesDocument(commit: id, notes: [])) }
            else if !repository.quiet { print("Removed \(removed) note\(removed == 1 ? "" : "s") of \(id.short).") }
            return
        }
        let id: ObjectID
        if action == .add {
            id = try repo.addNote(message!, to: revision, wait: lock.wait)
        } else {
            id = try repo.resolve(revision)
        }
        let notes = try repo.notes(of: id)
        // As git's `notes show`: a commit without notes is an error (exit 1), not an empty answer.
        if action == .show, notes.isEmpty { ErrorReporter.fail("no note found for commit \(id.short)", status: 1) }
        if json {
            try printJSON(NotesDocument(commit: id, notes: notes))
            return
        }
        if action == .add {
            if !repository.quiet { print("Added a note to \(id.short) (\(notes.count) note\(notes.count == 1 ? "" : "s") in all).") }
        } else {
            for n in notes { print(n.text) }
        }
    }
}
