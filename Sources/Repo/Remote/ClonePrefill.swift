import CLinux
import Delta
import Foundation
import Synchronization

/// The files a clone checks out, written while the clone verifies the objects it receives, so
/// that the checkout renames them into place instead of decoding the branch's objects a second
/// time (docs/remotes.md, "How transfers stay correct").
///
/// Verifying a received object decodes it whole (docs/format.md §4.5); the decoded bytes of an
/// object that the checked-out tree names (a file's blob, a safetensors header, a tensor) are
/// written at their places in a temporary copy of each file, sized up front, under
/// `.mrepo/.mrepo-tmp-<pid>-<random>-prepared`. An object counts as placed only once its
/// verification succeeded. When the fetch is done, a file whose every object was placed is
/// synced and hashed, and handed to the checkout, which adopts it only when its SHA-256 is the
/// one the tree records (``Repository/stageCheckout(_:over:force:prepared:)``); anything else
/// (an object that was not received, a layout that does not add up, a failed write) leaves that
/// file to the ordinary checkout. This is an optimisation, never a source of truth: every object
/// is still verified before any ref moves, and a crash leaves at most the temporary folder,
/// which the next command (or the next clone's sweep of the staging folder) removes.
final class ClonePrefill: Sendable {
    private struct File {
        var path: String
        var temporary: String
        var fd: Int32
        var byteCount: Int
        var sha256: Digest
        /// Places not yet written with a verified object's bytes.
        var pending: Int
        var failed = false
    }

    private struct Place {
        var file: Int
        var offset: Int
        var count: Int
    }

    let directory: String
    private let files: Mutex<[File]>
    /// Where each object's decoded bytes go (an object may stand in several places).
    private let places: [ObjectID: [Place]]

    /// Prepares the files of `tree` whose layout is known from the objects' rows (`logical`:
    /// decoded size by object id). Files without a recorded SHA-256 are left to the checkout.
    init(repository: Repository, tree: Tree, logical: [ObjectID: Int]) throws {
        directory = TemporaryName.path(in: repository.metaDirectory, name: "prepared")
        try repository.createDirectory(directory)
        var files: [File] = []
        var places: [ObjectID: [Place]] = [:]
        for (i, f) in tree.files.enumerated() {
            guard let sha = f.sha256, let first = logical[f.objectID], let layout = ClonePrefill.layout(f, headerCount: first) else { continue }
            let temporary = directory + "/\(i)"
            let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, f.executable ? 0o755 : 0o644)
            guard fd >= 0 else { continue }
            guard ftruncate(fd, off_t(f.byteCount)) == 0 else {
                close(fd)
                unlink(temporary)
                continue
            }
            files.append(File(path: f.path, temporary: temporary, fd: fd, byteCount: f.byteCount, sha256: sha, pending: layout.count))
            for (id, offset, count) in layout {
                places[id, default: []].append(Place(file: files.count - 1, offset: offset, count: count))
            }
        }
        self.files = Mutex(files)
        self.places = places
    }

    deinit { discard() }

    /// The objects of `file` with their offsets and sizes, in file order, or nil when the sizes
    /// do not add up (the checkout then rebuilds the file and says what is wrong).
    static func layout(_ file: TreeFile, headerCount: Int) -> [(ObjectID, Int, Int)]? {
        var out = [(file.objectID, 0, headerCount)]
        var offset = headerCount
        if file.kind == .safetensors {
            for t in file.tensors.inDataOrder() {
                guard headerCount + t.dataOffsets.lowerBound == offset else { return nil }
                out.append((t.objectID, offset, t.byteCount))
                offset += t.byteCount
            }
        }
        return offset == file.byteCount ? out : nil
    }

    /// Whether the checked-out tree names object `id` (its decoded bytes are then worth keeping).
    func wants(_ id: ObjectID) -> Bool { places[id] != nil }

    /// Writes decoded bytes of object `id`, `offset` bytes into it, at each of its places (the
    /// verification's sink: in order, one call at a time per object).
    func write(_ id: ObjectID, _ bytes: UnsafeRawBufferPointer, at offset: Int) {
        guard let list = places[id], !bytes.isEmpty else { return }
        for p in list {
            guard offset + bytes.count <= p.count else {
                files.withLock { $0[p.file].failed = true }
                continue
            }
            let (fd, failed) = files.withLock { ($0[p.file].fd, $0[p.file].failed) }
            guard !failed, fd >= 0 else { continue }
            if !PositionalIO.writeAll(fd, bytes, at: p.offset + offset) {
                files.withLock { $0[p.file].failed = true }
            } else if AtomicFileWriter.syncEnabled {
                // Start writing these pages back now: the sync before the rename then finds them on disk.
                _ = sync_file_range(fd, Int64(p.offset + offset), Int64(bytes.count), UInt32(MREPO_SYNC_FILE_RANGE_WRITE))
            }
        }
    }

    /// Object `id` was verified after ``write(_:_:at:)`` gave every one of its `byteCount` bytes:
    /// its places count as written.
    func verified(_ id: ObjectID, byteCount: Int) {
        guard let list = places[id] else { return }
        files.withLock { files in
            for p in list where p.count == byteCount { files[p.file].pending -= 1 }
        }
    }

    /// Syncs and hashes every complete file whose SHA-256 is the one recorded; returns them by
    /// path, for ``Repository/stageCheckout(_:over:force:prepared:)`` to move into place. The rest
    /// are deleted (the checkout rebuilds them).
    func finish() -> [String: PreparedFile] {
        files.withLock { files in
            var out: [String: PreparedFile] = [:]
            for i in files.indices where files[i].fd >= 0 {
                let f = files[i]
                var ok = !f.failed && f.pending == 0
                if ok, AtomicFileWriter.syncEnabled, fsync(f.fd) != 0 { ok = false }
                close(f.fd)
                files[i].fd = -1
                if ok, let map = try? MappedFile(path: f.temporary), map.count == f.byteCount, Snapshotter.fileDigest(map) == f.sha256 {
                    out[f.path] = PreparedFile(temporary: f.temporary, sha256: f.sha256)
                } else {
                    unlink(f.temporary)
                }
            }
            return out
        }
    }

    /// Closes and deletes everything not renamed away.
    func discard() {
        files.withLock { files in
            for i in files.indices where files[i].fd >= 0 {
                close(files[i].fd)
                files[i].fd = -1
            }
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

}
