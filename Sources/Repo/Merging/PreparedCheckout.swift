import CLinux
import Delta
import Foundation
import Synchronization

/// The merged model's files, written while the merge runs, so that checking the merge out renames
/// them into place instead of decoding every merged tensor a second time.
///
/// Each safetensors file of the layout template (the first expert's files) gets a temporary copy
/// under `.mrepo/.mrepo-tmp-<pid>-<random>-prepared`, sized and headed like the template; the
/// tensors the merge takes unchanged are decoded into place before it runs (``prefill(_:store:)``)
/// and every merged tensor is written to its place as soon as it is computed. Each file is hashed
/// on another thread as it is written, in file order as far as it is written (``FrontierDigest``):
/// when the tensor merges end (``startDigests()``) little is left to hash, and its SHA-256 costs
/// almost no time on the merge's single-threaded tail. When the
/// merge is recorded, the files whose tree entry kept the template's header get any remaining
/// tensor decoded into place, are synced, and renamed into the working tree. Anything unusual
/// (another layout, a write error) just leaves that file to the ordinary checkout: this is an
/// optimisation, never a source of truth, and a crash leaves at most the temporary folder, which
/// the next command removes.
/// A complete file written elsewhere on the working tree's file system, ready to be moved into place.
struct PreparedFile {
    var temporary: String
    var sha256: Digest?
}

final class PreparedCheckout: Sendable {
    private struct File {
        var path: String
        var temporary: String
        var fd: Int32
        var headerObject: ObjectID
        var headerLength: Int
        var byteCount: Int
        var executable: Bool
        var pending: Set<String>
        var written = 0
        var failed = false
        /// Tensors decoded into place before the merge ran, by the object written.
        var filled: [String: ObjectID] = [:]
        /// The SHA-256 of the whole file, hashed in file order on another thread while the file is
        /// written (``FrontierDigest``); nil once it cannot be trusted (a file left incomplete, a
        /// write out of turn): the file is then hashed when finished.
        var digest: BackgroundValue<Digest?>?
        var frontier: FrontierDigest?
    }

    /// A file's SHA-256, taken in file order on another thread as the file is written, which then
    /// syncs the file (through a descriptor of its own), so that the sync ``finish(for:store:)``
    /// still makes before the rename finds its pages already on disk instead of writing them on the
    /// merge's tail.
    ///
    /// It starts held (``resumeDigests()``) in a merge that may be done again (``mayRepeat``): such
    /// a merge finds every result stored, writes a file the history records with its SHA-256
    /// (``finish(for:store:knownDigest:)``), and then never hashes it.
    static func frontierDigest(path: String, fd: Int32, byteCount: Int, held: Bool) -> FrontierDigest {
        let own = AtomicFileWriter.syncEnabled ? dup(fd) : -1
        return FrontierDigest(path: path, byteCount: byteCount, held: held, afterwards: {
            if own >= 0 {
                _ = fsync(own)
                close(own)
            }
        })
    }

    let directory: String
    /// The files being written; merged tensors may arrive from several threads.
    private let files: Mutex<[File]>
    /// Whether the digests were let hash (a result new to the store was written).
    private let resumed = Atomic<Bool>(false)
    /// Where each tensor of the template goes: fixed once the files are created.
    private let places: [String: Place]
    /// Whether the merge may be one done before: the store holds its recorded recipe (which names
    /// the inputs' commits and every parameter), so its results are likely stored already. Only
    /// then do the digests start held and do larger results wait for their ids before they are
    /// coded (``JobRun/defersCoding``); a first merge codes every chunk as it is merged, on any
    /// core, and hashes its files from the start.
    let mayRepeat: Bool

    private struct Place {
        var file: Int
        var offset: Int
        var count: Int
    }

    init(repository: Repository, template: Tree, mayRepeat: Bool = true) throws {
        self.mayRepeat = mayRepeat
        // `.mrepo/.mrepo-tmp-<pid>-<random>-prepared`: a crash leaves it to the next command's sweep.
        directory = TemporaryName.path(in: repository.metaDirectory, name: "prepared")
        try repository.createDirectory(directory)
        var files: [File] = []
        var places: [String: Place] = [:]
        for (i, f) in template.files.enumerated() where f.kind == .safetensors {
            let header: [UInt8]
            do {
                header = try repository.objects.read(f.objectID)
            } catch {
                for file in files { close(file.fd) }
                try? FileManager.default.removeItem(atPath: directory)
                throw error
            }
            let temporary = directory + "/\(i).safetensors"
            // Read back too: a result coded once its id is known (``JobRun/codeDeferred(_:)``).
            let fd = open(temporary, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            guard fd >= 0 else { continue }
            guard ftruncate(fd, off_t(f.byteCount)) == 0, PreparedCheckout.write(fd, header, at: 0) else {
                close(fd)
                continue
            }
            let frontier = PreparedCheckout.frontierDigest(path: temporary, fd: fd, byteCount: f.byteCount, held: mayRepeat)
            frontier.wrote(0..<header.count)
            files.append(File(path: f.path, temporary: temporary, fd: fd, headerObject: f.objectID, headerLength: header.count,
                              byteCount: f.byteCount, executable: f.executable, pending: Set(f.tensors.map(\.name)),
                              digest: frontier.value, frontier: frontier))
            for t in f.tensors where places[t.name] == nil {
                places[t.name] = Place(file: files.count - 1, offset: header.count + t.dataOffsets.lowerBound, count: t.byteCount)
            }
        }
        // The checkout that ends the merge renames these files over the working tree's: their
        // old pages are dropped now, while the merge starts on one core.
        PageCache.dropInBackground(files.map { repository.root + "/" + $0.path })
        self.files = Mutex(files)
        self.places = places
        if !mayRepeat { resumed.store(true, ordering: .relaxed) }
    }

    deinit { discard() }

    /// Puts a merged tensor's bytes at its place (when the template has it with that size).
    func write(_ name: String, _ bytes: UnsafeRawBufferPointer) {
        guard let p = places[name], bytes.count == p.count else { return }
        // Not known to be stored: the file may be new.
        resumeDigests()
        writePart(name, bytes, at: 0)
        completed(name)
    }

    /// Lets every file's digest hash: the merge wrote a result the store did not hold, so its files
    /// are likely new to the history. Until then (a merge done again: every result found stored)
    /// the digests wait, and ``finish(for:store:knownDigest:)`` takes the recorded SHA-256 instead.
    /// Whether the merge wrote a result new to the store (``resumeDigests()`` was called).
    var wroteNewResult: Bool { resumed.load(ordering: .relaxed) }

    func resumeDigests() {
        guard !resumed.exchange(true, ordering: .relaxed) else { return }
        let frontiers = files.withLock { $0.compactMap(\.frontier) }
        for f in frontiers { f.release() }
    }

    /// Puts part of a merged tensor's bytes, `offset` bytes into the tensor, at its place. Safe to
    /// call from several threads (the positional writes run outside the lock); ``completed(_:)``
    /// then says every part is written.
    func writePart(_ name: String, _ bytes: UnsafeRawBufferPointer, at offset: Int) {
        guard let p = places[name], offset >= 0, offset + bytes.count <= p.count else { return }
        let (fd, failed, frontier) = files.withLock { ($0[p.file].fd, $0[p.file].failed, $0[p.file].frontier) }
        guard !failed, fd >= 0 else { return }
        if !PositionalIO.writeAll(fd, bytes, at: p.offset + offset) {
            files.withLock { $0[p.file].failed = true }
            frontier?.cancel()
            return
        }
        frontier?.wrote((p.offset + offset)..<(p.offset + offset + bytes.count))
        if AtomicFileWriter.syncEnabled {
            // Start writing these pages back now, without waiting: the sync before the rename
            // then finds them on disk, and the disk works while the merge computes.
            _ = sync_file_range(fd, Int64(p.offset + offset), Int64(bytes.count), UInt32(MREPO_SYNC_FILE_RANGE_WRITE))
        }
    }

    /// Reads part of a merged tensor's bytes, `offset` bytes into the tensor, back from its place;
    /// false when the file cannot give them (a failed write, no such place).
    func readPart(_ name: String, into buffer: UnsafeMutableRawBufferPointer, at offset: Int) -> Bool {
        guard let p = places[name], offset >= 0, offset + buffer.count <= p.count else { return false }
        let (fd, failed) = files.withLock { ($0[p.file].fd, $0[p.file].failed) }
        guard !failed, fd >= 0 else { return false }
        return PositionalIO.readAll(fd, into: buffer, at: p.offset + offset)
    }

    /// Decodes the tensors the merge takes unchanged (name → object) into their places before the
    /// merge runs, so that a file is complete when the last merged tensor is written. A tensor the
    /// recorded tree names with another object is decoded again by ``finish(for:store:)``.
    func prefill(_ tensors: [String: ObjectID], store: ObjectStore) {
        for (name, id) in tensors.sorted(by: { $0.key < $1.key }) {
            guard let p = places[name] else { continue }
            let (fd, failed, frontier) = files.withLock { ($0[p.file].fd, $0[p.file].failed, $0[p.file].frontier) }
            guard !failed, fd >= 0 else { continue }
            var offset = p.offset
            let end = p.offset + p.count
            do {
                // Verified by the store, as the ordinary checkout does.
                try store.decode(id) { chunk in
                    guard offset + chunk.count <= end, PositionalIO.writeAll(fd, chunk, at: offset) else {
                        throw RepoError.io(path: name, reason: "cannot write")
                    }
                    frontier?.wrote(offset..<(offset + chunk.count))
                    offset += chunk.count
                }
            } catch {
                // Left pending: the finish decodes it (and reports a corrupt object there).
                continue
            }
            guard offset == end else { continue }
            files.withLock { files in
                if files[p.file].pending.remove(name) != nil { files[p.file].filled[name] = id }
            }
        }
    }

    /// Lets the digest of each file that holds every tensor of the template hash its last bytes
    /// (called when the tensor merges are done: nothing writes them afterwards); the other files'
    /// digests are dropped, and those files hashed once finished.
    func startDigests() {
        files.withLock { files in
            for i in files.indices {
                if files[i].fd >= 0 && !files[i].failed && files[i].pending.isEmpty {
                    files[i].frontier?.complete()
                } else {
                    // Left incomplete: hashed when finished (``finish(for:store:)``).
                    files[i].frontier?.cancel()
                    files[i].digest = nil
                }
            }
        }
    }

    /// Marks a tensor whose parts are all written (``writePart(_:_:at:)``) as in place.
    func completed(_ name: String) {
        guard let p = places[name] else { return }
        files.withLock { files in
            guard !files[p.file].failed else { return }
            if files[p.file].pending.remove(name) != nil { files[p.file].written += 1 }
        }
    }

    /// Whether the template has a place for a tensor of `byteCount` bytes named `name`.
    func hasPlace(for name: String, byteCount: Int) -> Bool {
        places[name]?.count == byteCount
    }

    /// Completes the files whose entry in `tree` is the prepared layout, syncs them, and returns
    /// them by path (temporary files to rename into the working tree, with their SHA-256). A file
    /// that received no merged tensor is left to the ordinary checkout, which skips it when it is
    /// unchanged. `knownDigest` gives the SHA-256 the history records for a file with the same
    /// objects (the same bytes), taken for a file whose digest is still held and that was written
    /// exactly as its tree entry says.
    func finish(for tree: Tree, store: ObjectStore, knownDigest: (TreeFile) -> Digest? = { _ in nil }) -> [String: PreparedFile] {
        files.withLock { finish(&$0, for: tree, store: store, knownDigest: knownDigest) }
    }

    private func finish(_ files: inout [File], for tree: Tree, store: ObjectStore, knownDigest: (TreeFile) -> Digest?) -> [String: PreparedFile] {
        var out: [String: PreparedFile] = [:]
        for i in files.indices where files[i].fd >= 0 {
            let f = files[i]
            var ok = false
            var digest = f.digest
            var known: Digest?
            if !f.failed, f.written > 0, let entry = tree.file(at: f.path), entry.kind == .safetensors,
               entry.objectID == f.headerObject, entry.byteCount == f.byteCount, entry.executable == f.executable {
                // Tensors still missing, and tensors filled with another object than the tree names.
                let missing = entry.tensors.filter { t in f.pending.contains(t.name) || f.filled[t.name].map { $0 != t.objectID } ?? false }
                if !missing.isEmpty { digest = nil }
                // Every tensor in place, each written once (the frontier saw no write over another
                // and none after the file was complete): the file holds exactly the entry's objects.
                if missing.isEmpty, let frontier = f.frontier, frontier.isHeld, frontier.isIntact, let d = knownDigest(entry) {
                    frontier.cancel()
                    known = d
                }
                ok = missing.allSatisfy { t in
                    // Streamed and verified by the store, as the ordinary checkout does.
                    var offset = f.headerLength + t.dataOffsets.lowerBound
                    let end = offset + t.byteCount
                    do {
                        try store.decode(t.objectID) { chunk in
                            guard offset + chunk.count <= end, PositionalIO.writeAll(f.fd, chunk, at: offset) else {
                                throw RepoError.io(path: f.temporary, reason: "cannot write")
                            }
                            offset += chunk.count
                        }
                    } catch {
                        return false
                    }
                    return offset == end
                }
                if ok, AtomicFileWriter.syncEnabled, fsync(f.fd) != 0 { ok = false }
            }
            close(f.fd)
            files[i].fd = -1
            // Written out of order, so hashed once complete (from the page cache): in the
            // background since the tensor merges ended, unless a write came later.
            if ok, let known {
                out[f.path] = PreparedFile(temporary: f.temporary, sha256: known)
            } else if ok, let sha = digest.flatMap({ d in
                f.frontier?.release()
                return d.value
            }) {
                out[f.path] = PreparedFile(temporary: f.temporary, sha256: sha)
            } else if ok, let map = try? MappedFile(path: f.temporary) {
                out[f.path] = PreparedFile(temporary: f.temporary, sha256: Snapshotter.fileDigest(map))
            } else {
                unlink(f.temporary)
            }
        }
        return out
    }

    /// Closes and deletes everything not renamed away.
    func discard() {
        let digests = files.withLock { files -> [BackgroundValue<Digest?>] in
            for i in files.indices where files[i].fd >= 0 {
                close(files[i].fd)
                files[i].fd = -1
            }
            for f in files { f.frontier?.cancel() }
            defer { for i in files.indices { files[i].digest = nil } }
            return files.compactMap(\.digest)
        }
        // No thread is left reading a file of the folder.
        for d in digests { _ = d.value }
        try? FileManager.default.removeItem(atPath: directory)
    }

    private static func write(_ fd: Int32, _ bytes: [UInt8], at offset: Int) -> Bool {
        bytes.withUnsafeBytes { PositionalIO.writeAll(fd, $0, at: offset) }
    }

}
