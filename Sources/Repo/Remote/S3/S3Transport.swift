import Delta
import Foundation
import NIOHTTP1

/// A remote in an S3-compatible bucket, in the dumb, versioned layout of docs/format.md §10.4:
/// objects and commit records under a shared prefix (deduplicated across the repositories
/// there), refs as create-only, immutable ref-log entries (`If-None-Match: *`), so two writers
/// never both move a ref and no `If-Match` is needed.
///
/// A store cannot verify what it is given: the pushing repository verified its objects when it
/// stored them, and every fetching repository verifies each object and record before storing it.
public final class S3Transport: RemoteTransport, Sendable {
    public let url: String
    let client: S3Client
    /// `PREFIX/` (or empty): where objects, commits and `mrepo-store.json` live.
    let store: String
    /// `PREFIX/repos/NAME/refs/`.
    let refsPrefix: String
    /// Objects above this size go up in parts (S3 takes at most 5 GiB in one PUT).
    let multipartThreshold: Int
    let partSize: Int
    /// A ref-log checkpoint is written after every this many entries of a ref (§10.4.1).
    let compactEvery: Int
    /// Ids in one key folder from which a presence check lists the folder instead of HEADing each.
    let listThreshold: Int

    static let storeFormat = "mrepo-s3-store"
    static let storeVersion = 1

    public init(bucket: String, key: String, url: String, environment: [String: String]) throws {
        self.url = url
        client = S3Client(configuration: try S3Configuration(environment: environment), bucket: bucket, url: url)
        let parts = key.split(separator: "/").map(String.init)
        let name = parts.last!
        store = parts.dropLast().map { $0 + "/" }.joined()
        refsPrefix = store + "repos/" + name + "/refs/"
        multipartThreshold = environment["MREPO_S3_MULTIPART_THRESHOLD"].flatMap(Int.init) ?? 64 << 20
        partSize = max(5 << 20, environment["MREPO_S3_PART_SIZE"].flatMap(Int.init) ?? 32 << 20)
        compactEvery = max(1, environment["MREPO_S3_COMPACT_EVERY"].flatMap(Int.init) ?? 32)
        listThreshold = max(1, environment["MREPO_S3_LIST_THRESHOLD"].flatMap(Int.init) ?? 16)
    }

    func objectKey(_ id: ObjectID) -> String { store + "objects/" + id.hex.prefix(2) + "/" + id.hex.dropFirst(2) }
    func commitKey(_ id: ObjectID) -> String { store + "commits/" + id.hex.prefix(2) + "/" + id.hex.dropFirst(2) + ".json" }
    func refFolder(_ name: String) -> String { refsPrefix + S3Signer.encode(name) + "/" }

    // MARK: - Refs

    /// One ref-log entry (docs/format.md §10.4).
    struct RefEntry: Codable, Sendable {
        var kind: Ref.Kind
        var name: String
        var previous: String?
        var seq: Int
        var target: String?
        var time: Double
        /// An annotated tag's message (absent otherwise; docs/format.md §10.4).
        var message: String?
    }

    public func listRefs() async throws -> [String: RemoteRef] {
        try await checkStoreVersion()
        var refs: [String: RemoteRef] = [:]
        for e in try await newestEntries().values {
            guard let hex = e.target, let id = ObjectID(hex: hex) else { continue }
            refs[e.name] = RemoteRef(name: e.name, kind: e.kind, target: id, message: e.message)
        }
        return refs
    }

    /// A store keeps no grafts: it holds the whole history of what was pushed to it.
    public func shallowGrafts() async throws -> [RemoteGraft] { [] }

    /// An object store has no working trees.
    public func checkedOutBranches() async throws -> Set<String> { [] }

    func readEntry(_ key: String) async throws -> RefEntry {
        let response = try await client.send(.GET, key: key)
        guard response.status == 200 else { throw client.failure("reading ref entry \(key)", response) }
        do {
            return try JSONDecoder().decode(RefEntry.self, from: Data(response.body))
        } catch {
            throw RepoError.corruptRecord("\(url): ref entry \(key)", problem: "\(error)")
        }
    }

    public func updateRef(_ update: RefUpdate) async throws {
        let latest = try await newestEntry(update.name)
        let current = latest?.target
        if let latest, current != nil, latest.kind != update.kind {
            throw RepoError.remote("\(url): '\(update.name)' is a \(latest.kind.rawValue) there, not a \(update.kind.rawValue); nothing was changed")
        }
        guard current == update.expected else { throw RepoError.remoteRefMoved(ref: update.name, remote: url) }
        if update.new == nil && current == nil { throw RepoError.remote("\(url): no branch or tag '\(update.name)' to delete") }
        if let new = update.newID {
            guard try await missingCommits([new]).isEmpty else {
                throw RepoError.remote("\(url): commit \(new.short) of '\(update.name)' was not sent; nothing was changed")
            }
            if let old = update.expectedID, !update.force, old != new {
                let forward = try await isAncestor(old, of: new)
                if update.kind == .tag || !forward { throw RepoError.nonFastForward(ref: update.name, remote: url) }
            }
        }
        let seq = (latest?.seq ?? 0) + 1
        let entry = RefEntry(kind: update.kind, name: update.name, previous: current, seq: seq, target: update.new, time: Date().timeIntervalSince1970,
                             message: update.message)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let body = Array(try encoder.encode(entry))
        let key = entryKey(update.name, seq: seq)
        let response = try await client.send(.PUT, key: key, headers: [("If-None-Match", "*"), ("Content-Type", "application/json")], body: .bytes(body))
        // 412: another writer created this entry first; 409: a conditional write raced another.
        if response.status == 412 || response.status == 409 { throw RepoError.remoteRefMoved(ref: update.name, remote: url) }
        guard (200..<300).contains(response.status) else { throw client.failure("writing ref '\(update.name)'", response) }
        // Every `compactEvery` entries of a ref, a checkpoint (best effort: the ref has moved already).
        if seq % compactEvery == 0 { _ = try? await compactRefLog() }
    }

    /// Walks commit records from `b` looking for `a` (the store has no index of parents).
    func isAncestor(_ a: ObjectID, of b: ObjectID) async throws -> Bool {
        var seen: Set<ObjectID> = [b]
        var stack = [b]
        while let c = stack.popLast() {
            if c == a { return true }
            let record = try await getCommit(c)
            for p in record.parents.compactMap(ObjectID.init(hex:)) where seen.insert(p).inserted { stack.append(p) }
        }
        return false
    }

    // MARK: - Objects and commits

    public func missingObjects(_ ids: [ObjectID]) async throws -> Set<ObjectID> {
        try await missing(ids, key: objectKey)
    }

    public func missingCommits(_ ids: [ObjectID]) async throws -> Set<ObjectID> {
        try await missing(ids, key: commitKey)
    }

    /// The ids whose key is absent. Ids are grouped by key folder (`objects/xx/`): a folder asked
    /// about for at least ``listThreshold`` ids is listed (ListObjectsV2, a page per 1000 keys), the
    /// other ids are HEADed; eight requests in flight at once.
    private func missing(_ ids: [ObjectID], key: @escaping @Sendable (ObjectID) -> String) async throws -> Set<ObjectID> {
        var byFolder: [String: [ObjectID]] = [:]
        for id in ids {
            let k = key(id)
            byFolder[String(k[...k.lastIndex(of: "/")!]), default: []].append(id)
        }
        enum Ask: Sendable { case list(String, [ObjectID]), head(ObjectID) }
        var asks: [Ask] = []
        for (folder, group) in byFolder.sorted(by: { $0.key < $1.key }) {
            if group.count >= listThreshold { asks.append(.list(folder, group)) } else { asks += group.map { .head($0) } }
        }
        let answers = try await boundedParallel(asks, limit: 8) { ask -> [ObjectID] in
            switch ask {
            case let .list(folder, group):
                let present = Set(try await self.list(prefix: folder))
                return group.filter { !present.contains(key($0)) }
            case let .head(id):
                let response = try await self.client.send(.HEAD, key: key(id))
                if response.status == 404 { return [id] }
                guard response.status == 200 else { throw self.client.failure("looking for \(key(id))", response) }
                return []
            }
        }
        return Set(answers.joined())
    }

    public func getObject(_ id: ObjectID, to destination: String) async throws -> Int {
        let response = try await client.send(.GET, key: objectKey(id), download: destination, object: id.short)
        if response.status == 404 { throw RepoError.remote("\(url): object \(id.short) is not in the store") }
        guard response.status == 200 || response.status == 206 else { throw client.failure("downloading object \(id.short)", response) }
        return response.downloaded
    }

    public func putObject(_ id: ObjectID, from source: String, byteCount: Int) async throws {
        let size = FileStat.of(source)?.size ?? byteCount
        if size > multipartThreshold {
            try await putMultipart(objectKey(id), source: source, size: size)
            return
        }
        let response = try await client.send(.PUT, key: objectKey(id), headers: [("Content-Type", "application/octet-stream")],
                                             body: .file(path: source, range: 0..<size))
        guard (200..<300).contains(response.status) else { throw client.failure("uploading object \(id.short)", response) }
    }

    /// A multipart upload: parts of ``partSize`` bytes in order, then the completion; aborted on failure.
    func putMultipart(_ key: String, source: String, size: Int) async throws {
        let started = try await client.send(.POST, key: key, query: [("uploads", "")], headers: [("Content-Type", "application/octet-stream")])
        guard started.status == 200, let uploadID = S3XML.text(of: "UploadId", in: started.body) else {
            throw client.failure("starting a multipart upload of \(key)", started)
        }
        do {
            var parts: [(Int, String)] = []
            var offset = 0
            while offset < size {
                let end = min(size, offset + partSize)
                let number = parts.count + 1
                let response = try await client.send(.PUT, key: key, query: [("partNumber", "\(number)"), ("uploadId", uploadID)],
                                                     body: .file(path: source, range: offset..<end))
                guard response.status == 200, let etag = response.header("ETag") else { throw client.failure("uploading part \(number) of \(key)", response) }
                parts.append((number, etag))
                offset = end
            }
            let xml = "<CompleteMultipartUpload>" + parts.map {
                "<Part><PartNumber>\($0.0)</PartNumber><ETag>\(S3XML.escape($0.1))</ETag></Part>"
            }.joined() + "</CompleteMultipartUpload>"
            let done = try await client.send(.POST, key: key, query: [("uploadId", uploadID)], headers: [("Content-Type", "application/xml")],
                                             body: .bytes(Array(xml.utf8)))
            // S3 may answer 200 with an <Error> body when completing fails late.
            guard done.status == 200, S3XML.errorCode(done.body) == nil else { throw client.failure("completing the upload of \(key)", done) }
        } catch {
            _ = try? await client.send(.DELETE, key: key, query: [("uploadId", uploadID)])
            throw error
        }
    }

    public func getCommit(_ id: ObjectID) async throws -> CommitRecord {
        let response = try await client.send(.GET, key: commitKey(id))
        if response.status == 404 { throw RepoError.remote("\(url): commit \(id.short) is not in the store") }
        guard response.status == 200 else { throw client.failure("reading commit \(id.short)", response) }
        return try CommitRecord.decode(Data(response.body), source: url)
    }

    public func putCommits(_ records: [CommitRecord]) async throws {
        try await ensureStoreMarker()
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            func add() {
                let record = records[next]
                next += 1
                group.addTask {
                    guard let id = ObjectID(hex: record.id) else { throw RepoError.corruptRecord("commit record \(record.id)", problem: "bad id") }
                    let response = try await self.client.send(.PUT, key: self.commitKey(id), headers: [("Content-Type", "application/json")],
                                                              body: .bytes(Array(record.encoded())))
                    guard (200..<300).contains(response.status) else { throw self.client.failure("uploading commit \(id.short)", response) }
                }
            }
            while next < records.count && next < 8 { add() }
            while try await group.next() != nil {
                if next < records.count { add() }
            }
        }
    }

    // MARK: - The store

    /// Writes `mrepo-store.json` unless it exists (create-only), then checks its version.
    func ensureStoreMarker() async throws {
        let body = Array(#"{"format":"\#(S3Transport.storeFormat)","version":\#(S3Transport.storeVersion)}"#.utf8)
        let response = try await client.send(.PUT, key: store + "mrepo-store.json", headers: [("If-None-Match", "*"), ("Content-Type", "application/json")],
                                             body: .bytes(body))
        if response.status == 412 || response.status == 409 {
            try await checkStoreVersion()
            return
        }
        guard (200..<300).contains(response.status) else { throw client.failure("writing \(store)mrepo-store.json", response) }
    }

    /// Refuses a store written by a newer mrepo (an absent marker is an empty store).
    func checkStoreVersion() async throws {
        let response = try await client.send(.GET, key: store + "mrepo-store.json")
        if response.status == 404 { return }
        guard response.status == 200 else { throw client.failure("reading \(store)mrepo-store.json", response) }
        struct Marker: Decodable { var format: String; var version: Int }
        guard let marker = try? JSONDecoder().decode(Marker.self, from: Data(response.body)), marker.format == S3Transport.storeFormat else {
            throw RepoError.remote("\(url): \(store)mrepo-store.json is not an mrepo store marker")
        }
        guard marker.version <= S3Transport.storeVersion else {
            throw RepoError.unsupportedFormat(path: url, problem: "store version \(marker.version) is newer than this mrepo understands (\(S3Transport.storeVersion))")
        }
    }

    /// Every key under `prefix` (ListObjectsV2, page by page).
    func list(prefix: String, startAfter: String? = nil) async throws -> [String] {
        var keys: [String] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix)]
            if let startAfter, token == nil { query.append(("start-after", startAfter)) }
            if let token { query.append(("continuation-token", token)) }
            let response = try await client.send(.GET, key: nil, query: query)
            guard response.status == 200 else { throw client.failure("listing \(prefix)", response) }
            let leaves = S3XML.leaves(response.body)
            keys += leaves.filter { $0.0 == "Key" }.map(\.1)
            let truncated = leaves.first { $0.0 == "IsTruncated" }?.1 == "true"
            token = truncated ? leaves.first { $0.0 == "NextContinuationToken" }?.1 : nil
        } while token != nil
        return keys
    }
}
