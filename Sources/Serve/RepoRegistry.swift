import Delta
import Foundation
import Repo
import Synchronization

/// The repositories under the served root, by id (`namespace/name`, the path relative to the root).
///
/// An id is two names of letters, digits, `-`, `_` and `.` (not starting with `.` or `-`, no `..`,
/// at most 96 characters each), so no id can name a path outside the root; the folder is also
/// resolved through symbolic links and must stay inside the root, and must hold `.mrepo` itself
/// (never a parent's).
final class RepoRegistry: Sendable {
    let root: String
    private let open = Mutex<[String: Repository]>([:])

    init(root: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
            throw ServeError.invalidConfiguration("\(root): no such directory to serve")
        }
        self.root = RepoRegistry.realPath(root) ?? root
    }

    /// Whether a name may be one component of an id.
    static func isValidName(_ name: String) -> Bool {
        guard (1...96).contains(name.utf8.count), !name.contains(".."), !name.hasSuffix(".git"),
              let first = name.unicodeScalars.first, first != ".", first != "-" else { return false }
        return name.unicodeScalars.allSatisfy { ($0.isASCII && ($0.properties.isAlphabetic || ("0"..."9").contains($0))) || "-_.".unicodeScalars.contains($0) }
    }

    static func id(_ namespace: String, _ name: String) throws -> String {
        guard isValidName(namespace), isValidName(name), namespace != "api" else { throw HubError.repoNotFound("\(namespace)/\(name)") }
        return namespace + "/" + name
    }

    /// The repository with this id, or RepoNotFound.
    /// Ends the write journals of the repositories served (at shutdown: the temporary files they
    /// list are gone by then, and a journal outlives only its process otherwise, until the next
    /// command there removes it).
    func closeJournals() {
        for repo in open.withLock({ Array($0.values) }) { repo.closeJournal() }
    }

    func repository(_ namespace: String, _ name: String) throws -> Repository {
        let id = try RepoRegistry.id(namespace, name)
        if let repo = open.withLock({ $0[id] }) { return repo }
        let folder = root + "/" + id
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder + "/.mrepo", isDirectory: &isDir), isDir.boolValue,
              let real = RepoRegistry.realPath(folder), real.hasPrefix(root + "/") else {
            throw HubError.repoNotFound(id)
        }
        let repo = try Repository.open(at: real)
        guard repo.root == real else { throw HubError.repoNotFound(id) }
        // A checkout an interrupted command of the repository's owner left is theirs to finish.
        repo.pendingCheckouts = .leave
        return open.withLock { cache in
            if let existing = cache[id] { return existing }
            cache[id] = repo
            return repo
        }
    }

    /// Creates an empty repository (`create_repo`); `existed` when it was there already.
    func create(_ namespace: String, _ name: String) throws -> (repo: Repository, existed: Bool) {
        let id = try RepoRegistry.id(namespace, name)
        if let repo = try? repository(namespace, name) { return (repo, true) }
        let folder = root + "/" + id
        if FileManager.default.fileExists(atPath: folder) {
            throw HubError(status: .conflict, message: "\(id): the folder exists and is not a repository")
        }
        do {
            try FileManager.default.createDirectory(atPath: root + "/" + namespace, withIntermediateDirectories: true)
        } catch {
            throw HubError(status: .internalServerError, message: "cannot create the namespace folder \(namespace)")
        }
        guard let realParent = RepoRegistry.realPath(root + "/" + namespace), realParent.hasPrefix(root + "/") else {
            throw HubError.badRequest("\(namespace): not a folder inside the served root")
        }
        // Bare: clients commit to its main branch, which no working tree holds.
        _ = try Repository.initialize(at: realParent + "/" + name, bare: true)
        return (try repository(namespace, name), false)
    }

    /// Every repository id under the root (two levels deep).
    func list() -> [String] {
        let fm = FileManager.default
        var out: [String] = []
        for ns in ((try? fm.contentsOfDirectory(atPath: root)) ?? []).sorted() where RepoRegistry.isValidName(ns) {
            for name in ((try? fm.contentsOfDirectory(atPath: root + "/" + ns)) ?? []).sorted() where RepoRegistry.isValidName(name) {
                if fm.fileExists(atPath: root + "/" + ns + "/" + name + "/.mrepo") { out.append(ns + "/" + name) }
            }
        }
        return out
    }

    static func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}
