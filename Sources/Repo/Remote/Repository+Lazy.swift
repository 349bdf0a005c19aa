import Delta
import Foundation

/// Lazy clones (`clone --lazy`): commits, trees, object rows and blobs are fetched at once; a
/// tensor object's file is fetched from the lazy remote the first time something reads it
/// (checkout, export, diff, merge), with its delta references, verified like any received object.
extension Repository {
    /// The remote that missing object files come from, if this is a lazy clone.
    public func lazyRemote() throws -> RemoteConfig? {
        try history.remotes().first { $0.lazy }
    }

    /// Makes sure the object files of `ids` (and of their delta references) are here, fetching
    /// those a lazy clone has not read yet.
    /// - Throws: ``RepoError/corruptObject(object:problem:)`` for a missing file outside a lazy
    ///   clone, or whatever the fetch failed with.
    public func ensureObjectFiles(_ ids: some Sequence<ObjectID>) throws {
        let missing = Array(ids).filter { !objects.exists($0) }
        guard !missing.isEmpty else { return }
        guard try lazyRemote() != nil else {
            throw RepoError.corruptObject(object: missing[0].short, problem: "missing object file")
        }
        try runBlocking { [self] in _ = try await fetchMissingObjects(missing) }
    }

    /// Fetches the files of `ids` and of the references below them from the lazy remote.
    /// Returns the objects received and the bytes (references below `ids` included), and how many
    /// objects were found whole in partial files an earlier try kept (not received again).
    @discardableResult
    func fetchMissingObjects(_ ids: [ObjectID]) async throws -> (objects: Int, bytes: Int, keptWhole: Int) {
        var infos: [ObjectID: ObjectInfo] = [:]
        var stack = ids
        while let id = stack.popLast() {
            guard infos[id] == nil, !objects.exists(id) else { continue }
            guard let info = try history.objectInfo(id) else {
                throw RepoError.corruptObject(object: id.short, problem: "missing object file, and not recorded either")
            }
            infos[id] = info
            if let r = info.reference { stack.append(r) }
        }
        guard !infos.isEmpty else { return (0, 0, 0) }
        let remotes = try history.remotes().filter(\.lazy)
        guard !remotes.isEmpty else {
            throw RepoError.corruptObject(object: infos.keys.sorted()[0].short, problem: "missing object file")
        }
        // Each lazy remote in turn (a repository fetched lazily from two remotes), for what the
        // ones before it did not send; the first failure is the one reported.
        var bytes = 0, keptWhole = 0
        var failure: (any Error)?
        for remote in remotes {
            let list = infos.values.filter { !objects.exists($0.id) }.sorted { $0.id < $1.id }
            guard !list.isEmpty else { break }
            do {
                let counter = ProgressCounter(progress, title: "fetch objects from \(remote.name)", total: list.reduce(0) { $0 + $1.storedByteCount })
                defer { counter.finish() }
                let got = try await Transports.open(remote.url, environment: transportEnvironment).transfer(.fetch, notice: waitNotice) { transport in
                    try await ObjectMover(repository: self, transport: transport, progress: counter).download(list)
                }
                bytes += got.bytes
                keptWhole += got.keptWhole
            } catch {
                // As a fetch: a remote that sent a damaged object leaves nothing of this read behind.
                if RepoError.refusesReceivedObject(error) { PartialDownload.discard(list.map(\.id), in: objects) }
                if failure == nil { failure = error }
            }
        }
        if let failure, infos.values.contains(where: { !objects.exists($0.id) }) { throw failure }
        return (infos.count - keptWhole, bytes, keptWhole)
    }
}
