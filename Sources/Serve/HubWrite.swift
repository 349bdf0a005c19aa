import Delta
import Foundation
import HTTPTypes
import Hummingbird
import Repo

/// The write side of the Hub API: `create_repo`, `create_branch`, `create_tag` and `upload_folder`
/// (preupload, LFS batch, upload, verify, NDJSON commit). Every commit goes through
/// ``Repository/commitFiles(toBranch:changes:message:author:expectedParent:)``: the same delta
/// store, one transaction, the branch moved by compare-and-swap.
extension HubService {
    /// `POST /api/repos/create` `{"name", "organization", "type"}` → `{"url"}`; 409 if it exists.
    func createRepo(_ request: Request) async throws -> Response {
        let body = try await jsonBody(request)
        guard let name = body["name"]?.stringValue else { throw HubError.badRequest("'name' is required") }
        guard let namespace = body["organization"]?.stringValue else {
            throw HubError.badRequest("'organization' is required: name repositories as namespace/name")
        }
        if let type = body["type"]?.stringValue, type != "model" { throw HubError.badRequest("only model repositories are served") }
        // Every repository is served to every token (or to anyone, without --tokens): one asked
        // for as private must not be made public.
        // `private` (older clients) or `visibility` (huggingface_hub 1.x and later).
        if body["private"] == .bool(true) || ["private", "protected"].contains(body["visibility"]?.stringValue ?? "") {
            throw HubError.badRequest("private repositories are not supported: every repository here is readable with any token; create it without private=True, or serve it from a root of its own with its own tokens")
        }
        let (_, existed) = try registry.create(namespace, name)
        let url = baseURL(request) + "/" + namespace + "/" + name
        if existed {
            return Responses.json(.object([JSONMember("error", .string("You already created this model repo")), JSONMember("url", .string(url))]),
                                  status: .conflict, headers: [.xErrorMessage: "You already created this model repo"])
        }
        return Responses.json(.object([JSONMember("url", .string(url)), JSONMember("name", .string(namespace + "/" + name))]))
    }

    /// `POST /api/models/{repo}/branch/{branch}` `{"startingPoint"}`.
    func createBranch(_ repo: Repository, name: String, request: Request) async throws -> Response {
        let body = try await jsonBody(request)
        let start: ObjectID
        if let point = body["startingPoint"], point != .null {
            guard let rev = point.stringValue else { throw HubError.badRequest("'startingPoint' must be a revision (a string)") }
            start = try resolve(repo, rev)
        } else {
            guard let head = try repo.headCommit() else { throw HubError.badRequest("the repository has no commits to branch from") }
            start = head
        }
        do {
            try repo.createBranch(name, at: start.hex, wait: true)
        } catch RepoError.refExists {
            throw HubError(status: .conflict, message: "Reference already exists: \(name)")
        }
        return Responses.json(.object([]))
    }

    /// `DELETE /api/models/{repo}/branch/{name}` and `.../tag/{name}` (`HfApi.delete_branch`,
    /// `delete_tag`). The branch a non-bare repository has checked out is refused, as `branch -d`
    /// refuses it; a branch's commits stay until `gc` (the reflog keeps them).
    func deleteRef(_ repo: Repository, name: String, kind: Ref.Kind) throws -> Response {
        guard let ref = try repo.history.ref(named: name), ref.kind == kind else {
            throw HubError.revisionNotFound(name)
        }
        do {
            if kind == .branch { _ = try repo.deleteBranch(name, force: true, wait: true) } else { _ = try repo.deleteTag(name, wait: true) }
        } catch let error as RepoError {
            // Not the server's folders ("checked out in the working tree at /srv/..."): a client
            // needs the reason, not where the server keeps its files.
            var message = error.description
            if let at = message.range(of: " in the working tree at /") {
                message = String(message[..<at.lowerBound]) + " in a working tree of the repository on the server"
            }
            throw HubError(status: .conflict, message: message)
        }
        return Responses.json(.object([]))
    }

    /// `POST /api/models/{repo}/tag/{revision}` `{"tag", "message"}`.
    func createTag(_ repo: Repository, revision: String, request: Request) async throws -> Response {
        let body = try await jsonBody(request)
        guard let tag = body["tag"]?.stringValue else { throw HubError.badRequest("'tag' is required") }
        let target = try resolve(repo, revision)
        do {
            try repo.createTag(tag, at: target.hex, message: body["message"]?.stringValue, wait: true)
        } catch RepoError.refExists {
            throw HubError(status: .conflict, message: "Reference already exists: \(tag)")
        }
        return Responses.json(.object([]))
    }

    /// The tree a write to `revision` starts from: the branch's, or none on the unborn branch.
    func writeBase(_ repo: Repository, revision: String) throws -> (commit: ObjectID?, tree: Tree) {
        _ = try RequestPath.revision(revision)
        if let ref = try repo.history.ref(named: revision) {
            guard ref.kind == .branch else { throw HubError.badRequest("'\(revision)' is a tag; commits go to a branch") }
            return (ref.target, try repo.tree(of: ref.target))
        }
        if try repo.history.head().branchName == revision, try repo.headCommit() == nil { return (nil, .empty) }
        throw HubError.revisionNotFound(revision)
    }

    /// `POST /api/models/{repo}/preupload/{rev}`: per file, LFS or regular, and the oid of the file
    /// now at that path (an equal oid lets the client skip it).
    func preupload(_ repo: Repository, revision: String, request: Request) async throws -> Response {
        let body = try await jsonBody(request)
        guard let files = body["files"]?.arrayValue else { throw HubError.badRequest("'files' is required") }
        let (commit, tree) = try writeBase(repo, revision: revision)
        var out: [JSONValue] = []
        for file in files {
            guard let path = file["path"]?.stringValue, let size = file["size"]?.intValue, size >= 0 else {
                throw HubError.badRequest("each file needs 'path' and 'size'")
            }
            _ = try PathPolicy.normalize(path)
            let lfs = size > 0 && GitHash.isLFS(path: path, size: size)
            var members = [JSONMember("path", .string(path)), JSONMember("uploadMode", .string(lfs ? "lfs" : "regular")),
                           JSONMember("shouldIgnore", .bool(false))]
            if let existing = tree.file(at: path) {
                let meta = try metadata.metadata(of: existing, in: repo)
                if lfs {
                    members.append(JSONMember("oid", .string(meta.sha256.hex)))
                } else if !meta.isLFS {
                    members.append(JSONMember("oid", .string(meta.gitOID)))
                }
            }
            out.append(.object(members))
        }
        return Responses.json(.object([JSONMember("files", .array(out)),
                                       JSONMember("commitOid", commit.map { .string(HubIDs.commit($0)) } ?? .null)]))
    }

    /// `POST /{repo}.git/info/lfs/objects/batch` (git-lfs batch API, upload): objects this server
    /// holds already get no actions; the others an upload href with a ticket and a verify href.
    func lfsBatch(_ repo: Repository, id: String, request: Request) async throws -> Response {
        let body = try await jsonBody(request)
        guard body["operation"]?.stringValue == "upload" else { throw HubError.badRequest("only the 'upload' operation is served") }
        guard let objects = body["objects"]?.arrayValue else { throw HubError.badRequest("'objects' is required") }
        let base = baseURL(request) + "/" + id + ".git/info/lfs/objects"
        var out: [JSONValue] = []
        for object in objects {
            guard let oid = object["oid"]?.stringValue, let size = object["size"]?.intValue else {
                throw HubError.badRequest("each object needs 'oid' and 'size'")
            }
            var members = [JSONMember("oid", .string(oid)), JSONMember("size", .int(size))]
            guard UploadStore.isOID(oid), size >= 0 else {
                members.append(JSONMember("error", .object([JSONMember("code", .int(422)), JSONMember("message", .string("invalid oid or size"))])))
                out.append(.object(members))
                continue
            }
            guard size <= options.maxUploadBytes else {
                members.append(JSONMember("error", .object([JSONMember("code", .int(413)),
                                                           JSONMember("message", .string("larger than this server accepts (\(options.maxUploadBytes) bytes)"))])))
                out.append(.object(members))
                continue
            }
            if try isStored(repo, oid: oid, size: size) {
                out.append(.object(members))
                continue
            }
            let ticket = uploads.issue(repoID: id, oid: oid, size: size)
            members.append(JSONMember("actions", .object([
                JSONMember("upload", .object([JSONMember("href", .string("\(base)/upload/\(oid)/\(size)?ticket=\(ticket)"))])),
                JSONMember("verify", .object([JSONMember("href", .string("\(base)/verify"))])),
            ])))
            out.append(.object(members))
        }
        var response = Responses.json(.object([JSONMember("transfer", .string("basic")), JSONMember("objects", .array(out))]))
        response.headers[.contentType] = "application/vnd.git-lfs+json"
        return response
    }

    /// Whether the content with this SHA-256 is staged or committed already.
    func isStored(_ repo: Repository, oid: String, size: Int) throws -> Bool {
        if let staged = uploads.staged(repo, oid: oid), FileStat.of(staged)?.size == size { return true }
        guard let digest = Digest(hex: oid), let file = try repo.file(withSHA256: digest) else { return false }
        return file.byteCount == size
    }

    /// `PUT …/upload/{oid}/{size}?ticket=`: streams the body to the staging folder, hashing it;
    /// refused (and deleted) when it is longer or shorter than announced or its SHA-256 is not the oid.
    func lfsUpload(_ repo: Repository, id: String, oid: String, size sizeText: String, ticket: String?, request: Request) async throws -> Response {
        guard let size = Int(sizeText), let ticket, UploadStore.isOID(oid),
              uploads.check(ticket, repoID: id, oid: oid, size: size) else {
            throw HubError(status: .forbidden, message: "no valid upload ticket for this object (ask the LFS batch endpoint first)")
        }
        let folder = try uploads.folder(for: repo)
        var file = try StreamedFile(path: try uploads.temporaryPath(repo, "partial"))
        do {
            for try await buffer in request.body {
                try buffer.withUnsafeReadableBytes { try file.append($0, limit: size) }
            }
            file.close()
            guard file.count == size else { throw HubError.badRequest("received \(file.count) bytes, the object has \(size)") }
            let digest = file.sha.finalize()
            guard digest.hex == oid else {
                throw HubError.badRequest("the uploaded content's SHA-256 is \(digest.hex), not the oid \(oid); rejected")
            }
            guard rename(file.path, folder + "/" + oid) == 0 else {
                throw HubError(status: .internalServerError, message: "cannot store the upload")
            }
        } catch {
            file.discard()
            throw error
        }
        uploads.redeem(ticket)
        return Responses.empty()
    }

    /// `POST …/verify` `{"oid", "size"}`: 200 when the object is stored.
    func lfsVerify(_ repo: Repository, id: String, request: Request) async throws -> Response {
        let body = try await jsonBody(request)
        guard let oid = body["oid"]?.stringValue, let size = body["size"]?.intValue, UploadStore.isOID(oid) else {
            throw HubError.badRequest("'oid' and 'size' are required")
        }
        guard try isStored(repo, oid: oid, size: size) else { throw HubError.notFound("object \(oid) was not uploaded") }
        return Responses.json(.object([]))
    }
}
