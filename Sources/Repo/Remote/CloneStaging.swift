import Delta
import Foundation

/// The hidden folder a clone is built in, beside its destination (`.NAME.mrepo-clone-PID`), renamed
/// onto the destination when the clone is complete: a destination folder either does not exist
/// (or is as empty as it was) or holds a whole clone. A killed clone's folder is removed by the
/// next clone into the same parent folder, once its process is gone.
struct CloneStaging {
    let destination: String
    let path: String
    private let prefix: String
    private let parent: String

    init(destination: String) {
        self.destination = destination
        parent = (destination as NSString).deletingLastPathComponent
        prefix = "." + (destination as NSString).lastPathComponent + ".mrepo-clone-"
        path = parent + "/" + prefix + "\(getpid())"
    }

    /// Removes the staging folders of clones into this destination whose process is gone.
    func sweep() {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? [] where entry.hasPrefix(prefix) {
            guard let pid = pid_t(entry.dropFirst(prefix.count)) else { continue }
            if pid != getpid(), kill(pid, 0) == 0 || errno == EPERM { continue }
            try? FileManager.default.removeItem(atPath: parent + "/" + entry)
        }
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
