import Delta
import Foundation
import HTTPTypes
import Hummingbird
import Repo

/// How `mrepo serve` runs.
public struct ServeOptions: Sendable {
    /// The folder whose repositories are served (`ns/name` below it).
    public var root: String
    public var host: String
    /// 0 picks a free port.
    public var port: Int
    /// nil: read-only to anyone.
    public var tokens: TokenStore?
    /// The largest upload (an LFS object) accepted, in bytes.
    public var maxUploadBytes: Int
    /// The largest commit request (NDJSON, inline files base64-encoded) accepted, in bytes.
    public var maxCommitBytes: Int
    /// The largest JSON request body accepted, in bytes.
    public var maxJSONBytes: Int
    /// A client that takes no bytes of an answer for this long is disconnected (a stalled download
    /// must not hold a repository's read lock, which `gc` waits for, for ever).
    public var sendTimeout: Duration
    /// A push session without a request for this long is closed, its read lock released.
    public var pushSessionTimeout: Duration
    /// The most push sessions open at once (each holds a lock file open).
    public var maxPushSessions: Int
    /// How long a read waits for a `gc` running on its repository (without holding a server
    /// thread) before it is answered 503 `GCRunning` with `Retry-After`.
    public var gcWait: Duration

    public init(root: String, host: String = "127.0.0.1", port: Int = 0, tokens: TokenStore? = nil,
                maxUploadBytes: Int = 64 << 30, maxCommitBytes: Int = 1 << 30, maxJSONBytes: Int = 8 << 20,
                sendTimeout: Duration = .seconds(60), pushSessionTimeout: Duration = .seconds(600), maxPushSessions: Int = 64,
                gcWait: Duration = .seconds(30)) {
        self.root = root
        self.host = host
        self.port = port
        self.tokens = tokens
        self.maxUploadBytes = maxUploadBytes
        self.maxCommitBytes = maxCommitBytes
        self.maxJSONBytes = maxJSONBytes
        self.sendTimeout = sendTimeout
        self.pushSessionTimeout = pushSessionTimeout
        self.maxPushSessions = maxPushSessions
        self.gcWait = gcWait
    }
}

/// Answers every request of `mrepo serve`: authenticates, parses and validates the path, and
/// dispatches to the Hub API's read and write handlers.
struct HubService: HTTPResponder, Sendable {
    typealias Context = BasicRequestContext
    let options: ServeOptions
    let registry: RepoRegistry
    let metadata = FileMetadataCache()
    let uploads: UploadStore
    let pushSessions: PushSessions

    init(options: ServeOptions) throws {
        self.options = options
        registry = try RepoRegistry(root: options.root)
        uploads = UploadStore()
        pushSessions = PushSessions(idleTimeout: options.pushSessionTimeout, limit: options.maxPushSessions)
    }

    func respond(to request: Request, context: Context) async throws -> Response {
        do {
            return try await route(request)
        } catch let error as HubError {
            return error.response()
        } catch {
            return HubError.from(error).response()
        }
    }

    /// The access the request's `Authorization` header grants; throws 401 for an unknown token.
    func access(_ request: Request) throws -> Access? {
        guard let tokens = options.tokens else { return .read }
        guard let header = request.headers[.authorization] else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { throw HubError.invalidCredentials }
        guard let access = tokens.access(for: String(parts[1]).trimmingCharacters(in: .whitespaces)) else {
            throw HubError.invalidCredentials
        }
        return access
    }

    /// The repository's read lock for one answer (gc deletes nothing it reads while it is held).
    /// While gc runs there the request waits, polling, without holding one of the server's few
    /// threads (a blocking wait on two of them stalled every other request until gc ended), for at
    /// most ``ServeOptions/gcWait``; then it is answered 503 `GCRunning` with `Retry-After`.
    func readLease(_ repo: Repository) async throws -> ReaderLease {
        let deadline = ContinuousClock.now + options.gcWait
        var pause = Duration.milliseconds(10)
        while true {
            do throws(GCRunning) {
                return try repo.readerLeaseWithoutWaiting()
            } catch {
                guard ContinuousClock.now + pause <= deadline else { throw HubError.gcRunning(error, retry: "the request") }
                try await Task.sleep(for: pause)
                pause = min(pause * 2, .milliseconds(250))
            }
        }
    }

    func requireRead(_ request: Request) throws {
        guard try access(request) != nil else {
            throw HubError(status: .unauthorized, message: "Authentication required: send a token (Authorization: Bearer TOKEN)")
        }
    }

    func requireWrite(_ request: Request) throws {
        guard options.tokens != nil else {
            throw HubError(status: .forbidden, code: "ReadOnlyServer", message: "this server is read-only (started without --tokens)")
        }
        guard let access = try access(request) else { throw HubError.authenticationRequired }
        guard access >= .write else { throw HubError.forbidden }
    }

    private func route(_ request: Request) async throws -> Response {
        // Sessions of pushes that went silent release their locks (cheap: a few entries at most).
        pushSessions.expireIdle()
        let path = try RequestPath(rawPath: request.uri.path, rawQuery: request.uri.query)
        let c = path.components
        let method = request.method
        // The LFS endpoints carry the repository as `{name}.git`.
        if c.count >= 5, c[1].hasSuffix(".git"), c[2] == "info", c[3] == "lfs", c[4] == "objects" {
            let name = String(c[1].dropLast(4))
            let repo = try registry.repository(c[0], name)
            let id = c[0] + "/" + name
            switch (method, Array(c.dropFirst(5))) {
            case (.post, ["batch"]):
                try requireWrite(request)
                return try await lfsBatch(repo, id: id, request: request)
            case (.put, let rest) where rest.count == 3 && rest[0] == "upload":
                // Authorised by the ticket the batch answer handed out (clients send no token here).
                return try await lfsUpload(repo, id: id, oid: rest[1], size: rest[2], ticket: path.query["ticket"], request: request)
            case (.post, ["verify"]):
                try requireWrite(request)
                return try await lfsVerify(repo, id: id, request: request)
            default:
                throw HubError.notFound()
            }
        }
        if c.first == "api" {
            if method == .post, c == ["api", "repos", "create"] {
                try requireWrite(request)
                return try await createRepo(request)
            }
            if method == .post, c == ["api", "validate-yaml"] {
                // upload_folder asks before it uploads a README.md; model cards are not checked here.
                try requireRead(request)
                _ = try await jsonBody(request)
                return Responses.json(.object([JSONMember("errors", .array([])), JSONMember("warnings", .array([]))]))
            }
            guard c.count >= 4, c[1] == "models" else { throw HubError.notFound() }
            let repo = try registry.repository(c[2], c[3])
            let id = c[2] + "/" + c[3]
            let rest = Array(c.dropFirst(4))
            switch (method, rest.first) {
            case (.get, nil):
                try requireRead(request)
                return try modelInfo(repo, lease: try await readLease(repo), id: id, revision: nil, query: path.query)
            case (.get, "revision") where rest.count == 2:
                try requireRead(request)
                return try modelInfo(repo, lease: try await readLease(repo), id: id, revision: rest[1], query: path.query)
            case (.get, "tree") where rest.count >= 2:
                try requireRead(request)
                let sub = rest.count > 2 ? try RequestPath.repoPath(rest[2...]) : nil
                return try tree(repo, lease: try await readLease(repo), revision: rest[1], path: sub, query: path.query, request: request)
            case (.get, "commits") where rest.count == 2:
                try requireRead(request)
                return try commits(repo, lease: try await readLease(repo), revision: rest[1], query: path.query, request: request)
            case (.get, "refs") where rest.count == 1:
                try requireRead(request)
                return try refs(repo)
            case (.post, "branch") where rest.count == 2:
                try requireWrite(request)
                return try await createBranch(repo, name: rest[1], request: request)
            case (.delete, "branch") where rest.count == 2:
                try requireWrite(request)
                return try deleteRef(repo, name: rest[1], kind: .branch)
            case (.post, "tag") where rest.count == 2:
                try requireWrite(request)
                return try await createTag(repo, revision: rest[1], request: request)
            case (.delete, "tag") where rest.count == 2:
                try requireWrite(request)
                return try deleteRef(repo, name: rest[1], kind: .tag)
            case (.post, "preupload") where rest.count == 2:
                try requireWrite(request)
                if ["1", "true"].contains(path.query["create_pr"]?.lowercased() ?? "") {
                    throw HubError.badRequest("pull requests are not supported by mrepo serve; commit to a branch of your own instead (create_branch)")
                }
                return try await preupload(repo, revision: rest[1], request: request)
            case (.post, "commit") where rest.count == 2:
                try requireWrite(request)
                // A change meant for review must not land on the branch: there are no pull requests here.
                if ["1", "true"].contains(path.query["create_pr"]?.lowercased() ?? "") {
                    throw HubError.badRequest("pull requests are not supported by mrepo serve; commit to a branch of your own instead (create_branch)")
                }
                return try await commit(repo, id: id, revision: rest[1], request: request)
            default:
                throw HubError.notFound()
            }
        }
        // /{ns}/{name}/mrepo/v1/…: mrepo's own protocol (clone, fetch, push).
        if c.count >= 5, c[2] == "mrepo", c[3] == "v1" {
            let repo = try registry.repository(c[0], c[1])
            return try await mrepoRequest(repo, id: c[0] + "/" + c[1], method: method, rest: Array(c.dropFirst(4)), request: request)
        }
        // /{ns}/{name}/resolve/{rev}/{path}
        if c.count >= 5, c[2] == "resolve", method == .get || method == .head {
            try requireRead(request)
            let repo = try registry.repository(c[0], c[1])
            let file = try RequestPath.repoPath(c[4...])
            return try resolveFile(repo, lease: try await readLease(repo), revision: c[3], path: file, request: request)
        }
        throw HubError.notFound()
    }

    /// A request body of at most `limit` bytes, or 413.
    func collect(_ request: Request, limit: Int) async throws -> [UInt8] {
        var bytes: [UInt8] = []
        for try await buffer in request.body {
            guard bytes.count + buffer.readableBytes <= limit else { throw HubError.tooLarge(limit) }
            bytes.append(contentsOf: buffer.readableBytesView)
        }
        return bytes
    }

    /// A JSON request body (an empty body is an empty object).
    func jsonBody(_ request: Request) async throws -> JSONValue {
        let bytes = try await collect(request, limit: options.maxJSONBytes)
        if bytes.allSatisfy({ $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }) { return .object([]) }
        do {
            return try JSONValue.parse(bytes)
        } catch {
            throw HubError.badRequest("the request body is not valid JSON: \(error)")
        }
    }
}
