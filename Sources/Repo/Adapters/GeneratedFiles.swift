import Delta
import Foundation

/// A file to write that is computed, not stored: a folded model, an expert rebuilt from a
/// reversible merge, a view. Tensors are produced one at a time, so memory stays at one tensor.
enum OutputFile {
    /// A file of a tree, written byte for byte from the store.
    case stored(TreeFile)
    /// A safetensors file: header bytes (with the 8-byte length) and its tensors in data order.
    case safetensors(path: String, header: [UInt8], tensors: [GeneratedTensor])
    /// A small file held in memory.
    case bytes(path: String, [UInt8])

    var path: String {
        switch self {
        case let .stored(f): return f.path
        case let .safetensors(path, _, _), let .bytes(path, _): return path
        }
    }

    var byteCount: Int {
        switch self {
        case let .stored(f): return f.byteCount
        case let .safetensors(_, header, tensors): return header.count + (tensors.last?.dataOffsets.upperBound ?? 0)
        case let .bytes(_, b): return b.count
        }
    }
}

/// One tensor of a generated safetensors file.
struct GeneratedTensor {
    enum Source {
        /// A stored tensor, taken as it is (streamed, verified by its id).
        case stored(ObjectID)
        /// Computes the tensor's bytes (exactly `dataOffsets.count`).
        case computed(() throws -> [UInt8])
    }

    var name: String
    var dtype: DType
    var shape: Shape
    var dataOffsets: Range<Int>
    var source: Source

    init(name: String, dtype: DType, shape: Shape, dataOffsets: Range<Int>, source: Source) {
        (self.name, self.dtype, self.shape, self.dataOffsets, self.source) = (name, dtype, shape, dataOffsets, source)
    }

    init(name: String, dtype: DType, shape: Shape, dataOffsets: Range<Int>, produce: @escaping () throws -> [UInt8]) {
        self.init(name: name, dtype: dtype, shape: shape, dataOffsets: dataOffsets, source: .computed(produce))
    }
}

/// A working tree that holds something computed from a commit rather than the commit's tree:
/// an expert rebuilt from a reversible merge, or another view of it.
public struct WorktreeView: Sendable {
    /// The commit HEAD was detached at when the view was written.
    public var commit: ObjectID
    /// What the working tree holds, e.g. `expert math`.
    public var description: String
    /// The files written, as tree entries (their tensors need not be in the store).
    var files: [TreeFile]

    var tree: Tree { Tree(files: files) }
}

extension Repository {
    /// What the working tree is meant to hold: HEAD's tree, or the view written over it.
    func worktreeBaseline(head: Head) throws -> (tree: Tree, view: WorktreeView?) {
        if let view = try history.worktreeView(), view.commit == head.commit, head.branchName == nil {
            return (view.tree, view)
        }
        return (try head.commit.map { try self.tree(of: $0) } ?? .empty, nil)
    }

    /// The view the working tree holds, if any (for `status`).
    public func currentView() throws -> (commit: ObjectID, description: String)? {
        let head = try history.head()
        guard let view = try worktreeBaseline(head: head).view else { return nil }
        return (view.commit, view.description)
    }

    /// Writes one output file to a temporary file beside `destination`, kept by `staging` until it
    /// commits, and returns its tree entry (tensor ids are the hashes of the bytes written).
    func stage(_ file: OutputFile, at destination: String, in staging: FileStaging, progress: ProgressCounter?) throws -> TreeFile {
        switch file {
        case let .stored(f):
            try stage(f, at: destination, in: staging, progress: progress)
            return f
        case let .bytes(path, bytes):
            try staging.write(to: destination) { try $0.write(bytes) }
            progress?.add(bytes.count)
            return TreeFile(path: path, kind: .blob, objectID: bytes.withUnsafeBytes { BlobHasher.hash($0) }, byteCount: bytes.count, executable: false)
        case let .safetensors(path, header, tensors):
            var entries: [TreeTensor] = []
            var total = 0
            try staging.write(to: destination) { writer in
                try writer.write(header)
                for t in tensors {
                    guard writer.byteCount == header.count + t.dataOffsets.lowerBound else {
                        throw RepoError.failed("\(path): tensor '\(t.name)' is out of order")
                    }
                    let id: ObjectID
                    switch t.source {
                    case let .stored(stored):
                        try objects.decode(stored) { chunk in
                            try writer.write(chunk)
                            progress?.add(chunk.count)
                        }
                        id = stored
                    case let .computed(produce):
                        let bytes = try produce()
                        try writer.write(bytes)
                        progress?.add(bytes.count)
                        id = bytes.withUnsafeBytes { TensorHasher.hash(dtype: t.dtype, shape: t.shape, bytes: $0) }
                    }
                    guard writer.byteCount == header.count + t.dataOffsets.upperBound else {
                        throw RepoError.failed("\(path): tensor '\(t.name)' produced \(writer.byteCount - header.count - t.dataOffsets.lowerBound) bytes, expected \(t.dataOffsets.count)")
                    }
                    entries.append(TreeTensor(name: t.name, dtype: t.dtype, shape: t.shape, dataOffsets: t.dataOffsets, objectID: id))
                }
                total = writer.byteCount
            }
            return TreeFile(path: path, kind: .safetensors, objectID: header.withUnsafeBytes { BlobHasher.hash($0) }, byteCount: total,
                            executable: false, tensors: entries)
        }
    }

    /// Writes computed files into a folder outside the working tree, all or nothing, as
    /// ``export(_:to:)`` does: every file is staged and verified before any is renamed into place.
    func exportOutputs(_ outputs: [OutputFile], to directory: String, clean: Bool = false) throws -> (directory: String, fileCount: Int, byteCount: Int) {
        let staging = FileStaging(journal: journal)
        defer { objects.releaseMappings() }
        do {
            let (dir, stale) = try exportDirectory(directory, staging: staging, writing: outputs.map(\.path), clean: clean)
            let counter = ProgressCounter(progress, title: "export", total: outputs.reduce(0) { $0 + $1.byteCount })
            var bytes = 0
            for file in outputs {
                let path = try PathPolicy.normalize(file.path)
                try PathPolicy.checkNoSymlinkParents(root: dir, path: path)
                bytes += try stage(file, at: dir + "/" + path, in: staging, progress: counter).byteCount
            }
            counter.finish()
            CrashPoint.reach("export.staged")
            try staging.commit(didRename: { CrashPoint.reach("export.file") })
            removeStale(stale, in: dir)
            return (dir, outputs.count, bytes)
        } catch {
            staging.rollback()
            throw error
        }
    }

    /// Replaces the working tree's content with computed files and records them as a view of
    /// `commit` (HEAD detaches there). Local changes stop it unless `force`. Like any checkout it
    /// stages every file first (``stageCheckout(_:over:force:prepared:)``): a failure before the
    /// renames leaves the working tree and HEAD as they were.
    func checkoutOutputs(_ outputs: [OutputFile], commit: ObjectID, description: String, force: Bool) throws -> CheckoutResult {
        try refuseDuringMerge("switching")
        let head = try history.head()
        let (oldTree, _) = try worktreeBaseline(head: head)
        let comparison = try status(against: oldTree)
        try comparison.checkWritable()
        let current = comparison.current
        // A nested repository's files are its own: they neither block nor are touched.
        let changes = comparison.changes.filter { !isInsideNestedRepository($0.path) }
        if !force, !changes.isEmpty {
            throw RepoError.dirtyWorktree(operation: "checking out \(description)", paths: changes.map(\.path))
        }
        var checkout = StagedCheckout(staging: FileStaging(journal: journal))
        var files: [TreeFile] = []
        var toWrite: [(path: String, file: OutputFile)] = []
        for file in outputs {
            let path = try PathPolicy.normalize(file.path)
            if isInsideNestedRepository(path) { continue }
            if case let .stored(f) = file, current[path]?.identity == f.identity {
                checkout.stats.unchanged += 1
                files.append(f)
                if let st = FileStat.of(root + "/" + path, followLinks: comparison.links.contains(path)) {
                    checkout.unchangedEntries.append(StatCacheEntry(path: path, stat: st, identity: FileIdentityCoding.encode(f), clock: comparison.clock))
                }
                continue
            }
            try PathPolicy.checkNoSymlinkParents(root: root, path: path, replacingLink: comparison.links.contains(path))
            toWrite.append((path, file))
        }
        let keep = Set(outputs.map(\.path))
        checkout.removals = current.keys.filter { !keep.contains($0) && oldTree.file(at: $0) != nil }.sorted()
        for path in checkout.removals {
            try PathPolicy.checkNoSymlinkParents(root: root, path: path, replacingLink: comparison.links.contains(path))
        }
        try makeRoom(for: toWrite.map(\.path), removals: checkout.removals, force: force, staging: checkout.staging)
        let counter = ProgressCounter(progress, title: "checkout", total: outputs.reduce(0) { $0 + $1.byteCount })
        do {
            for (path, file) in toWrite {
                let entry = try stage(file, at: root + "/" + path, in: checkout.staging, progress: counter)
                files.append(entry)
                checkout.staged.append(entry)
            }
        } catch {
            checkout.rollback()
            objects.releaseMappings()
            throw error
        }
        counter.finish()
        objects.releaseMappings()
        checkout.stats.written = toWrite.count
        checkout.stats.removed = checkout.removals.count
        let entries = try finishCheckout(checkout)
        let view = WorktreeView(commit: commit, description: description, files: files)
        try history.setHead(view: view, expected: head, message: "checkout: \(description) of \(commit.short)", statEntries: entries)
        return CheckoutResult(head: .detached(commit), writtenFiles: checkout.stats.written, removedFiles: checkout.stats.removed,
                              unchangedFiles: checkout.stats.unchanged)
    }
}
