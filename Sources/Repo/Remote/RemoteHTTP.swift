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
            return oneLine("\(error)")
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

/// Starts writing a received file's pages back to disk without waiting: the `syncfs` of its batch
/// then finds them written, and the disk works while the next objects arrive and are verified.
func startWriteback(_ fd: Int32) {
    if AtomicFileWriter.syncEnabled { _ = sync_file_range(fd, 0, 0, UInt32(MREPO_SYNC_FILE_RANGE_WRITE)) }
}
