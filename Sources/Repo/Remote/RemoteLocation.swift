import Foundation

/// Where a remote lives, parsed from its URL.
public enum RemoteLocation: Sendable, Equatable {
    /// Another repository on this machine: a path or `file://` URL (the absolute path).
    case local(path: String)
    /// `mrepo serve`: `http(s)://host:port/NAMESPACE/NAME`.
    case http(URL)
    /// An S3-compatible bucket: `s3://BUCKET/PREFIX/NAME` (docs/format.md, "Remote layout").
    case s3(bucket: String, key: String)

    /// Parses a remote URL.
    /// - Throws: ``RepoError/invalidArgument(_:)`` for an unknown scheme or a malformed URL.
    public init(parsing given: String) throws {
        // Schemes are case-insensitive (`HTTP://host`, as browsers and git take it).
        var url = given
        if let colon = url.range(of: "://"), url[..<colon.lowerBound].allSatisfy({ $0.isLetter || $0.isNumber || "+-.".contains($0) }) {
            url = url[..<colon.lowerBound].lowercased() + url[colon.lowerBound...]
        }
        if url.hasPrefix("s3://") {
            let rest = url.dropFirst(5)
            let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            let bucket = String(parts[0])
            let key = parts.count > 1 ? String(parts[1]).trimmingCharacters(in: CharacterSet(charactersIn: "/")) : ""
            guard !bucket.isEmpty, !key.isEmpty else {
                throw RepoError.invalidArgument("'\(url)': an S3 remote is s3://BUCKET/NAME or s3://BUCKET/PREFIX/NAME")
            }
            self = .s3(bucket: bucket, key: key)
        } else if url.hasPrefix("http://") || url.hasPrefix("https://") {
            guard let parsed = URL(string: url), parsed.host != nil else { throw RepoError.invalidArgument("'\(url)': not a valid URL") }
            // The HTTP client traps on a port past 65535; refused here, before `remote add` keeps it.
            if let port = parsed.port, !(1...65535).contains(port) {
                throw RepoError.invalidArgument("'\(url)': the port must be from 1 to 65535")
            }
            if parsed.user != nil || parsed.password != nil {
                throw RepoError.invalidArgument("'\(url)': credentials in the URL are not used; give the token in MREPO_TOKEN")
            }
            // Checked here, not only when a transfer starts, so `remote add` refuses a URL no transfer could use.
            guard parsed.path.split(separator: "/").count == 2, parsed.query == nil, parsed.fragment == nil else {
                throw RepoError.invalidArgument("'\(url)': an mrepo serve remote is http(s)://HOST:PORT/NAMESPACE/NAME")
            }
            self = .http(parsed)
        } else if url.hasPrefix("file://") {
            guard let parsed = URL(string: url), parsed.isFileURL else { throw RepoError.invalidArgument("'\(url)': not a valid file URL") }
            self = .local(path: parsed.path)
        } else if let colon = url.range(of: "://") {
            throw RepoError.invalidArgument("'\(url)': unknown remote scheme '\(url[..<colon.lowerBound])' (use a path, file://, http(s):// or s3://)")
        } else {
            guard !url.isEmpty else { throw RepoError.invalidArgument("the remote URL is empty") }
            self = .local(path: Repository.absolutePath(url))
        }
    }
}

/// Makes the transport for a remote URL.
public enum Transports {
    /// The transport for `url`; `environment` supplies credentials and endpoints (S3).
    public static func open(_ url: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> any RemoteTransport {
        switch try RemoteLocation(parsing: url) {
        case let .local(path):
            return try LocalTransport(path: path, url: url)
        case let .http(location):
            return try HTTPTransport(location: location, url: url, token: environment["MREPO_TOKEN"])
        case let .s3(bucket, key):
            return try S3Transport(bucket: bucket, key: key, url: url, environment: environment)
        }
    }
}
