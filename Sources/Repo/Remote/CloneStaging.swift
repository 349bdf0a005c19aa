import Delta
import Foundation

/// The hidden folder a clone is built in, beside its destination (`.NAME.mrepo-clone-PID.OWNER`), renamed
/// onto the destination when the clone is complete: a destination folder either does not exist
/// (or is as empty as it was) or holds a whole clone. A killed clone's folder is removed by the
/// next clone into the same parent folder (into any destination there), once its process is gone.
struct CloneStaging {
    let destination: String
    let path: String
    private let prefix: String
    private let parent: String

    init(destination: String) {
        self.destination = destination
        parent = (destination as NSString).deletingLastPathComponent
        // NAME is cut so that the folder's name fits 255 bytes (the pid is read from the end).
        let tag = AtomicFileWriter.processTag
        let room = AtomicFileWriter.maximumNameBytes - 1 - CloneStaging.marker.utf8.count - tag.utf8.count
        prefix = "." + AtomicFileWriter.fitting((destination as NSString).lastPathComponent, in: room) + CloneStaging.marker
        path = parent + "/" + prefix + tag
    }

    /// The suffix that marks a staging folder, before the pid.
    static let marker = ".mrepo-clone-"

    /// Removes the staging folders that killed clones left in the destination's parent folder
    /// (`.NAME.mrepo-clone-PID[.OWNER]`, whatever NAME), by the rule for every leftover (docs/format.md
    /// §7.4): only when process PID no longer exists (a pid that exists, whoever owns it, counts
    /// as running), and never this process's own. Those of a clone into the same destination are
    /// kept and returned instead: this clone moves what they received into its own store
    /// and deletes them (``PartialDownload/adopt(fromKilledClones:into:)``).
    func sweep() -> [String] {
        var resumable: [String] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] {
            guard let (pid, owner) = CloneStaging.writer(of: entry), pid != getpid() else { continue }
            // A clone of another container or machine (its pid means nothing here) is left alone.
            guard TemporaryName.isLocal(owner: owner), ProcessLiveness.isGone(pid) else { continue }
            let path = parent + "/" + entry
            // A folder only (a file or a symbolic link of that name is not ours to delete).
            guard let st = FileStat.of(path), st.isDirectory else { continue }
            if entry.hasPrefix(prefix) {
                resumable.append(path)
            } else {
                try? FileManager.default.removeItem(atPath: path)
            }
        }
        return resumable
    }

    /// The pid and owner in a staging folder's name `.NAME.mrepo-clone-PID[.OWNER]`, or nil when
    /// `name` is not one.
    static func writer(of name: String) -> (pid: pid_t, owner: Substring?)? {
        guard name.hasPrefix("."), let range = name.range(of: marker, options: .backwards), range.lowerBound > name.index(after: name.startIndex)
        else { return nil }
        return TemporaryName.writer(tag: name[range.upperBound...])
    }

    /// Moves the finished clone onto the destination (which must not exist or be an empty folder).
    func install() throws {
        if rename(path, destination) != 0 {
            if errno == ENOTEMPTY || errno == EEXIST || errno == ENOTDIR {
                // Checked empty before the clone began: another process (a second clone?) filled it since.
                throw RepoError.invalidArgument("destination '\(destination)' was filled by another process while this clone ran; nothing of this clone was kept")
            }
            throw RepoError.io(path: destination, reason: "cannot move the clone into place: \(errnoDescription())")
        }
        try AtomicFileWriter.syncDirectory(parent)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// After a clone that failed on the transfer: keeps only the objects it received, under their
    /// partial names (`.mrepo/objects/partial`), for the next clone into the same destination to take
    /// over once this process is gone (as a killed clone's); removes the folder when there are none.
    func keepOnlyPartials() {
        let fm = FileManager.default
        let meta = path + "/" + Repository.directoryName, objects = meta + "/objects"
        guard PartialDownload.census(ObjectStore(root: objects)).count > 0 else { return remove() }
        for (folder, kept) in [(path, Repository.directoryName), (meta, "objects"), (objects, "partial")] {
            for entry in (try? fm.contentsOfDirectory(atPath: folder)) ?? [] where entry != kept {
                try? fm.removeItem(atPath: folder + "/" + entry)
            }
        }
    }
}

extension CloneStaging {
    /// Whether `path` is this user's real folder (`directory`) or regular file with one link, not
    /// reached through a symbolic link at its last component: what may be moved out of a killed clone.
    static func isOurs(_ path: String, directory: Bool) -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0, st.st_uid == geteuid() else { return false }
        let type = st.st_mode & S_IFMT
        return directory ? type == S_IFDIR : type == S_IFREG && st.st_nlink == 1
    }
}
