import Delta
import Foundation
import HTTPTypes
import Hummingbird
import Repo

/// The read side of the Hugging Face Hub API: repository info, tree listings, refs, and
/// `resolve` (HEAD and GET with ranges), as `huggingface_hub` and `transformers` use them.
extension HubService {
    /// `GET /api/models/{ns}/{name}[/revision/{rev}]`.
    /// Releases `lease` (``readLease(_:)``'s) when answered.
    func modelInfo(_ repo: Repository, lease: ReaderLease, id: String, revision: String?, query: [String: String]) throws -> Response {
        defer { lease.release() }
        let commitID: ObjectID?
        if let revision {
            commitID = try resolve(repo, revision)
        } else {
            commitID = try repo.headCommit()
        }
        var siblings: [JSONValue] = []
        var lastModified = Date(timeIntervalSince1970: 0)
        var parameters: [String: Int] = [:]
        if let commitID {
            let commit = try repo.commit(commitID)
            lastModified = commit.date
            let withBlobs = query["blobs"] == "true" || query["blobs"] == "1"
            let tree = try repo.tree(of: commitID)
            // The Hub's `safetensors` summary: parameters by dtype over every safetensors file.
            for (_, t) in tree.modelTensors { parameters[t.dtype.rawValue, default: 0] += t.shape.elementCount ?? 0 }
            for file in tree.files {
                var members = [JSONMember("rfilename", .string(file.path))]
                if withBlobs {
                    let meta = try metadata.metadata(of: file, in: repo)
                    members.append(JSONMember("size", .int(file.byteCount)))
                    members.append(JSONMember("blobId", .string(meta.gitOID)))
                    if meta.isLFS { members.append(JSONMember("lfs", lfsJSON(meta, shaKey: "sha256"))) }
                }
                siblings.append(.object(members))
            }
        }
        let namespace = String(id.split(separator: "/").first ?? "")
        return Responses.json(.object([
            JSONMember("_id", .string(id)),
            JSONMember("id", .string(id)),
            JSONMember("modelId", .string(id)),
            JSONMember("author", .string(namespace)),
            JSONMember("sha", commitID.map { .string(HubIDs.commit($0)) } ?? .null),
            JSONMember("lastModified", .string(HubService.isoDate(lastModified))),
            JSONMember("createdAt", .string(HubService.isoDate(lastModified))),
            JSONMember("private", .bool(false)),
            JSONMember("disabled", .bool(false)),
            JSONMember("gated", .bool(false)),
            JSONMember("downloads", .int(0)),
            JSONMember("likes", .int(0)),
            JSONMember("tags", .array([])),
            JSONMember("siblings", .array(siblings)),
            JSONMember("safetensors", parameters.isEmpty ? .null : .object([
                JSONMember("parameters", .object(parameters.sorted { $0.key < $1.key }.map { JSONMember($0.key, .int($0.value)) })),
                JSONMember("total", .int(parameters.values.reduce(0, +))),
            ])),
        ]))
    }

    func lfsJSON(_ meta: FileMetadata, shaKey: String) -> JSONValue {
        .object([JSONMember(shaKey, .string(meta.sha256.hex)), JSONMember("size", .int(meta.size)),
                 JSONMember("pointerSize", .int(meta.pointerSize))])
    }

    /// `GET /api/models/{ns}/{name}/tree/{rev}[/{path}]?recursive=&cursor=`: pages of 1000 entries,
    /// the next page named by a `Link: <…>; rel="next"` header.
    func tree(_ repo: Repository, lease: ReaderLease, revision: String, path: String?, query: [String: String], request: Request) throws -> Response {
        defer { lease.release() }
        let path = path.flatMap { $0.isEmpty ? nil : $0 }
        // A repository with no commit yet (its default branch unborn) lists as empty, as the Hub
        // lists a repository with nothing in it: `[]`, and EntryNotFound for any path inside.
        if try isUnbornDefault(repo, revision) {
            guard let path else { return Responses.json(.array([])) }
            throw HubError.entryNotFound(path, revision: revision, commit: nil)
        }
        let commitID = try resolve(repo, revision)
        let files = try repo.tree(of: commitID).files
        let recursive = query["recursive"] == "true" || query["recursive"] == "1"
        let prefix = path.map { $0 + "/" } ?? ""
        // The Hub lists folders only: the path of a file is not a tree (404 EntryNotFound, which
        // huggingface_hub's HfFileSystem.ls catches to list the parent folder instead).
        if let path, !files.contains(where: { $0.path.hasPrefix(prefix) }) {
            throw HubError.entryNotFound(path, revision: revision, commit: commitID)
        }
        var folders = Set<String>()
        var entries: [(path: String, file: TreeFile?)] = []
        for file in files where file.path.hasPrefix(prefix) {
            let rest = file.path.dropFirst(prefix.count)
            let parts = rest.split(separator: "/")
            // Every folder between the listed one and the file.
            for depth in 1..<max(1, parts.count) where recursive || depth == 1 {
                let folder = prefix + parts[0..<depth].joined(separator: "/")
                if folders.insert(folder).inserted { entries.append((folder, nil)) }
            }
            if recursive || parts.count == 1 { entries.append((file.path, file)) }
        }
        entries.sort { $0.path < $1.path }
        let pageSize = max(1, min(1000, Int(query["limit"] ?? "") ?? 1000))
        let start = min(entries.count, try pageStart(query))
        let page = entries[start..<min(entries.count, start + pageSize)]
        var out: [JSONValue] = []
        for entry in page {
            guard let file = entry.file else {
                out.append(.object([JSONMember("type", .string("directory")),
                                    JSONMember("oid", .string(GitHash.sha1(Array("tree \(entry.path)".utf8)))),
                                    JSONMember("size", .int(0)), JSONMember("path", .string(entry.path))]))
                continue
            }
            let meta = try metadata.metadata(of: file, in: repo)
            var members = [JSONMember("type", .string("file")), JSONMember("oid", .string(meta.gitOID)),
                           JSONMember("size", .int(file.byteCount)), JSONMember("path", .string(file.path))]
            if meta.isLFS { members.append(JSONMember("lfs", lfsJSON(meta, shaKey: "oid"))) }
            out.append(.object(members))
        }
        return Responses.json(.array(out), headers: start + pageSize < entries.count ? nextPage(request, query, cursor: start + pageSize) : [:])
    }

    /// Whether `revision` is the default branch of a repository with no commit yet (made by `create_repo`).
    func isUnbornDefault(_ repo: Repository, _ revision: String) throws -> Bool {
        try repo.history.head().branchName == revision && repo.history.ref(named: revision) == nil && repo.headCommit() == nil
    }

    /// Where a page of a listing starts: its `cursor`, what the `Link` of the page before gave (a
    /// number of entries to skip), bounded so that sums with it cannot overflow; 0 without one. A
    /// cursor that is not a number is a bad request.
    func pageStart(_ query: [String: String]) throws -> Int {
        guard let cursor = query["cursor"], !cursor.isEmpty else { return 0 }
        guard let skip = UInt64(cursor) else {
            throw HubError.badRequest("invalid cursor '\(HubError.headerSafe(String(cursor.prefix(40))))': follow the Link of the page before")
        }
        return Int(min(skip, 1 << 40))
    }

    /// The `Link: <…?cursor=N>; rel="next"` header of a paged listing: the request's own query, with
    /// the cursor of the next page (huggingface_hub sends its parameters on the first page only).
    func nextPage(_ request: Request, _ query: [String: String], cursor: Int) -> HTTPFields {
        var q = query
        q["cursor"] = String(cursor)
        let queryText = q.keys.sorted().map { "\(RequestPath.encode($0, keepSlash: false))=\(RequestPath.encode(q[$0]!, keepSlash: false))" }.joined(separator: "&")
        var headers = HTTPFields()
        headers[.link] = "<\(baseURL(request) + request.uri.path)?\(queryText)>; rel=\"next\""
        return headers
    }

    /// `GET /api/models/{ns}/{name}/refs`.
    func refs(_ repo: Repository) throws -> Response {
        let branches = try repo.branches().map { b -> JSONValue in
            .object([JSONMember("name", .string(b.name)), JSONMember("ref", .string("refs/heads/\(b.name)")),
                     JSONMember("targetCommit", .string(HubIDs.commit(b.target)))])
        }
        let tags = try repo.tags().map { t -> JSONValue in
            .object([JSONMember("name", .string(t.name)), JSONMember("ref", .string("refs/tags/\(t.name)")),
                     JSONMember("targetCommit", .string(HubIDs.commit(t.target)))])
        }
        return Responses.json(.object([JSONMember("branches", .array(branches)), JSONMember("tags", .array(tags)),
                                       JSONMember("converts", .array([])), JSONMember("pullRequests", .array([]))]))
    }

    /// `HEAD` and `GET /{ns}/{name}/resolve/{rev}/{path}`: the headers the clients need (commit,
    /// ETag = SHA-256, size, ranges) and the bytes, streamed from the object store.
    /// `lease` is released once the body is sent (or at once, when there is none).
    func resolveFile(_ repo: Repository, lease: ReaderLease, revision: String, path: String, request: Request) throws -> Response {
        var handedOver = false
        defer { if !handedOver { lease.release() } }
        let commitID = try resolve(repo, revision)
        guard let file = try repo.tree(of: commitID).file(at: path) else {
            throw HubError.entryNotFound(path, commit: commitID)
        }
        let meta = try metadata.metadata(of: file, in: repo)
        var headers = HTTPFields()
        headers[.xRepoCommit] = HubIDs.commit(commitID)
        headers[.eTag] = "\"\(meta.sha256.hex)\""
        headers[.acceptRanges] = "bytes"
        headers[.contentType] = "application/octet-stream"
        // A client that holds this version already (its ETag, or any with `*`) gets 304, no body.
        if let tags = request.headers[.ifNoneMatch],
           tags.split(separator: ",").contains(where: { t in
               let tag = t.trimmingCharacters(in: .whitespaces)
               return tag == "*" || tag == headers[.eTag] || tag == "W/" + (headers[.eTag] ?? "")
           }) {
            return Response(status: .notModified, headers: headers, body: ResponseBody())
        }
        let range: Range<Int>?
        do {
            range = try FileBody.parseRange(request.headers[.range], size: file.byteCount)
        } catch let error as FileBody.RangeNotSatisfiable {
            headers[.contentRange] = "bytes */\(error.size)"
            headers[.contentLength] = "0"
            return Response(status: .rangeNotSatisfiable, headers: headers, body: ResponseBody())
        }
        let served = range ?? 0..<file.byteCount
        var status = HTTPResponse.Status.ok
        if let range {
            status = .partialContent
            headers[.contentRange] = "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(file.byteCount)"
        }
        headers[.contentLength] = String(served.count)
        if request.method == .head {
            return Response(status: status, headers: headers, body: ResponseBody())
        }
        let body = try FileBody.body(repo: repo, file: file, range: served, lease: lease)
        handedOver = true
        return Response(status: status, headers: headers, body: body)
    }

    /// A revision from a URL: branch, tag, or a commit id of 40 or 64 hex digits.
    func resolve(_ repo: Repository, _ revision: String) throws -> ObjectID {
        do {
            return try repo.resolveExact(try RequestPath.revision(revision))
        } catch let error as RepoError {
            if case .unknownRevision = error { throw HubError.revisionNotFound(revision) }
            throw error
        }
    }

    /// `http://host:port` as the client addressed this server.
    func baseURL(_ request: Request) -> String {
        let host = request.head.authority ?? "\(options.host):\(options.port)"
        return "http://\(host)"
    }

    static func isoDate(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        f.timeZone = TimeZone(identifier: "UTC")
        return f.string(from: date)
    }
}
