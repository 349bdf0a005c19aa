import Delta
import Foundation

/// What `clean` removes, as `git clean`'s flags choose it.
public struct CleanOptions: Sendable {
    /// Which files `.mrepoignore` leaves out take part.
    public enum Ignored: Sendable {
        /// Untracked files that `.mrepoignore` does not list (git's default).
        case kept
        /// Untracked files, listed or not (`-x`).
        case alsoRemoved
        /// Only the files `.mrepoignore` lists (`-X`).
        case only
    }

    /// List what would go; remove nothing (`-n`).
    public var dryRun: Bool
    /// Also remove untracked folders (`-d`). Without it, an untracked folder is not entered.
    public var directories: Bool
    public var ignored: Ignored
    /// Limit the clean to these paths, folders or globs, relative to `from`.
    public var paths: [String]
    /// The folder the paths are relative to (absolute; nil: the working tree's root). As in git,
    /// a clean run from a subfolder without paths cleans that subfolder only.
    public var from: String?

    public init(dryRun: Bool = false, directories: Bool = false, ignored: Ignored = .kept, paths: [String] = [], from: String? = nil) {
        self.dryRun = dryRun
        self.directories = directories
        self.ignored = ignored
        self.paths = paths
        self.from = from
    }
}

/// What `clean` removed, or would remove.
public struct CleanResult: Sendable {
    /// Paths relative to the working tree's root, sorted; folders end in `/`. A name that is not
    /// valid UTF-8 is shown with its bytes escaped.
    public var removed: [String] = []
    /// Nested repositories met on the way (with `directories`): never entered, never removed.
    public var skippedRepositories: [String] = []
}

extension Repository {
    /// `clean`: removes the working tree's untracked files (and with `directories`, untracked
    /// folders), as `git clean` does. Tracked files, `.mrepo`, `.git`, temporary files (the
    /// leftover sweep owns those) and nested repositories are never touched; links are removed
    /// as links, never followed. Takes the write lock, so no checkout or commit runs meanwhile.
    public func clean(_ options: CleanOptions, wait: Bool = false) throws -> CleanResult {
        let specs = try cleanSpecs(options)
        return try withWriteLock(wait: wait) {
            var tracked = try worktreeBaseline(head: try history.head()).tree.files.map(\.path)
            // A merge --no-commit wrote its candidate: those files are the merge's, not leftovers.
            if let ready = try history.mergeState()?.readyTree { tracked += try history.tree(ready).files.map(\.path) }
            var walk = CleanWalk(root: root, options: options, ignore: IgnoreRules(file: root + "/.mrepoignore"),
                                 tracked: Set(tracked), trackedFolders: PathPolicy.folders(of: tracked), specs: specs,
                                 kept: try currentFolders(options.from))
            _ = try walk.visit(folder: [])
            walk.result.removed.sort()
            walk.result.skippedRepositories.sort()
            if !options.dryRun {
                for path in walk.removals { try removeUntracked(path) }
            }
            return walk.result
        }
    }

    /// The pathspecs relative to the root: `clean` from a subfolder without paths cleans that subfolder.
    private func cleanSpecs(_ options: CleanOptions) throws -> [String] {
        let paths = options.paths.isEmpty ? (options.from.map { [$0] } ?? []) : options.paths
        let specs = try rootRelative(paths, from: options.from)
        return specs.contains("") ? [] : specs
    }

    /// The folder `from` (relative to the root) and every folder above it; empty from the root.
    private func currentFolders(_ from: String?) throws -> Set<String> {
        guard let from, let here = try rootRelative([from], from: nil).first, !here.isEmpty else { return [] }
        return Set([here] + PathPolicy.parents(of: here))
    }

    /// Deletes a file, a link or a folder with its content, never following a link.
    private func removeUntracked(_ relative: [UInt8]) throws {
        let path = RawPath(Array(root.utf8) + [UInt8(ascii: "/")] + relative)
        do { try path.removeAll() } catch let e as RawPath.Failure {
            throw RepoError.io(path: DisplayText.escaping(bytes: relative), reason: e.reason)
        }
    }
}

/// One walk of `clean` over the working tree.
private struct CleanWalk {
    let root: String
    let options: CleanOptions
    let ignore: IgnoreRules
    let tracked: Set<String>
    let trackedFolders: Set<String>
    let specs: [String]
    /// The folder clean runs in and the folders above it (relative): never removed whole.
    let kept: Set<String>
    var result = CleanResult()
    /// What to delete, as raw relative paths (a folder whole).
    var removals: [[UInt8]] = []

    /// A relative path as printed: escaped, so that a name with a line feed cannot pass for two
    /// lines of output, and byte by byte where it is not UTF-8.
    static func shown(_ rel: [UInt8]) -> String {
        String(validating: rel, as: UTF8.self).map(DisplayText.escaping) ?? DisplayText.escaping(bytes: rel)
    }

    /// Visits a folder (relative bytes; empty for the root) and records what goes. Returns whether
    /// everything in it goes, so an untracked folder can be removed whole.
    /// - Parameter listedAbove: a folder above is one `.mrepoignore` lists: everything in it counts
    ///   as listed.
    mutating func visit(folder: [UInt8], listedAbove: Bool = false) throws -> Bool {
        let top = RawPath(Array(root.utf8))
        let dir = folder.isEmpty ? top : top.appending(folder)
        var everything = true
        var chosen: [(path: [UInt8], isFolder: Bool)] = []
        let names: [[UInt8]]
        do { names = try dir.entries() } catch let e as RawPath.Failure {
            throw RepoError.io(path: folder.isEmpty ? root : DisplayText.escaping(bytes: folder), reason: e.reason)
        }
        for name in names {
            let rel = folder.isEmpty ? name : folder + [UInt8(ascii: "/")] + name
            let text = String(validating: rel, as: UTF8.self)
            let shown = CleanWalk.shown(rel)
            let path = top.appending(rel)
            guard let st = path.status() else { continue }
            let isFolder = st.st_mode & S_IFMT == S_IFDIR
            // Never ours to remove: the store, git's, and files some mrepo process is writing.
            if (folder.isEmpty && text == Repository.directoryName) || name == Array(".git".utf8)
                || name.starts(with: Array(AtomicFileWriter.temporaryPrefix.utf8)) {
                everything = false
                continue
            }
            if let text, tracked.contains(text) {
                everything = false
                continue
            }
            let listed = listedAbove || (text.map { ignore.ignores($0, isDirectory: isFolder) } ?? ignore.ignores(rawPath: rel, isDirectory: isFolder))
            guard isFolder else {
                let goes: Bool
                switch options.ignored {
                case .kept: goes = !listed
                case .alsoRemoved: goes = true
                case .only: goes = listed
                }
                if goes && matches(text, raw: rel) { chosen.append((rel, false)) } else { everything = false }
                continue
            }
            if path.appending(Array(Repository.directoryName.utf8)).exists || path.appending(Array(".git".utf8)).exists {
                // A nested repository (mrepo's, a linked working tree, or git's): another repository's files.
                if options.directories && matches(text, raw: rel) { result.skippedRepositories.append(shown + "/") }
                everything = false
                continue
            }
            let holdsTracked = text.map { trackedFolders.contains($0) } ?? false
            // A path given inside an untracked folder is cleaned even without -d (as git does).
            let named = text.map { t in specs.contains { $0 == t || $0.hasPrefix(t + "/") } } ?? false
            if !holdsTracked && !options.directories && !named {
                // git does not enter an untracked folder without -d.
                everything = false
                continue
            }
            if listed && options.ignored == .kept {
                // A folder .mrepoignore lists stays, with everything in it, without -x or -X.
                everything = false
                continue
            }
            // Entered even when listed: a nested repository or another process's temporary file
            // inside keeps the folder (and itself).
            let whole = try visit(folder: rel, listedAbove: listed)
            // -X removes only listed files: an unlisted folder stays even when what it held went.
            // The folder clean runs in stays (its content goes), as git refuses to remove it.
            let current = text.map { t in kept.contains(t) } ?? false
            if !holdsTracked && options.directories && whole && !current && (options.ignored != .only || listed) && matches(text, raw: rel) {
                // Its content was recorded entry by entry; take the folder instead.
                dropRecorded(under: rel)
                chosen.append((rel, true))
            } else {
                everything = false
            }
        }
        for item in chosen {
            removals.append(item.path)
            let shown = CleanWalk.shown(item.path)
            result.removed.append(item.isFolder ? shown + "/" : shown)
        }
        return everything
    }

    /// Whether a path is inside the pathspecs (every path when none were given). A folder matches
    /// when a spec names it or something above it.
    private func matches(_ path: String) -> Bool {
        specs.isEmpty || specs.contains { PathSpec.matches($0, file: path) }
    }

    /// ``matches(_:)`` for a path that is not valid UTF-8: the specs are compared with its bytes,
    /// never with its escaped spelling (where `caf\xE9.txt` would name two files, and `?` would
    /// match the backslash of an escape).
    private func matches(raw path: [UInt8]) -> Bool {
        guard !specs.isEmpty else { return true }
        let cPath = path.map { CChar(bitPattern: $0) } + [0]
        return specs.contains { spec in
            let bytes = Array(spec.utf8)
            return path == bytes || path.starts(with: bytes + [UInt8(ascii: "/")]) || fnmatch(spec, cPath, 0) == 0
        }
    }

    private func matches(_ text: String?, raw path: [UInt8]) -> Bool {
        text.map { matches($0) } ?? matches(raw: path)
    }

    /// Forgets what was recorded below a folder that goes whole.
    private mutating func dropRecorded(under folder: [UInt8]) {
        let prefix = folder + [UInt8(ascii: "/")]
        let shownPrefix = CleanWalk.shown(folder) + "/"
        removals.removeAll { $0.starts(with: prefix) }
        result.removed.removeAll { $0.hasPrefix(shownPrefix) }
    }
}
