import Delta
import Foundation
import ModelFactory
import Repo
import Testing

@Suite struct RepositoryDiffTests {
    static let base: [(String, [Float])] = [
        ("same", [1, 2, 3, 4]),
        ("changed", [1, 2, 3, 4]),
        ("removed", [5, 6]),
        ("retyped", [7, 8]),
        ("both", [1, 1, 1, 1]),
    ]

    func tensor(_ report: DiffReport, _ name: String) throws -> TensorDiff {
        try #require(report.tensors.first { $0.name == name })
    }

    /// base on main; branch a changes `changed` and `both`, drops `removed`, retypes `retyped` and
    /// adds `added`; branch b changes `both` another way.
    func makeHistory(_ repo: Repository) throws -> (base: ObjectID, a: ObjectID, b: ObjectID) {
        try writeFloats(Self.base, to: repo.root + "/m.safetensors")
        try writeFile("readme v1\n", to: repo.root + "/README.md")
        let base = try repo.commitAll("base").commit.id

        _ = try repo.switchBranch("a", create: true)
        try SafetensorsWriter.write(path: repo.root + "/m.safetensors", tensors: [
            ("same", .f32, [4], bytesOf([Float(1), 2, 3, 4])),
            ("changed", .f32, [4], bytesOf([Float(1), 2, 3, 5])),
            ("retyped", .f16, [2], bytesOf([Float16(7), 8])),
            ("both", .f32, [4], bytesOf([Float(2), 1, 2, 1])),      // τa = [1, 0, 1, 0]
            ("added", .f32, [3], bytesOf([Float(9), 9, 9])),
        ], metadata: nil)
        try writeFile("readme v2\n", to: repo.root + "/README.md")
        try writeFile("new\n", to: repo.root + "/new.txt")
        let a = try repo.commitAll("a").commit.id

        _ = try repo.switchBranch("b", create: true, startPoint: "main")
        try writeFloats([("same", [1, 2, 3, 4]), ("changed", [1, 2, 3, 4]), ("removed", [5, 6]), ("retyped", [7, 8]),
                         ("both", [2, 2, 1, 1])], to: repo.root + "/m.safetensors")  // τb = [1, 1, 0, 0]
        let b = try repo.commitAll("b").commit.id
        return (base, a, b)
    }

    @Test func diffReportsAddedRemovedChangedAndRetypedTensors() throws {
        try withRepository { repo, _ in
            let (base, a, _) = try makeHistory(repo)
            let report = try repo.diff(old: base.hex, new: "a")
            #expect(report.oldCommit == base)
            #expect(report.newCommit == a)
            #expect(report.mergeBase == base)
            #expect(report.tensors.map(\.name) == ["added", "both", "changed", "removed", "retyped", "same"])
            #expect(try tensor(report, "same").status == .unchanged)
            #expect(try tensor(report, "added").status == .added)
            #expect(try tensor(report, "added").newShape == [3])
            #expect(try tensor(report, "removed").status == .removed)
            #expect(try tensor(report, "removed").path == "m.safetensors")
            let retyped = try tensor(report, "retyped")
            #expect(retyped.status == .retyped)
            #expect(retyped.oldDType == .f32 && retyped.newDType == .f16)
            #expect(retyped.relativeChange == nil)

            let changed = try tensor(report, "changed")
            #expect(changed.status == .changed)
            #expect(changed.elementCount == 4)
            #expect(changed.changeNorm == 1)
            #expect(abs(changed.relativeChange! - 1 / 30.0.squareRoot()) < 1e-12)
            #expect(changed.changedFraction == 0.25)
            // Only one side moved away from the merge base: no cosine.
            #expect(changed.cosine == nil)
            #expect(report.changedTensors.count == 5)

            // Files: README and the new file; the safetensors header changed too (other tensors).
            #expect(report.files.map(\.path) == ["README.md", "m.safetensors", "new.txt"])
            #expect(report.files.map(\.status) == [.changed, .changed, .added])
        }
    }

    @Test func cosineAgainstTheMergeBaseWhenBothSidesChanged() throws {
        try withRepository { repo, _ in
            let (base, a, b) = try makeHistory(repo)
            let report = try repo.diff(old: "a", new: "b")
            #expect(report.mergeBase == base)
            #expect(report.oldCommit == a && report.newCommit == b)
            let both = try tensor(report, "both")
            #expect(both.status == .changed)
            // cos([1, 0, 1, 0], [1, 1, 0, 0]) = 1/2.
            let cosine = try #require(both.cosine)
            #expect(abs(cosine - 0.5) < 1e-12)
            // a − b = [0, −1, 1, 0]: two of four elements differ.
            #expect(both.changedFraction == 0.5)
            #expect(abs(both.changeNorm! - 2.0.squareRoot()) < 1e-12)
            // `changed` moved on one side only.
            #expect(try tensor(report, "changed").cosine == nil)
            #expect(try tensor(report, "removed").status == .added)
            #expect(try tensor(report, "added").status == .removed)
        }
    }

    @Test func diffAgainstTheWorkingTree() throws {
        try withRepository { repo, _ in
            try writeFloats([("w", [1, 2, 3, 4]), ("k", [1, 1])], to: repo.root + "/m.safetensors")
            try repo.commitAll("v1")
            try writeFloats([("w", [1, 2, 3, 8]), ("k", [1, 1])], to: repo.root + "/m.safetensors")
            let report = try repo.diff(old: "HEAD", new: nil)
            #expect(report.newName == "working tree")
            #expect(report.newCommit == nil)
            #expect(report.mergeBase == nil)
            let w = try tensor(report, "w")
            #expect(w.status == .changed)
            #expect(w.changeNorm == 4)
            #expect(abs(w.relativeChange! - 4 / 30.0.squareRoot()) < 1e-12)
            #expect(try tensor(report, "k").status == .unchanged)
            // The header is the same: no file-level change.
            #expect(report.files.isEmpty)
        }
    }

    @Test func diffOfAFineTuneMatchesItsCalibration() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            try repo.commitAll("base")
            try repo.writeModel(.light("math", seed: 11))
            try repo.commitAll("math")
            let report = try repo.diff(old: "HEAD~1", new: "HEAD")
            let matrices = report.tensors.filter { $0.name.hasSuffix("dense.weight") && !$0.name.hasPrefix("pooler") }
            #expect(!matrices.isEmpty)
            for t in matrices {
                #expect(t.status == .changed)
                #expect(t.changedFraction! > 0.99)
                // Relative change of the norm is of the order of the median element change (5e-4).
                #expect(t.relativeChange! > 1e-4 && t.relativeChange! < 5e-3, "\(t.name): \(t.relativeChange!)")
            }
            for t in report.tensors where FineTune.isUntouched(t.name) {
                #expect(t.status == .unchanged)
            }
        }
    }
}
