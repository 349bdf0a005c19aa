import Delta
import Foundation

/// Ref-log checkpoints (docs/format.md §10.4.1): a create-only object summarising, per ref, the
/// newest entry up to some `seq`. Entries are never deleted, so a checkpoint is only ever a correct
/// summary of a prefix of each ref's log: a reader (or a writer looking for a ref's newest entry)
/// starts from the newest checkpoint and lists only the entries after it, with `start-after`.
/// Two compactions that race write the same counter: the store keeps the first (`If-None-Match: *`),
/// the other changes nothing.
extension S3Transport {
    /// One checkpoint: every ref's newest entry when it was written (deleted refs included, as
    /// entries with a null target, so their `seq` is known).
    struct RefCheckpoint: Codable, Sendable {
        static let formatName = "mrepo-s3-ref-checkpoint"
        var format = RefCheckpoint.formatName
        var version = 1
        /// Counts up from 1; the key holds its complement so that the newest sorts first.
        var counter: Int
        var refs: [String: RefEntry]
    }

    static let checkpointCounterLimit = 99_999_999_999_999_999

    /// `PREFIX/repos/NAME/checkpoints/`.
    var checkpointsPrefix: String { String(refsPrefix.dropLast("refs/".count)) + "checkpoints/" }

    func checkpointKey(_ counter: Int) -> String {
        checkpointsPrefix + String(format: "%020d", S3Transport.checkpointCounterLimit - counter)
    }

    func entryKey(_ name: String, seq: Int) -> String { refFolder(name) + String(format: "%020d", seq) }

    /// The newest checkpoint, or nil: one listing of at most one key (keys sort newest first).
    func newestCheckpoint() async throws -> RefCheckpoint? {
        let response = try await client.send(.GET, key: nil, query: [("list-type", "2"), ("prefix", checkpointsPrefix), ("max-keys", "1")])
        guard response.status == 200 else { throw client.failure("listing \(checkpointsPrefix)", response) }
        guard let key = S3XML.leaves(response.body).first(where: { $0.0 == "Key" })?.1 else { return nil }
        let body = try await client.send(.GET, key: key)
        guard body.status == 200 else { throw client.failure("reading ref checkpoint \(key)", body) }
        do {
            let checkpoint = try JSONDecoder().decode(RefCheckpoint.self, from: Data(body.body))
            guard checkpoint.format == RefCheckpoint.formatName else { throw RepoError.remote("not a checkpoint") }
            guard checkpoint.version <= 1 else {
                throw RepoError.unsupportedFormat(path: url, problem: "ref checkpoint version \(checkpoint.version) is newer than this mrepo understands (1)")
            }
            return checkpoint
        } catch let error as RepoError where error.isUnsupportedFormat {
            throw error
        } catch {
            throw RepoError.corruptRecord("\(url): ref checkpoint \(key)", problem: "\(error)")
        }
    }

    /// Every ref's newest entry: from the newest checkpoint and the entries written after it (one
    /// listing of the ref folders, then one short listing per ref), or, without a checkpoint, from
    /// a listing of every entry.
    func newestEntries() async throws -> [String: RefEntry] {
        guard let checkpoint = try await newestCheckpoint() else { return try await newestEntriesByScan() }
        let folders = try await listFolders(prefix: refsPrefix)
        let byFolder = Dictionary(checkpoint.refs.map { (refFolder($0.key), $0.value) }, uniquingKeysWith: { a, _ in a })
        let newer = try await boundedParallel(folders, limit: 8) { folder -> RefEntry? in
            let known = byFolder[folder]
            let keys = try await self.list(prefix: folder, startAfter: known.map { self.entryKey($0.name, seq: $0.seq) })
            guard let latest = Self.newestKey(keys) else { return known }
            return try await self.readEntry(latest)
        }
        var out: [String: RefEntry] = checkpoint.refs
        for e in newer.compactMap({ $0 }) { out[e.name] = e }
        return out
    }

    /// Every ref's newest entry from a listing of the whole log (the layout before checkpoints).
    func newestEntriesByScan() async throws -> [String: RefEntry] {
        var latest: [String: (seq: Int, key: String)] = [:]
        for key in try await list(prefix: refsPrefix) {
            let rest = key.dropFirst(refsPrefix.count).split(separator: "/")
            guard rest.count == 2, let seq = Int(rest[1]) else { continue }
            let name = String(rest[0])
            if seq > latest[name]?.seq ?? 0 { latest[name] = (seq, key) }
        }
        let entries = try await boundedParallel(Array(latest.values), limit: 8) { try await self.readEntry($0.key) }
        return Dictionary(entries.map { ($0.name, $0) }, uniquingKeysWith: { a, b in a.seq >= b.seq ? a : b })
    }

    /// The newest entry of one ref, listing only what follows the newest checkpoint.
    func newestEntry(_ name: String) async throws -> RefEntry? {
        let known = try await newestCheckpoint()?.refs[name]
        let keys = try await list(prefix: refFolder(name), startAfter: known.map { entryKey($0.name, seq: $0.seq) })
        guard let latest = Self.newestKey(keys) else { return known }
        return try await readEntry(latest)
    }

    static func newestKey(_ keys: [String]) -> String? {
        keys.compactMap { key in key.split(separator: "/").last.flatMap { Int($0) }.map { ($0, key) } }.max { $0.0 < $1.0 }?.1
    }

    /// Writes a checkpoint of every ref's newest entry, create-only, numbered one above the newest.
    /// Returns its counter, or nil when another compaction wrote that number first (nothing changes).
    @discardableResult
    public func compactRefLog() async throws -> Int? {
        let previous = try await newestCheckpoint()
        let counter = (previous?.counter ?? 0) + 1
        let refs = try await newestEntries()
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let body = Array(try encoder.encode(RefCheckpoint(counter: counter, refs: refs)))
        let response = try await client.send(.PUT, key: checkpointKey(counter), headers: [("If-None-Match", "*"), ("Content-Type", "application/json")],
                                             body: .bytes(body))
        if response.status == 412 || response.status == 409 { return nil }
        guard (200..<300).contains(response.status) else { throw client.failure("writing ref checkpoint \(counter)", response) }
        return counter
    }

    /// The ref folders under `prefix` (ListObjectsV2 with `delimiter=/`: one key per ref, however long its log).
    func listFolders(prefix: String) async throws -> [String] {
        var folders: [String] = []
        var token: String?
        repeat {
            var query = [("list-type", "2"), ("prefix", prefix), ("delimiter", "/")]
            if let token { query.append(("continuation-token", token)) }
            let response = try await client.send(.GET, key: nil, query: query)
            guard response.status == 200 else { throw client.failure("listing \(prefix)", response) }
            let leaves = S3XML.leaves(response.body)
            folders += leaves.filter { $0.0 == "Prefix" && $0.1.hasPrefix(prefix) && $0.1.count > prefix.count }.map(\.1)
            let truncated = leaves.first { $0.0 == "IsTruncated" }?.1 == "true"
            token = truncated ? leaves.first { $0.0 == "NextContinuationToken" }?.1 : nil
        } while token != nil
        return folders
    }

    /// Runs `body` on every item, at most `limit` at once; results in no particular order.
    func boundedParallel<T: Sendable, R: Sendable>(_ items: [T], limit: Int, _ body: @escaping @Sendable (T) async throws -> R) async throws -> [R] {
        try await withThrowingTaskGroup(of: R.self) { group in
            var out: [R] = []
            var next = 0
            while next < items.count && next < limit {
                let item = items[next]
                group.addTask { try await body(item) }
                next += 1
            }
            while let r = try await group.next() {
                out.append(r)
                if next < items.count {
                    let item = items[next]
                    group.addTask { try await body(item) }
                    next += 1
                }
            }
            return out
        }
    }
}

extension RepoError {
    var isUnsupportedFormat: Bool {
        if case .unsupportedFormat = self { return true }
        return false
    }
}
