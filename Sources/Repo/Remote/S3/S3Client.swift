import AsyncHTTPClient
import Delta
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization

/// A small S3 client: path-style requests signed with SigV4, bodies from memory or streamed from
/// a file range, responses into memory or streamed into a file, retries with backoff on 5xx,
/// throttling (`SlowDown`) and dropped connections.
final class S3Client: Sendable {
    let configuration: S3Configuration
    let bucket: String
    /// The URL the user gave, for messages.
    let url: String
    private let signer: S3Signer
    private let host: String
    static let attempts = 5

    init(configuration: S3Configuration, bucket: String, url: String) {
        self.configuration = configuration
        self.bucket = bucket
        self.url = url
        signer = S3Signer(credentials: configuration.credentials, region: configuration.region)
        let endpoint = configuration.endpoint
        let defaultPort = endpoint.scheme == "https" ? 443 : 80
        host = endpoint.host! + (endpoint.port.map { $0 == defaultPort ? "" : ":\($0)" } ?? "")
    }

    enum Body: Sendable {
        case empty
        case bytes([UInt8])
        /// A byte range of a file, streamed 1 MiB at a time.
        case file(path: String, range: Range<Int>)
    }

    struct Response: Sendable {
        var status: Int
        var headers: HTTPHeaders
        var body: [UInt8]
        /// Bytes written into the download file.
        var downloaded = 0

        func header(_ name: String) -> String? { headers[name].first }
    }

    /// Sends one request (retrying what is worth retrying). A response whose status is 200–299
    /// is returned; others too, for the caller to judge (404, 412), except errors of
    /// authorisation, which throw the one-line credential error.
    ///
    /// - Parameter download: write a 2xx body into this file instead of memory. Each try asks for
    ///   what the file does not hold yet (``DownloadFile``); ``Response/downloaded`` counts the bytes
    ///   written over every try. `object` names it in messages.
    func send(_ method: HTTPMethod, key: String?, query: [(String, String)] = [], headers: [(String, String)] = [],
              body: Body = .empty, download: String? = nil, object: String = "") async throws -> Response {
        let path = "/" + S3Signer.encode(bucket) + (key.map { "/" + S3Signer.encodePath($0) } ?? "")
        let payloadHash = try S3Client.payloadHash(body)
        var queryText = query.map { "\(S3Signer.encode($0.0))=\(S3Signer.encode($0.1))" }.joined(separator: "&")
        if !queryText.isEmpty { queryText = "?" + queryText }
        let target = "\(configuration.endpoint.scheme!)://\(host)\(path)\(queryText)"
        var delay: Double = 0.2
        var attempt = 0
        let received = Mutex(0)
        while true {
            attempt += 1
            do {
                var response = try await once(method, target: target, path: path, query: query, headers: headers, body: body,
                                              payloadHash: payloadHash, download: download, object: object) { n in received.withLock { $0 += n } }
                response.downloaded = received.withLock { $0 }
                if response.status == 416, let download, DownloadFile.offset(download) > 0 {
                    // What the file holds is longer than the object: start over.
                    try DownloadFile.restart(download)
                    continue
                }
                if S3Client.isRetryable(response), attempt < S3Client.attempts {
                    try await Task.sleep(nanoseconds: UInt64(delay * 1e9 * Double.random(in: 0.8...1.2)))
                    delay *= 2
                    continue
                }
                if [401, 403].contains(response.status) { throw credentialError(response) }
                return response
            } catch let error as RepoError {
                throw error
            } catch is CancellationError {
                throw CancellationError()
            } catch {
                // A dropped connection, a timeout: worth another try while attempts remain.
                guard attempt < S3Client.attempts else { throw networkError(method, key, error) }
                try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                delay *= 2
            }
        }
    }

    private func once(_ method: HTTPMethod, target: String, path: String, query: [(String, String)], headers: [(String, String)],
                      body: Body, payloadHash: String, download: String?, object: String, written: (Int) -> Void) async throws -> Response {
        var request = HTTPClientRequest(url: target)
        request.method = method
        let offset = download.map(DownloadFile.offset) ?? 0
        for (name, value) in headers + DownloadFile.rangeHeader(from: offset) { request.headers.add(name: name, value: value) }
        // Only host and x-amz-* headers are signed: proxies and stores may respell the others
        // (SigV4 allows unsigned headers).
        let signedHeaders = headers.filter { $0.0.lowercased().hasPrefix("x-amz-") }
        for (name, value) in signer.sign(method: method.rawValue, host: host, path: path, query: query, headers: signedHeaders, payloadHash: payloadHash) {
            request.headers.add(name: name, value: value)
        }
        switch body {
        case .empty:
            break
        case let .bytes(bytes):
            request.body = .bytes(ByteBuffer(bytes: bytes))
        case let .file(path, range):
            request.body = .stream(FileChunks(path: path, range: range), length: .known(Int64(range.count)))
        }
        let response = try await RemoteHTTP.client.execute(request, timeout: .seconds(600))
        var out = Response(status: Int(response.status.code), headers: response.headers, body: [])
        if let download, (200..<300).contains(out.status) {
            out.downloaded = try await DownloadFile.write(response.body, to: download, object: object, source: target, status: out.status,
                                                          contentRange: out.header("content-range"), offset: offset, written: written)
            if let expected = out.header("content-length").flatMap(Int.init), expected != out.downloaded {
                throw HTTPClientError.remoteConnectionClosed
            }
        } else {
            let collected = try await response.body.collect(upTo: 64 << 20)
            out.body = Array(collected.readableBytesView)
        }
        return out
    }

    /// 5xx (503 is S3's `SlowDown`), 429, and a throttling or internal error code.
    static func isRetryable(_ response: Response) -> Bool {
        if response.status >= 500 || response.status == 429 { return true }
        let code = S3XML.errorCode(response.body)
        return code == "SlowDown" || code == "RequestTimeout" || code == "InternalError"
    }

    /// The hex SHA-256 of a body (a file range is read once for it, in bounded memory).
    static func payloadHash(_ body: Body) throws -> String {
        switch body {
        case .empty:
            return S3Signer.emptyPayloadHash
        case let .bytes(bytes):
            return SHA256.hash(bytes).hex
        case let .file(path, range):
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw RepoError.io(path: path, reason: "cannot open: \(errnoDescription())") }
            defer { close(fd) }
            let sha = SHA256()
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
            defer { buffer.deallocate() }
            var offset = range.lowerBound
            while offset < range.upperBound {
                let n = pread(fd, buffer.baseAddress, min(buffer.count, range.upperBound - offset), off_t(offset))
                guard n > 0 else { throw RepoError.io(path: path, reason: "read failed: \(n < 0 ? errnoDescription() : "unexpected end of file")") }
                sha.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                offset += n
            }
            return sha.finalize().hex
        }
    }

    /// The one-line error for a refused signature or key: nothing was changed.
    func credentialError(_ response: Response) -> RepoError {
        let code = S3XML.errorCode(response.body) ?? "HTTP \(response.status)"
        let message = S3XML.text(of: "Message", in: response.body).map { ": \($0)" } ?? ""
        return RepoError.remote("\(url): the store refused the credentials or the request (\(code)\(message)); check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (or the profile in ~/.aws/credentials) and the bucket; nothing was changed")
    }

    /// The one-line error for a request that got no answer: the endpoint when no connection could
    /// be made ("connection refused"), else the request; plain words either way.
    func networkError(_ method: HTTPMethod, _ key: String?, _ error: any Error) -> RepoError {
        if RemoteHTTP.isConnectFailure(error) {
            return RepoError.remote("\(url): cannot connect to \(configuration.endpoint.absoluteString): \(RemoteHTTP.describe(error))")
        }
        return RepoError.remote("\(url): \(method.rawValue) \(key ?? bucket) failed: \(RemoteHTTP.describe(error))")
    }

    /// A one-line error for any other unexpected answer.
    func failure(_ what: String, _ response: Response) -> RepoError {
        if S3XML.errorCode(response.body) == "NoSuchBucket" {
            return RepoError.remote("\(url): the bucket '\(bucket)' does not exist at \(configuration.endpoint.absoluteString); create it, or check the URL and AWS_ENDPOINT_URL")
        }
        let code = S3XML.errorCode(response.body).map { " \($0)" } ?? ""
        let message = S3XML.text(of: "Message", in: response.body).map { ": \($0)" } ?? ""
        return RepoError.remote("\(url): \(what) failed: HTTP \(response.status)\(code)\(message)")
    }
}

/// A byte range of a file as a sequence of buffers of at most 1 MiB (a request body).
struct FileChunks: AsyncSequence, Sendable {
    typealias Element = ByteBuffer
    let path: String
    let range: Range<Int>

    final class Descriptor: Sendable {
        let fd: Int32
        init(_ fd: Int32) { self.fd = fd }
        deinit { if fd >= 0 { close(fd) } }
    }

    struct AsyncIterator: AsyncIteratorProtocol {
        let file: Descriptor
        let path: String
        var offset: Int
        let end: Int

        mutating func next() async throws -> ByteBuffer? {
            guard offset < end else { return nil }
            guard file.fd >= 0 else { throw RepoError.io(path: path, reason: "cannot open: \(errnoDescription())") }
            let count = Swift.min(1 << 20, end - offset)
            var buffer = ByteBufferAllocator().buffer(capacity: count)
            let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
                Swift.max(0, pread(file.fd, raw.baseAddress, count, off_t(offset)))
            }
            guard n > 0 else { throw RepoError.io(path: path, reason: "read failed: unexpected end of file") }
            offset += n
            return buffer
        }
    }

    func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(file: Descriptor(open(path, O_RDONLY | O_CLOEXEC)), path: path, offset: range.lowerBound, end: range.upperBound)
    }
}
