import ArgumentParser
import Delta
import Foundation
import Repo

struct DiffCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff",
        abstract: "Compare two revisions, or a revision and the working tree, tensor by tensor.",
        discussion: """
            'mrepo diff' compares HEAD with the working tree, 'mrepo diff REV' compares REV with the working \
            tree, 'mrepo diff A B' compares A with B. Per tensor: added, removed, changed or retyped (dtype \
            or shape changed); ‖Δ‖, the L2 norm of the change; rel, that norm relative to the old tensor's; \
            changed, the fraction of elements whose bits differ; cos, the cosine between the two sides' \
            task vectors against their merge base, when both sides changed the tensor since then.
            """)

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: ArgumentHelp("The old side (default HEAD) and the new side (default the working tree).", valueName: "rev"))
    var revisions: [String] = []

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(help: "List unchanged tensors too.")
    var all = false

    func validate() throws {
        if revisions.count > 2 { throw ValidationError("diff takes at most two revisions") }
    }

    func run() throws {
        let repo = try repository.open()
        let report = try repo.diff(old: revisions.first ?? "HEAD", new: revisions.count > 1 ? revisions[1] : nil)
        let shown = all ? report.tensors : report.changedTensors
        if json {
            printJSON(.obj([
                "old": .string(report.oldName), "new": .string(report.newName),
                "old_commit": .opt(report.oldCommit?.hex), "new_commit": .opt(report.newCommit?.hex),
                "merge_base": .opt(report.mergeBase?.hex),
                "files": .array(report.files.map { .obj(["path": .string($0.path), "status": .string($0.status.rawValue)]) }),
                "tensors": .array(shown.map { t in
                    .obj(["name": .string(t.name), "path": .string(t.path), "status": .string(t.status.rawValue),
                          "old_dtype": .opt(t.oldDType?.rawValue), "new_dtype": .opt(t.newDType?.rawValue),
                          "old_shape": .shape(t.oldShape), "new_shape": .shape(t.newShape), "elements": .int(t.elementCount),
                          "l2_change": .opt(t.changeNorm), "relative_change": .opt(t.relativeChange),
                          "changed_fraction": .opt(t.changedFraction), "cosine": .opt(t.cosine)])
                }),
            ]))
            return
        }
        print("diff \(report.oldName) → \(report.newName)" + (report.mergeBase.map { " (merge base \($0.short))" } ?? ""))
        for f in report.files where f.status != .unchanged {
            print("  file \(f.status.rawValue): \(f.path)")
        }
        if shown.isEmpty {
            print("no tensor differs")
            return
        }
        let hasCos = shown.contains { $0.cosine != nil }
        var header = ["", "tensor", "shape", "‖Δ‖", "rel", "changed"]
        if hasCos { header.append("cos") }
        let rows = shown.map { t -> [String] in
            let mark: String
            switch t.status {
            case .added: mark = "A"
            case .removed: mark = "D"
            case .changed: mark = "M"
            case .retyped: mark = "T"
            case .unchanged: mark = " "
            }
            var shape = Format.shape(t.newShape ?? t.oldShape)
            if t.status == .retyped {
                shape = "\(t.oldDType?.rawValue ?? "") \(Format.shape(t.oldShape)) → \(t.newDType?.rawValue ?? "") \(Format.shape(t.newShape))"
            }
            var row = [mark, t.name, shape, Format.number(t.changeNorm, digits: 4), Format.number(t.relativeChange), Format.percent(t.changedFraction)]
            if hasCos { row.append(Format.number(t.cosine)) }
            return row
        }
        print(Format.table(header, rows, right: [3, 4, 5, 6]))
        let counts = Dictionary(grouping: report.tensors, by: \.status).mapValues(\.count)
        print("\(counts[.changed] ?? 0) changed, \(counts[.added] ?? 0) added, \(counts[.removed] ?? 0) removed, "
            + "\(counts[.retyped] ?? 0) retyped, \(counts[.unchanged] ?? 0) unchanged")
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write the files of a revision into a folder, byte for byte as committed.",
        discussion: "Every tensor's hash is verified before its file is renamed into place; a file that does not verify is never written. Existing files of the same names are replaced, others are left alone.")

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: ArgumentHelp("The revision to export.", valueName: "rev"))
    var revision: String

    @Argument(help: ArgumentHelp("The folder to write into (created if missing).", valueName: "dir"))
    var directory: String

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        let repo = try repository.open()
        let started = Date()
        let result = try repo.export(revision, to: repository.path(directory))
        let seconds = Date().timeIntervalSince(started)
        if json {
            printJSON(.obj(["commit": .string(result.commit.hex), "directory": .string(result.directory),
                            "files": .int(result.fileCount), "bytes": .int(result.byteCount), "seconds": .double(seconds)]))
        } else if !repository.quiet {
            print("Exported \(result.commit.short) to \(result.directory): \(result.fileCount) files, \(Format.bytes(result.byteCount))")
        }
    }
}
