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
