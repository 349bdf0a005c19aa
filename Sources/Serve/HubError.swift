import Delta
import Foundation
import HTTPTypes
import Hummingbird
import Repo

/// An HTTP error as the Hugging Face clients read it: a status, `X-Error-Code` (which the clients
/// turn into `RepositoryNotFoundError`, `RevisionNotFoundError`, `EntryNotFoundError`), and
/// `X-Error-Message`, also sent as `{"error": …}`.
struct HubError: Error, Sendable {
    var status: HTTPResponse.Status
    var code: String?
    var message: String
    /// Sent with an EntryNotFound, so the client caches the absence at this commit.
    var commit: ObjectID? = nil
    /// Seconds after which the request may succeed (`Retry-After`, with a 503).
    var retryAfter: Int? = nil

    /// 503 `GCRunning`: gc runs on the repository; `what` may be retried in a few seconds.
    static func gcRunning(_ error: GCRunning, retry what: String) -> HubError {
        let pid = error.pid.map { " (pid \($0))" } ?? ""
        return HubError(status: .serviceUnavailable, code: "GCRunning",
                        message: "gc is running on this repository\(pid); retry \(what) when it has finished", retryAfter: 2)
    }

    static func repoNotFound(_ id: String) -> HubError {
        HubError(status: .notFound, code: "RepoNotFound", message: "Repository Not Found for url: \(id)")
    }
    static func revisionNotFound(_ rev: String) -> HubError {
        HubError(status: .notFound, code: "RevisionNotFound", message: "Invalid rev id: \(rev)")
    }
    static func entryNotFound(_ path: String, commit: ObjectID?) -> HubError {
        HubError(status: .notFound, code: "EntryNotFound", message: "Entry not found: \(path)", commit: commit)
    }
    /// A tree path that is not a folder, worded as the Hub words it (`X does not exist on "main"`).
    static func entryNotFound(_ path: String, revision: String, commit: ObjectID?) -> HubError {
        HubError(status: .notFound, code: "EntryNotFound", message: "\(path) does not exist on \"\(revision)\"", commit: commit)
    }
    static func badRequest(_ message: String) -> HubError { HubError(status: .badRequest, message: message) }
    static func notFound(_ message: String = "Not Found") -> HubError { HubError(status: .notFound, message: message) }
    /// The exact message huggingface_hub recognises as a bad token (not a missing repository).
    static let invalidCredentials = HubError(status: .unauthorized, message: "Invalid credentials in Authorization header")
    static let authenticationRequired = HubError(status: .unauthorized, message: "Authentication required: send a write token (Authorization: Bearer TOKEN)")
    static let forbidden = HubError(status: .forbidden, message: "Forbidden: this token is read-only")
    static func tooLarge(_ limit: Int) -> HubError {
        HubError(status: .contentTooLarge, message: "Request body too large (the limit is \(limit) bytes)")
    }

    /// A repository error, mapped to what a client can act on.
    static func from(_ error: any Error) -> HubError {
        if let hub = error as? HubError { return hub }
        if let repo = error as? RepoError {
            switch repo {
            case let .unknownRevision(rev), let .unknownRef(rev): return .revisionNotFound(rev)
            case .ambiguousRevision: return HubError(status: .badRequest, code: "RevisionNotFound", message: repo.description)
            case .refExists: return HubError(status: .conflict, message: repo.description)
            case .concurrentUpdate: return HubError(status: .preconditionFailed, message: repo.description)
            case .invalidRefName, .unsafePath, .invalidArgument, .nothingToCommit, .delta: return .badRequest(repo.description)
            case .repositoryLocked: return HubError(status: .serviceUnavailable, message: repo.description)
            // The repository's own policy refused the commit: the client's request, not the server, failed.
            case .hookRejected, .hookKilled: return HubError(status: .unprocessableContent, message: repo.description)
            default: return HubError(status: .internalServerError, message: repo.description)
            }
        }
        if let delta = error as? DeltaError { return .badRequest(delta.description) }
        return HubError(status: .internalServerError, message: "\(error)")
    }

    func response() -> Response {
        var headers = HTTPFields()
        if let code { headers[.xErrorCode] = code }
        headers[.xErrorMessage] = HubError.headerSafe(message)
        if let commit { headers[.xRepoCommit] = HubIDs.commit(commit) }
        if let retryAfter { headers[.retryAfter] = String(retryAfter) }
        return Responses.json(.object([JSONMember("error", .string(message))]), status: status, headers: headers)
    }

    /// Header values must not hold line breaks or non-ASCII bytes.
    static func headerSafe(_ text: String) -> String {
        String(text.unicodeScalars.map { $0.isASCII && $0.value >= 0x20 && $0.value != 0x7F ? Character($0) : "?" })
    }
}

extension HTTPField.Name {
    static let xErrorCode = HTTPField.Name("X-Error-Code")!
    static let xErrorMessage = HTTPField.Name("X-Error-Message")!
    static let xRepoCommit = HTTPField.Name("X-Repo-Commit")!
    static let xLinkedEtag = HTTPField.Name("X-Linked-Etag")!
    static let xLinkedSize = HTTPField.Name("X-Linked-Size")!
    static let link = HTTPField.Name("Link")!
}

/// Small response builders.
enum Responses {
    static func json(_ value: JSONValue, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:]) -> Response {
        var headers = headers
        headers[.contentType] = "application/json"
        let bytes = Array(value.serialized().utf8)
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func empty(_ status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentLength: "0"], body: ResponseBody())
    }
}

/// How ids appear to Hugging Face clients: 40 hex digits (they reject longer commit ids).
enum HubIDs {
    static func commit(_ id: ObjectID) -> String { String(id.hex.prefix(40)) }
}
