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
        let repo = try repository.open(access: .readOnly)
        let u = try repo.usage()
        let total = u.storedByteCount + u.databaseByteCount
        if json {
            let commits = try u.commits.map { c in
                UsageDocument.Commit(id: c.id.hex, subject: c.subject, refs: c.names, logicalBytes: c.logicalByteCount,
                                     newStoredBytes: c.newStoredByteCount, newLogicalBytes: c.newLogicalByteCount,
                                     lossy: OrNull(try repo.commit(c.id).record(LossyRecord.self).map { l in
                                         UsageDocument.Lossy(method: l.method, setting: l.settingDescription, tensors: l.tensorCount,
                                                             storedBytes: l.storedByteCount, denseBytes: l.denseByteCount,
                                                             maxRelativeError: l.maxRelativeError)
                                     }))
            }
            try printJSON(UsageDocument(commits: commits, logicalBytes: u.logicalByteCount, objectBytes: u.storedByteCount,
                                        databaseBytes: u.databaseByteCount, objects: u.objectCount))
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
            + (u.logicalByteCount == 0 ? "nothing committed yet" : total <= u.logicalByteCount ? String(format: "%.2fx smaller", Double(u.logicalByteCount) / Double(max(total, 1)))
                : String(format: "%.2fx larger (small files: the database and object headers outweigh them)", Double(total) / Double(max(u.logicalByteCount, 1)))))
    }
}

extension DuCommand {
    /// What kind of commit: a lossy one with its saving, an adapter, a reversible merge.
    func kind(_ c: Commit) throws -> String {
        if let l = try c.record(LossyRecord.self) {
            return "lossy \(l.settingDescription): \(Format.bytes(l.storedByteCount)) for \(Format.bytes(l.denseByteCount)) (saves \(Format.percent(l.savedFraction)))"
        }
        if let r = try c.record(ReversibleMergeRecord.self) { return "rmm K=\(r.basis)" }
        if try c.record(AdapterRecord.self) != nil { return "lora adapter" }
        if c.parents.count > 1 { return "merge" }
        return ""
    }
}
