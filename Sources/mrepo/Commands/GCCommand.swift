import ArgumentParser
import Foundation
import Repo

struct GCCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Delete commits and objects no branch, tag, HEAD or reflog entry reaches, and leftovers of interrupted commands.")

    @OptionGroup var repository: RepositoryOptions
    @OptionGroup var lock: LockOptions

    @Flag(help: "Forget the reflog first, so commits only it reached are deleted too.")
    var pruneReflog = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let repo = try repository.open()
        let r = try repo.gc(pruneReflog: pruneReflog, wait: lock.wait)
        if json {
            try printJSON(GCDocument(r))
        } else if !repository.quiet {
            print("removed \(r.removedCommits) commits, \(r.removedObjects) objects (\(Format.bytes(r.freedBytes))), \(r.removedTemporaryFiles) temporary files")
        }
    }
}
