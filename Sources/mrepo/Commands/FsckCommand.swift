import ArgumentParser
import Foundation
import Repo

struct FsckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck",
        abstract: "Verify the repository: database, commits, trees, refs, and every object re-hashed.",
        discussion: "Exits 0 when the repository is intact, 1 when it found a problem (each one printed with the commit, file and tensor it affects).")

    @OptionGroup var repository: RepositoryOptions

    @Flag(help: "Print the report as JSON.")
    var json = false

    func run() throws {
        let repo = try repository.open(access: .readOnly)
        let r = try repo.fsck()
        if json {
            try printJSON(FsckDocument(r))
        } else {
            for e in r.errors { print("error: \(e)") }
            for w in r.warnings { print("warning: \(w)") }
            if !repository.quiet || !r.isClean {
                print(r.isClean ? "ok: \(r.commitCount) commits, \(r.objectCount) objects verified (\(Format.bytes(r.verifiedBytes)))"
                                : "fsck found \(r.errors.count) problem\(r.errors.count == 1 ? "" : "s")")
            }
        }
        if !r.isClean { throw ExitCode(1) }
    }
}
