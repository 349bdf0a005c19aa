import Delta
import Foundation

// What stands in the way of a checkout: nested repositories, which it never touches, and a file
// where a folder must go or a folder where a file must go (a path that is a file on one branch
// and a folder on another).

extension Repository {
    /// Whether `path` (relative to the working tree) lies inside a nested repository: a folder
    /// above it holds its own `.mrepo`. Checked on disk, so a nested repository that `.mrepoignore`
    /// hides is protected too.
    func isInsideNestedRepository(_ path: String) -> Bool {
        var dir = path
        while let slash = dir.lastIndex(of: "/") {
            dir = String(dir[..<slash])
            if FolderScanner.isNestedRepository(root + "/" + dir) { return true }
        }
        return false
    }

    /// Registers with `staging` what stands where a checkout writes, to be removed just before the
    /// renames (``FileStaging/removeBeforeRenaming(_:files:)``), or refuses before anything is
    /// written:
    ///
    /// - a file where a folder of a new file must go: removed when the checkout drops that file
    ///   anyway (it is in `removals`) or, with `force`, when it is untracked; an untracked file
    ///   without `force` stops the checkout as any uncommitted change does;
    /// - a folder where a new file must go: removed when every file in it is one the checkout
    ///   drops. A folder that holds anything else (untracked or ignored files, a nested
    ///   repository) stops the checkout, even with `force`: mrepo never deletes what it does not
    ///   track.
    ///
    /// - Parameters:
    ///   - writes: paths the checkout writes.
    ///   - removals: tracked paths the checkout deletes.
    func makeRoom(for writes: [String], removals: [String], force: Bool, staging: FileStaging, operation: String = "switching") throws {
        let removed = Set(removals)
        var files = Set<String>()
        var untracked: [String] = []
        var folders: [(path: String, files: [String])] = []
        for path in writes {
            var prefix = ""
            for part in path.split(separator: "/").dropLast() {
                prefix = prefix.isEmpty ? String(part) : prefix + "/" + part
                guard let st = FileStat.of(root + "/" + prefix) else { break }
                if st.isDirectory { continue }
                if removed.contains(prefix) || force {
                    files.insert(prefix)
                } else if !untracked.contains(prefix) {
                    untracked.append(prefix)
                }
                break
            }
            guard let st = FileStat.of(root + "/" + path), st.isDirectory else { continue }
            let inside = try entriesBelow(path)
            let kept = inside.filter { !removed.contains($0) }
            guard kept.isEmpty else {
                let list = kept.prefix(3).map(DisplayText.escaping).joined(separator: ", ") + (kept.count > 3 ? " and \(kept.count - 3) more" : "")
                throw RepoError.unsafePath(path, reason: "is a folder where the checkout writes a file, and it holds files mrepo does not track (\(list)); move them away first")
            }
            folders.append((path, inside))
        }
        if !untracked.isEmpty { throw RepoError.dirtyWorktree(operation: operation, paths: untracked) }
        for path in files.sorted() { staging.removeBeforeRenaming(root + "/" + path) }
        for folder in folders { staging.removeBeforeRenaming(root + "/" + folder.path, files: folder.files.map { root + "/" + $0 }) }
    }

    /// Every entry below a folder of the working tree that is not itself a folder (files, links,
    /// anything else, `.mrepo` included), as relative paths; links are not followed. A name that
    /// is not valid UTF-8 comes back escaped, so it matches no tracked path.
    private func entriesBelow(_ folder: String) throws -> [String] {
        var out: [String] = []
        for bytes in try FolderScanner.entries(of: root + "/" + folder) {
            guard let name = String(validating: bytes, as: UTF8.self) else {
                out.append(folder + "/" + DisplayText.escaping(bytes: bytes))
                continue
            }
            let path = folder + "/" + name
            if let st = FileStat.of(root + "/" + path), st.isDirectory {
                out += try entriesBelow(path)
            } else {
                out.append(path)
            }
        }
        return out
    }

    /// `path` (absolute) with every symbolic link resolved; the part that does not exist yet is
    /// appended as written.
    public static func resolvingLinks(_ path: String) -> String {
        var existing = path
        var missing: [String] = []
        while !existing.isEmpty {
            if let resolved = realpath(existing, nil) {
                let base = String(cString: resolved)
                free(resolved)
                return ([base == "/" ? "" : base] + missing.reversed()).joined(separator: "/")
            }
            if existing == "/" { break }
            let (dir, name) = splitPath(existing)
            missing.append(name)
            existing = dir
        }
        return path
    }
}
