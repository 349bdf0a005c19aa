import CLinux
import Foundation
import Delta

/// The first bytes of an object whose download broke off, kept so that the next fetch or clone
/// asks only for the rest: `objects/partial/<id>` (docs/format.md §10, "Partial downloads"), as
/// huggingface_hub keeps `.incomplete` blobs.
///
/// A download holds an exclusive `flock` on its partial file from before its first byte until its
/// batch stores the object (released by the kernel when the process dies, however it dies), so two
/// fetches never write one file; the second one downloads into a temporary file of its own. The
/// bytes are trusted for nothing: the whole object is verified (decoded and hashed to its id) once
/// it is complete, and a partial file that makes an object fail (a power loss that left zeros,
/// another remote that codes the object otherwise) is dropped and the object downloaded from its
/// start. Verified, the file joins its batch under this name, held until the batch renames it to
/// the object's name: an object killed while it waited for its verification or its batch is found
/// whole by the next try, which verifies it without downloading anything.
///
/// Not a leftover: no command but `gc` removes partial files (gc removes those no download holds,
/// `fsck` counts them; a clone, at its end, those it took over and did not need), and each is at
/// most one object's size. Only regular files named by an id
/// count; anything else in the folder is left alone.
///
/// One download owns an instance at a time (it passes from the task that receives the object to
/// the install of its batch), hence `@unchecked Sendable`.
final class PartialDownload: @unchecked Sendable {
    let path: String
    private var fd: Int32
    /// Bytes already there when it was claimed.
    private(set) var byteCount: Int

    private init(path: String, fd: Int32, byteCount: Int) {
        self.path = path
        self.fd = fd
        self.byteCount = byteCount
    }

    deinit { if fd >= 0 { close(fd) } }

    static func folder(of store: ObjectStore) -> String { store.root + "/partial" }

    /// The partial folder of `store` when it is a real folder (not a link, not a file), made first
    /// with `create`; nil otherwise.
    private static func realFolder(of store: ObjectStore, create: Bool) -> String? {
        let dir = folder(of: store)
        if create, mkdir(dir, 0o755) != 0, errno != EEXIST { return nil }
        var st = stat()
        return lstat(dir, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR ? dir : nil
    }

    /// Whether `path` still names the file open as `fd` (not one put in its place since).
    private static func names(_ path: String, _ fd: Int32) -> Bool {
        var held = stat(), named = stat()
        return fstat(fd, &held) == 0 && lstat(path, &named) == 0 && named.st_ino == held.st_ino && named.st_dev == held.st_dev
    }

    /// Claims the partial file of `id` (creating it empty), or nil when another download holds it
    /// or it cannot be made (the caller then downloads into a temporary file, as before).
    static func claim(_ id: ObjectID, in store: ObjectStore) -> PartialDownload? {
        guard let dir = realFolder(of: store, create: true) else { return nil }
        let path = dir + "/" + id.hex
        // The file may be renamed away (completed by another download) between the open and the
        // lock: then the lock holds a file that is no longer this name's, and the open is retried.
        for _ in 0..<4 {
            switch lock(path, creating: true) {
            case let .locked(fd, size): return PartialDownload(path: path, fd: fd, byteCount: size)
            case .renamedAway: continue
            case .unavailable: return nil
            }
        }
        return nil
    }

    private enum Locked {
        case locked(fd: Int32, size: Int)
        /// Locked, but the name names another file by then.
        case renamedAway
        /// Missing, not a regular file, or held by another download.
        case unavailable
    }

    /// Opens (`creating`: or creates) the regular file `path` names and locks it, when no download
    /// holds it. Its size is read under the lock. Non-blocking: a name swapped for a FIFO must not
    /// hang the caller.
    private static func lock(_ path: String, creating: Bool) -> Locked {
        let fd = open(path, (creating ? O_RDWR | O_CREAT : O_RDONLY) | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return .unavailable }
        var held = stat()
        guard flock(fd, LOCK_EX | LOCK_NB) == 0, fstat(fd, &held) == 0, held.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            return .unavailable
        }
        guard names(path, fd) else {
            close(fd)
            return .renamedAway
        }
        return .locked(fd: fd, size: Int(held.st_size))
    }

    /// Drops the bytes kept (they cannot be a prefix of the object).
    func reset() {
        _ = ftruncate(fd, 0)
        byteCount = 0
    }

    /// Removes the file (its bytes make no object) and lets it go.
    func drop() {
        unlink(path)
        release()
    }

    /// Lets the file go after the download broke off: kept for the next try when it holds bytes,
    /// removed when it is empty.
    func keep() {
        var st = stat()
        if fstat(fd, &st) == 0, st.st_size == 0 { unlink(path) }
        release()
    }

    /// Lets the file go (its batch renamed it to the object's name, or it is gone).
    func release() {
        if fd >= 0 { close(fd) }
        fd = -1
    }

    /// Opens and locks the regular file `path` names, when no download holds it: the descriptor,
    /// locked, still naming that file (not a file renamed away while it was locked), or nil.
    private static func lockUnheld(_ path: String) -> (fd: Int32, size: Int)? {
        if case let .locked(fd, size) = lock(path, creating: false) { (fd, size) } else { nil }
    }

    /// Gives the file at `from` the name `to` unless `to` exists, never over another file: one
    /// `renameat2(RENAME_NOREPLACE)`, or `link` then `unlink` on a file system without it. Returns
    /// whether it moved.
    private static func moveNoReplace(_ from: String, to: String) -> Bool {
        // One atomic rename: of two processes moving one file, one gets it and the other finds it
        // gone (link, then unlink, let both link it first, and the file had two names).
        if mrepo_rename_noreplace(from, to) == 0 { return true }
        guard errno == EINVAL || errno == ENOSYS else { return false }
        // A file system without RENAME_NOREPLACE.
        guard link(from, to) == 0 else { return false }
        unlink(from)
        return true
    }

    /// Moves the complete file of object `id` at `path` (verified, or stored by a fetch that then
    /// failed) to its partial name, for the next fetch to verify without downloading it. A file
    /// already there that no download holds is replaced; one a download holds keeps the name, and
    /// `path` is deleted.
    static func park(_ path: String, as id: ObjectID, in store: ObjectStore) {
        guard let dir = realFolder(of: store, create: true) else {
            unlink(path)
            return
        }
        let name = dir + "/" + id.hex
        if moveNoReplace(path, to: name) { return }
        // Replaced only while locked: a claim that opens the old file meanwhile finds it renamed
        // away once it has the lock, and opens the name again.
        if let held = lockUnheld(name) {
            if rename(path, name) != 0 { unlink(path) }
            close(held.fd)
        } else {
            unlink(path)
        }
    }

    /// Deletes the partial files of `ids` that no download holds (a fetch refused for a damaged
    /// object keeps nothing it received).
    static func discard(_ ids: [ObjectID], in store: ObjectStore) {
        guard let dir = realFolder(of: store, create: false) else { return }
        for id in ids {
            let path = dir + "/" + id.hex
            guard let held = lockUnheld(path) else { continue }
            unlink(path)
            close(held.fd)
        }
    }

    /// The partial files of `store`: regular files named by an id, in a real folder (not through a link).
    private static func files(_ store: ObjectStore) -> [(id: ObjectID, path: String, size: Int)] {
        guard let dir = realFolder(of: store, create: false) else { return [] }
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted().compactMap { name in
            var file = stat()
            guard let id = ObjectID(hex: name), lstat(dir + "/" + name, &file) == 0, file.st_mode & S_IFMT == S_IFREG else { return nil }
            return (id, dir + "/" + name, Int(file.st_size))
        }
    }

    /// The partial files in `store`: their count and bytes (for `fsck`).
    static func census(_ store: ObjectStore) -> (count: Int, bytes: Int) {
        let all = files(store)
        return (all.count, all.reduce(0) { $0 + $1.size })
    }

    /// Removes the partial files no download holds, but those of `keeping`; returns their count and
    /// bytes (for `gc`; a clone keeps the objects its lazy history names without a file).
    static func sweep(_ store: ObjectStore, keeping: Set<ObjectID> = []) -> (count: Int, bytes: Int) {
        var count = 0, bytes = 0
        for (id, path, _) in files(store) where !keeping.contains(id) {
            guard let held = lockUnheld(path) else { continue }
            defer { close(held.fd) }
            guard unlink(path) == 0 else { continue }
            count += 1
            bytes += held.size
        }
        return (count, bytes)
    }

    /// Moves what killed clones into this destination received (`folders`: their staging folders)
    /// into `store`'s partial folder, then deletes those folders: the partial files as they are, and
    /// the objects their batches had stored (complete files, which the download verifies without
    /// asking for a byte). So the objects of any number of killed tries wait in one place, and a
    /// clone killed again leaves one folder, not one more. Only real folders and regular files with
    /// one link, owned by this user, never through a link; a partial name already there is kept,
    /// unless a complete object replaces it.
    static func adopt(fromKilledClones folders: [String], into store: ObjectStore) {
        let meta = Repository.directoryName
        for clone in folders {
            defer { if CloneStaging.isOurs(clone, directory: true) { try? FileManager.default.removeItem(atPath: clone) } }
            let objects = clone + "/" + meta + "/objects"
            guard [clone, clone + "/" + meta, objects].allSatisfy({ CloneStaging.isOurs($0, directory: true) }),
                  let dir = realFolder(of: store, create: true) else { continue }
            let partials = objects + "/partial"
            if CloneStaging.isOurs(partials, directory: true) {
                for name in (try? FileManager.default.contentsOfDirectory(atPath: partials)) ?? []
                where ObjectID(hex: name) != nil && CloneStaging.isOurs(partials + "/" + name, directory: false) {
                    _ = moveNoReplace(partials + "/" + name, to: dir + "/" + name)
                }
            }
            for sub in (try? FileManager.default.contentsOfDirectory(atPath: objects)) ?? []
            where sub.count == 2 && CloneStaging.isOurs(objects + "/" + sub, directory: true) {
                for rest in (try? FileManager.default.contentsOfDirectory(atPath: objects + "/" + sub)) ?? [] {
                    // Temporary files start with a dot; an object file's name is the rest of its id.
                    let path = objects + "/" + sub + "/" + rest
                    guard let id = ObjectID(hex: sub + rest), CloneStaging.isOurs(path, directory: false) else { continue }
                    park(path, as: id, in: store)
                }
            }
        }
    }
}

extension RepoError {
    /// Whether `error` refuses an object the remote sent (it does not verify, or a ranged answer
    /// was not its rest): a transfer then keeps nothing it received, partial files included.
    static func refusesReceivedObject(_ error: any Error) -> Bool {
        if case .corruptObject? = error as? RepoError { true } else { false }
    }
}
