import Delta
import Foundation
import Synchronization

/// A remote that is another mrepo repository on this machine (a path or a `file://` URL), as git
/// reads a local clone's source directly. The other repository does the receiving itself:
/// objects are verified before they are renamed into its store, commits recorded in one
/// transaction under its write lock, refs moved by compare-and-swap.
public final class LocalTransport: RemoteTransport, Sendable {
    public let url: String
    /// The other repository.
    public let repository: Repository
    /// The objects this transport put there itself (not those it found there already).
    private let installed = Mutex<Set<ObjectID>>([])

    /// Opens the repository at `path` (which must hold `.mrepo` itself: no search upwards).
    public init(path: String, url: String) throws {
        self.url = url
        let root = Repository.absolutePath(path)
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root + "/" + Repository.directoryName, isDirectory: &isDir), isDir.boolValue else {
            throw RepoError.remote("\(url): not an mrepo repository (no .mrepo folder there)")
        }
        repository = try Repository(root: root)
        // Its own interrupted checkout is its owner's to finish, not a pusher's.
        repository.pendingCheckouts = .leave
        LeftoverSweeper.sweep(metaDirectory: repository.metaDirectory)
    }

    public func listRefs() async throws -> [String: RemoteRef] {
        var out: [String: RemoteRef] = [:]
        for r in try repository.history.refs() { out[r.name] = RemoteRef(name: r.name, kind: r.kind, target: r.target, message: r.message) }
        return out
    }

    public func shallowGrafts() async throws -> [RemoteGraft] {
        try repository.shallowGrafts()
    }

    public func checkedOutBranches() async throws -> Set<String> {
        try repository.branchesPushesMayNotMove()
    }

    public func missingObjects(_ ids: [ObjectID]) async throws -> Set<ObjectID> {
        repository.missingObjectFiles(ids)
    }

    public func getObject(_ id: ObjectID, to destination: String) async throws -> Int {
        let source = repository.objects.path(for: id)
        guard FileStat.of(source) != nil else {
            throw RepoError.remote("\(url): object \(id.short) is not there (is that repository a lazy clone?)")
        }
        return try FileCopy.copy(from: source, to: destination, resuming: true)
    }

    public func putObject(_ id: ObjectID, from source: String, byteCount: Int) async throws {
        if repository.objects.exists(id) { return }
        let incoming = repository.objects.incomingPath()
        do {
            _ = try FileCopy.copy(from: source, to: incoming)
        } catch {
            unlink(incoming)
            throw error
        }
        try repository.receiveObject(id, file: incoming)
        installed.withLock { _ = $0.insert(id) }
    }

    /// After a push that failed before recording anything: removes the objects this transport
    /// installed that no row records, under the other repository's write lock (a commit there
    /// that stores the same object meanwhile records its row first, and keeps the file).
    func discardInstalledUnrecorded() {
        repository.discardReceivedUnrecorded(installed.withLock { Array($0) }, wait: true)
    }

    public func missingCommits(_ ids: [ObjectID]) async throws -> Set<ObjectID> {
        try repository.missingCommits(ids)
    }

    public func getCommit(_ id: ObjectID) async throws -> CommitRecord {
        guard try repository.history.commit(id) != nil else { throw RepoError.remote("\(url): commit \(id.short) is not there") }
        return try repository.commitRecord(id)
    }

    public func putCommits(_ records: [CommitRecord]) async throws {
        try repository.withWriteLock(wait: true) { try repository.receiveCommits(records) }
    }

    public func updateRef(_ update: RefUpdate) async throws {
        try repository.applyRefUpdate(update, shownAs: url)
    }

    /// A push writes the object store and the history database (and its journal beside it).
    public func checkWriteAccess() async throws {
        let meta = repository.metaDirectory
        for path in [repository.objects.root, meta, meta + "/" + "mrepo.db"] where access(path, W_OK) != 0 {
            throw RepoError.remote("\(url): cannot write \(path) (\(errnoDescription())): this user may not push there")
        }
    }

    /// Holds the other repository's read lock (`.mrepo/gc.lock`, shared) for the whole transfer,
    /// as a reader there would: its `gc` waits until the transfer ends, and a transfer that finds
    /// its `gc` running waits for it (taken on a Dispatch worker, not on a task's thread).
    public func transfer<T>(_ kind: TransferKind, notice: (@Sendable (String) -> Void)?,
                            _ body: (any RemoteTransport) async throws -> T) async throws -> T {
        let repository = repository, url = url
        // A transfer with the repository itself (a remote naming its own folder) while this
        // process holds its write lock: that lock keeps its gc out already, and waiting for a lease
        // while a gc there waits for the write lock would wait for ever.
        if repository.holdsWriteLockHere { return try await body(self) }
        let lease = try await ObjectMover.offPool {
            repository.readerLease(notice: { message in notice?("\(url): \(message)") })
        }
        defer { lease.release() }
        return try await body(self)
    }
}

/// Copies a file in bounded memory (1 MiB at a time), creating or truncating the destination.
enum FileCopy {
    /// `resuming`: a destination that holds fewer bytes than the source is taken for the source's
    /// first bytes (a download that broke off, ``DownloadFile``), and only the rest is copied.
    /// Returns the bytes copied.
    static func copy(from source: String, to destination: String, resuming: Bool = false) throws -> Int {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw RepoError.io(path: source, reason: "cannot open: \(errnoDescription())") }
        defer { close(input) }
        let output = open(destination, O_WRONLY | O_CREAT | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw RepoError.io(path: destination, reason: "cannot create: \(errnoDescription())") }
        defer { close(output) }
        var st = stat()
        let size = fstat(input, &st) == 0 ? Int(st.st_size) : 0
        let held = resuming ? DownloadFile.offset(destination) : 0
        let start = held < size ? held : 0
        guard ftruncate(output, off_t(start)) == 0, lseek(output, off_t(start), SEEK_SET) == off_t(start),
              lseek(input, off_t(start), SEEK_SET) == off_t(start) else {
            throw RepoError.io(path: destination, reason: "cannot position the copy: \(errnoDescription())")
        }
        var total = 0
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        while true {
            let n = read(input, buffer.baseAddress, buffer.count)
            if n < 0 {
                if errno == EINTR { continue }
                throw RepoError.io(path: source, reason: "read failed: \(errnoDescription())")
            }
            if n == 0 { break }
            var written = 0
            while written < n {
                let w = write(output, buffer.baseAddress! + written, n - written)
                if w < 0 {
                    if errno == EINTR { continue }
                    throw errno == ENOSPC ? RepoError.diskFull(path: destination) : RepoError.io(path: destination, reason: "write failed: \(errnoDescription())")
                }
                written += w
            }
            total += n
            if resuming { CrashPoint.reach("transfer.object-partial") }
        }
        return total
    }
}
