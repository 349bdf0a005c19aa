import Delta
import Foundation
import Merge
@testable import Repo
import Testing

/// Merges through ``StreamingMerge``: a tensor decided by passes over its chunks (TIES on a tensor
/// above the whole-tensor budget) is stored exactly as the whole-input path stores it.
@Suite final class StreamingMergeTests {
    let fixture: TemporaryRepository
    var repo: Repository { fixture.repo }

    init() throws {
        fixture = try TemporaryRepository()
        fixture.repo.codecOptions = streamingChunks
    }

    /// A base and three fine-tunes of one 2.05-chunk tensor whose deltas take a few values (many
    /// ties at every threshold), plus a small tensor.
    func commitFamily(changingSmall: Bool = true) throws {
        let n = 2 * 65536 + 3000
        var rng = SeededRandom(seed: 5)
        let base = (0..<n).map { _ in Float(rng.uniform() * 2 - 1) }
        let small = (0..<100).map { Float($0) / 100 }
        let steps: [Float] = [0, 0.25, -0.25, 0.5, -0.5, 0.125]
        try writeFloats([("big.weight", base), ("small.weight", small)], to: repo.root + "/model.safetensors")
        try repo.commitAll("base")
        for name in ["a", "b", "c"] {
            _ = try repo.switchBranch(name, create: true, startPoint: "main")
            let tuned = base.map { $0 + steps[Int(rng.next() % UInt64(steps.count))] }
            try writeFloats([("big.weight", tuned), ("small.weight", changingSmall ? small.map { $0 + 0.5 } : small)], to: repo.root + "/model.safetensors")
            try repo.commitAll(name)
        }
    }

    /// `resident`: inputs' bytes up to which the passes' spill is kept in memory (0: in a file).
    func mergeTies(on branch: String, budget: Int, spill: Bool = true, resident: Int = 0) throws -> [String: TreeTensor] {
        _ = try repo.switchBranch(branch, create: true, startPoint: "main")
        var options = MergeOptions(branches: ["a", "b", "c"], recipe: MergeRecipe(method: "ties", parameters: ["density": .number(0.3)], experts: []))
        options.wholeTensorBudget = budget
        options.spillPasses = spill
        options.residentSpillBudget = resident
        let outcome = try repo.merge(options)
        guard case .committed = outcome.status else {
            Issue.record("merge did not commit: \(outcome.status)")
            return [:]
        }
        #expect(outcome.report.tensors.first { $0.name == "big.weight" }?.metrics?.notes["ties_by_position"] == nil)
        return try repo.tensors(of: branch)
    }

    @Test func tiesByPassesStoresTheWholeInputResult() throws {
        try commitFamily()
        let whole = try mergeTies(on: "whole", budget: Int.max)
        let passes = try mergeTies(on: "passes", budget: 0)
        let big = try #require(whole["big.weight"])
        #expect(passes["big.weight"]?.objectID == big.objectID)
        #expect(passes["small.weight"]?.objectID == whole["small.weight"]?.objectID)
        // The merge changed the tensor (it is not the base's).
        #expect(try repo.tensors(of: "main")["big.weight"]?.objectID != big.objectID)
        let fsck = try repo.fsck()
        #expect(fsck.isClean, "\(fsck.errors)")
    }

    /// The passes' spill (the first pass keeps the decoded inputs for the second and the merge) is
    /// an optimisation only: the same object with it (in a file, or in memory) and without, and no
    /// file left in the store.
    @Test func passesWithAndWithoutSpillAgree() throws {
        try commitFamily()
        let spilled = try mergeTies(on: "spilled", budget: 0, spill: true)
        let decoded = try mergeTies(on: "decoded", budget: 0, spill: false)
        let resident = try mergeTies(on: "resident", budget: 0, spill: true, resident: Int.max)
        let big = try #require(spilled["big.weight"])
        #expect(decoded["big.weight"]?.objectID == big.objectID)
        #expect(resident["big.weight"]?.objectID == big.objectID)
        #expect(resident["small.weight"]?.objectID == spilled["small.weight"]?.objectID)
        #expect(try repo.tensors(of: "main")["big.weight"]?.objectID != big.objectID)
        // Only the objects' two-digit folders: no temporary file of the spill or of the merge.
        let entries = try FileManager.default.contentsOfDirectory(atPath: repo.root + "/.mrepo/objects")
        #expect(entries.allSatisfy { $0.count == 2 && $0.allSatisfy(\.isHexDigit) }, "\(entries)")
        let fsck = try repo.fsck()
        #expect(fsck.isClean, "\(fsck.errors)")
    }

    /// A spill reads back exactly what was stored, per input and chunk, and knows which chunks it holds.
    @Test func passSpillRoundTrip() throws {
        let folder = repo.root + "/.mrepo/objects"
        let before = try FileManager.default.contentsOfDirectory(atPath: folder)
        let spill = try #require(PassSpill(directory: folder, inputCount: 2, byteCount: 10, chunkCount: 2))
        let a: [UInt8] = Array(0..<6), b: [UInt8] = Array(100..<106)
        #expect(!spill.contains(0))
        a.withUnsafeBytes { ra in b.withUnsafeBytes { rb in spill.store(0, offset: 0, inputs: [ra, rb]) } }
        #expect(spill.contains(0) && !spill.contains(1))
        var out = [UInt8](repeating: 0, count: 6)
        #expect(out.withUnsafeMutableBytes { spill.load(0, input: 1, offset: 0, into: $0) })
        #expect(out == b)
        #expect(out.withUnsafeMutableBytes { spill.load(0, input: 0, offset: 0, into: $0) })
        #expect(out == a)
        // The file has no name: nothing appears in the folder.
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == before)
        spill.close()
        #expect(!out.withUnsafeMutableBytes { spill.load(0, input: 0, offset: 0, into: $0) })
    }

    /// A merge opens every input up front and drops the pages its chunk records were read from:
    /// residency only, the tensor decodes to the same bytes after.
    @Test func droppingAnOpenedTensorsPagesKeepsItsBytes() throws {
        let n = 3 * 65536 + 17
        let values = (0..<n).map { Float($0 % 1000) / 999 }
        try writeFloats([("w", values)], to: repo.root + "/model.safetensors")
        try repo.commitAll("base")
        let id = try #require(try repo.tensors(of: "main")["w"]?.objectID)
        let tensor = try repo.objects.open(id).tensor
        #expect(tensor.header.chunkCount > 1)
        tensor.releaseStoredBytes()
        var decoded = [UInt8]()
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: TensorEncoding.scratchFactor * tensor.header.chunkByteCount, alignment: 64)
        defer { scratch.deallocate() }
        for c in 0..<tensor.header.chunkCount {
            var chunk = [UInt8](repeating: 0, count: tensor.header.chunkRange(c).count)
            try chunk.withUnsafeMutableBytes { try tensor.decodeChunk(c, into: $0, referenceChunk: nil, scratch: scratch) }
            decoded += chunk
        }
        #expect(decoded == values.withUnsafeBytes { Array($0) })
    }

    /// An in-memory spill: decoded into in place, read back in place or into a buffer, chunk by chunk.
    @Test func residentSpillKeepsEachInputsChunks() throws {
        let arena = SpillArena()
        let spill = PassSpill(memory: arena.bytes(2 * 10), inputCount: 2, byteCount: 10, chunkCount: 2)
        let a = try #require(spill.resident(input: 0, range: 6..<10)), b = try #require(spill.resident(input: 1, range: 6..<10))
        a.copyBytes(from: [1, 2, 3, 4] as [UInt8])
        b.copyBytes(from: [5, 6, 7, 8] as [UInt8])
        #expect(!spill.contains(1))
        spill.store(1, offset: 6, inputs: [UnsafeRawBufferPointer(a), UnsafeRawBufferPointer(b)])
        #expect(spill.contains(1) && !spill.contains(0))
        var out = [UInt8](repeating: 0, count: 4)
        #expect(out.withUnsafeMutableBytes { spill.load(1, input: 1, offset: 6, into: $0) })
        #expect(out == [5, 6, 7, 8])
        // Stored from elsewhere (a chunk decoded into pool buffers): copied in.
        let c: [UInt8] = Array(20..<26), d: [UInt8] = Array(30..<36)
        c.withUnsafeBytes { rc in d.withUnsafeBytes { rd in spill.store(0, offset: 0, inputs: [rc, rd]) } }
        #expect(Array(try #require(spill.resident(input: 0, range: 0..<6))) == c)
        #expect(Array(try #require(spill.resident(input: 1, range: 0..<10))) == d + [5, 6, 7, 8])
        #expect(try #require(PassSpill(directory: repo.root + "/.mrepo/objects", inputCount: 1, byteCount: 4, chunkCount: 1))
            .resident(input: 0, range: 0..<4) == nil)
        arena.free()
    }

    /// The merged file is written while the merge runs, its unchanged tensors first (one sorts
    /// before every merged tensor), and hashed before the record: the SHA-256 the merge records is
    /// the one of the file it leaves in the working tree, and every tensor is the tree's.
    @Test func preparedFileIsCompleteAndRecordsItsDigest() throws {
        let n = 3 * 65536
        var rng = SeededRandom(seed: 9)
        let base = (0..<n).map { _ in Float(rng.uniform() * 2 - 1) }
        let kept = (0..<5000).map { Float($0) / 7 }
        try writeFloats([("a.kept", kept), ("big.weight", base)], to: repo.root + "/model.safetensors")
        try repo.commitAll("base")
        for (i, name) in ["x", "y"].enumerated() {
            _ = try repo.switchBranch(name, create: true, startPoint: "main")
            try writeFloats([("a.kept", kept), ("big.weight", base.map { $0 + Float(i + 1) / 8 })], to: repo.root + "/model.safetensors")
            try repo.commitAll(name)
        }
        _ = try repo.switchBranch("m", create: true, startPoint: "main")
        var options = MergeOptions(branches: ["x", "y"], recipe: MergeRecipe(method: "linear", parameters: [:], experts: []))
        // The output dtype of the inputs (mergekit's `dtype: float32`) re-writes nothing.
        options.outputDType = .f32
        let outcome = try repo.merge(options)
        guard case let .committed(commit) = outcome.status else {
            Issue.record("merge did not commit: \(outcome.status)")
            return
        }
        let file = try #require(try repo.tree(of: commit.id).file(at: "model.safetensors"))
        let bytes = try readFile(repo.root + "/model.safetensors")
        #expect(file.sha256 == SHA256.hash(bytes))
        #expect(bytes.count == file.byteCount)
        // Every tensor in the working tree is the object the tree names.
        let written = try SafetensorsFile(path: repo.root + "/model.safetensors", displayName: "model.safetensors")
        for t in file.tensors {
            var stored = [UInt8]()
            try repo.objects.decode(t.objectID) { stored.append(contentsOf: $0) }
            let info = try #require(written.tensor(named: t.name))
            #expect(Array(written.data(of: info)) == stored, "\(t.name)")
        }
        #expect(file.tensors.first { $0.name == "a.kept" }?.objectID == (try repo.tensors(of: "main"))["a.kept"]?.objectID)
        #expect(try repo.fsck().isClean)
    }

    /// A merge done again finds its results stored and neither codes nor writes them (one-chunk
    /// results are named before coding, larger ones coded only once named: ``JobRun/codeDeferred(_:)``):
    /// the second merge records the same objects, with the stored files' facts, and leaves the same file.
    @Test func aMergeDoneAgainRecordsTheObjectsItFindsStored() throws {
        try commitFamily()
        func merge(on branch: String) throws -> (tensors: [String: TreeTensor], file: [UInt8]) {
            _ = try repo.switchBranch(branch, create: true, startPoint: "main")
            let options = MergeOptions(branches: ["a", "b", "c"], recipe: MergeRecipe(method: "linear", parameters: [:], experts: []))
            guard case .committed = try repo.merge(options).status else {
                Issue.record("merge did not commit")
                return ([:], [])
            }
            return (try repo.tensors(of: branch), try readFile(repo.root + "/model.safetensors"))
        }
        let first = try merge(on: "first")
        let objectFiles = repo.objects.listFiles().objects.count
        let second = try merge(on: "second")
        let small = try #require(first.tensors["small.weight"])
        #expect(small.objectID != (try repo.tensors(of: "main"))["small.weight"]?.objectID, "the merge changed it")
        #expect(second.tensors.mapValues(\.objectID) == first.tensors.mapValues(\.objectID))
        #expect(second.file == first.file)
        // The second merge's file is the first's: it keeps the SHA-256 recorded for it (unhashed).
        let file = try #require(try repo.tree(of: try repo.resolve("second")).file(at: "model.safetensors"))
        #expect(file.sha256 == SHA256.hash(second.file))
        #expect(repo.objects.listFiles().objects.count == objectFiles)
        var stored = try #require(try repo.history.objectInfo(small.objectID))
        #expect(stored.checksum == (try repo.objects.storedChecksum(of: small.objectID)))
        stored.checksum = nil
        #expect(try repo.objects.inspect(small.objectID) == stored)
        let fsck = try repo.fsck()
        #expect(fsck.isClean, "\(fsck.errors)")
    }

    /// A result of several chunks coded once its id is known (read back from the prepared file) is
    /// the object file a merge without a prepared file (`--no-commit`) codes chunk by chunk as it
    /// merges, and so is a first merge's, which codes each chunk as it is merged.
    ///
    /// Coding waits for the id only in a merge that may have been done before (its recorded recipe
    /// is stored): here the same merge again, after its results' object files were removed, so that
    /// they are new once more. With the small tensor unchanged (found stored), the big one is the
    /// merge's only result: no result new to the store was written before its chunks were merged,
    /// so its base chunks were not kept and are decoded again (and verified) for the coding.
    @Test(arguments: [true, false]) func deferredCodingWritesTheObjectCodedAsMerged(changingSmall: Bool) throws {
        try commitFamily(changingSmall: changingSmall)
        let options = MergeOptions(branches: ["a", "b", "c"], recipe: MergeRecipe(method: "linear", parameters: [:], experts: []))
        func merge(on branch: String) throws -> [String: TreeTensor] {
            _ = try repo.switchBranch(branch, create: true, startPoint: "main")
            guard case .committed = try repo.merge(options).status else {
                Issue.record("merge did not commit")
                return [:]
            }
            return try repo.tensors(of: branch)
        }
        let first = try merge(on: "first")
        let big = try #require(first["big.weight"])
        #expect(big.objectID != (try repo.tensors(of: "main"))["big.weight"]?.objectID, "the merge changed it")
        let path = { (r: Repository) in r.objects.path(for: big.objectID) }
        let firstBytes = try readFile(path(repo))
        // The results gone from the store, the same merge again: its recipe is stored, so it defers.
        var removed = [big.objectID]
        if changingSmall, let small = first["small.weight"]?.objectID { removed.append(small) }
        for id in removed { try FileManager.default.removeItem(atPath: repo.objects.path(for: id)) }
        #expect(try merge(on: "m")["big.weight"]?.objectID == big.objectID)
        // The same family and merge in another repository, without a prepared file.
        let other = try StreamingMergeTests()
        try other.commitFamily(changingSmall: changingSmall)
        _ = try other.repo.switchBranch("m", create: true, startPoint: "main")
        var staged = options
        staged.noCommit = true
        guard case .ready = try other.repo.merge(staged).status else {
            Issue.record("merge --no-commit did not stop ready")
            return
        }
        #expect(try readFile(path(repo)) == readFile(path(other.repo)))
        #expect(firstBytes == (try readFile(path(other.repo))))
        let fsck = try repo.fsck()
        #expect(fsck.isClean, "\(fsck.errors)")
    }

    /// The merge verifies every input it decodes against its id (docs/format.md §5.7), in chunk
    /// order as chunks complete: an expert's object file swapped for another valid one of the same
    /// tensor decodes without error, is refused by its hash, and nothing is recorded. (Any change
    /// to how the inputs are hashed — the order of completion, the threads — must keep this.)
    @Test func anInputSwappedForAnotherValidObjectIsRefusedByItsHash() throws {
        try commitFamily()
        let a = try #require(try repo.tensors(of: "a")["big.weight"]?.objectID)
        let b = try #require(try repo.tensors(of: "b")["big.weight"]?.objectID)
        #expect(a != b)
        // Rows without checksums, as an older repository has them: the inputs are verified by hash
        // (with checksums the swapped file is refused by its own: ObjectChecksumTests).
        try repo.history.write { db in try db.execute(sql: "UPDATE object SET crc32c = NULL") }
        let target = repo.objects.path(for: a)
        let swapped = try readFile(repo.objects.path(for: b))
        try FileManager.default.removeItem(atPath: target)
        #expect(FileManager.default.createFile(atPath: target, contents: Data(swapped)))
        _ = try repo.switchBranch("m", create: true, startPoint: "main")
        let head = try repo.resolve("HEAD")
        let options = MergeOptions(branches: ["a", "b", "c"], recipe: MergeRecipe(method: "linear", parameters: [:], experts: []))
        var caught: (any Error)?
        do { _ = try repo.merge(options) } catch { caught = error }
        guard case let .corruptObject(object, problem)? = caught as? RepoError else {
            Issue.record("expected corruptObject, got \(String(describing: caught))")
            return
        }
        #expect(object == a.short)
        // The base is left unhashed here (each expert verifies it), so the message names it as a suspect too.
        let baseID = try #require(try repo.tensors(of: "main")["big.weight"]?.objectID)
        #expect(problem == "decoded bytes hash to \(b.short), expected \(a.short) (or its reference \(baseID.short) is damaged)")
        #expect(try repo.resolve("HEAD") == head)
        #expect(try repo.history.mergeState() == nil)
    }

    /// The base is verified too, though a merge may leave out its own digest when an input decoded
    /// against it is checked (JobRun.baseVerifiedByInput): the base's object file replaced by a
    /// valid object of another tensor of the same shape decodes without error, and the merge is
    /// refused by a digest, whether the tensor is merged range by range (linear), by passes with
    /// the decoded inputs in a spill file (the base is then hashed itself), or with the spill in
    /// memory. Nothing is recorded.
    @Test(arguments: ["linear", "ties-file-spill", "ties-memory-spill"]) func aBaseSwappedForAnotherValidObjectIsRefused(way: String) throws {
        try commitFamily()
        let baseID = try #require(try repo.tensors(of: "main")["big.weight"]?.objectID)
        let experts = try ["a", "b", "c"].map { try #require(try repo.tensors(of: $0)["big.weight"]?.objectID) }
        // Another tensor of the same shape, stored whole in a repository of its own.
        let other = try StreamingMergeTests()
        var rng = SeededRandom(seed: 77)
        let n = 2 * 65536 + 3000
        try writeFloats([("big.weight", (0..<n).map { _ in Float(rng.uniform() * 4 - 2) })], to: other.repo.root + "/model.safetensors")
        try other.repo.commitAll("other")
        let stranger = try #require(try other.repo.tensors(of: "main")["big.weight"]?.objectID)
        // On the merge's branch first: switching would rebuild the base's file and refuse it.
        _ = try repo.switchBranch("m", create: true, startPoint: "main")
        let head = try repo.resolve("HEAD")
        // Rows without checksums (an older repository): verified by hash, as this test is about.
        try repo.history.write { db in try db.execute(sql: "UPDATE object SET crc32c = NULL") }
        let target = repo.objects.path(for: baseID)
        let replacement = try readFile(other.repo.objects.path(for: stranger))
        try FileManager.default.removeItem(atPath: target)
        #expect(FileManager.default.createFile(atPath: target, contents: Data(replacement)))
        var options: MergeOptions
        if way == "linear" {
            options = MergeOptions(branches: ["a", "b", "c"], recipe: MergeRecipe(method: "linear", parameters: [:], experts: []))
        } else {
            options = MergeOptions(branches: ["a", "b", "c"], recipe: MergeRecipe(method: "ties", parameters: ["density": .number(0.3)], experts: []))
            options.wholeTensorBudget = 0
            options.spillPasses = true
            options.residentSpillBudget = way == "ties-memory-spill" ? Int.max : 0
        }
        var caught: (any Error)?
        do { _ = try repo.merge(options) } catch { caught = error }
        guard case let .corruptObject(object, problem)? = caught as? RepoError else {
            Issue.record("expected corruptObject, got \(String(describing: caught))")
            return
        }
        // Which digest refuses it: the base's own where it is hashed (a spill file), else an
        // expert's, whose message then names the base as the other suspect.
        if way == "ties-file-spill" {
            #expect(object == baseID.short)
        } else {
            #expect(experts.map(\.short).contains(object), "\(object)")
            #expect(problem.hasSuffix(" (or its reference \(baseID.short) is damaged)"), "\(problem)")
        }
        #expect(problem.hasPrefix("decoded bytes hash to "), "\(problem)")
        #expect(try repo.resolve("HEAD") == head)
        #expect(try repo.history.mergeState() == nil)
    }
}
