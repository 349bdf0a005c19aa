import Delta
import Foundation
import ModelFactory
@testable import Repo
import Testing

/// Shallow clones (`clone --depth N`) between folders: the boundary, deepening, unshallowing,
/// pushing from a shallow clone, and what the graph readers see.
@Suite struct ShallowTests {
    /// `origin` with four commits on main: base, math, code, chat (each coded against base).
    func fixture() throws -> RemoteTests.Fixture {
        let f = try RemoteTests.Fixture()
        try f.origin.writeModel(.light("code", seed: 12))
        try f.origin.commitAll("code")
        try f.origin.writeModel(.light("chat", seed: 13))
        try f.origin.commitAll("chat")
        return f
    }

    func clone(_ f: RemoteTests.Fixture, _ name: String, depth: Int, lazy: Bool = false) async throws -> (Repository, TransferResult) {
        let (repo, result) = try await Repository.clone(url: f.dir + "/origin", into: f.dir + "/" + name, lazy: lazy, depth: depth)
        repo.codecOptions = smallChunks
        return (repo, result)
    }

    @Test func shallowCloneTakesTheLastCommitsThenDeepensAndUnshallows() async throws {
        let f = try fixture()
        let (repo, result) = try await clone(f, "copy", depth: 2)
        let tip = try f.origin.resolve("main")
        #expect(try repo.resolve("main") == tip)
        #expect(try repo.log(from: [tip]).map(\.subject) == ["chat", "code"])
        #expect(result.commits == 2)
        #expect(result.objects < f.origin.objectFiles.count)
        #expect(try repo.isShallow())
        #expect(try repo.history.shallowBoundary() == [try f.origin.resolve("main~1")])
        // The tag v1 (math, beyond the boundary) is not followed, as git follows only tags into
        // the history it fetched.
        #expect(try repo.history.ref(named: "v1") == nil)
        #expect(try repo.fsck().isClean)
        #expect(try repo.status().isClean)
        #expect(try repo.trackingStatus()?.ahead == 0 && repo.trackingStatus()?.behind == 0)
        #expect(sameFiles(try snapshot(repo.root), try snapshot(f.origin.root)))
        // The boundary has no known parents: a revision past it says how to fetch more.
        let past = (thrownError { _ = try repo.resolve("main~2") } as? RepoError)?.description ?? ""
        #expect(past.contains("boundary of this shallow clone") && past.contains("fetch --deepen"), "\(past)")
        // Every commit has the id it has in origin: the boundary keeps the parents it hashes.
        let boundary = try #require(try repo.history.commit(try f.origin.resolve("main~1")))
        #expect(boundary.parents.isEmpty && boundary.isShallowBoundary)
        #expect(boundary.hashedParents == [try f.origin.resolve("main~2")])
        // gc keeps the shallow history whole.
        _ = try repo.gc()
        #expect(try repo.fsck().isClean)
        #expect(try repo.log(from: [tip]).count == 2)

        // --deepen 1: math, and the tag that names it.
        let deepened = try await repo.fetch(remote: "origin", depth: .deepen(1))
        #expect(deepened.commits == 1)
        #expect(try repo.log(from: [tip]).map(\.subject) == ["chat", "code", "math"])
        #expect(try repo.history.shallowBoundary() == [try f.origin.resolve("main~2")])
        #expect(try repo.resolve("v1") == f.origin.resolve("v1"))
        #expect(try repo.fsck().isClean)

        // --unshallow: the rest; then the repository is complete and equal to origin.
        let whole = try await repo.fetch(remote: "origin", depth: .unshallow)
        #expect(whole.commits == 1)
        #expect(try !repo.isShallow())
        #expect(try repo.history.grafts().isEmpty)
        #expect(try repo.log(from: [tip]).count == 4)
        #expect(repo.objectFiles == f.origin.objectFiles)
        #expect(try repo.fsck().isClean)
        for c in try f.origin.log(from: [tip]) { #expect(try repo.commit(c.id).generation == c.generation) }
    }

    @Test func fetchDepthDeepensFromTheTipsAndPlainFetchKeepsTheBoundary() async throws {
        let f = try fixture()
        let (repo, result) = try await clone(f, "copy", depth: 1)
        let tip = try f.origin.resolve("main")
        #expect(result.commits == 1)
        #expect(try repo.log(from: [tip]).count == 1)
        #expect(try repo.fsck().isClean)
        // --depth 3 from the tips goes on below the boundary.
        let deeper = try await repo.fetch(remote: "origin", depth: .depth(3))
        #expect(deeper.commits == 2)
        #expect(try repo.log(from: [tip]).map(\.subject) == ["chat", "code", "math"])
        #expect(try repo.fsck().isClean)
        // A plain fetch brings new commits and leaves the boundary where it is.
        try f.origin.writeModel(.light("more", seed: 14))
        try f.origin.commitAll("more")
        let plain = try await repo.fetch(remote: "origin")
        #expect(plain.commits == 1)
        #expect(try repo.history.shallowBoundary() == [try f.origin.resolve("main~3")])
        #expect(try repo.resolve("origin/main") == f.origin.resolve("main"))
        #expect(try repo.fsck().isClean)
        #expect(try repo.trackingStatus()?.behind == 1)
    }

    @Test func pushFromAShallowCloneWorksWhenTheRemoteHoldsTheParents() async throws {
        let f = try fixture()
        let (repo, _) = try await clone(f, "copy", depth: 1)
        try repo.writeModel(.light("mine", seed: 21))
        try repo.commitAll("mine")
        var options = PushOptions(remote: "origin")
        options.refs = ["main:feature"]
        let pushed = try await repo.push(options)
        #expect(pushed.commits == 1)
        #expect(try f.origin.resolve("feature") == repo.resolve("main"))
        #expect(try f.origin.isAncestor(try f.origin.resolve("main"), of: try f.origin.resolve("feature")))
        #expect(try f.origin.fsck().isClean)
        #expect(try repo.fsck().isClean)
        // A complete repository cloned from origin gets the pushed commit with its whole history.
        let (full, _) = try await Repository.clone(url: f.dir + "/origin", into: f.dir + "/full", branch: "feature")
        #expect(try full.log(from: [try full.resolve("feature")]).count == 5)
        #expect(try full.fsck().isClean)
    }

    @Test func lazyShallowCloneTakesOnlyTreesAndReadsTensorsOnDemand() async throws {
        let f = try fixture()
        let (repo, result) = try await clone(f, "lazy", depth: 1, lazy: true)
        #expect(try repo.isShallow())
        let tip = try f.origin.resolve("main")
        #expect(try repo.log(from: [tip]).count == 1)
        // The checked-out tree was read; nothing older than the boundary was fetched.
        #expect(repo.objectFiles.isSubset(of: f.origin.objectFiles))
        #expect(result.objects < f.origin.objectFiles.count)
        #expect(sameFiles(try snapshot(repo.root), try snapshot(f.origin.root)))
        #expect(try repo.fsck().isClean)
    }
}
