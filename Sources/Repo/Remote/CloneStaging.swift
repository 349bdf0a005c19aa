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
    /// kept and returned instead: this clone takes over the objects they received (``Repository/adoptObjects(fromKilledClones:)``)
    /// and removes them then.
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
            throw RepoError.io(path: destination, reason: "cannot move the clone into place: \(errnoDescription())")
        }
        try AtomicFileWriter.syncDirectory(parent)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}

extension Repository {
    /// Takes over the object files that killed clones (their staging folders, `folders`) had
    /// received: each is verified as a received object is (decoded, against its reference, and
    /// hashed to its id) and moved into this store; one that does not verify is left behind (and
    /// downloaded). No row is written: the fetch that follows records every object it needs,
    /// reading the rows of these from their files, and asks only for the others. Returns the ids
    /// taken over (those the fetch does not record are removed after it).
    @discardableResult
    func adoptObjects(fromKilledClones folders: [String]) -> [ObjectID] {
        var candidates: [ObjectID: String] = [:]
        // Folders as they are, never through a symbolic link (files are moved out of them: a link
        // could lead to another repository's store).
        func isFolder(_ path: String) -> Bool { FileStat.of(path)?.isDirectory == true }
        for folder in folders where isFolder(folder) && isFolder(folder + "/" + Repository.directoryName) {
            let root = folder + "/" + Repository.directoryName + "/objects"
            guard isFolder(root) else { continue }
            for sub in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] where sub.count == 2 && isFolder(root + "/" + sub) {
                for rest in (try? FileManager.default.contentsOfDirectory(atPath: root + "/" + sub)) ?? [] {
                    // Temporary files start with a dot; an object file's name is the rest of its id.
                    guard let id = ObjectID(hex: sub + rest), FileStat.of(root + "/" + sub + "/" + rest)?.isRegular == true else { continue }
                    candidates[id] = root + "/" + sub + "/" + rest
                }
            }
        }
        guard !candidates.isEmpty else { return [] }
        // References are read from the candidates themselves (a wrong reference cannot pass: the
        // decoded bytes are hashed to the object's id); one whose reference is neither here nor
        // among them is left for the download.
        var pending = candidates
        var adopted: [ObjectID] = []
        for (id, path) in candidates where !objects.exists(id) {
            guard (try? objects.verifyIncoming(id, path: path, references: nil, pending: pending, sink: { _ in })) != nil else { continue }
            // Durable before a row can name it (the fetch records rows in one transaction).
            if (try? objects.install(id, from: path, syncFolder: true)) != nil {
                pending[id] = nil
                adopted.append(id)
            }
        }
        CrashPoint.reach("clone.adopted")
        return adopted
    }
}
