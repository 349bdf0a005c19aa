import Delta
import Foundation
import ModelFactory
@testable import Repo
import Synchronization
import Testing

/// What a clone saves while it verifies: the checked-out files written from the objects as they
/// are verified (``ClonePrefill``), and the delta references' chunks decoded once for every delta
/// coded against them (``ReferenceChunkCache``).
@Suite struct CloneVerificationTests {
    @Test func cloneWritesTheCheckedOutFilesFromTheVerifiedObjects() async throws {
        let f = try RemoteTests.Fixture()
        let (repo, _) = try await Repository.clone(url: f.dir + "/origin", into: f.dir + "/copy")
        #expect(sameFiles(try snapshot(repo.root), try snapshot(f.origin.root)))
        #expect(try repo.status().isClean)
        #expect(try repo.fsck().isClean)
        // The temporary files are gone: none is left in the clone's metadata folder.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: repo.metaDirectory).filter { $0.contains("prepared") }
        #expect(leftovers.isEmpty)
    }

    @Test func prefilledFilesAreOnlyThoseWhoseEveryObjectWasVerified() throws {
        let f = try RemoteTests.Fixture()
        let tree = try f.origin.tree(of: f.origin.resolve("main"))
        let model = try #require(tree.files.first { $0.kind == .safetensors })
        var logical: [ObjectID: Int] = [:]
        for id in tree.objectIDs { logical[id] = try f.origin.objects.inspect(id).logicalByteCount }
        func place(_ prefill: ClonePrefill, _ ids: [ObjectID], corrupt: ObjectID? = nil) throws {
            for id in ids {
                var offset = 0
                try f.origin.objects.decode(id) { bytes in
                    var copy = Array(bytes)
                    if id == corrupt { copy[0] ^= 1 }
                    copy.withUnsafeBytes { prefill.write(id, $0, at: offset) }
                    offset += bytes.count
                }
                prefill.verified(id, byteCount: offset)
            }
        }
        let all = tree.objectIDs.sorted()
        // Every object placed: every file is ready, byte for byte the file the checkout writes.
        let whole = try ClonePrefill(repository: f.origin, tree: tree, logical: logical)
        try place(whole, all)
        let ready = whole.finish()
        #expect(Set(ready.keys) == Set(tree.files.map(\.path)))
        let written = try readFile(try #require(ready[model.path]).temporary)
        #expect(written == (try readFile(f.origin.root + "/" + model.path)))
        whole.discard()
        #expect(!FileManager.default.fileExists(atPath: whole.directory))

        // One tensor never verified: its file is left to the checkout, the others are ready.
        let missing = try #require(model.tensors.first).objectID
        let partial = try ClonePrefill(repository: f.origin, tree: tree, logical: logical)
        try place(partial, all.filter { $0 != missing })
        let some = partial.finish()
        #expect(some[model.path] == nil)
        #expect(some.count == tree.files.count - 1)
        #expect(!FileManager.default.fileExists(atPath: partial.directory + "/" + "\(tree.files.firstIndex { $0.path == model.path }!)"))
        partial.discard()

        // Bytes that are not the object's (as a verification that went wrong would leave): the
        // file's SHA-256 is not the recorded one, so it is not handed on.
        let wrong = try ClonePrefill(repository: f.origin, tree: tree, logical: logical)
        try place(wrong, all, corrupt: missing)
        #expect(wrong.finish()[model.path] == nil)
        wrong.discard()
    }

    @Test func aCorruptObjectOfTheCheckedOutBranchFailsTheCloneAndLeavesNothing() async throws {
        let f = try RemoteTests.Fixture()
        let tree = try f.origin.tree(of: f.origin.resolve("main"))
        let model = try #require(tree.files.first { $0.kind == .safetensors })
        let victim = try #require(model.tensors.last).objectID
        let path = f.origin.objects.path(for: victim)
        var bytes = try readFile(path)
        bytes[bytes.count - 1] ^= 0x40
        chmod(path, 0o644)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let error = await asyncError { _ = try await Repository.clone(url: f.dir + "/origin", into: f.dir + "/copy") }
        #expect((error as? RepoError)?.description.contains("rejected") == true)
        #expect(!FileManager.default.fileExists(atPath: f.dir + "/copy"))
        let staging = try FileManager.default.contentsOfDirectory(atPath: f.dir).filter { $0.contains(CloneStaging.marker) }
        #expect(staging.isEmpty)
    }

    @Test func deltasWhoseReferenceFailsVerificationAreNeverStored() async throws {
        // The deltas of a download wait for their reference to be stored; when the reference is
        // rejected instead, the fetch fails at once (nothing waits for ever) and stores none of them.
        let f = try RemoteTests.Fixture()
        var deltasOf: [ObjectID: [ObjectID]] = [:]
        for id in f.origin.objectFiles {
            if let r = try f.origin.objects.header(of: id).reference { deltasOf[r, default: []].append(id) }
        }
        let (victim, deltas) = try #require(deltasOf.max { $0.value.count < $1.value.count })
        let path = f.origin.objects.path(for: victim)
        var bytes = try readFile(path)
        bytes[bytes.count - 1] ^= 0x40
        chmod(path, 0o644)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        let repo = try Repository.initialize(at: f.dir + "/copy")
        try repo.addRemote("origin", url: f.dir + "/origin")
        let error = await asyncError { _ = try await repo.fetch(remote: "origin") }
        #expect((error as? RepoError)?.description.contains("rejected") == true)
        #expect(!repo.objects.exists(victim))
        #expect(deltas.allSatisfy { !repo.objects.exists($0) })
        #expect(try repo.history.remoteRefs(remote: "origin").isEmpty)
        #expect(repo.objects.listFiles().temporary.isEmpty)
    }

    @Test func deltasOnOneReferenceShareItsDecodedChunks() throws {
        let decodes = Mutex(0)
        let chunk = 1000
        let inner: ChunkSource = { index, into in
            decodes.withLock { $0 += 1 }
            for i in 0..<into.count { into[i] = UInt8(truncatingIfNeeded: index &* 31 &+ i) }
        }
        let cache = ReferenceChunkCache(budget: 64 * chunk)
        let id = SHA256.hash(Array("reference".utf8))
        let source = cache.source(for: id, wrapping: inner)
        let mismatches = Mutex(0)
        // Four deltas verified at once, each reading every chunk of the reference in order.
        DispatchQueue.concurrentPerform(iterations: 4) { _ in
            var buffer = [UInt8](repeating: 0, count: chunk)
            for index in 0..<16 {
                buffer.withUnsafeMutableBytes { try? source(index, $0) }
                let expected = (0..<chunk).map { UInt8(truncatingIfNeeded: index &* 31 &+ $0) }
                if buffer != expected { mismatches.withLock { $0 += 1 } }
            }
        }
        #expect(mismatches.withLock { $0 } == 0)
        #expect(decodes.withLock { $0 } == 16)

        // Over the budget, the oldest chunks go: reading them again decodes them again.
        let small = ReferenceChunkCache(budget: 4 * chunk)
        let bounded = small.source(for: id, wrapping: inner)
        decodes.withLock { $0 = 0 }
        var buffer = [UInt8](repeating: 0, count: chunk)
        for index in [0, 1, 2, 3, 4, 5, 0] { try buffer.withUnsafeMutableBytes { try bounded(index, $0) } }
        #expect(decodes.withLock { $0 } == 7)
        for index in [4, 5] { try buffer.withUnsafeMutableBytes { try bounded(index, $0) } }
        #expect(decodes.withLock { $0 } == 7)
    }

    @Test func aFailedDecodeIsNotCached() throws {
        struct Broken: Error {}
        let fail = Mutex(true)
        let decodes = Mutex(0)
        let inner: ChunkSource = { _, into in
            decodes.withLock { $0 += 1 }
            if fail.withLock({ $0 }) { throw Broken() }
            into.initializeMemory(as: UInt8.self, repeating: 7)
        }
        let cache = ReferenceChunkCache(budget: 1 << 20)
        let source = cache.source(for: SHA256.hash(Array("r".utf8)), wrapping: inner)
        var buffer = [UInt8](repeating: 0, count: 100)
        let first = Result { try buffer.withUnsafeMutableBytes { try source(0, $0) } }
        #expect(throws: Broken.self) { try first.get() }
        fail.withLock { $0 = false }
        try buffer.withUnsafeMutableBytes { try source(0, $0) }
        #expect(buffer == [UInt8](repeating: 7, count: 100))
        #expect(decodes.withLock { $0 } == 2)
    }

    @Test func levelsStartTheLargestRunsFirst() throws {
        func id(_ s: String) -> ObjectID { SHA256.hash(Array(s.utf8)) }
        var infos: [ObjectInfo] = []
        for (i, size) in [10, 5000, 300, 70].enumerated() {
            infos.append(ObjectInfo(id: id("base\(i)"), kind: .tensor, encoding: .whole, reference: nil,
                                    logicalByteCount: size, storedByteCount: size, depth: 0))
        }
        // Two deltas of 100 bytes on base0 outweigh one of 150 on base1.
        for (name, ref, size) in [("d0", 0, 100), ("d1", 1, 150), ("d2", 0, 100)] {
            infos.append(ObjectInfo(id: id(name), kind: .tensor, encoding: .whole, reference: id("base\(ref)"),
                                    logicalByteCount: size, storedByteCount: size, depth: 1))
        }
        let levels = ObjectMover.levels(infos)
        #expect(levels.count == 2)
        #expect(levels[0].map(\.storedByteCount) == [5000, 300, 70, 10])
        #expect(levels[1].map(\.reference) == [id("base0"), id("base0"), id("base1")])
    }

    @Test func levelsPutDeltasOnOneReferenceSideBySide() throws {
        func id(_ s: String) -> ObjectID { SHA256.hash(Array(s.utf8)) }
        let refs = [id("a"), id("b")]
        var infos: [ObjectInfo] = []
        for i in 0..<12 {
            infos.append(ObjectInfo(id: id("delta\(i)"), kind: .tensor, encoding: .whole, reference: refs[i % 2],
                                    logicalByteCount: 4, storedByteCount: 4, depth: 1))
        }
        let level = try #require(ObjectMover.levels(infos).first)
        #expect(level.count == 12)
        let order = level.map { $0.reference! }
        // Each reference's deltas form one run.
        #expect(zip(order, order.dropFirst()).filter { $0 != $1 }.count == 1)
    }
}
