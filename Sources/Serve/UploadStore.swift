import Delta
import Foundation
import Repo
import Synchronization

/// LFS objects uploaded through the Hub API, waiting for the commit that names them.
///
/// Each repository gets one staging folder per server process, inside `.mrepo` and named like every
/// temporary file of mrepo (`.mrepo-tmp-<pid>-<random>-uploads`), so the next mrepo command deletes
/// it once the server has stopped (docs/format.md §7.4). An object enters it only after its bytes
/// hashed to the oid the client announced. Uploads are authorised by single-use tickets that the
/// LFS batch answer (which needs a write token) hands out, because clients send no token with the
/// upload itself.
final class UploadStore: Sendable {
    struct Ticket: Sendable {
        var repoID: String
        var oid: String
        var size: Int
        var expires: Date
    }

    private let tickets = Mutex<[String: Ticket]>([:])
    private let folders = Mutex<[String: String]>([:])
    /// How long a ticket stays valid.
    static let ticketLifetime: TimeInterval = 24 * 3600

    func issue(repoID: String, oid: String, size: Int) -> String {
        var random = SystemRandomNumberGenerator()
        let token = (0..<4).map { _ in String(format: "%016llx", random.next() as UInt64) }.joined()
        tickets.withLock { t in
            let now = Date()
            t = t.filter { $0.value.expires > now }
            t[token] = Ticket(repoID: repoID, oid: oid, size: size, expires: now.addingTimeInterval(UploadStore.ticketLifetime))
        }
        return token
    }

    /// Whether a ticket allows this upload (it stays valid until the upload succeeds).
    func check(_ token: String, repoID: String, oid: String, size: Int) -> Bool {
        tickets.withLock { t in
            guard let ticket = t[token], ticket.expires > Date() else { return false }
            return ticket.repoID == repoID && ticket.oid == oid && ticket.size == size
        }
    }

    func redeem(_ token: String) {
        _ = tickets.withLock { $0.removeValue(forKey: token) }
    }

    /// The staging folder of a repository (`.mrepo-tmp-<pid>.<owner>-<random>-uploads`), created on
    /// first use, and again if it went (`gc` in another container deletes a folder of this server
    /// that stayed unchanged for a day, docs/format.md §7.4).
    func folder(for repo: Repository) throws -> String {
        try folders.withLock { f in
            if let existing = f[repo.root], FileManager.default.fileExists(atPath: existing) { return existing }
            let path = AtomicFileWriter.temporaryPath(for: repo.metaDirectory + "/uploads")
            guard mkdir(path, 0o700) == 0 else {
                throw HubError(status: .internalServerError, message: "cannot create the upload folder in \(repo.metaDirectory)")
            }
            f[repo.root] = path
            return path
        }
    }

    /// The staged object with this oid, if it was uploaded and verified.
    func staged(_ repo: Repository, oid: String) -> String? {
        guard let folder = folders.withLock({ $0[repo.root] }) else { return nil }
        let path = folder + "/" + oid
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }

    /// A fresh temporary name in the repository's staging folder.
    func temporaryPath(_ repo: Repository, _ kind: String) throws -> String {
        var random = SystemRandomNumberGenerator()
        return try folder(for: repo) + "/.\(kind)-\(String(random.next() as UInt64, radix: 36))"
    }

    /// Deletes every staging folder (the server stops).
    func removeAll() {
        for path in folders.withLock({ Array($0.values) }) { try? FileManager.default.removeItem(atPath: path) }
    }

    static func isOID(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }
}

/// Writes a streamed body to a file, hashing it; refuses more than `limit` bytes.
struct StreamedFile {
    let path: String
    private let handle: FileHandle
    let sha = SHA256()
    private(set) var count = 0

    init(path: String) throws {
        guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]),
              let handle = FileHandle(forWritingAtPath: path) else {
            throw HubError(status: .internalServerError, message: "cannot write the upload")
        }
        self.path = path
        self.handle = handle
    }

    mutating func append(_ bytes: UnsafeRawBufferPointer, limit: Int) throws {
        guard count + bytes.count <= limit else { throw HubError.tooLarge(limit) }
        sha.update(bytes)
        try handle.write(contentsOf: Data(bytes))
        count += bytes.count
    }

    func close() { try? handle.close() }

    func discard() {
        close()
        unlink(path)
    }
}
