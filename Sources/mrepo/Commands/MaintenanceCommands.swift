import ArgumentParser
import Foundation
import Repo

struct DuCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "du",
        abstract: "Show logical versus stored bytes per commit and for the repository.",
        discussion: "logical: the size of a commit's files. new stored: what the objects this commit was first to use take on disk. The ratio is the sum of logical sizes (keeping every checkpoint as a copy) over the store.")

    @OptionGroup var repository: RepositoryOptions

    @Flag(help: "Print the figures as JSON.")
    var json = false

    func run() throws {
        let repo = try repository.open()
        let u = try repo.usage()
        let total = u.storedByteCount + u.databaseByteCount
        if json {
            printJSON(.obj([
                "commits": .array(u.commits.map {
                    .obj(["id": .string($0.id.hex), "subject": .string($0.subject), "refs": .array($0.names.map { .string($0) }),
                          "logical_bytes": .int($0.logicalByteCount), "new_stored_bytes": .int($0.newStoredByteCount),
                          "new_logical_bytes": .int($0.newLogicalByteCount),
                          "lossy": (try? repo.commit($0.id)).flatMap(LossySummary.init(commit:)).map { l in
                              .obj(["method": .string(l.method), "setting": .string(l.setting), "tensors": .int(l.tensorCount),
                                    "stored_bytes": .int(l.storedByteCount), "dense_bytes": .int(l.denseByteCount),
                                    "max_relative_error": .double(l.maxRelativeError)])
                          } ?? .null])
                }),
                "logical_bytes": .int(u.logicalByteCount), "object_bytes": .int(u.storedByteCount),
                "database_bytes": .int(u.databaseByteCount), "objects": .int(u.objectCount),
            ]))
            return
        }
        let rows = try u.commits.map { c -> [String] in
            [c.id.short, c.names.joined(separator: ","), Format.bytes(c.logicalByteCount), Format.bytes(c.newStoredByteCount),
             c.newStoredByteCount > 0 ? String(format: "%.3f", Double(c.newStoredByteCount) / Double(max(c.logicalByteCount, 1))) : "-",
             try kind(repo.commit(c.id)), String(c.subject.prefix(40))]
        }
        print(Format.table(["commit", "refs", "logical", "new stored", "stored/logical", "kind", "subject"], rows, right: [2, 3, 4]))
        print("")
        print("repository: \(u.commits.count) commits, \(u.objectCount) objects; logical \(Format.bytes(u.logicalByteCount)), "
            + "stored \(Format.bytes(total)) (objects \(Format.bytes(u.storedByteCount)) + database \(Format.bytes(u.databaseByteCount))), "
            + String(format: "%.2fx smaller", Double(u.logicalByteCount) / Double(max(total, 1))))
    }
}

extension DuCommand {
    /// What kind of commit: a lossy one with its saving, an adapter, a reversible merge.
    func kind(_ c: Commit) -> String {
        if let l = LossySummary(commit: c) {
            return "lossy \(l.setting): \(Format.bytes(l.storedByteCount)) for \(Format.bytes(l.denseByteCount)) (saves \(Format.percent(l.savedFraction)))"
        }
        if let r = c.extra["rmm"] { return "rmm K=\(r["basis"]?.serialized() ?? "?")" }
        if c.extra["adapter"] != nil { return "lora adapter" }
        if c.parents.count > 1 { return "merge" }
        return ""
    }
}

struct FsckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck",
        abstract: "Verify the repository: database, commits, trees, refs, and every object re-hashed.",
        discussion: "Exits 0 when the repository is intact, 1 when it found a problem (each one printed with the commit, file and tensor it affects).")

    @OptionGroup var repository: RepositoryOptions

    @Flag(help: "Print the report as JSON.")
    var json = false

    func run() throws {
        let repo = try repository.open()
        let r = try repo.fsck()
        if json {
            printJSON(.obj(["clean": .bool(r.isClean), "errors": .array(r.errors.map { .string($0) }),
                            "warnings": .array(r.warnings.map { .string($0) }), "commits": .int(r.commitCount),
                            "objects": .int(r.objectCount), "verified_bytes": .int(r.verifiedBytes)]))
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
            printJSON(.obj(["removed_commits": .int(r.removedCommits), "removed_objects": .int(r.removedObjects),
                            "freed_bytes": .int(r.freedBytes), "removed_temporary_files": .int(r.removedTemporaryFiles)]))
        } else if !repository.quiet {
            print("removed \(r.removedCommits) commits, \(r.removedObjects) objects (\(Format.bytes(r.freedBytes))), \(r.removedTemporaryFiles) temporary files")
        }
    }
}
