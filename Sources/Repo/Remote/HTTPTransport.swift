import Delta
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// A remote served by `mrepo serve`: `http(s)://host:port/NAMESPACE/NAME`, spoken to over mrepo's
/// own protocol (`…/NAMESPACE/NAME/mrepo/v1/`, docs/serving.md). The server is a repository and
/// does the receiving itself: it verifies every pushed object before storing it, records commits
/// in one transaction and moves refs by compare-and-swap, answering 409 (not a fast-forward) or
/// 412 (the ref moved) otherwise.
///
/// Objects travel as files: downloads are written to disk as they arrive and uploads are read from
/// the object file, so memory stays bounded whatever the object's size. The token comes from
/// `MREPO_TOKEN` and is sent as `Authorization: Bearer`; it is never printed.
public final class HTTPTransport: RemoteTransport, Sendable {
    public let url: String
    private let base: URL
    private let token: String?
    private let session: URLSession

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
        guard let base = components.url else { throw RepoError.invalidArgument("'\(url)': not a valid URL") }
        self.url = url
        self.base = base
        self.token = token.flatMap { $0.isEmpty ? nil : $0 }
        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 600
        configuration.httpMaximumConnectionsPerHost = RemoteTransportLimits.parallelStreams + 2
        session = URLSession(configuration: configuration)
    }

    deinit {
        session.finishTasksAndInvalidate()
    }

    private struct RefList: Codable { var refs: [RemoteRef] }
    private struct IDList: Codable { var ids: [String] }

    private func request(_ method: String, _ path: String, json: Data? = nil) -> URLRequest {
        var r = URLRequest(url: base.appendingPathComponent(path))
        r.httpMethod = method
        if let token { r.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let json {
            r.httpBody = json
            r.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        return r
    }

    /// Sends a request and returns the body of a 2xx answer; any other answer becomes a one-line error.
    private func send(_ r: URLRequest, ref: String? = nil) async throws -> Data {
        let data: Data, response: URLResponse
        do {
            (data, response) = try await session.data(for: r)
        } catch {
            throw RepoError.remote("\(url): \(error.localizedDescription)")
        }
        try check(response, ref: ref)
        return data
    }

    private func check(_ response: URLResponse, ref: String? = nil) throws {
        guard let http = response as? HTTPURLResponse else { throw RepoError.remote("\(url): not an HTTP answer") }
        guard !(200..<300).contains(http.statusCode) else { return }
        let message = http.value(forHTTPHeaderField: "X-Error-Message") ?? HTTPURLResponse.localizedString(forStatusCode: http.statusCode)
        switch (http.statusCode, http.value(forHTTPHeaderField: "X-Error-Code")) {
        case (401, _):
            throw RepoError.remote("\(url): the server refused the credentials (\(message)); set MREPO_TOKEN to a token of its --tokens file")
        case (403, _):
            throw RepoError.remote("\(url): not allowed (\(message)); pushing needs a write token in MREPO_TOKEN")
        case (404, "RepoNotFound"?):
            throw RepoError.remote("\(url): no repository there")
        case (409, "NonFastForward"?):
            throw RepoError.nonFastForward(ref: ref ?? message, remote: url)
        case (412, "RefMoved"?):
            throw RepoError.remoteRefMoved(ref: ref ?? message, remote: url)
        default:
            throw RepoError.remote("\(url): HTTP \(http.statusCode): \(message)")
        }
    }

    private func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        do {
            return try JSONDecoder().decode(type, from: data)
        } catch {
            throw RepoError.remote("\(url): unexpected answer from the server (\(error))")
        }
    }

    private func ids(_ ids: [ObjectID], _ path: String) async throws -> Set<ObjectID> {
        let body = try JSONEncoder().encode(IDList(ids: ids.map(\.hex)))
        let list = try decode(IDList.self, try await send(request("POST", path, json: body)))
        return Set(list.ids.compactMap(ObjectID.init(hex:)))
    }

    public func listRefs() async throws -> [String: RemoteRef] {
        let list = try decode(RefList.self, try await send(request("GET", "refs")))
        return Dictionary(list.refs.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
    }

    public func missingObjects(_ ids: [ObjectID]) async throws -> Set<ObjectID> {
        try await self.ids(ids, "objects/missing")
    }

    public func getObject(_ id: ObjectID, to destination: String) async throws -> Int {
        let downloaded: URL, response: URLResponse
        do {
            (downloaded, response) = try await session.download(for: request("GET", "objects/\(id.hex)"))
        } catch {
            throw RepoError.remote("\(url): \(error.localizedDescription)")
        }
        defer { try? FileManager.default.removeItem(at: downloaded) }
        try check(response)
        return try FileCopy.copy(from: downloaded.path, to: destination)
    }

    public func putObject(_ id: ObjectID, from source: String, byteCount: Int) async throws {
        var r = request("PUT", "objects/\(id.hex)")
        r.setValue("application/octet-stream", forHTTPHeaderField: "Content-Type")
        let response: URLResponse
        do {
            (_, response) = try await session.upload(for: r, fromFile: URL(fileURLWithPath: source))
        } catch {
            throw RepoError.remote("\(url): \(error.localizedDescription)")
        }
        try check(response)
    }

    public func missingCommits(_ ids: [ObjectID]) async throws -> Set<ObjectID> {
        try await self.ids(ids, "commits/missing")
    }

    public func getCommit(_ id: ObjectID) async throws -> CommitRecord {
        try CommitRecord.decode(try await send(request("GET", "commits/\(id.hex)")), source: url)
    }

    public func putCommits(_ records: [CommitRecord]) async throws {
        var body = Data("[".utf8)
        for (i, r) in records.enumerated() {
            if i > 0 { body.append(contentsOf: Array(",".utf8)) }
            body.append(r.encoded())
        }
        body.append(contentsOf: Array("]".utf8))
        _ = try await send(request("POST", "commits", json: body))
    }

    public func updateRef(_ update: RefUpdate) async throws {
        _ = try await send(request("POST", "refs", json: try JSONEncoder().encode(update)), ref: update.name)
    }
}
