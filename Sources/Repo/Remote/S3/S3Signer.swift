import Delta
import Foundation

/// AWS Signature Version 4 for S3 requests, by hand: HMAC-SHA256 over OpenSSL's SHA-256
/// (``SHA256``), as AWS documents it ("Signature Version 4 signing process"), with the payload's
/// SHA-256 in `x-amz-content-sha256`.
public struct S3Signer: Sendable {
    public var credentials: S3Credentials
    public var region: String

    public init(credentials: S3Credentials, region: String) {
        self.credentials = credentials
        self.region = region
    }

    /// The headers to add to a request: `x-amz-date`, `x-amz-content-sha256`, the session token
    /// when there is one, and `Authorization`. Every header in `headers` (and `host`) is signed.
    ///
    /// - Parameters:
    ///   - path: the request path as sent (already percent-encoded, ``S3Signer/encodePath(_:)``).
    ///   - query: query parameters, not encoded.
    ///   - payloadHash: the hex SHA-256 of the body.
    public func sign(method: String, host: String, path: String, query: [(String, String)], headers: [(String, String)],
                     payloadHash: String, date: Date = Date()) -> [(String, String)] {
        let amzDate = S3Signer.timestamp(date)
        let day = String(amzDate.prefix(8))
        var signed: [(String, String)] = headers.map { ($0.0.lowercased(), $0.1.trimmingCharacters(in: .whitespaces)) }
        signed.append(("host", host))
        signed.append(("x-amz-content-sha256", payloadHash))
        signed.append(("x-amz-date", amzDate))
        if let token = credentials.sessionToken { signed.append(("x-amz-security-token", token)) }
        signed.sort { $0.0 < $1.0 }
        let canonicalHeaders = signed.map { "\($0.0):\($0.1)\n" }.joined()
        let signedNames = signed.map(\.0).joined(separator: ";")
        let canonicalQuery = query.map { (S3Signer.encode($0.0), S3Signer.encode($0.1)) }
            .sorted { ($0.0, $0.1) < ($1.0, $1.1) }
            .map { "\($0.0)=\($0.1)" }.joined(separator: "&")
        let canonicalRequest = [method, path, canonicalQuery, canonicalHeaders, signedNames, payloadHash].joined(separator: "\n")
        let scope = "\(day)/\(region)/s3/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, SHA256.hash(Array(canonicalRequest.utf8)).hex].joined(separator: "\n")
        var key = S3Signer.hmac(Array("AWS4\(credentials.secretAccessKey)".utf8), Array(day.utf8))
        for part in [region, "s3", "aws4_request"] { key = S3Signer.hmac(key, Array(part.utf8)) }
        let signature = S3Signer.hex(S3Signer.hmac(key, Array(stringToSign.utf8)))
        var out = signed.filter { $0.0 != "host" }
        out.append(("authorization", "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedNames), Signature=\(signature)"))
        return out
    }

    /// `20130524T000000Z`.
    static func timestamp(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        return formatter.string(from: date)
    }

    /// HMAC-SHA256 (RFC 2104).
    static func hmac(_ key: [UInt8], _ message: [UInt8]) -> [UInt8] {
        var k = key.count > 64 ? SHA256.hash(key).bytes : key
        k += [UInt8](repeating: 0, count: 64 - k.count)
        let inner = SHA256()
        inner.update(k.map { $0 ^ 0x36 })
        inner.update(message)
        let outer = SHA256()
        outer.update(k.map { $0 ^ 0x5c })
        outer.update(inner.finalize().bytes)
        return outer.finalize().bytes
    }

    static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String(format: "%02x", $0) }.joined()
    }

    /// Percent-encodes everything outside `A–Z a–z 0–9 - . _ ~` (AWS's URI encoding).
    public static func encode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.append(Character(Unicode.Scalar(byte)))
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    /// A path with each segment encoded and the slashes kept.
    public static func encodePath(_ path: String) -> String {
        path.split(separator: "/", omittingEmptySubsequences: false).map { encode(String($0)) }.joined(separator: "/")
    }

    /// The hex SHA-256 of nothing (an empty body).
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
}

/// An access key pair, and the session token of temporary credentials.
public struct S3Credentials: Sendable, Equatable {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }
}

/// Where an S3 remote is and how to sign for it, read as the AWS tools read it.
public struct S3Configuration: Sendable {
    public var credentials: S3Credentials
    public var region: String
    /// `http(s)://host[:port]`, no trailing slash; requests use path-style addressing.
    public var endpoint: URL

    /// From `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, else the profile
    /// `AWS_PROFILE` (default `default`) of `AWS_SHARED_CREDENTIALS_FILE` (default
    /// `~/.aws/credentials`); the region from `AWS_REGION`, `AWS_DEFAULT_REGION`, the profile in
    /// `~/.aws/config`, else `us-east-1`; the endpoint from `AWS_ENDPOINT_URL_S3`,
    /// `AWS_ENDPOINT_URL`, else `https://s3.REGION.amazonaws.com`.
    public init(environment env: [String: String]) throws {
        let profile = env["AWS_PROFILE"] ?? "default"
        let home = env["HOME"] ?? NSHomeDirectory()
        if let key = env["AWS_ACCESS_KEY_ID"], let secret = env["AWS_SECRET_ACCESS_KEY"], !key.isEmpty {
            credentials = S3Credentials(accessKeyID: key, secretAccessKey: secret, sessionToken: env["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 })
        } else {
            let file = env["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials"
            let values = S3Configuration.iniSection(file: file, section: profile)
            guard let key = values["aws_access_key_id"], let secret = values["aws_secret_access_key"] else {
                throw RepoError.invalidArgument("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or the profile '\(profile)' in \(file)")
            }
            credentials = S3Credentials(accessKeyID: key, secretAccessKey: secret, sessionToken: values["aws_session_token"])
        }
        let configFile = env["AWS_CONFIG_FILE"] ?? home + "/.aws/config"
        let config = S3Configuration.iniSection(file: configFile, section: profile == "default" ? "default" : "profile " + profile)
        region = env["AWS_REGION"] ?? env["AWS_DEFAULT_REGION"] ?? config["region"] ?? "us-east-1"
        let endpointText = env["AWS_ENDPOINT_URL_S3"] ?? env["AWS_ENDPOINT_URL"] ?? config["endpoint_url"] ?? "https://s3.\(region).amazonaws.com"
        guard let url = URL(string: endpointText.trimmingCharacters(in: CharacterSet(charactersIn: "/"))), url.host != nil,
              url.scheme == "http" || url.scheme == "https" else {
            throw RepoError.invalidArgument("'\(endpointText)': not an http(s) endpoint URL (AWS_ENDPOINT_URL)")
        }
        // The HTTP client traps on a port past 65535.
        if let port = url.port, !(1...65535).contains(port) {
            throw RepoError.invalidArgument("'\(endpointText)': the port must be from 1 to 65535 (AWS_ENDPOINT_URL)")
        }
        endpoint = url
    }

    /// The `key = value` lines of `[section]` in an INI file (empty when absent).
    static func iniSection(file: String, section: String) -> [String: String] {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return [:] }
        var current: String?
        var out: [String: String] = [:]
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                current = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                continue
            }
            guard current == section, let eq = line.firstIndex(of: "=") else { continue }
            out[line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()] = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        }
        return out
    }
}
