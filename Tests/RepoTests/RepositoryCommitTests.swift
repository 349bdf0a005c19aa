import Delta
import Foundation
import ModelFactory
import Repo
import Testing

@Suite struct RepositoryCommitTests {
    /// A header written by hand: members not sorted, keys inside entries not in the usual order,
    /// metadata in the middle, data in another order than the header, a scalar, a zero-size
    /// tensor, and 13 bytes of space padding (so the header length is not a multiple of 8).
    static func handMadeSafetensors() -> [UInt8] {
        let json = #"{"zeta.weight":{"shape":[2,2],"dtype":"F32","data_offsets":[10,26]},"#
            + #""__metadata__":{"z":"last","a":"first"},"#
            + #""alpha":{"data_offsets":[0,6],"dtype":"BF16","shape":[3]},"#
            + #""empty":{"dtype":"I8","shape":[0],"data_offsets":[6,6]},"#
            + #""mid.scalar":{"dtype":"U32","shape":[],"data_offsets":[6,10]}}"# + String(repeating: " ", count: 13)
        return safetensorsBytes(json: json, data: (0..<26).map { UInt8($0 * 7 % 251) })
    }

    @Test func exportReturnsEveryFileByteForByte() throws {
        try withRepository { repo, dir in
            let root = repo.root
            try repo.writeModel(factory: ModelFactory(architecture: .tiny, dtype: .bf16, seed: 3), shards: 2)
            try writeFile(Self.handMadeSafetensors(), to: root + "/custom.safetensors")
            try writeFile(safetensorsBytes(json: "{}      ", data: []), to: root + "/no-tensors.safetensors")
            try writeFile(#"{"pooling_mode_mean_tokens": true}"#, to: root + "/1_Pooling/config.json")
            try writeFile("deep\n", to: root + "/a/b/c/notes.txt")
            try writeFile([], to: root + "/empty.txt")
            try writeFile("#!/bin/sh\necho hi\n", to: root + "/scripts/run.sh", executable: true)
            try writeFile(randomish(5000), to: root + "/blob.bin")
            let before = try snapshot(root)
            #expect(before["model.safetensors.index.json"] != nil)
            #expect(before["scripts/run.sh"]?.executable == true)

            let result = try repo.commitAll("everything")
            #expect(result.fileCount == before.count)
            let beforeByteCount = before.values.reduce(0) { $0 + $1.bytes.count }
            #expect(result.logicalByteCount == beforeByteCount)
            #expect(result.tensorCount == Architecture.tiny.tensors.count + 4)
            #expect(result.branch == "main")
            #expect(result.commit.parents.isEmpty)
            #expect(result.commit.base == nil)
            #expect(result.commit.author == testAuthor)

            let exported = try repo.export("HEAD", to: dir + "/export")
            #expect(exported.fileCount == before.count)
            #expect(exported.commit == result.commit.id)
            let after = try snapshot(dir + "/export")
            #expect(sameFiles(before, after))
            #expect(after["scripts/run.sh"]?.executable == true)
            #expect(after["blob.bin"]?.executable == false)
            // No temporary files are left in the export.
            let all = FileManager.default.enumerator(atPath: dir + "/export")?.compactMap { $0 as? String } ?? []
            let temporary = all.filter { $0.contains(AtomicFileWriter.temporaryPrefix) }
            #expect(temporary.isEmpty, "temporary files left in the export: \(temporary)")
            // The tree records the hand-made header's tensors in header order.
            let custom = try #require(try repo.tree(of: result.commit.id).file(at: "custom.safetensors"))
            #expect(custom.kind == .safetensors)
            #expect(custom.tensors.map(\.name) == ["zeta.weight", "alpha", "empty", "mid.scalar"])
            #expect(try repo.tree(of: result.commit.id).file(at: "empty.txt")?.byteCount == 0)
        }
    }

    @Test func exportIntoTheWorkingTreeIsRefused() throws {
        try withRepository { repo, _ in
            try writeFile("x", to: repo.root + "/x.txt")
            try repo.commitAll("x")
            expectThrows(RepoError.exportIntoWorktree) {
                _ = try repo.export("HEAD", to: repo.root)
            }
        }
    }

    @Test func fineTunesAreStoredAsDeltasAgainstTheFirstCommit() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            let first = try repo.commitAll("base")
            try repo.writeModel(.light("math", seed: 11))
            let second = try repo.commitAll("math")
            #expect(second.commit.base == first.commit.id)
            #expect(second.commit.parents == [first.commit.id])

            let base = try repo.tensors(of: first.commit.id.hex)
            let math = try repo.tensors(of: "HEAD")
            var deltas = 0
            for (name, tensor) in math {
                let baseTensor = try #require(base[name])
                if FineTune.isUntouched(name) {
                    // Identical tensors are the same object, stored once.
                    #expect(tensor.objectID == baseTensor.objectID, "\(name)")
                    continue
                }
                #expect(tensor.objectID != baseTensor.objectID, "\(name)")
                let info = try #require(try repo.history.objectInfo(tensor.objectID))
                #expect(info.kind == .tensor)
                #expect(info.encoding == .integerDeltaByExponent, "\(name)")
                #expect(info.reference == baseTensor.objectID, "\(name)")
                #expect(info.depth == 1)
                #expect(info.logicalByteCount == tensor.byteCount)
                deltas += 1
            }
            #expect(deltas == Architecture.tiny.tensors.count - 4)
            // The first commit's tensors are whole.
            for tensor in base.values {
                let info = try #require(try repo.history.objectInfo(tensor.objectID))
                #expect(info.encoding == .whole)
                #expect(info.reference == nil)
                #expect(info.depth == 0)
            }
            // A second fine-tune is coded against the first commit too, not against its parent.
            try repo.writeModel(.light("code", seed: 12))
            let third = try repo.commitAll("code")
            #expect(third.commit.base == first.commit.id)
            let code = try repo.tensors(of: "HEAD")
            let q = "encoder.layer.0.attention.self.query.weight"
            #expect(try repo.history.objectInfo(code[q]!.objectID)?.reference == base[q]!.objectID)
        }
    }

    @Test func baseOptionChangesTheReference() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            try repo.commitAll("base")
            try repo.writeModel(.light("math", seed: 11))
            let math = try repo.commitAll("math")
            try repo.writeModel(.light("code", seed: 12))
            let code = try repo.commitAll("code", base: "HEAD")
            #expect(code.commit.base == math.commit.id)
            let q = "encoder.layer.1.intermediate.dense.weight"
            let mathTensor = try repo.tensors(of: math.commit.id.hex)[q]!
            let info = try #require(try repo.history.objectInfo(try repo.tensors(of: "HEAD")[q]!.objectID))
            #expect(info.reference == mathTensor.objectID)
            #expect(info.depth == 2)
            // The chain decodes: the export equals the checkpoint.
            #expect(try repo.fsck().isClean)
            expectThrows(RepoError.unknownRevision("nope")) {
                try repo.commitAll("again", base: "nope", allowEmpty: true)
            }
        }
    }

    @Test func identicalTensorsAndFilesAreStoredOnce() throws {
        try withRepository { repo, _ in
            let same: [Float] = (0..<100).map { Float($0) / 7 }
            try writeFloats([("a", same), ("b", same), ("c", same.reversed())], to: repo.root + "/m.safetensors")
            let first = try repo.commitAll("one")
            let tensors = try repo.tree(of: first.commit.id).file(at: "m.safetensors")!.tensors
            #expect(tensors[0].objectID == tensors[1].objectID)
            #expect(tensors[0].objectID != tensors[2].objectID)
            // Header blob + two distinct tensors.
            #expect(first.newObjectCount == 3)
            #expect(repo.objectFiles.count == 3)

            // A copy of the file under another name adds no object at all.
            try FileManager.default.createDirectory(atPath: repo.root + "/copy", withIntermediateDirectories: true)
            try FileManager.default.copyItem(atPath: repo.root + "/m.safetensors", toPath: repo.root + "/copy/m.safetensors")
            let second = try repo.commitAll("copy")
            #expect(second.newObjectCount == 0)
            #expect(second.newStoredByteCount == 0)
            #expect(repo.objectFiles.count == 3)
            #expect(second.fileCount == 2)
        }
    }

    @Test func nothingToCommitUnlessAllowed() throws {
        try withRepository { repo, _ in
            try writeFile("a", to: repo.root + "/a.txt")
            let first = try repo.commitAll("a")
            expectThrows(RepoError.nothingToCommit) { try repo.commitAll("again") }
            let empty = try repo.commitAll("empty", allowEmpty: true)
            #expect(empty.commit.treeID == first.commit.treeID)
            #expect(empty.commit.parents == [first.commit.id])
            #expect(empty.newObjectCount == 0)
            #expect(try repo.headCommit() == empty.commit.id)
        }
    }

    @Test func commitRecordsMessageMetricsAndGeneration() throws {
        try withRepository { repo, _ in
            try writeFile("a", to: repo.root + "/a.txt")
            let options = CommitOptions(message: "subject line\n\nbody", metrics: [.init(name: "eval_loss", value: 1.83), .init(name: "acc", value: 0.5)],
                                        author: testAuthor, extra: [JSONMember("note", .string("x"))])
            let c1 = try repo.commit(options).commit
            #expect(c1.subject == "subject line")
            #expect(c1.generation == 0)
            let stored = try repo.commit(c1.id)
            #expect(stored == c1)
            #expect(stored.metrics.map(\.name) == ["eval_loss", "acc"])
            #expect(stored.extra["note"] == .string("x"))
            #expect(stored.extra["storage"] == .string("lossless"))
            #expect(Commit.computeID(treeID: stored.treeID, parents: stored.parents, base: stored.base, author: stored.author,
                                     timestamp: stored.timestamp, message: stored.message, metrics: stored.metrics, extra: stored.extra) == c1.id)
            try writeFile("b", to: repo.root + "/a.txt")
            let c2 = try repo.commitAll("second").commit
            #expect(c2.generation == 1)
            #expect(try repo.log(from: [c2.id]).map(\.id) == [c2.id, c1.id])
        }
    }

    @Test func failedCommitLeavesTheRepositoryUntouched() throws {
        try withRepository { repo, _ in
            let good: [Float] = [1, 2, 3, 4]
            try writeFloats([("w", good)], to: repo.root + "/a.safetensors")
            // The second file (in path order) is truncated: its header announces 16 bytes of data.
            let truncated = safetensorsBytes(json: #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: [0, 0, 0, 0, 0, 0])
            try writeFile(truncated, to: repo.root + "/b.safetensors")
            let error = thrownError { try repo.commitAll("bad") }
            #expect(error as? RepoError == .delta(.invalidTensor(file: "b.safetensors", tensor: "w", problem: "data ends at byte 16, data section has 6")))
            #expect((error as? RepoError)?.description == "b.safetensors: tensor 'w': data ends at byte 16, data section has 6")
            #expect(try repo.headCommit() == nil)
            #expect(repo.objectFiles.isEmpty)
            #expect(try repo.history.allObjects().isEmpty)
            #expect(try repo.history.allCommits().isEmpty)

            // The same with history: nothing changes either.
            try FileManager.default.removeItem(atPath: repo.root + "/b.safetensors")
            let first = try repo.commitAll("good")
            let objects = repo.objectFiles
            try writeFloats([("w", [5, 6, 7, 8])], to: repo.root + "/a.safetensors")
            try writeFile(truncated, to: repo.root + "/b.safetensors")
            expectThrows(RepoError.self) { try repo.commitAll("bad again") } matching: { if case .delta(.invalidTensor("b.safetensors", "w", _)) = $0 { true } else { false } }
            #expect(try repo.headCommit() == first.commit.id)
            #expect(repo.objectFiles == objects)
            #expect(try repo.history.allCommits().count == 1)
            #expect(try repo.history.allObjects().count == objects.count)
            #expect(repo.objects.listFiles().temporary.isEmpty)
        }
    }

    @Test func tensorOfTooHighARankIsRefusedBeforeAnythingIsWritten() throws {
        try withRepository { repo, _ in
            // The object format stores the rank in one byte; this used to trap while encoding.
            let dims = [String](repeating: "1", count: 256).joined(separator: ",")
            let json = #"{"w":{"dtype":"F32","shape":["# + dims + #"],"data_offsets":[0,4]}}"#
            try writeFile(safetensorsBytes(json: json, data: [0, 0, 128, 63]), to: repo.root + "/deep.safetensors")
            let error = thrownError { try repo.commitAll("deep") }
            #expect(error as? RepoError == .delta(.invalidTensor(file: "deep.safetensors", tensor: "w", problem: "shape has 256 dimensions; at most 255 are supported")))
            #expect(repo.objectFiles.isEmpty)
            #expect(try repo.headCommit() == nil)
        }
    }

    @Test func objectsWrittenBeforeAFailureAreRolledBack() throws {
        try withRepository { repo, _ in
            try writeFloats([("w", [1, 2, 3])], to: repo.root + "/m.safetensors")
            try writeFile("stable content", to: repo.root + "/z.txt")
            let first = try repo.commitAll("first")
            let before = repo.objectFiles

            // The new tensor is stored first (files go in path order); z.txt then changes after the
            // scan (the pre-commit hook rewrites it), which stops the commit: the tensor's object goes.
            try writeFloats([("w", [4, 5, 6])], to: repo.root + "/m.safetensors")
            try writeFile("#!/bin/sh\nprintf 'changed after the scan, longer' > \"$MREPO_ROOT/z.txt\"\n",
                          to: repo.metaDirectory + "/hooks/pre-commit", executable: true)
            let error = thrownError { try repo.commitAll("second") }
            guard case let .io(path, reason)? = error as? RepoError else {
                Issue.record("expected io, got \(String(describing: error))")
                return
            }
            #expect(path == "z.txt" && reason.hasPrefix("changed while it was being committed"), "\(reason)")
            #expect(repo.objectFiles == before)
            #expect(repo.objects.listFiles().temporary.isEmpty)
            #expect(try repo.headCommit() == first.commit.id)
        }
    }

    /// A file the stat cache vouches for whose object file went missing is read and stored again
    /// (an object counts as stored only with its file in place); before, the commit failed.
    @Test func anObjectFileGoneMissingIsStoredAgainFromTheWorkingTree() throws {
        try withRepository { repo, _ in
            try writeFile("stable content", to: repo.root + "/a.txt")
            try ageFile(repo.root + "/a.txt")
            try writeFloats([("w", [1, 2, 3])], to: repo.root + "/m.safetensors")
            let first = try repo.commitAll("first")
            let blob = try #require(try repo.tree(of: first.commit.id).file(at: "a.txt")).objectID
            repo.objects.remove(blob)
            try writeFloats([("w", [4, 5, 6])], to: repo.root + "/m.safetensors")
            try repo.commitAll("second")
            #expect(repo.objects.exists(blob))
            #expect(try repo.fsck().isClean)
        }
    }

    @Test func commitFromAnotherFolderUpdatesTheWorkingTree() throws {
        try withRepository { repo, dir in
            try repo.writeModel()
            try repo.commitAll("base")
            try tinyFactory.writeCheckpoint(to: dir + "/trainer-output", fineTune: .light("math", seed: 11))
            let result = try repo.commit(CommitOptions(message: "imported", sourceDirectory: dir + "/trainer-output", author: testAuthor))
            #expect(result.commit.parents.count == 1)
            #expect(sameFiles(try snapshot(repo.root), try snapshot(dir + "/trainer-output")))
            #expect(try repo.status().isClean)
            // A folder inside the working tree is refused.
            try FileManager.default.createDirectory(atPath: repo.root + "/inner", withIntermediateDirectories: true)
            expectThrows(RepoError.self) {
                _ = try repo.commit(CommitOptions(message: "x", sourceDirectory: repo.root + "/inner", author: testAuthor))
            } matching: {
                if case .invalidArgument = $0 { true } else { false }
            }
        }
    }

    @Test func commitFromAnotherFolderRefusesToOverwriteLocalChanges() throws {
        try withRepository { repo, dir in
            try writeFile("v1", to: repo.root + "/notes.txt")
            try repo.commitAll("v1")
            try writeFile("local edit", to: repo.root + "/notes.txt")
            try writeFile("v2", to: dir + "/src/notes.txt")
            let options = CommitOptions(message: "import", sourceDirectory: dir + "/src", author: testAuthor)
            let error = thrownError { _ = try repo.commit(options) }
            #expect(error as? RepoError == .dirtyWorktree(operation: "commit --from (which updates the working tree)", paths: ["notes.txt"]))
            // It names the way through, as switch does: --force.
            #expect((error as? RepoError)?.description.hasSuffix("commit them, or pass --force to discard them") == true)
            #expect(try readFile(repo.root + "/notes.txt") == Array("local edit".utf8))
            var forced = options
            forced.force = true
            _ = try repo.commit(forced)
            #expect(try readFile(repo.root + "/notes.txt") == Array("v2".utf8))
        }
    }
}

/// Bytes with some structure (compressible) but no long runs.
func randomish(_ count: Int) -> [UInt8] {
    var x: UInt32 = 12345
    return (0..<count).map { i in
        x = x &* 1_103_515_245 &+ 12345
        return i % 3 == 0 ? UInt8(truncatingIfNeeded: x >> 16) : UInt8(i % 17)
    }
}
