import AsyncHTTPClient
import CLinux
import Delta
import Foundation
import NIOCore
import NIOPosix

/// The one HTTP client of the HTTP and S3 remotes, and the plain words for what goes wrong on
/// the wire.
enum RemoteHTTP {
    /// AsyncHTTPClient's shared client would keep retrying a connection that fails (a refused
    /// port, an unreachable host) until the *request's* deadline, ten minutes here, with no error
    /// in between: `push` to a dead endpoint looked hung. This client fails a request as soon as
    /// its connection cannot be made, and each transport's own retry loop (a few tries, backoff of
    /// about three seconds in all) decides what happens next. Process-lifetime, like the shared
    /// one: it is never shut down (nothing waits for it at exit).
    static let client: HTTPClient = {
        var configuration = HTTPClient.Configuration.singletonConfiguration
        configuration.connectionPool.retryConnectionEstablishment = false
        // An unreachable (silent) host costs at most this per try, not the request's deadline.
        configuration.timeout.connect = .seconds(15)
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    /// Whether `error` means no connection could be made (nothing was sent).
    static func isConnectFailure(_ error: any Error) -> Bool {
        switch error {
        case is NIOConnectionError: return true
        case let e as HTTPClientError: return e == .connectTimeout
        case let e as ChannelError:
            if case .connectTimeout = e { return true }
            return false
        case let e as IOError: return [ECONNREFUSED, EHOSTUNREACH, ENETUNREACH, ETIMEDOUT].contains(e.errnoCode)
        default: return false
        }
    }

    /// A transport failure in plain words ("connection refused", "connection timed out"): no type
    /// names, no nested dumps, one line.
    static func describe(_ error: any Error) -> String {
        switch error {
        case let e as NIOConnectionError:
            if e.dnsAError != nil || e.dnsAAAAError != nil { return "cannot resolve the host name '\(e.host)'" }
            return e.connectionErrors.first.map { describe($0.error) } ?? "cannot connect"
        case let e as IOError:
            return String(cString: strerror(e.errnoCode)).lowercased()
        case let e as ChannelError:
            if case .connectTimeout = e { return "connection timed out" }
            return "connection failed (\(e))"
        case let e as HTTPClientError:
            switch e {
            case .connectTimeout: return "connection timed out"
            case .readTimeout: return "no answer in time (read timeout)"
            case .writeTimeout: return "the upload stalled (write timeout)"
            case .deadlineExceeded: return "no answer in time"
            case .remoteConnectionClosed: return "the connection was closed before the answer was complete"
            case .tlsHandshakeTimeout: return "TLS handshake timed out"
            case .redirectLimitReached, .redirectCycleDetected: return "too many redirects"
            default: return oneLine("\(e)")
            }
        default:
            // NIOSSL's errors (not imported here) print as a dump of BoringSSL's error stack.
            let text = "\(error)"
            if String(reflecting: type(of: error)).hasPrefix("NIOSSL.") {
                return text.hasPrefix("handshakeFailed")
                    ? "the TLS handshake failed (is the server plain http? then use an http:// URL)"
                    : "a TLS error (\(oneLine(String(text.prefix(80)))))"
            }
            return oneLine(text)
        }
    }

    /// `host:port` of a URL, for "cannot connect to …".
    static func authority(_ url: String) -> String {
        guard let u = URL(string: url), let host = u.host else { return url }
        // The port connected to, also when the URL leaves it out (or empty: `host:/…`).
        let port = u.port ?? (u.scheme?.lowercased() == "https" ? 443 : 80)
        return "\(host):\(port)"
    }

    private static func oneLine(_ text: String) -> String {
        let flat = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        return flat.count > 200 ? String(flat.prefix(200)) + "…" : flat
    }
}

/// A download into a file that may already hold the object's first bytes (a ``PartialDownload``,
/// or an earlier try of the same request): the request asks for the rest (`Range: bytes=N-`), and
/// the answer is written after them when the remote sends just that (206), or over them when it
/// sends the whole object (200: a server that does not answer ranges).
enum DownloadFile {
    /// The bytes `path` holds now (0 when it does not exist): where the rest starts.
    static func offset(_ path: String) -> Int { FileStat.of(path)?.size ?? 0 }

    /// The header that asks for what follows `offset`, or none from the start.
    static func rangeHeader(from offset: Int) -> [(String, String)] { offset > 0 ? [("Range", "bytes=\(offset)-")] : [] }

    /// Cuts `path` to nothing (a 416: what it holds is longer than the remote's object).
    static func restart(_ path: String) throws {
        guard truncate(path, 0) == 0 else {
            throw RepoError.io(path: path, reason: "cannot restart the download: \(errnoDescription())")
        }
    }

    /// Whether `contentRange` (`bytes a-b/t`) is the rest of an object from `offset`: a == offset, b == t − 1.
    static func isRest(_ contentRange: String?, from offset: Int) -> Bool {
        guard let text = contentRange?.trimmingCharacters(in: .whitespaces), text.hasPrefix("bytes ") else { return false }
        let parts = text.dropFirst(6).split(separator: "/")
        guard parts.count == 2, let total = Int(parts[1]) else { return false }
        let span = parts[0].split(separator: "-")
        guard span.count == 2, let a = Int(span[0]), let b = Int(span[1]) else { return false }
        return a == offset && b == total - 1
    }

    /// Writes `body` into `path` (created if need be): after its first `offset` bytes for a 206
    /// whose `Content-Range` starts there, else from the start, the file cut to what is written.
    /// Returns the bytes written; `written` hears of each piece as it is written (also of those
    /// before the body broke off).
    /// `object` names what is downloaded in messages, `source` where from. A 206 that is not the
    /// rest from `offset` is taken as a damaged object (``RepoError/corruptObject(object:problem:)``):
    /// the fetch keeps nothing it received, so the next one asks for no range.
    static func write(_ body: HTTPClientResponse.Body, to path: String, object: String, source: String, status: Int, contentRange: String?, offset: Int,
                      written: (Int) -> Void = { _ in }) async throws -> Int {
        var start = 0
        if status == 206 {
            guard offset > 0, isRest(contentRange, from: offset) else {
                // Start over next time (the kept bytes are dropped), rather than ask for the same again.
                try restart(path)
                throw RepoError.corruptObject(object: object, problem: "received object rejected: asked \(source) for its bytes from \(offset) on, the answer was \(contentRange.map { "'\($0)'" } ?? "without Content-Range"); run the command again to download it whole")
            }
            start = offset
        }
        let fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw RepoError.io(path: path, reason: "cannot create: \(errnoDescription())") }
        defer { close(fd) }
        guard ftruncate(fd, off_t(start)) == 0 else {
            throw RepoError.io(path: path, reason: "cannot resume the download: \(errnoDescription())")
        }
        var total = 0
        for try await buffer in body {
            try buffer.withUnsafeReadableBytes { raw in
                guard PositionalIO.writeAll(fd, raw, at: start + total) else {
                    throw errno == ENOSPC ? RepoError.diskFull(path: path) : RepoError.io(path: path, reason: "write failed: \(errnoDescription())")
                }
            }
            total += buffer.readableBytes
            written(buffer.readableBytes)
            CrashPoint.reach("transfer.object-partial")
        }
        startWriteback(fd)
        return total
    }
}

/// Starts writing a received file's pages back to disk without waiting: the `syncfs` of its batch
/// then finds them written, and the disk works while the next objects arrive and are verified.
func startWriteback(_ fd: Int32) {
    if AtomicFileWriter.syncEnabled { _ = sync_file_range(fd, 0, 0, UInt32(MREPO_SYNC_FILE_RANGE_WRITE)) }
}
