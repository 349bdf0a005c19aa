import Delta
import Foundation

// `mrepo export` of a commit's files: the destination folder's checks, the all-or-nothing write,
// `--clean`. Generated models (folded adapters, experts, views) come through
// ``Repository/export(_:as:to:clean:)`` in Repository+Materialize.swift.

/// What an export wrote.
public struct ExportResult: Sendable {
    public var commit: ObjectID
    public var directory: String
    public var fileCount: Int
    public var byteCount: Int
    /// The commit's lossy record, when its tensors are approximations (``export(_:as:to:)``).
    public var lossy: LossyRecord? = nil
    /// The commit `lossy` belongs to when it is not `commit`: the lossy base model an adapter was folded into.
    public var lossyCommit: ObjectID? = nil
}

extension Repository {
    /// The absolute path of an export folder, created (by `staging`, which deletes it again on
    /// rollback) if missing; never the working tree itself nor anything inside `.mrepo`, however
    /// symbolic links lead there.
    ///
    /// A folder that holds files the export does not write (`writing`) is refused, naming them,
    /// unless `clean`: the export then deletes them after its own files are in place (the stale
    /// files are returned).
    func exportDirectory(_ directory: String, staging: FileStaging, writing: [String], clean: Bool) throws -> (String, stale: [String]) {
        let dir = Repository.absolutePath(directory)
        let real = Repository.resolvingLinks(dir)
        if dir == root || real == Repository.resolvingLinks(root) {
            throw RepoError.exportIntoWorktree
        }
        if isInsideStore(dir) {
            throw RepoError.exportIntoStore(directory: directory)
        }
        let written = Set(try writing.map { try PathPolicy.normalize($0) })
        let stale = Repository.filesUnder(dir).filter { !written.contains($0) }
        if !stale.isEmpty && !clean {
            let shown = stale.prefix(5).joined(separator: ", ") + (stale.count > 5 ? " and \(stale.count - 5) more" : "")
            throw RepoError.invalidArgument("export into \(directory): the folder holds files the export would not write (\(shown)); pass --clean to delete them, or choose an empty folder")
        }
        if FileStat.of(dir + "/" + Repository.directoryName) != nil {
            throw RepoError.invalidArgument("export into \(directory): the folder is a repository (it holds \(Repository.directoryName)); choose another folder")
        }
        try staging.createDirectory(dir, shownAs: directory)
        return (dir, stale)
    }

    /// The regular files under a folder (relative paths; links are not followed, nor listed).
    static func filesUnder(_ dir: String) -> [String] {
        guard FileStat.of(dir, followLinks: true)?.isDirectory == true,
              let e = FileManager.default.enumerator(atPath: dir) else { return [] }
        var out: [String] = []
        while let p = e.nextObject() as? String {
            if FileStat.of(dir + "/" + p)?.isRegular == true { out.append(p) }
        }
        return out.sorted()
    }

    /// Deletes the stale files of an export destination (`export --clean`), after the export's
    /// own files are in place, and the folders that leaves empty.
    func removeStale(_ stale: [String], in dir: String) {
        for path in stale {
            unlink(dir + "/" + path)
            var d = splitPath(path).dir
            while !d.isEmpty, rmdir(dir + "/" + d) == 0 { d = d.contains("/") ? splitPath(d).dir : "" }
        }
    }

    /// Writes every file of a commit into `directory`, byte for byte as committed.
    ///
    /// All or nothing: every file is written to a temporary file beside its destination and every
    /// tensor's hash verified; only then are the files synced and renamed into place. A failure
    /// before that deletes the temporary files and any folder the export created, so files already
    /// in `directory` are untouched and a new folder is not left behind. Until the renames the disk
    /// holds both versions of a file the export replaces.
    ///
    /// - Parameter only: export only the file at this path, or the files under this folder (`REV:path`).
    ///   - clean: delete files of the folder the export does not write (else they make it fail).
    ///   - noStatistics: leave out the statistics folder (`mrepo_stats/`, `export --no-stats`).
    public func export(_ revision: String, to directory: String, only: String? = nil, clean: Bool = false,
                       noStatistics: Bool = false) throws -> ExportResult {
        try withReadLock { try exportLocked(revision, to: directory, only: only, clean: clean, noStatistics: noStatistics) }
    }

    private func exportLocked(_ revision: String, to directory: String, only: String?, clean: Bool, noStatistics: Bool) throws -> ExportResult {
        let id = try resolve(revision)
        var tree = try verifiedTree(of: id)
        if noStatistics { tree = tree.withoutStatistics }
        if let only {
            let spec = Repository.normalizedPathSpec(only)
            tree = Tree(files: tree.files.filter { PathSpec.matches(spec, file: $0.path) })
            if tree.files.isEmpty { throw RepoError.invalidArgument("path '\(only)' does not exist in \(revision) (\(id.short))") }
        }
        CrashPoint.reach("export.resolved")
        let staging = FileStaging(journal: journal)
        defer { objects.releaseMappings() }
        do {
            let (dir, stale) = try exportDirectory(directory, staging: staging, writing: tree.files.map(\.path), clean: clean)
            let counter = ProgressCounter(progress, title: "export", total: tree.logicalByteCount)
            for file in tree.files {
                let path = try PathPolicy.normalize(file.path)
                try PathPolicy.checkNoSymlinkParents(root: dir, path: path)
                try stage(file, at: dir + "/" + path, in: staging, progress: counter)
            }
            counter.finish()
            CrashPoint.reach("export.staged")
            try staging.commit(didRename: { CrashPoint.reach("export.file") })
            removeStale(stale, in: dir)
            return ExportResult(commit: id, directory: dir, fileCount: tree.files.count, byteCount: tree.logicalByteCount)
        } catch {
            staging.rollback()
            throw error
        }
    }
}
