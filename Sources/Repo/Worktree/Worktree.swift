import Delta
import Foundation

/// The `lstat` facts mrepo compares to decide whether a file changed.
public struct FileStat: Sendable, Equatable {
    public var size: Int
    public var mtimeNs: Int64
    public var ctimeNs: Int64
    public var inode: UInt64
    public var device: UInt64
    public var mode: UInt32

    public var isRegular: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFREG) }
    public var isDirectory: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFDIR) }
    public var isSymlink: Bool { mode & UInt32(S_IFMT) == UInt32(S_IFLNK) }
    public var isExecutable: Bool { mode & 0o100 != 0 }

    /// `lstat` of a path, or nil when it does not exist.
    public static func of(_ path: String, followLinks: Bool = false) -> FileStat? {
        var st = stat()
        let rc = followLinks ? stat(path, &st) : lstat(path, &st)
        guard rc == 0 else { return nil }
        return FileStat(size: Int(st.st_size),
                        mtimeNs: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec),
                        ctimeNs: Int64(st.st_ctim.tv_sec) * 1_000_000_000 + Int64(st.st_ctim.tv_nsec),
                        inode: UInt64(st.st_ino), device: UInt64(st.st_dev), mode: UInt32(st.st_mode))
    }

    static func nowNs() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }
}

/// Rules that keep paths inside the working tree.
public enum PathPolicy {
    /// The working-tree paths a link at `path` leads through, hop by hop, ending with the file it
    /// reads: each link's text taken from its folder as the file system resolves that folder
    /// (folder links, `..`), up to 40 hops. The walk stops where it leaves the working tree
    /// `root` (`realRoot` is `root` resolved), at a path that is not a link, or at a loop.
    static func linkHops(from path: String, root: String, realRoot: String) -> [String] {
        var hops: [String] = []
        var current = path
        for _ in 0..<40 {
            let absolute = root + "/" + current
            guard FileStat.of(absolute)?.isSymlink == true, let text = try? FileManager.default.destinationOfSymbolicLink(atPath: absolute) else { break }
            let spelled = text.hasPrefix("/") ? text : URL(fileURLWithPath: absolute).deletingLastPathComponent().path + "/" + text
            // The folder part is resolved by the file system (a `..` after a link goes up from where
            // the link leads), the last part kept: it may itself be the next link.
            let name = (spelled as NSString).lastPathComponent
            guard name != ".", name != "..", !name.isEmpty,
                  let folder = realpath((spelled as NSString).deletingLastPathComponent, nil) else { break }
            let next = String(cString: folder) + "/" + name
            free(folder)
            guard next.hasPrefix(realRoot + "/") else { break }
            current = String(next.dropFirst(realRoot.count + 1))
            if hops.contains(current) || current == path { break }
            hops.append(current)
        }
        return hops
    }

    /// Checks a relative path from a tree (or the user) and returns it normalised.
    ///
    /// Rejects absolute paths, `..`, empty and `.` components, NUL and backslashes, and a `.mrepo`
    /// or `.git` component at any depth, in any case (``isReserved(_:)``): a tree must not plant a
    /// repository, its hooks or a git config (`core.fsmonitor` runs a command) in a checkout, as git
    /// refuses `.git`.
    public static func normalize(_ path: String) throws -> String {
        guard !path.isEmpty else { throw RepoError.unsafePath(path, reason: "empty path") }
        guard !path.hasPrefix("/") else { throw RepoError.unsafePath(path, reason: "absolute paths are not allowed in a tree") }
        guard !path.contains("\0"), !path.contains("\\") else { throw RepoError.unsafePath(path, reason: "path contains NUL or a backslash") }
        let parts = path.split(separator: "/", omittingEmptySubsequences: false)
        for part in parts {
            if part.isEmpty || part == "." { throw RepoError.unsafePath(path, reason: "empty or '.' path component") }
            if part == ".." { throw RepoError.unsafePath(path, reason: "'..' would escape the working tree") }
            if PathPolicy.isReserved(part) {
                throw RepoError.unsafePath(path, reason: "'\(part)' is reserved")
            }
            // No file system takes a longer name: a tree holding one (a Hub commit could record
            // it) could never be checked out.
            if part.utf8.count > AtomicFileWriter.maximumNameBytes {
                throw RepoError.unsafePath(path, reason: "a path component is \(part.utf8.count) bytes long; a file name holds at most \(AtomicFileWriter.maximumNameBytes)")
            }
        }
        return path
    }

    /// Whether a path component is a repository's own folder, `.mrepo` or `.git`, in any case (on
    /// a case-insensitive file system `.GIT` is `.git`): never stored, never written by a checkout.
    public static func isReserved(_ component: some StringProtocol) -> Bool {
        let lower = component.lowercased()
        return lower == Repository.directoryName || lower == ".git"
    }

    /// The folders above a relative path, nearest first (`a/b/c` → `a/b`, `a`).
    public static func parents(of path: String) -> [String] {
        var parts = path.split(separator: "/").dropLast()
        var out: [String] = []
        while !parts.isEmpty {
            out.append(parts.joined(separator: "/"))
            parts = parts.dropLast()
        }
        return out
    }

    /// Every folder above the files of `paths`, as relative paths.
    public static func folders(of paths: [String]) -> Set<String> {
        Set(paths.flatMap(parents(of:)))
    }

    /// Whether one of the folders above `path` is a file in `paths`.
    public static func hasFileAbove(_ path: String, in paths: Set<String>) -> Bool {
        parents(of: path).contains(where: paths.contains)
    }

    /// Checks that no directory between `root` and `root/path` is a symbolic link, so writing
    /// the file cannot land outside the working tree. A link at `root/path` itself is refused too,
    /// unless `replacingLink` (the caller renames over it, replacing the link and never writing
    /// through it).
    public static func checkNoSymlinkParents(root: String, path: String, replacingLink: Bool = false) throws {
        var current = root
        let parts = path.split(separator: "/")
        for part in parts.dropLast() {
            current += "/" + part
            if let st = FileStat.of(current), st.isSymlink {
                throw RepoError.unsafePath(path, reason: "'\(current)' is a symbolic link; refusing to write through it")
            }
        }
        if !replacingLink, let st = FileStat.of(root + "/" + path), st.isSymlink {
            throw RepoError.unsafePath(path, reason: "is a symbolic link in the working tree; refusing to overwrite it")
        }
    }
}

extension Repository {
    /// Paths (files, folders or globs) typed in `from` (absolute; nil: the working tree's root),
    /// made relative to the working tree's root, as git takes pathspecs in a subfolder: `..` and
    /// absolute paths are resolved, and a path outside the working tree is refused. The root itself
    /// is "".
    public func rootRelative(_ paths: [String], from: String?) throws -> [String] {
        let top = Repository.physicalPath(Repository.absolutePath(root))
        let base = Repository.physicalPath(from ?? top)
        return try paths.map { spec in
            // Spelled through a link (an absolute path by way of a linked folder) or not, a path
            // is compared with the root as the file system resolves both. Its last part is kept as
            // typed: a path that names a link means the link, not the file it points to (as in git).
            let standard = URL(fileURLWithPath: spec.hasPrefix("/") ? spec : base + "/" + spec).standardizedFileURL.path
            let last = URL(fileURLWithPath: standard).lastPathComponent
            let parent = URL(fileURLWithPath: standard).deletingLastPathComponent().path
            let named = FileStat.of(standard)?.isSymlink == true && standard != "/"
            let resolvedParent = Repository.physicalPath(parent)
            let full = named ? (resolvedParent == "/" ? "" : resolvedParent) + "/" + last : Repository.physicalPath(standard)
            // Spelled from inside the working tree, a path that the file system takes elsewhere went
            // through a link inside it: refused, as git refuses a path beyond a symbolic link (it
            // would name another file than the one typed).
            if standard.hasPrefix(top + "/"), full != standard {
                throw RepoError.invalidArgument("'\(spec)' is beyond a symbolic link inside the working tree; name the path the link leads to")
            }
            if full == top { return "" }
            let inside = top == "/" ? "/" : top + "/"
            guard full.hasPrefix(inside) else {
                throw RepoError.invalidArgument("'\(spec)' is outside the working tree (\(top))")
            }
            return String(full.dropFirst(inside.count))
        }
    }

    /// `path` standardised (`.`, `..`, doubled slashes) with the links of its longest existing
    /// prefix resolved; the rest (a file not there yet, a glob) is kept as written.
    static func physicalPath(_ path: String) -> String {
        let standard = URL(fileURLWithPath: path).standardizedFileURL.path
        var head = standard, tail: [String] = []
        while head != "/" && !head.isEmpty {
            if let resolved = realpath(head, nil) {
                defer { free(resolved) }
                let base = String(cString: resolved)
                return tail.isEmpty ? base : (base == "/" ? "" : base) + "/" + tail.reversed().joined(separator: "/")
            }
            tail.append(URL(fileURLWithPath: head).lastPathComponent)
            head = URL(fileURLWithPath: head).deletingLastPathComponent().path
        }
        return "/" + tail.reversed().joined(separator: "/")
    }
}

/// Which files a snapshot leaves out: `.mrepo`, `.git`, temporary files, and the patterns of
/// `.mrepoignore`, read as git reads `.gitignore`:
/// - one glob per line; `#` comments; `\!`, `\#` and `\ ` (a trailing space) escape; a backslash
///   before any other character makes it literal;
/// - a pattern without `/` (but a trailing one) matches a name at any depth; one with a `/` is
///   anchored at the top and matched component by component (`*` does not cross `/`), where `**`
///   matches any number of folders (`a/**/b`, `**/b`; a trailing `/**`, everything inside);
/// - a trailing `/` matches directories only; a leading `!` takes a path back in (the last
///   matching line decides; nothing inside an ignored folder comes back, as the folder is not
///   entered);
/// - unlike git, a tracked file it lists is left out too: mrepo has no index, and that is how a
///   file stops being tracked while it stays on disk (`status` says so).
public struct IgnoreRules: Sendable {
    var patterns: [(glob: [UInt8], anchored: Bool, directoryOnly: Bool, negated: Bool)] = []
    /// Paths never ignored (``keeping(_:)``).
    private var kept = PathSet([])

    public init(file: String?) {
        guard let file, var data = FileManager.default.contents(atPath: file) else { return }
        // A UTF-8 byte order mark (an editor's) is not part of the first pattern, as in git.
        if data.starts(with: [0xEF, 0xBB, 0xBF]) { data.removeFirst(3) }
        // Lines end with LF, CR LF or a lone CR.
        for raw in data.split(whereSeparator: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) {
            var line = Array(raw)
            // Trailing spaces and tabs go unless the last is escaped; leading ones are part of the
            // pattern in git, but mrepo has always trimmed them (they name nothing in a model folder).
            func escapedAt(_ i: Int) -> Bool {
                var backslashes = 0, j = i - 1
                while j >= 0, line[j] == UInt8(ascii: "\\") { backslashes += 1; j -= 1 }
                return backslashes % 2 == 1
            }
            while let last = line.last, last == UInt8(ascii: " ") || last == UInt8(ascii: "\t"), !escapedAt(line.count - 1) { line.removeLast() }
            while line.first == UInt8(ascii: " ") || line.first == UInt8(ascii: "\t") { line.removeFirst() }
            if line.isEmpty || line.first == UInt8(ascii: "#") { continue }
            var negated = false
            if line.first == UInt8(ascii: "!") {
                negated = true
                line.removeFirst()
            } else if line.count >= 2, line[0] == UInt8(ascii: "\\"), line[1] == UInt8(ascii: "!") || line[1] == UInt8(ascii: "#") {
                line.removeFirst()
            }
            var directoryOnly = false
            if line.last == UInt8(ascii: "/") {
                directoryOnly = true
                line.removeLast()
            }
            // A leading `/` anchors the pattern at the top, as a `/` inside it does (`/build/`
            // is the top's build folder only, not `x/build`).
            let leadingSlash = line.first == UInt8(ascii: "/")
            if leadingSlash { line.removeFirst() }
            if line.isEmpty { continue }
            patterns.append((line, leadingSlash || line.contains(UInt8(ascii: "/")), directoryOnly, negated))
        }
    }

    /// Whether the last pattern that matches ignores; nil when none matches.
    private func lastMatch(_ path: [UInt8], isDirectory: Bool) -> Bool? {
        let components = path.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).map(Array.init)
        for p in patterns.reversed() {
            if p.directoryOnly && !isDirectory { continue }
            let matched = p.anchored ? IgnoreRules.matchComponents(p.glob, components)
                : IgnoreRules.fnmatch(p.glob, components.last ?? [])
            if matched { return !p.negated }
        }
        return nil
    }

    /// An anchored pattern against a path, component by component: `**` matches any number of
    /// components (one or more when it ends the pattern: `a/**` is what is inside `a`).
    static func matchComponents(_ pattern: [UInt8], _ path: [[UInt8]]) -> Bool {
        var parts: [[UInt8]] = []
        for part in pattern.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).map(Array.init) {
            // `a/**/**/b` is `a/**/b`.
            if part == doubleStar, parts.last == doubleStar { continue }
            parts.append(part)
        }
        // Memoised on (part, component): a hostile pattern of many `**` stays polynomial.
        var known: [Int: Bool] = [:]
        func match(_ i: Int, _ j: Int) -> Bool {
            if let k = known[i * (path.count + 1) + j] { return k }
            let result: Bool
            if i == parts.count {
                result = j == path.count
            } else if parts[i] == doubleStar {
                let minimum = i == parts.count - 1 ? 1 : 0
                result = (j + minimum...max(j + minimum, path.count)).contains { $0 <= path.count && match(i + 1, $0) }
            } else {
                result = j < path.count && fnmatch(parts[i], path[j]) && match(i + 1, j + 1)
            }
            known[i * (path.count + 1) + j] = result
            return result
        }
        return match(0, 0)
    }

    private static let doubleStar = Array("**".utf8)

    /// Whether `path` (a file) is ignored, itself or through a folder above it (which a scan would
    /// not have entered).
    public func ignoresWithFolders(_ path: String) -> Bool {
        for folder in PathPolicy.parents(of: path).reversed() where ignores(folder, isDirectory: true) { return true }
        return ignores(path, isDirectory: false)
    }

    /// These rules with the tracked paths `paths` never ignored (nor the folders above them), for
    /// `stash`, which must take every tracked file's change whatever the rules say.
    public func keeping(_ paths: some Sequence<String>) -> IgnoreRules {
        var out = self
        out.kept = PathSet(Set(paths))
        return out
    }

    /// fnmatch(3) of one component (no `/` in either), on raw bytes.
    static func fnmatch(_ pattern: [UInt8], _ name: [UInt8]) -> Bool {
        let p = pattern.map { CChar(bitPattern: $0) } + [0], n = name.map { CChar(bitPattern: $0) } + [0]
        return Glibc.fnmatch(p, n, 0) == 0
    }

    /// ``ignores(_:isDirectory:)`` for a path whose bytes are not valid UTF-8: the globs are
    /// matched against the raw bytes.
    public func ignores(rawPath: [UInt8], isDirectory: Bool) -> Bool {
        let name = Array(rawPath.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).last ?? rawPath[...])
        if name.starts(with: Array(AtomicFileWriter.temporaryPrefix.utf8)) { return true }
        return lastMatch(rawPath, isDirectory: isDirectory) ?? false
    }

    public func ignores(_ relativePath: String, isDirectory: Bool) -> Bool {
        let name = relativePath.split(separator: "/").last.map(String.init) ?? relativePath
        // A repository's own folder at any depth (a nested git clone's `.git`), in any case.
        if PathPolicy.isReserved(name) || name.hasPrefix(AtomicFileWriter.temporaryPrefix) { return true }
        // What huggingface_hub's snapshot_download(local_dir=...) keeps beside the files it downloads.
        if relativePath == HuggingFaceCache.localDirMetadata || relativePath.hasPrefix(HuggingFaceCache.localDirMetadata + "/") { return true }
        if kept.holds(relativePath, isDirectory: isDirectory) { return false }
        return lastMatch(Array(relativePath.utf8), isDirectory: isDirectory) ?? false
    }
}

/// Tracked paths and the folders above them: what a scan limited to them enters, and what
/// ``IgnoreRules/keeping(_:)`` never ignores.
struct PathSet: Sendable {
    let files: Set<String>
    let folders: Set<String>

    init(_ files: Set<String>) {
        self.files = files
        folders = Set(files.flatMap(PathPolicy.parents(of:)))
    }

    /// Whether `path` is one of the files or, when it may be a folder, a folder above one.
    func holds(_ path: String, isDirectory: Bool = true) -> Bool {
        files.contains(path) || (isDirectory && folders.contains(path))
    }
}

/// A regular file found in a checkpoint folder.
public struct ScannedFile: Sendable {
    /// Path relative to the folder.
    public var path: String
    /// The file to read (differs from `root/path` only when a symbolic link was followed).
    public var absolutePath: String
    public var stat: FileStat
}

/// The files of a checkpoint folder, and the nested repositories left out.
public struct FolderScan: Sendable {
    /// Regular files, sorted by path.
    public var files: [ScannedFile]
    /// Folders holding their own `.mrepo` (relative paths): another repository's files, never
    /// entered, never stored.
    public var nestedRepositories: [String]
    /// With ``FolderScanner/SymlinkPolicy/readThrough``: the links found (read through, or set
    /// aside as unusable), by path, with what each holds.
    public var linkTargets: [String: String] = [:]
    /// Links of a Hugging Face cache snapshot into its blobs, read through like any link but not
    /// listed in ``linkTargets`` (they are the cache's layout, not something to point out).
    public var blobLinks: Set<String> = []
    /// With ``FolderScanner/SymlinkPolicy/readThrough``: what a tree cannot store, by path (escaped
    /// where the name is not plain text), with the reason: links that are not files (to a folder, to
    /// nothing, to a device) and names that are not valid UTF-8 or hold a control character. They
    /// are not read or entered; `commit` refuses them.
    public var unstorable: [String: String] = [:]
}

/// Lists the files of a checkpoint folder.
///
/// Names are read as the bytes the file system holds: a name that is not valid UTF-8 or that
/// holds a control character is refused with its bytes escaped (unless `.mrepoignore` lists
/// it), never dropped.
public enum FolderScanner {
    /// What a scan does with a symbolic link (other than a Hugging Face cache snapshot's links
    /// into its blobs, which are always read through).
    public enum SymlinkPolicy: Sendable {
        /// A link is an error: a tree never stores one (`commit`).
        case refuse
        /// A link to a regular file is read as that file (`commit --dereference`); any other link
        /// is an error.
        case follow
        /// For commands that compare the working tree (`status`, `switch`, `checkout`, `diff`): a
        /// link to a regular file is read as that file and noted in ``FolderScan/linkTargets``
        /// (so a tree committed with `--dereference` compares clean); any other link, and any name
        /// a tree cannot hold, is noted in ``FolderScan/unstorable`` and not entered, so that an
        /// untracked oddity never stops a `status` or a `switch`.
        case readThrough
    }

    /// Every regular file under `root`, sorted by path.
    ///
    /// - Parameter followSymlinks: follow links to regular files (`--dereference`); otherwise a
    ///   symbolic link is an error, since a tree never stores one. A link to a folder is an error
    ///   either way: following one could leave the folder.
    public static func scan(root: String, ignore: IgnoreRules, followSymlinks: Bool = false) throws -> [ScannedFile] {
        try scanFolder(root: root, ignore: ignore, followSymlinks: followSymlinks).files
    }

    /// ``scan(root:ignore:followSymlinks:)`` with the nested repositories it left out.
    public static func scanFolder(root: String, ignore: IgnoreRules, followSymlinks: Bool = false) throws -> FolderScan {
        try scanFolder(root: root, ignore: ignore, symlinks: followSymlinks ? .follow : .refuse)
    }

    /// ``scan(root:ignore:followSymlinks:)`` with the nested repositories it left out, and the
    /// links it read through or set aside under ``SymlinkPolicy/readThrough``.
    ///
    /// - Parameter only: look at these paths only (and the folders above them), as `stash` does
    ///   with the tracked files: anything else, an untracked oddity included, is not looked at.
    public static func scanFolder(root: String, ignore: IgnoreRules, symlinks: SymlinkPolicy, only: Set<String>? = nil) throws -> FolderScan {
        var out = FolderScan(files: [], nestedRepositories: [])
        let limit = only.map(PathSet.init)
        try walk(root: root, relative: "", ignore: ignore, symlinks: symlinks, limit: limit, into: &out)
        out.files.sort { $0.path < $1.path }
        return out
    }

    /// Whether a folder holds its own repository (anything named `.mrepo`, as git treats `.git`).
    public static func isNestedRepository(_ folder: String) -> Bool {
        FileStat.of(folder + "/" + Repository.directoryName) != nil
    }

    private static func walk(root: String, relative: String, ignore: IgnoreRules, symlinks: SymlinkPolicy,
                             limit: PathSet?, into out: inout FolderScan) throws {
        let dir = relative.isEmpty ? root : root + "/" + relative
        // What a tree cannot hold: listed with the reason when reading through (status), refused otherwise.
        func unstorable(_ shown: String, _ reason: String) throws {
            guard symlinks == .readThrough else { throw RepoError.unsafePath(shown, reason: reason) }
            out.unstorable[shown] = reason
        }
        let names: [[UInt8]]
        do {
            names = try entries(of: dir)
        } catch let RepoError.io(_, reason) where symlinks == .readThrough && !relative.isEmpty {
            // status lists a folder it cannot read, with the reason, and goes on (a commit refuses it).
            out.unstorable[DisplayText.escaping(relative) + "/"] = "\(reason); fix its permissions, or list it in .mrepoignore"
            return
        }
        for bytes in names {
            let relativeBytes = relative.isEmpty ? bytes : Array(relative.utf8) + [UInt8(ascii: "/")] + bytes
            let decoded = String(validating: bytes, as: UTF8.self)
            // A name outside the limit is not looked at (every limited path is valid UTF-8).
            if let limit, !(decoded.map { limit.holds(relative.isEmpty ? $0 : relative + "/" + $0) } ?? false) { continue }
            guard let name = decoded else {
                if ignore.ignores(rawPath: relativeBytes, isDirectory: isDirectory(Array(root.utf8) + [UInt8(ascii: "/")] + relativeBytes)) { continue }
                try unstorable(DisplayText.escaping(bytes: relativeBytes),
                               "the name is not valid UTF-8 (shown with its bytes escaped); rename it, or list it in .mrepoignore")
                continue
            }
            let rel = relative.isEmpty ? name : relative + "/" + name
            let abs = root + "/" + rel
            guard var st = FileStat.of(abs) else {
                let code = errno
                // Gone since the folder was listed: nothing to store. Anything else is said, never
                // dropped (a path past PATH_MAX was left out of commits with exit 0).
                if code == ENOENT || ignore.ignores(rel, isDirectory: false) { continue }
                try unstorable(DisplayText.escaping(rel), code == ENAMETOOLONG
                    ? "its path is longer than the system allows (\(abs.utf8.count) bytes; the limit is 4096); move it higher up, or list it in .mrepoignore"
                    : "cannot be read (\(String(cString: strerror(code)))); fix its permissions, or list it in .mrepoignore")
                continue
            }
            if ignore.ignores(rel, isDirectory: st.isDirectory) { continue }
            if let c = DisplayText.firstControlCharacter(in: name) {
                try unstorable(DisplayText.escaping(rel), "the name holds a control character (\(DisplayText.codePoint(c))); rename it, or list it in .mrepoignore")
                continue
            }
            if name.contains("\\") {
                // A valid Linux name, but a tree never stores one: on Windows it names a folder.
                try unstorable(DisplayText.escaping(rel), "the name holds a backslash, which a tree cannot store (Windows reads it as a folder separator); rename it, or list it in .mrepoignore")
                continue
            }
            if st.isSymlink {
                // A Hugging Face cache snapshot (snapshots/REV/FILE -> ../../blobs/HASH) is read
                // through its links: the blobs are the files, and the links are the cache's layout.
                let blobLink = HuggingFaceCache.isBlobLink(abs, root: root)
                guard symlinks != .refuse || blobLink else {
                    throw RepoError.unsafePath(rel, reason: "is a symbolic link; trees never store links (pass --dereference to store the file it points to, or list it in .mrepoignore)")
                }
                guard let target = FileStat.of(abs, followLinks: true), target.isRegular else {
                    let what = FileStat.of(abs, followLinks: true)?.isDirectory == true ? "a folder" : "nothing mrepo can store"
                    if symlinks == .readThrough {
                        let pointee = FileStat.of(abs, followLinks: true) == nil ? "nothing (a broken link)" : what
                        let text = linkText(abs)
                        out.linkTargets[rel] = text
                        out.unstorable[rel] = "a symbolic link to \(pointee) (\(text)), which a tree cannot store; list it in .mrepoignore to hide it"
                        continue
                    }
                    throw RepoError.unsafePath(rel, reason: "is a symbolic link to \(what); --dereference follows links to regular files only (copy the folder in, or list the link in .mrepoignore)")
                }
                if symlinks == .readThrough {
                    if blobLink { out.blobLinks.insert(rel) } else { out.linkTargets[rel] = linkText(abs) }
                }
                st = target
            }
            if st.isDirectory {
                if isNestedRepository(abs) {
                    out.nestedRepositories.append(rel)
                    continue
                }
                try walk(root: root, relative: rel, ignore: ignore, symlinks: symlinks, limit: limit, into: &out)
            } else if st.isRegular {
                _ = try PathPolicy.normalize(rel)
                out.files.append(ScannedFile(path: rel, absolutePath: abs, stat: st))
            }
        }
    }

    /// What a symbolic link holds, for messages (escaped where it is not plain text).
    static func linkText(_ path: String) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink(path, &buffer, buffer.count - 1)
        guard n >= 0 else { return "?" }
        let bytes = buffer[0..<n].map { UInt8(bitPattern: $0) }
        guard let text = String(validating: bytes, as: UTF8.self), DisplayText.firstControlCharacter(in: text) == nil else {
            return DisplayText.escaping(bytes: bytes)
        }
        return text
    }

    /// The names in a folder as raw bytes, sorted, without `.` and `..`.
    static func entries(of dir: String) throws -> [[UInt8]] {
        do { return try RawPath(Array(dir.utf8)).entries() } catch let e as RawPath.Failure {
            throw RepoError.io(path: dir, reason: e.reason)
        }
    }

    private static func isDirectory(_ pathBytes: [UInt8]) -> Bool { RawPath(pathBytes).isFolder }

    /// Refuses two files whose paths differ only in Unicode normalisation (NFC and NFD spellings
    /// of the same name): Swift and mrepo's trees treat such paths as one, the file system as two.
    public static func checkNormalization(_ files: [ScannedFile]) throws {
        if let (a, b) = normalizationTwins(files.map(\.path)).first {
            throw normalizationError(a, b)
        }
    }

    /// Pairs of paths that are equal as Swift strings (canonically equivalent) but differ in bytes.
    static func normalizationTwins(_ paths: [String]) -> [(String, String)] {
        var first: [String: String] = [:]
        var twins: [(String, String)] = []
        for path in paths {
            if let other = first[path] {
                if !other.utf8.elementsEqual(path.utf8) { twins.append((other, path)) }
            } else {
                first[path] = path
            }
        }
        return twins
    }

    static func normalizationError(_ a: String, _ b: String) -> RepoError {
        .unsafePath(DisplayText.escapingNonASCII(a),
                    reason: "differs from '\(DisplayText.escapingNonASCII(b))' only in Unicode normalisation (NFC and NFD); mrepo stores one spelling per name: rename or remove one of them")
    }
}

/// Whether a file is stored tensor by tensor.
public func isSafetensorsPath(_ path: String) -> Bool {
    path.hasSuffix(".safetensors")
}
