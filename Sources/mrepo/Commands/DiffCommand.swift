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

            Between two LoRA adapter commits the comparison is per adapted module, computed from the \
            factors without forming ΔW = (alpha/r)·B·A: ‖ΔW‖ of each side, cos, the cosine between \
            the two ΔW's, ‖ΔW₂−ΔW₁‖, and each side's effective rank (exp of the entropy of its \
            normalised singular values). --tensors compares the adapter files tensor by tensor instead.
            """)

    @OptionGroup var repository: RepositoryOptions

    @Argument(help: ArgumentHelp("The old side (default HEAD) and the new side (default the working tree).", valueName: "rev"))
    var revisions: [String] = []

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Flag(help: "List unchanged tensors too.")
    var all = false

    @Flag(help: "Between adapters: compare the lora_A/lora_B tensors element by element instead of the ΔW's.")
    var tensors = false

    func validate() throws {
        if revisions.count > 2 { throw ValidationError("diff takes at most two revisions") }
    }

    func run() throws {
        let repo = try repository.open()
        if revisions.count == 2, !tensors, try repo.isAdapter(revisions[0]), try repo.isAdapter(revisions[1]) {
            try printAdapterDiff(try repo.adapterDiff(old: revisions[0], new: revisions[1]))
            return
        }
        let report = try repo.diff(old: revisions.first ?? "HEAD", new: revisions.count > 1 ? revisions[1] : nil)
        let shown = all ? report.tensors : report.changedTensors
        if json {
            try printJSON(.obj([
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

extension DiffCommand {
    func printAdapterDiff(_ r: AdapterDiffReport) throws {
        if json {
            try printJSON(.obj([
                "old": .string(r.oldName), "new": .string(r.newName), "old_commit": .string(r.oldCommit.hex), "new_commit": .string(r.newCommit.hex),
                "old_base": .string(r.oldBase.hex), "new_base": .string(r.newBase.hex),
                "modules": .array(r.rows.map { m in
                    .obj(["module": .string(m.module), "base_tensor": .string(m.baseTensor),
                          "old_rank": m.oldRank.map { .int($0) } ?? .null, "new_rank": m.newRank.map { .int($0) } ?? .null,
                          "old_norm": .double(m.oldNorm), "new_norm": .double(m.newNorm), "cosine": .opt(m.cosine),
                          "difference_norm": .opt(m.differenceNorm),
                          "old_effective_rank": .opt(m.oldEffectiveRank), "new_effective_rank": .opt(m.newEffectiveRank)])
                }),
            ]))
            return
        }
        print("adapter diff \(r.oldName) → \(r.newName) (ΔW per module, from the factors)")
        if r.oldBase != r.newBase { print("  note: the adapters have different bases (\(r.oldBase.short), \(r.newBase.short))") }
        let rows = r.rows.map { m -> [String] in
            [m.module, "\(m.oldRank.map(String.init) ?? "-")→\(m.newRank.map(String.init) ?? "-")", Format.number(m.oldNorm, digits: 4),
             Format.number(m.newNorm, digits: 4), Format.number(m.cosine), Format.number(m.differenceNorm, digits: 4),
             Format.number(m.oldEffectiveRank, digits: 2), Format.number(m.newEffectiveRank, digits: 2)]
        }
        print(Format.table(["module", "rank", "‖ΔW₁‖", "‖ΔW₂‖", "cos", "‖ΔW₂−ΔW₁‖", "erank₁", "erank₂"], rows, right: [2, 3, 4, 5, 6, 7]))
        let cosines = r.rows.compactMap(\.cosine)
        if !cosines.isEmpty {
            print(String(format: "%d modules; mean cos %.3f", r.rows.count, cosines.reduce(0, +) / Double(cosines.count)))
        }
    }
}
