import Delta
import Foundation

/// The `.mrepo` FILE of a linked working tree (docs/format.md §2): it names the store (the main
/// working tree's `.mrepo` directory, absolute) and the working tree's key, as git's `.git` file
/// names its `gitdir:`. Two lines, in this order:
///
///     mrepodir: /abs/path/of/main/.mrepo
///     worktree: <id>
///
/// Readers ignore lines they do not know, so later versions can add some.
struct WorktreeLink: Equatable {
    var store: String
    var id: String

    var bytes: [UInt8] { Array("mrepodir: \(store)\nworktree: \(id)\n".utf8) }

    /// Reads and checks a link file; the error names the file.
    static func read(_ path: String) throws -> WorktreeLink {
        func bad(_ problem: String) -> RepoError {
            .unsupportedFormat(path: path, problem: "\(problem) (a linked working tree's .mrepo file holds 'mrepodir: PATH' and 'worktree: ID' lines)")
        }
        guard let st = FileStat.of(path, followLinks: true), st.isRegular else { throw bad("not a regular file") }
        guard st.size <= 64 * 1024 else { throw bad("too large (\(st.size) bytes)") }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw RepoError.io(path: path, reason: "cannot read: \(errnoDescription())")
        }
        guard let text = String(validating: Array(data), as: UTF8.self) else { throw bad("not UTF-8 text") }
        var store: String?
        var id: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            if line.hasPrefix("mrepodir: ") { store = String(line.dropFirst(10)) }
            if line.hasPrefix("worktree: ") { id = String(line.dropFirst(10)) }
        }
        guard let store, store.hasPrefix("/") else { throw bad("no absolute 'mrepodir:' line") }
        guard let id, !id.isEmpty, !id.contains("/") else { throw bad("no 'worktree:' line") }
        return WorktreeLink(store: store, id: id)
    }
}

extension Repository {
    /// Opens the linked working tree at `root`, whose `.mrepo` is a link file: the store it names
    /// must exist and know the working tree.
    static func openLinked(root: String, access: HistoryAccess = .readWrite) throws -> Repository {
        let linkPath = root + "/" + directoryName
        let link = try WorktreeLink.read(linkPath)
        guard FileStat.of(link.store + "/mrepo.db") != nil else {
            throw RepoError.io(path: linkPath, reason: "names the store \(link.store), which holds no repository (was the main working tree moved or deleted?)")
        }
        let repo = try Repository(root: root, store: link.store, worktree: link.id, access: access)
        guard try repo.history.linkedWorktrees().contains(where: { $0.id == link.id }) else {
            throw RepoError.worktree(.unknownLink(linkFile: linkPath, id: link.id, store: link.store))
        }
        return repo
    }
}
