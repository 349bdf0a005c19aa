import AsyncHTTPClient
import CLinux
import Delta
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A remote served by `mrepo serve`: `http(s)://host:port/NAMESPACE/NAME`, spoken to over mrepo's
/// own protocol (`…/NAMESPACE/NAME/mrepo/v1/`, docs/serving.md). The server is a repository and
/// does the receiving itself: it verifies every pushed object before storing it, records commits
/// in one transaction and moves refs by compare-and-swap, answering 409 (not a fast-forward) or
/// 412 (the ref moved) otherwise.
///
/// HTTP goes through one AsyncHTTPClient client (``RemoteHTTP/client``), as the S3 remote's does (one HTTP stack and
/// one connection pool in the process). Objects travel as files: a download is written to disk
/// buffer by buffer as it arrives and an upload is streamed from the object file 1 MiB at a time,
/// so memory stays bounded whatever the object's size. The token comes from `MREPO_TOKEN` and is
/// sent as `Authorization: Bearer`; it is never printed.
public final class HTTPTransport: RemoteTransport, Sendable {
    public let url: String
    /// `scheme://host:port/NAMESPACE/NAME/mrepo/v1`, without a trailing slash.
    private let base: String
    private let token: String?
    /// The push session every request names (`X-Mrepo-Push-Session`), nil outside a push.
    private let session: String?
    /// Told once when the server's gc makes a request wait (a transfer's notice).
    private let notice: (@Sendable (String) -> Void)?
    private let toldOfGC = Mutex(false)

    /// Tries per request for what may be retried (dropped connections, 429, 502–504).
    static let attempts = 5
    /// The longest wait for an answer's head (an upload's answer comes after the server verified it).
    static let headTimeout: TimeAmount = .seconds(600)
    /// Small answers (ref lists, id lists, commit records) read into memory up to this size.
    static let maxAnswerBytes = 512 << 20

    /// - Parameters:
    ///   - location: the repository's URL (two path components: namespace and name).
    public init(location: URL, url: String, token: String?) throws {
        let parts = location.path.split(separator: "/")
        guard parts.count == 2, let scheme = location.scheme, let host = location.host else {
            throw RepoError.invalidArgument("'\(url)': an mrepo serve remote is http(s)://HOST:PORT/NAMESPACE/NAME")
        }
        var components = URLComponents()
        components.scheme = scheme
        components.host = host
        components.port = location.port
        components.path = "/" + parts.joined(separator: "/") + "/mrepo/v1"
        guard let base = components.url?.absoluteString else { throw RepoError.invalidArgument("'\(url)': not a valid URL") }
        self.url = url
        self.base = base
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
        session = nil
        notice = nil
    }

    /// The same remote, every request naming push session `session` (nil: none), telling `notice`
    /// when it waits for the server's gc.
    private init(_ other: HTTPTransport, session: String?, notice: (@Sendable (String) -> Void)?) {
        url = other.url
        base = other.base
        token = other.token
        self.session = session
        self.notice = notice
    }

    /// The header naming a push session (docs/serving.md, "Push sessions").
    static let sessionHeader = "X-Mrepo-Push-Session"

    /// `shallow` is absent from servers older than it (docs/serving.md).
    private struct RefList: Codable {
        var refs: [RemoteRef]
        var shallow: [RemoteGraft]?
        /// Branches a push may not move (absent from older servers).
        var checkedOut: [String]?
    }
    private struct IDList: Codable { var ids: [String] }

    /// What a request sends.
    private enum Body {
        case none
        case json(Data)
        /// A whole file, streamed.
        case file(path: String, byteCount: Int)
    }

    private func request(_ method: HTTPMethod, _ path: String, body: Body, headers: [(String, String)] = []) -> HTTPClientRequest {
        var r = HTTPClientRequest(url: base + "/" + path)
        r.method = method
        for (name, value) in headers { r.headers.add(name: name, value: value) }
        if let token { r.headers.add(name: "Authorization", value: "Bearer \(token)") }
        if let session { r.headers.add(name: HTTPTransport.sessionHeader, value: session) }
        switch body {
        case .none:
            break
        case let .json(data):
            r.headers.add(name: "Content-Type", value: "application/json")
            r.body = .bytes(ByteBuffer(bytes: data))
        case let .file(path, byteCount):
            r.headers.add(name: "Content-Type", value: "application/octet-stream")
            r.body = .stream(FileChunks(path: path, range: 0..<byteCount), length: .known(Int64(byteCount)))
        }
        return r
    }

    /// Sends a request and hands a 2xx answer to `read`; any other answer becomes a one-line error.
    /// A dropped connection or a 429/502/503/504 answer is retried with backoff when `retry` says
    /// the request may be sent twice (every request but a ref update: a compare-and-swap that
    /// succeeded and is sent again would report that the ref moved).
    /// A 503 `GCRunning` (gc runs on the server, which did nothing with the request) is sent again
    /// after its `Retry-After`, for as long as gc runs, as a folder remote's transfer waits for gc.
    ///
    /// A download (`download`: its file) asks, on each try, for the bytes the file does not hold
    /// yet (``DownloadFile``), and starts over when the server finds them past the object's end (416).
    private func send<T>(_ method: HTTPMethod, _ path: String, body: Body = .none, ref: String? = nil, retry: Bool = true,
                         waitForGC: Bool = true, timeout: TimeAmount = HTTPTransport.headTimeout, download: String? = nil,
                         read: (HTTPClientResponse) async throws -> T) async throws -> T {
        var delay = 0.2
        var attempt = 0
        /// Waits before the next try after a failed one, or throws when no try is left.
        func waitToRetry(after error: any Error) async throws {
            guard retry, attempt < HTTPTransport.attempts else {
                if RemoteHTTP.isConnectFailure(error) {
                    throw RepoError.remote("\(url): cannot connect to \(RemoteHTTP.authority(base)): \(RemoteHTTP.describe(error))")
                }
                throw RepoError.remote("\(url): \(method.rawValue) \(path) failed: \(RemoteHTTP.describe(error))")
            }
            try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
            delay *= 2
        }
        while true {
            attempt += 1
            let response: HTTPClientResponse
            do {
                let headers = download.map { DownloadFile.rangeHeader(from: DownloadFile.offset($0)) } ?? []
                response = try await RemoteHTTP.client.execute(request(method, path, body: body, headers: headers), timeout: timeout)
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                try await waitToRetry(after: error)
                continue
            }
            let status = Int(response.status.code)
            if status == 503, response.headers["X-Error-Code"].first == "GCRunning" {
                _ = try? await response.body.collect(upTo: 1 << 20)
                guard waitForGC else { throw failure(response, path: path, ref: ref) }
                waitingForGC(response.headers["X-Error-Message"].first)
                let seconds = min(max(Int(response.headers["Retry-After"].first ?? "") ?? 2, 1), 10)
                try await Task.sleep(for: .seconds(seconds))
                attempt -= 1  // not a failed try: the server is busy, and says for how long
                continue
            }
            if status == 416, let download, DownloadFile.offset(download) > 0 {
                _ = try? await response.body.collect(upTo: 1 << 20)
                try DownloadFile.restart(download)
                continue
            }
            if retry, [429, 502, 503, 504].contains(status), attempt < HTTPTransport.attempts {
                _ = try? await response.body.collect(upTo: 1 << 20)
                try await Task.sleep(nanoseconds: UInt64(delay * 1e9 * Double.random(in: 0.8...1.2)))
                delay *= 2
                continue
            }
            guard (200..<300).contains(status) else {
                _ = try? await response.body.collect(upTo: 1 << 20)
                throw failure(response, path: path, ref: ref)
            }
            do {
                return try await read(response)
            } catch let error as RepoError {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                // The body broke off (a dropped connection, a read timeout): send again if allowed.
                try await waitToRetry(after: error)
            }
        }
    }

    /// Says once that the transfer waits for the server's gc (`message`: the server's words).
    private func waitingForGC(_ message: String?) {
        let first = toldOfGC.withLock { told in
            defer { told = true }
            return !told
        }
        guard first else { return }
        var pid = ""
        if let message, let range = message.range(of: "\\(pid [0-9]+\\)", options: .regularExpression) { pid = " " + message[range] }
        notice?("\(url): waiting for gc\(pid) on the server to finish")
        CrashPoint.reach("remote.wait-gc")
    }

    /// Sends a request whose answer is small and read into memory.
    private func data(_ method: HTTPMethod, _ path: String, body: Body = .none, ref: String? = nil, retry: Bool = true,
                      waitForGC: Bool = true, timeout: TimeAmount = HTTPTransport.headTimeout) async throws -> Data {
        try await send(method, path, body: body, ref: ref, retry: retry, waitForGC: waitForGC, timeout: timeout) { response in
            Data(try await response.body.collect(upTo: HTTPTransport.maxAnswerBytes).readableBytesView)
        }
    }

    /// The one-line error for an answer that is not 2xx, in plain words (the server's own message
    /// only where it adds something).
    private func failure(_ response: HTTPClientResponse, path: String, ref: String?) -> any Error {
        let status = Int(response.status.code)
        let message = response.headers["X-Error-Message"].first ?? response.status.reasonPhrase
        switch (status, response.headers["X-Error-Code"].first) {
        case (403, let code) where path.hasPrefix("push-sessions/"):
            // No session for this push (a read token, a read-only server): what its first write will meet.
            return NoPushSession(refusal: refusal(code: code, message: message))
        case (503, "GCRunning"?) where path.hasPrefix("push-sessions/"), (503, "TooManyPushSessions"?) where path.hasPrefix("push-sessions/"):
            // The server took the token (it checks that first) but opens no session now.
            return PushSessionBusy(error: RepoError.remote("\(url): HTTP \(status): \(message)"))
        case (404, nil) where path.hasPrefix("push-sessions/"), (405, _) where path.hasPrefix("push-sessions/"),
             (501, _) where path.hasPrefix("push-sessions/"):
            // No session for this push (an older mrepo serve; not mrepo at all: the ref listing
            // that comes next says so).
            return NoPushSession(refusal: nil)
        case (401, _) where token == nil:
            return RepoError.remote("\(url): the server needs a token; set MREPO_TOKEN to a token of its --tokens file")
        case (401, _):
            return RepoError.remote("\(url): the server refused the credentials (the token in MREPO_TOKEN); set MREPO_TOKEN to a token of its --tokens file")
        case (403, let code):
            return refusal(code: code, message: message)
        case (404, "RepoNotFound"?):
            return RepoError.remote("\(url): no repository there")
        case (404, _) where path == "refs":
            // Not an mrepo serve (or a path outside one): no mrepo protocol answers there.
            return RepoError.remote("\(url): no mrepo repository there (HTTP 404 for \(path)); is this the URL of an 'mrepo serve' repository?")
        case (409, "NonFastForward"?):
            return RepoError.nonFastForward(ref: ref ?? message, remote: url)
        case (412, "RefMoved"?):
            return RepoError.remoteRefMoved(ref: ref ?? message, remote: url)
        default:
            return RepoError.remote("\(url): HTTP \(status): \(message)")
        }
    }

    /// The error of a 403: this token (or none) may not write here.
    private func refusal(code: String?, message: String) -> RepoError {
        if code == "ReadOnlyServer" {
            // A server started without --tokens: no token would help.
            return RepoError.remote("\(url): \(message): it takes no pushes; start it with --tokens FILE to accept them")
        }
        if token == nil {
            return RepoError.remote("\(url): the server refuses this without a token (\(message)); set MREPO_TOKEN to a write token of its --tokens file")
        }
        return RepoError.remote("\(url): the token in MREPO_TOKEN may not do this (\(message)); pushing needs a write token")
    }

    private func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw RepoError.remote("\(url): the server's answer is not mrepo's protocol; is this the URL of an 'mrepo serve' repository?")
        }
    }

    private func ids(_ ids: [ObjectID], _ path: String) async throws -> Set<ObjectID> {
        let body = try JSONEncoder().encode(IDList(ids: ids.map(\.hex)))
        let list = try decode(IDList.self, try await data(.POST, path, body: .json(body)))
        return Set(list.ids.compactMap(ObjectID.init(hex:)))
    }

    public func listRefs() async throws -> [String: RemoteRef] {
        let list = try decode(RefList.self, try await data(.GET, "refs"))
        return Dictionary(list.refs.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    /// From the ref listing (its `shallow` field), asked for again: one small request per fetch.
    public func shallowGrafts() async throws -> [RemoteGraft] {
        try decode(RefList.self, try await data(.GET, "refs")).shallow ?? []
    }

    /// From the ref listing (its `checkedOut` field), asked for again: one small request per push.
    public func checkedOutBranches() async throws -> Set<String> {
        Set(try decode(RefList.self, try await data(.GET, "refs")).checkedOut ?? [])
    }

    public func missingObjects(_ ids: [ObjectID]) async throws -> Set<ObjectID> {
        try await self.ids(ids, "objects/missing")
    }

    public func getObject(_ id: ObjectID, to destination: String) async throws -> Int {
        // Bytes written over every try: a try that broke off keeps what it wrote, and the next asks
        // for the rest.
        let received = Mutex(0)
        return try await send(.GET, "objects/\(id.hex)", download: destination) { response in
            let written = try await DownloadFile.write(response.body, to: destination, object: id.short, source: url, status: Int(response.status.code),
                                                       contentRange: response.headers["Content-Range"].first,
                                                       offset: DownloadFile.offset(destination)) { n in received.withLock { $0 += n } }
            if let expected = response.headers["Content-Length"].first.flatMap(Int.init), expected != written {
                throw HTTPClientError.remoteConnectionClosed
            }
            return received.withLock { $0 }
        }
    }

    public func putObject(_ id: ObjectID, from source: String, byteCount: Int) async throws {
        // Objects are immutable and content-addressed: sending one twice is harmless.
        _ = try await data(.PUT, "objects/\(id.hex)", body: .file(path: source, byteCount: byteCount))
    }

    public func missingCommits(_ ids: [ObjectID]) async throws -> Set<ObjectID> {
        try await self.ids(ids, "commits/missing")
    }

    public func getCommit(_ id: ObjectID) async throws -> CommitRecord {
        try CommitRecord.decode(try await data(.GET, "commits/\(id.hex)"), source: url)
    }

    public func putCommits(_ records: [CommitRecord]) async throws {
        var body = Data("[".utf8)
        for (i, r) in records.enumerated() {
            if i > 0 { body.append(contentsOf: Array(",".utf8)) }
            body.append(r.encoded())
        }
        body.append(contentsOf: Array("]".utf8))
        // Not resent: records are recorded in one transaction, but a second identical batch after a
        // lost answer is not guaranteed to be a no-op.
        _ = try await data(.POST, "commits", body: .json(body), retry: false)
    }

    public func updateRef(_ update: RefUpdate) async throws {
        _ = try await data(.POST, "refs", body: .json(try JSONEncoder().encode(update)), ref: update.name, retry: false)
    }

    /// A push runs in a push session: it is opened first (`POST push-sessions/ID`: the server
    /// takes the repository's read lock, so its `gc` waits), every request of the push names it
    /// (`X-Mrepo-Push-Session`), and it is closed after the last ref update, or on failure
    /// (`DELETE push-sessions/ID`; a close that fails is left to the server's idle timeout). A
    /// server older than sessions answers 404 without an error code, and one that refuses this
    /// token a session answers 403 (a read token, a read-only server): the push goes on without
    /// one, as before (one with nothing to send still succeeds; one that sends is refused at its
    /// first write). A fetch opens none (its objects are read under the read lock one by one).
    public func transfer<T>(_ kind: TransferKind, notice: (@Sendable (String) -> Void)?,
                            _ body: (any RemoteTransport) async throws -> T) async throws -> T {
        guard kind == .push else { return try await body(HTTPTransport(self, session: nil, notice: notice)) }
        let bound = HTTPTransport(self, session: UUID().uuidString.lowercased(), notice: notice)
        guard try await bound.openSession() else { return try await body(self) }
        let result: T
        do {
            result = try await body(bound)
        } catch {
            await bound.closeSession()
            throw error
        }
        await bound.closeSession()
        return result
    }

    /// Opens this transport's push session; false when the server has none for this push.
    private func openSession() async throws -> Bool {
        guard session != nil else { return false }
        do {
            try await requestSession()
            return true
        } catch is NoPushSession {
            return false
        } catch let busy as PushSessionBusy {
            throw busy.error
        }
    }

    /// Opens a push session and closes it at once: the server refuses one (403) to a token that
    /// may not push and on a read-only server. It checks the token before anything else, so a
    /// server busy with gc or with too many sessions (503) has taken it: the probe does not wait.
    /// A server older than sessions cannot be asked.
    public func checkWriteAccess() async throws {
        let probe = HTTPTransport(self, session: UUID().uuidString.lowercased(), notice: nil)
        do {
            try await probe.requestSession(waitForGC: false)
        } catch let none as NoPushSession {
            if let refusal = none.refusal { throw refusal }
            return
        } catch is PushSessionBusy {
            return
        } catch {
            // The server may have opened it before the answer was lost: close it, or its gc waits.
            await probe.closeSession()
            throw error
        }
        await probe.closeSession()
    }

    /// Asks the server to open this transport's push session (`POST push-sessions/ID`).
    private func requestSession(waitForGC: Bool = true) async throws {
        guard let session else { return }
        _ = try await data(.POST, "push-sessions/\(session)", body: .json(Data("{}".utf8)), waitForGC: waitForGC)
    }

    /// Closes the push session, once; a failure only leaves it to the server's idle timeout. It
    /// runs in a task of its own: a push cancelled (interrupted) must still close its session,
    /// which otherwise holds off the server's gc until the idle timeout.
    private func closeSession() async {
        guard let session else { return }
        // Once, briefly: a server that does not answer closes the session itself after its idle timeout.
        await Task { _ = try? await self.data(.DELETE, "push-sessions/\(session)", retry: false, timeout: .seconds(10)) }.value
    }

    /// A session request answered 404 without an error code (an mrepo serve older than sessions),
    /// 403 (a token that may not push, a read-only server), or 405/501 (no mrepo serve).
    private struct NoPushSession: Error {
        /// For a 403: the error a write of this push will meet.
        var refusal: RepoError?
    }

    /// A session request answered 503 `GCRunning` or `TooManyPushSessions` (after the retries):
    /// `error` is what a push reports.
    private struct PushSessionBusy: Error {
        var error: RepoError
    }
}
