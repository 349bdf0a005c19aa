import Delta
import Foundation
import HTTPTypes
import Hummingbird
import Repo

extension HubService {
    /// The longest NDJSON line read into memory: an inline file (the Hub inlines files under 10 MiB)
    /// base64-encoded, with room to spare.
    static let maxCommitLine = 32 << 20

    /// `POST /api/models/{repo}/commit/{rev}` (NDJSON: a `header` line, then `file` (base64),
    /// `lfsFile` (by SHA-256), `deletedFile` and `deletedFolder` lines) → `{"commitUrl", "commitOid"}`.
    ///
    /// The body is streamed to a temporary file (at most `maxCommitBytes`) and read back a line at a
    /// time; nothing is recorded unless every line is valid and every LFS object it names is stored.
    func commit(_ repo: Repository, id: String, revision: String, request: Request) async throws -> Response {
        let (base, _) = try writeBase(repo, revision: revision)  // 404 before reading the body
        var temporaries: [String] = []
        defer { for path in temporaries { unlink(path) } }
        var body = try StreamedFile(path: try uploads.temporaryPath(repo, "commit"))
        temporaries.append(body.path)
        for try await buffer in request.body {
            try buffer.withUnsafeReadableBytes { try body.append($0, limit: options.maxCommitBytes) }
        }
        body.close()

        var header: JSONValue?
        var changes: [FileChange] = []
        var usedUploads: [String] = []
        try NDJSONLines.read(path: body.path, maxLine: HubService.maxCommitLine) { line in
            let item: JSONValue
            do { item = try JSONValue.parse(line) } catch { throw HubError.badRequest("commit line is not JSON: \(error)") }
            guard let key = item["key"]?.stringValue, let value = item["value"] else { throw HubError.badRequest("commit line without 'key' and 'value'") }
            switch key {
            case "header":
                header = value
            case "file":
                guard let path = value["path"]?.stringValue, let content = value["content"]?.stringValue else {
                    throw HubError.badRequest("a 'file' line needs 'path' and 'content'")
                }
                let encoding = value["encoding"]?.stringValue ?? "base64"
                let bytes: Data
                if encoding == "base64" {
                    guard let data = Data(base64Encoded: content) else { throw HubError.badRequest("\(path): content is not valid base64") }
                    bytes = data
                } else if encoding == "utf-8" || encoding == "utf8" {
                    bytes = Data(content.utf8)
                } else {
                    throw HubError.badRequest("\(path): unknown encoding '\(encoding)'")
                }
                let staged = try uploads.temporaryPath(repo, "inline")
                temporaries.append(staged)
                guard FileManager.default.createFile(atPath: staged, contents: bytes, attributes: [.posixPermissions: 0o600]) else {
                    throw HubError(status: .internalServerError, message: "cannot stage \(path)")
                }
                changes.append(.write(path: path, source: staged))
            case "lfsFile":
                guard let path = value["path"]?.stringValue, let oid = value["oid"]?.stringValue, UploadStore.isOID(oid) else {
                    throw HubError.badRequest("an 'lfsFile' line needs 'path' and a sha256 'oid'")
                }
                if let algo = value["algo"]?.stringValue, algo != "sha256" { throw HubError.badRequest("\(path): only sha256 oids are served") }
                let size = value["size"]?.intValue
                if let staged = uploads.staged(repo, oid: oid), size == nil || FileStat.of(staged)?.size == size {
                    changes.append(.write(path: path, source: staged))
                    usedUploads.append(staged)
                } else if let digest = Digest(hex: oid), let file = try repo.file(withSHA256: digest), size == nil || file.byteCount == size {
                    changes.append(.reuse(path: path, file: file))
                } else {
                    throw HubError.badRequest("\(path): LFS object \(oid) was not uploaded")
                }
            case "deletedFile":
                guard let path = value["path"]?.stringValue else { throw HubError.badRequest("a 'deletedFile' line needs 'path'") }
                changes.append(.delete(path: path))
            case "deletedFolder":
                guard let path = value["path"]?.stringValue else { throw HubError.badRequest("a 'deletedFolder' line needs 'path'") }
                changes.append(.deleteFolder(path: path))
            default:
                throw HubError.badRequest("unknown commit operation '\(key)'")
            }
        }
        guard let header else { throw HubError.badRequest("the commit has no header line") }
        let summary = header["summary"]?.stringValue ?? ""
        guard !summary.isEmpty else { throw HubError.badRequest("the commit needs a summary (its message)") }
        let description = header["description"]?.stringValue ?? ""
        let message = description.isEmpty ? summary : summary + "\n\n" + description
        var expected: ObjectID?
        if let parent = header["parentCommit"]?.stringValue {
            expected = try resolve(repo, parent)
            guard expected == base else {
                throw HubError(status: .preconditionFailed, message: "parentCommit \(parent) is not the head of '\(revision)'")
            }
        }
        let commit = try repo.commitFiles(toBranch: revision, changes: changes, message: message,
                                          author: Repository.defaultAuthor(), expectedParent: expected)
        for path in usedUploads { unlink(path) }
        let oid = HubIDs.commit(commit.id)
        return Responses.json(.object([
            JSONMember("success", .bool(true)),
            JSONMember("commitOid", .string(oid)),
            JSONMember("commitUrl", .string(baseURL(request) + "/" + id + "/commit/" + oid)),
            JSONMember("pullRequestUrl", .null),
        ]))
    }
}

/// Reads a file line by line, each line at most `maxLine` bytes (else 413).
enum NDJSONLines {
    static func read(path: String, maxLine: Int, _ body: ([UInt8]) throws -> Void) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw HubError(status: .internalServerError, message: "cannot read the commit request back")
        }
        defer { try? handle.close() }
        var line: [UInt8] = []
        while let data = try handle.read(upToCount: 1 << 20), !data.isEmpty {
            for byte in data {
                if byte == 0x0A {
                    if !line.isEmpty { try body(line) }
                    line.removeAll(keepingCapacity: true)
                } else {
                    line.append(byte)
                    guard line.count <= maxLine else { throw HubError.tooLarge(maxLine) }
                }
            }
        }
        if !line.isEmpty { try body(line) }
    }
}
