import Delta
import Foundation
import ModelFactory
import Repo
import Testing

@Suite struct RepositoryMaintenanceTests {
    // MARK: - fsck

    @Test func fsckIsCleanOnAGoodRepository() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            try repo.commitAll("base")
            try repo.writeModel(.light("math", seed: 11))
            try repo.commitAll("math")
            let report = try repo.fsck()
            #expect(report.isClean, "\(report.errors)")
            #expect(report.warnings.isEmpty)
            #expect(report.commitCount == 2)
            #expect(report.objectCount == repo.objectFiles.count)
            #expect(report.objectCount == (try repo.history.allObjects().count))
            let storedBytes = try repo.history.allObjects().reduce(0) { $0 + $1.logicalByteCount }
            #expect(report.verifiedBytes == storedBytes)
        }
    }

    @Test func flippedByteIsReportedWithCommitFileAndTensor() throws {
        try withRepository { repo, dir in
            try repo.writeModel()
            let commit = try repo.commitAll("base").commit.id
            let name = "pooler.dense.weight"
            let tensor = try #require(try repo.tensors(of: "HEAD")[name])
            let path = repo.objects.path(for: tensor.objectID)
            let size = try #require(FileStat.of(path)).size
            try flipByte(at: size - 1, of: path)

            let report = try repo.fsck()
            #expect(report.errors.count == 1, "\(report.errors)")
            let error = try #require(report.errors.first)
            #expect(error.hasPrefix("object \(tensor.objectID.short) (commit \(commit.short) model.safetensors tensor '\(name)'): "), "\(error)")

            // export refuses the file and leaves nothing of it behind.
            let thrown = thrownError { _ = try repo.export("HEAD", to: dir + "/out") }
            guard case let .corruptObject(object, problem)? = thrown as? RepoError else {
                Issue.record("expected corruptObject, got \(String(describing: thrown))")
                return
            }
            #expect(object == tensor.objectID.short)
            #expect(problem.hasPrefix("model.safetensors: "))
            #expect(problem.hasSuffix("; nothing was written"))
            // Not even the folder it created (AllOrNothingTests covers this in detail).
            #expect(!FileManager.default.fileExists(atPath: dir + "/out"))

            // A checkout of the commit refuses it the same way.
            try FileManager.default.removeItem(atPath: repo.root + "/model.safetensors")
            expectThrows(RepoError.self) { _ = try repo.checkout("HEAD", force: true) } matching: {
                if case .corruptObject(tensor.objectID.short, _) = $0 { true } else { false }
            }
            #expect(!FileManager.default.fileExists(atPath: repo.root + "/model.safetensors"))
        }
    }

    @Test func flippedByteInADeltaReferenceBreaksItsDependents() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            try repo.commitAll("base")
            try repo.writeModel(.light("math", seed: 11))
            let second = try repo.commitAll("math").commit.id
            let name = "encoder.layer.0.attention.self.query.weight"
            let base = try #require(try repo.tensors(of: "HEAD~1")[name])
            let path = repo.objects.path(for: base.objectID)
            try flipByte(at: try #require(FileStat.of(path)).size - 1, of: path)
            let errors = try repo.fsck().errors
            // The base object and the delta coded against it both fail to verify.
            #expect(errors.count == 2, "\(errors)")
            let delta = try #require(try repo.tensors(of: "HEAD")[name]).objectID
            let deltaPrefix = "object \(delta.short) (commit \(second.short) model.safetensors tensor '\(name)')"
            let deltaReported = errors.contains { $0.hasPrefix(deltaPrefix) }
            #expect(deltaReported, "no error starts with \(deltaPrefix): \(errors)")
        }
    }

    @Test func missingObjectAndLeftoversAreReported() throws {
        try withRepository { repo, _ in
            try writeFile("hello", to: repo.root + "/a.txt")
            let commit = try repo.commitAll("a").commit.id
            let blob = try #require(try repo.tree(of: commit).file(at: "a.txt")).objectID
            try FileManager.default.removeItem(atPath: repo.objects.path(for: blob))
            try writeFile("junk", to: repo.objects.root + "/" + AtomicFileWriter.temporaryPrefix + "\(try deadPid())-abc-incoming")
            var report = try repo.fsck()
            #expect(report.errors == ["object \(blob.short) (commit \(commit.short) a.txt): object file is missing"])
            #expect(report.warnings == ["1 temporary file in the object store (left by an interrupted command; 'mrepo gc' removes them)"])
            // One of a process that runs (a lazy reader fetching, which takes no write lock) is in
            // use, not left over: it was called a leftover of an interrupted command.
            try writeFile("junk", to: repo.objects.root + "/ab/" + AtomicFileWriter.temporaryPrefix + "1-def-incoming")
            report = try repo.fsck()
            #expect(report.warnings == ["1 temporary file in the object store (left by an interrupted command; 'mrepo gc' removes them)",
                                        "1 temporary file in the object store of pid 1, still running (a command writing, or reading a lazy clone's objects)"])
        }
    }

    // MARK: - gc

    @Test func gcRemovesObjectsOfADeletedBranchAndKeepsReferencedOnes() throws {
        try withRepository { repo, dir in
            try repo.writeModel()
            let c1 = try repo.commitAll("base").commit.id
            _ = try repo.switchBranch("exp", create: true)
            try repo.writeModel(.light("math", seed: 11))
            let c2 = try repo.commitAll("math").commit.id
            _ = try repo.switchBranch("doomed", create: true, startPoint: "main")
            try repo.writeModel(.heavy("chat", seed: 13))
            let c3 = try repo.commitAll("chat").commit.id
            _ = try repo.switchBranch("main")
            // c4 is coded against c2's tensors: deleting `exp` must not lose them.
            try repo.writeModel(.light("code", seed: 12))
            let c4 = try repo.commitAll("code", base: "exp").commit.id
            #expect(try repo.commit(c4).base == c2)
            _ = try repo.deleteBranch("exp", force: true)
            _ = try repo.deleteBranch("doomed", force: true)

            // The reflog still reaches c3: nothing goes yet.
            let kept = try repo.gc()
            #expect(kept.removedCommits == 0)
            #expect(kept.removedObjects == 0)

            // What must stay: every object of c1, c2, c4 and every delta reference below them.
            var needed = Set<ObjectID>()
            for c in [c1, c2, c4] { needed.formUnion(try repo.tree(of: c).objectIDs) }
            var stack = Array(needed)
            while let id = stack.popLast() {
                if let ref = try repo.history.objectInfo(id)?.reference, needed.insert(ref).inserted { stack.append(ref) }
            }
            let onlyC3 = try repo.tree(of: c3).objectIDs.subtracting(needed)
            #expect(!onlyC3.isEmpty)

            let before = repo.objectFiles
            let report = try repo.gc(pruneReflog: true)
            #expect(report.removedCommits == 1)
            #expect(try repo.history.commit(c3) == nil)
            #expect(try repo.history.commit(c2) != nil)
            #expect(repo.objectFiles == needed)
            #expect(before.subtracting(repo.objectFiles) == onlyC3)
            #expect(report.removedObjects == onlyC3.count)
            #expect(report.freedBytes > 0)
            for id in onlyC3 { #expect(try repo.history.objectInfo(id) == nil) }
            #expect(Set(try repo.history.allObjects().map(\.id)) == needed)

            let fsck = try repo.fsck()
            #expect(fsck.isClean, "\(fsck.errors)")
            #expect(fsck.warnings.isEmpty)
            // c4 still exports byte for byte.
            _ = try repo.export(c4.hex, to: dir + "/out")
            try tinyFactory.writeCheckpoint(to: dir + "/expected", fineTune: .light("code", seed: 12))
            #expect(sameFiles(try snapshot(dir + "/out"), try snapshot(dir + "/expected")))
        }
    }

    /// A deleted branch of several commits: each names the one before as parent and base, and gc
    /// deletes them in no particular order (it had failed with a foreign-key error on most orders).
    @Test func gcRemovesAChainOfCommitsInOneTransaction() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            let c1 = try repo.commitAll("base").commit.id
            _ = try repo.switchBranch("run", create: true)
            var chain: [ObjectID] = []
            for i in 0..<6 {
                try repo.writeModel(.light("step\(i)", seed: UInt64(20 + i)))
                chain.append(try repo.commitAll("step \(i)").commit.id)
            }
            _ = try repo.switchBranch("main")
            _ = try repo.deleteBranch("run", force: true)
            let report = try repo.gc(pruneReflog: true)
            #expect(report.removedCommits == 6)
            for id in chain { #expect(try repo.history.commit(id) == nil) }
            #expect(try repo.history.commit(c1) != nil)
            let fsck = try repo.fsck()
            #expect(fsck.isClean, "\(fsck.errors)")
        }
    }

    @Test func gcRemovesUnrecordedFilesAndTemporaryFiles() throws {
        try withRepository { repo, _ in
            try writeFile("hello", to: repo.root + "/a.txt")
            try repo.commitAll("a")
            let recorded = repo.objectFiles
            // An object file no commit records (as an interrupted commit leaves it) and a temporary
            // file of a process that is gone.
            let stray = SHA256.hash([1, 2, 3])
            try writeFile("stray", to: repo.objects.path(for: stray))
            try writeFile("tmp", to: repo.objects.root + "/" + AtomicFileWriter.temporaryPrefix + "\(try deadPid())-x-incoming")
            #expect(try repo.fsck().warnings.count == 2)
            let report = try repo.gc()
            #expect(report.removedObjects == 1)
            #expect(report.removedTemporaryFiles == 1)
            #expect(repo.objectFiles == recorded)
            let fsck = try repo.fsck()
            #expect(fsck.isClean && fsck.warnings.isEmpty)
        }
    }

    // MARK: - du

    @Test func usageCountsEachObjectOnceAndDeltasAreSmall() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            let c1 = try repo.commitAll("base")
            try repo.writeModel(.light("math", seed: 11))
            let c2 = try repo.commitAll("math")
            let usage = try repo.usage()
            #expect(usage.commits.map(\.id) == [c1.commit.id, c2.commit.id])
            #expect(usage.logicalByteCount == c1.logicalByteCount + c2.logicalByteCount)
            #expect(usage.objectCount == repo.objectFiles.count)
            #expect(usage.commits[0].newStoredByteCount == c1.newStoredByteCount)
            #expect(usage.commits[1].newStoredByteCount == c2.newStoredByteCount)
            #expect(usage.storedByteCount == c1.newStoredByteCount + c2.newStoredByteCount)
            #expect(usage.commits[0].names.isEmpty)
            #expect(usage.commits[1].names == ["main"])
            #expect(usage.databaseByteCount > 0)
            // The fine-tune costs well under a full copy.
            #expect(c2.newStoredByteCount < c1.newStoredByteCount * 8 / 10)
        }
    }
}
