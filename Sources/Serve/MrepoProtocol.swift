import Delta
import Foundation
import HTTPTypes
import Hummingbird
import Repo
import Synchronization

/// mrepo's own protocol, under `{repository URL}/mrepo/v1/`: the ``RemoteTransport`` operations
/// over HTTP, answered by the same repository calls a local remote uses (objects verified before
/// they are stored, commit records checked and recorded in one transaction, refs moved by
/// compare-and-swap). `HTTPTransport` is the client. docs/serving.md lists the endpoints.
extension HubService {
    /// The most ids one negotiation request may carry.
    static let maxNegotiationIDs = 10_000
    /// The largest body of commit records read into memory.
    static let maxRecordsBytes = 256 << 20

    /// A request of mrepo's protocol, in its push session when it names one (`X-Mrepo-Push-Session`),
    /// or one that opens or closes a session (``PushSessions``). Sessions are for pushes, so they
    /// need a write token, whatever the request.
    func mrepoRequest(_ repo: Repository, id: String, method: HTTPRequest.Method, rest: [String], request: Request) async throws -> Response {
        if rest.count == 2, rest[0] == "push-sessions" {
            try requireWrite(request)
            let key = try sessionKey(id, rest[1])
            switch method {
            case .post:
                _ = try await collect(request, limit: options.maxJSONBytes)
                try pushSessions.open(key, repo: repo)
            case .delete:
                pushSessions.close(key)
            default:
                throw HubError.notFound()
            }
            return Responses.json(.object([]))
        }
        guard let session = request.headers[.xMrepoPushSession] else {
            return try await mrepoProtocol(repo, id: id, method: method, rest: rest, request: request, session: nil)
        }
        try requireWrite(request)
        let key = try sessionKey(id, session)
        try pushSessions.enter(key)
        defer { pushSessions.leave(key) }
        return try await mrepoProtocol(repo, id: id, method: method, rest: rest, request: request, session: key)
    }

    private func sessionKey(_ repository: String, _ session: String) throws -> PushSessions.Key {
        guard PushSessions.isValidID(session) else {
            throw HubError.badRequest("a push session id is 8 to 64 letters, digits and '-'")
        }
        return PushSessions.Key(repository: repository, id: session)
    }

    /// `session`: the push session the request belongs to (nil: none).
    func mrepoProtocol(_ repo: Repository, id: String, method: HTTPRequest.Method, rest: [String], request: Request,
                       session: PushSessions.Key?) async throws -> Response {
        switch (method, rest) {
        case (.get, ["refs"]):
            try requireRead(request)
            var refs: [RemoteRef] = []
            for r in try repo.history.refs() { refs.append(RemoteRef(name: r.name, kind: r.kind, target: r.target, message: r.message)) }
            return try encodable(RefList(refs: refs, shallow: try repo.shallowGrafts(),
                                         checkedOut: try repo.branchesPushesMayNotMove().sorted()))
        case (.post, ["objects", "missing"]):
            try requireRead(request)
            let ids = try await idList(request)
            // A push counts on what it is told is here: claimed first, so that another session
            // closing cannot remove one between this answer and this push's commit records.
            if let session { pushSessions.claim(session, ids) }
            return try encodable(IDList(ids: repo.missingObjectFiles(ids).map(\.hex).sorted()))
        case (.post, ["commits", "missing"]):
            try requireRead(request)
            let ids = try await idList(request)
            return try encodable(IDList(ids: try repo.missingCommits(ids).map(\.hex).sorted()))
        case (.get, let r) where r.count == 2 && r[0] == "objects":
            try requireRead(request)
            guard let objectID = ObjectID(hex: r[1]) else { throw HubError.badRequest("not an object id") }
            return try objectFile(repo, lease: try await readLease(repo), objectID, range: request.headers[.range])
        case (.put, let r) where r.count == 2 && r[0] == "objects":
            try requireWrite(request)
            return try await receiveObject(repo, hex: r[1], request: request, session: session)
        case (.get, let r) where r.count == 2 && r[0] == "commits":
            try requireRead(request)
            guard let commitID = ObjectID(hex: r[1]), try repo.history.commit(commitID) != nil else {
                throw HubError.revisionNotFound(r[1])
            }
            let record = try repo.commitRecord(commitID)
            return Response(status: .ok, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: record.encoded())))
        case (.post, ["commits"]):
            try requireWrite(request)
            let bytes = try await collect(request, limit: HubService.maxRecordsBytes)
            let records: [CommitRecord]
            do {
                records = try JSONDecoder().decode([CommitRecord].self, from: Data(bytes))
            } catch {
                throw HubError.badRequest("not a list of commit records: \(error)")
            }
            try repo.withWriteLock(wait: true) { try repo.receiveCommits(records) }
            return Responses.json(.object([]))
        case (.post, ["refs"]):
            try requireWrite(request)
            let bytes = try await collect(request, limit: options.maxJSONBytes)
            guard let update = try? JSONDecoder().decode(RefUpdate.self, from: Data(bytes)) else {
                throw HubError.badRequest("not a ref update")
            }
            do {
                try repo.applyRefUpdate(update, shownAs: id)
            } catch RepoError.nonFastForward(let ref, _) {
                throw HubError(status: .conflict, code: "NonFastForward", message: ref)
            } catch RepoError.remoteRefMoved(let ref, _) {
                throw HubError(status: .preconditionFailed, code: "RefMoved", message: ref)
            } catch let RepoError.remote(message) {
                throw HubError(status: .badRequest, code: "Refused", message: message)
            }
            return Responses.json(.object([]))
        default:
            throw HubError.notFound()
        }
    }

    /// `shallow`: the repository's grafts when it is a shallow clone (an addition to v1: clients
    /// that do not know it ignore it).
    struct RefList: Codable { var refs: [RemoteRef]; var shallow: [RemoteGraft]; var checkedOut: [String] }
    struct IDList: Codable { var ids: [String] }

    func encodable<T: Encodable>(_ value: T) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return Response(status: .ok, headers: [.contentType: "application/json"],
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    func idList(_ request: Request) async throws -> [ObjectID] {
        let bytes = try await collect(request, limit: options.maxJSONBytes)
        guard let list = try? JSONDecoder().decode(IDList.self, from: Data(bytes)), list.ids.count <= HubService.maxNegotiationIDs else {
            throw HubError.badRequest("expected {\"ids\": [...]} with at most \(HubService.maxNegotiationIDs) ids")
        }
        return try list.ids.map { hex in
            guard let id = ObjectID(hex: hex) else { throw HubError.badRequest("not an id: \(hex.prefix(80))") }
            return id
        }
    }

    /// An object file's stored bytes, read and sent 1 MiB at a time: each piece is read with
    /// `pread` straight into the buffer the socket writes from (no intermediate copy), and the next
    /// is read only when the client has taken the last (the writer applies back-pressure).
    /// `lease` is released once the file is sent (or at once, when there is none).
    ///
    /// A `Range` of one span (`bytes=N-`: a client continuing a download that broke off) is answered
    /// with those bytes (206); one past the end with 416.
    func objectFile(_ repo: Repository, lease: ReaderLease, _ objectID: ObjectID, range header: String? = nil) throws -> Response {
        let path = repo.objects.path(for: objectID)
        guard let file = OpenObjectFile(path: path), let size = FileStat.of(path)?.size else {
            lease.release()
            throw HubError.notFound("object \(objectID.short) is not here")
        }
        let range: Range<Int>?
        do {
            range = try FileBody.parseRange(header, size: size)
        } catch let error as FileBody.RangeNotSatisfiable {
            file.close()
            lease.release()
            return Response(status: .rangeNotSatisfiable, headers: [.contentRange: "bytes */\(error.size)", .contentLength: "0"], body: ResponseBody())
        }
        let served = range ?? 0..<size
        // The file and the lease go with the body: closed when it is sent, or when a body that
        // never ran (the client went away first) is dropped.
        let body = ResponseBody(contentLength: served.count) { writer in
            defer {
                file.close()
                lease.release()
            }
            var sent = served.lowerBound
            while sent < served.upperBound {
                let count = min(HubService.objectPieceByteCount, served.upperBound - sent)
                var buffer = ByteBufferAllocator().buffer(capacity: count)
                let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
                    max(0, file.read(into: raw.baseAddress, count: count, at: sent))
                }
                guard n > 0 else {
                    throw HubError(status: .internalServerError, message: "object \(objectID.short) shrank while it was sent")
                }
                try await writer.write(buffer)
                sent += n
            }
            try await writer.finish(nil)
        }
        guard let range else { return Response(status: .ok, headers: [.contentType: "application/octet-stream"], body: body) }
        return Response(status: .partialContent,
                        headers: [.contentType: "application/octet-stream", .contentRange: "bytes \(range.lowerBound)-\(range.upperBound - 1)/\(size)"],
                        body: body)
    }

    /// Bytes of an object file read and written at once.
    static let objectPieceByteCount = 1 << 20

    /// Streams a pushed object file into the store's incoming area, then verifies it (decoded
    /// against its delta reference and hashed to its id) before it is renamed into place. An object
    /// installed in a push session is noted there: the session removes it when it closes unrecorded.
    func receiveObject(_ repo: Repository, hex: String, request: Request, session: PushSessions.Key?) async throws -> Response {
        guard let objectID = ObjectID(hex: hex) else { throw HubError.badRequest("not an object id") }
        if let session { pushSessions.claim(session, [objectID]) }
        if repo.objects.exists(objectID) {
            for try await _ in request.body {}
            return Responses.json(.object([]))
        }
        var file = try StreamedFile(path: repo.objects.incomingPath())
        do {
            for try await buffer in request.body {
                try buffer.withUnsafeReadableBytes { try file.append($0, limit: options.maxUploadBytes) }
            }
            file.close()
        } catch {
            file.discard()
            throw error
        }
        do {
            try repo.receiveObject(objectID, file: file.path)
        } catch let error as RepoError {
            throw HubError(status: .badRequest, code: "ObjectRejected", message: error.description)
        }
        if let session { pushSessions.noteInstalled(session, objectID) }
        return Responses.json(.object([]))
    }
}

/// An object file open for a response body: closed by the body once sent, or when the body is
/// dropped without running (the descriptor had leaked then).
final class OpenObjectFile: Sendable {
    private let fd: Mutex<Int32>

    init?(path: String) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        self.fd = Mutex(fd)
    }

    /// `pread` of `count` bytes at `offset`; -1 once closed.
    func read(into buffer: UnsafeMutableRawPointer?, count: Int, at offset: Int) -> Int {
        fd.withLock { fd in fd >= 0 ? pread(fd, buffer, count, off_t(offset)) : -1 }
    }

    func close() {
        fd.withLock { fd in
            if fd >= 0 { Glibc.close(fd) }
            fd = -1
        }
    }

    deinit { close() }
}
