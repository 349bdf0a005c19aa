import Delta
import Foundation

/// Files written under temporary names beside their destinations and renamed into place only
/// once every one of them is written and verified: a command that fails while writing leaves
/// its destination as it found it.
///
/// ``write(to:permissions:_:)`` writes one file to a temporary file (``AtomicFileWriter``) in its
/// destination's folder and closes it without waiting for the disk; ``adopt(_:for:executable:)``
/// moves a file already written elsewhere beside its destination instead. ``commit(didRename:)``
/// syncs every temporary file, renames each over its destination, then syncs the folders.
/// ``rollback()`` deletes every temporary file not yet renamed, then the folders the staging
/// created when they are empty; pre-existing files are never touched.
///
/// Only paths are held, so memory does not grow with the files. Until the renames the file
/// system holds both the old and the new version of every file being replaced. Every folder that
/// receives a temporary file, and every folder created for one, is noted in the journal first, so
/// the next command deletes what a crash leaves (``LeftoverSweeper``).
///
/// A checkout that turns a file into a folder (or a folder into a file) registers what stands in
/// the way with ``removeBeforeRenaming(_:files:)``: ``commit(didRename:)`` removes it after every
/// file is synced, just before the renames. A file staged under a folder that does not exist yet
/// because a registered file stands there is written beside that file, and its folders are
/// created at the commit.
final class FileStaging {
    private struct Staged {
        var temporary: String
        var destination: String
        /// Already durable (an adopted file); not synced again.
        var synced: Bool
        /// The destination's folder is created at the commit (a registered file stands in its way).
        var deferredFolder = false
    }

    /// Something in the way: a file, or a folder with the files in it (absolute paths).
    private struct Obstacle {
        var path: String
        var files: [String]
    }

    private var staged: [Staged] = []
    private var obstacles: [Obstacle] = []
    /// How many of `staged` are renamed into place (they are renamed in order).
    private var renamed = 0
    /// Folders created for the files, each after its parent.
    private var created: [String] = []
    private var finished = false
    private let journal: WriteJournal?

    init(journal: WriteJournal?) {
        self.journal = journal
    }

    /// Files staged so far.
    var count: Int { staged.count }

    deinit {
        // A staging dropped without commit or rollback (an error path) leaves nothing behind.
        if !finished { rollback() }
    }

    /// Creates a folder and its missing parents, remembering the ones it created; the error names
    /// `shown` (default: the folder).
    func createDirectory(_ dir: String, shownAs shown: String? = nil) throws {
        guard !dir.isEmpty else { return }
        var missing: [String] = []
        var d = dir
        while !d.isEmpty, d != "/", FileStat.of(d) == nil {
            missing.append(d)
            d = splitPath(d).dir
        }
        guard !missing.isEmpty else {
            if let st = FileStat.of(dir, followLinks: true), st.isDirectory { return }
            throw RepoError.io(path: shown ?? dir, reason: "cannot create directory: a file is in the way")
        }
        for folder in missing.reversed() {
            journal?.note(created: folder)
            guard mkdir(folder, 0o755) == 0 else {
                throw RepoError.io(path: shown ?? dir, reason: "cannot create directory")
            }
            created.append(folder)
        }
    }

    /// Writes one file: `body` writes its bytes to a temporary file beside `destination`, which
    /// is then closed (not yet synced) and kept for ``commit(didRename:)``. If `body` throws, the
    /// temporary file is deleted.
    func write(to destination: String, permissions: mode_t = 0o644, _ body: (AtomicFileWriter) throws -> Void) throws {
        let deferredIn = try prepareFolder(of: destination)
        journal?.note(directory: deferredIn ?? splitPath(destination).dir)
        let writer = try AtomicFileWriter(destination: destination, permissions: permissions, temporaryDirectory: deferredIn)
        do {
            try body(writer)
            let temporary = try writer.closeUnsynced()
            staged.append(Staged(temporary: temporary, destination: destination, synced: false, deferredFolder: deferredIn != nil))
        } catch {
            writer.abort()
            throw error
        }
    }

    /// Moves a file already written and synced on the same file system (a prepared merge result)
    /// beside `destination`, as if it had been written there. False, with `file` deleted, when it
    /// cannot be moved, e.g. from another file system: the caller then writes the file itself.
    func adopt(_ file: String, for destination: String, executable: Bool) throws -> Bool {
        let deferredIn = try prepareFolder(of: destination)
        journal?.note(directory: deferredIn ?? splitPath(destination).dir)
        if executable { chmod(file, 0o755) }
        let temporary = AtomicFileWriter.temporaryPath(for: deferredIn.map { $0 + "/" + splitPath(destination).name } ?? destination)
        guard rename(file, temporary) == 0 else {
            unlink(file)
            return false
        }
        staged.append(Staged(temporary: temporary, destination: destination, synced: true, deferredFolder: deferredIn != nil))
        return true
    }

    /// Registers a file, or a folder holding exactly `files`, that stands where a staged file or
    /// its folder goes; ``commit(didRename:)`` removes it before the renames. Register before
    /// staging the files it blocks.
    func removeBeforeRenaming(_ path: String, files: [String] = []) {
        obstacles.append(Obstacle(path: path, files: files))
    }

    /// Creates the destination's folder, or, when a registered file stands where one of its
    /// folders goes, returns the folder of that file, where the temporary file is written instead.
    private func prepareFolder(of destination: String) throws -> String? {
        let dir = splitPath(destination).dir
        var d = dir
        while !d.isEmpty, d != "/" {
            if obstacles.contains(where: { $0.path == d && $0.files.isEmpty }) { return splitPath(d).dir }
            d = splitPath(d).dir
        }
        try createDirectory(dir)
        return nil
    }

    /// Removes the registered obstacles: files, then the folders emptied of the files they held.
    private func removeObstacles() throws {
        for obstacle in obstacles {
            guard !obstacle.files.isEmpty || FileStat.of(obstacle.path)?.isDirectory == true else {
                if unlink(obstacle.path) != 0, errno != ENOENT {
                    throw RepoError.io(path: obstacle.path, reason: "cannot remove the file in the way: \(errnoDescription())")
                }
                continue
            }
            var folders = Set<String>()
            for file in obstacle.files {
                if unlink(file) != 0, errno != ENOENT {
                    throw RepoError.io(path: file, reason: "cannot remove: \(errnoDescription())")
                }
                var d = splitPath(file).dir
                while d.count > obstacle.path.count, d.hasPrefix(obstacle.path + "/") {
                    folders.insert(d)
                    d = splitPath(d).dir
                }
            }
            for folder in folders.sorted(by: { $0.count > $1.count }) { rmdir(folder) }
            guard rmdir(obstacle.path) == 0 else {
                throw RepoError.io(path: obstacle.path, reason: "cannot remove the folder in the way: \(errnoDescription())")
            }
        }
        obstacles.removeAll()
    }

    /// Makes the staged files durable, renames each over its destination (calling `didRename`
    /// after each), and syncs the folders that changed. A failure here can leave some files
    /// renamed; ``rollback()`` then deletes the rest.
    func commit(didRename: () -> Void = {}) throws {
        precondition(!finished, "commit or rollback is called once")
        let unsynced = staged[renamed...].filter { !$0.synced }
        try AtomicFileWriter.syncFiles(unsynced.map(\.temporary), shownAs: unsynced.map(\.destination))
        PageCache.waitForPendingDrops()
        try removeObstacles()
        while renamed < staged.count {
            let file = staged[renamed]
            if file.deferredFolder { try createDirectory(splitPath(file.destination).dir) }
            guard rename(file.temporary, file.destination) == 0 else {
                throw RepoError.io(path: file.destination, reason: "rename failed: \(errnoDescription())")
            }
            renamed += 1
            didRename()
        }
        // The folders holding renamed files, and those holding a folder created for them.
        var folders: [String] = []
        var seen = Set<String>()
        for dir in staged.map({ splitPath($0.destination).dir }) + created.map({ splitPath($0).dir }) where seen.insert(dir).inserted {
            folders.append(dir)
        }
        try AtomicFileWriter.syncDirectories(folders)
        finished = true
    }

    /// Deletes every temporary file not renamed into place, then each folder this staging created
    /// that is empty (deepest first).
    func rollback() {
        for file in staged[renamed...] { unlink(file.temporary) }
        staged.removeSubrange(renamed...)
        for dir in created.reversed() { rmdir(dir) }
        created.removeAll()
        finished = true
    }
}
