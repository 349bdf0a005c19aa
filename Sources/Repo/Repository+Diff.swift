import Delta
import Foundation
import Merge

/// One tensor in a numeric diff.
public struct TensorDiff: Sendable {
    public enum Status: String, Sendable, Codable {
        case added, removed, changed, unchanged
        /// dtype or shape differ: no element-wise numbers.
        case retyped
    }

    public var name: String
    /// The file holding the tensor on the new side (the old side for removed tensors).
    public var path: String
    public var status: Status
    public var oldDType: DType?
    public var newDType: DType?
    public var oldShape: Shape?
    public var newShape: Shape?
    public var elementCount: Int
    /// ‖new − old‖₂.
    public var changeNorm: Double?
    /// ‖new − old‖₂ / ‖old‖₂.
    public var relativeChange: Double?
    /// Fraction of elements whose bits changed.
    public var changedFraction: Double?
    /// cos(old − base, new − base) when both sides changed the tensor since their merge base.
    public var cosine: Double?

    /// Takes the numbers of an element-wise comparison (``Repository/compare(_:_:base:progress:)``).
    mutating func record(_ change: ChangeStatistics, _ pair: TaskVectorPairStatistics?) {
        status = change.changedCount == 0 ? .unchanged : .changed
        changeNorm = change.changeNorm
        relativeChange = change.relativeChange
        changedFraction = change.changedFraction
        cosine = pair?.cosine
    }
}

/// A file that is not a tensor container, or whose header alone changed.
public struct FileDiff: Sendable {
    public var path: String
    public var status: TensorDiff.Status
}

/// A numeric diff between two trees.
public struct DiffReport: Sendable {
    public var oldName: String
    public var newName: String
    public var oldCommit: ObjectID?
    public var newCommit: ObjectID?
    public var mergeBase: ObjectID?
    public var tensors: [TensorDiff]
    public var files: [FileDiff]

    public var changedTensors: [TensorDiff] { tensors.filter { $0.status != .unchanged } }
}

/// What a diff compares: files under paths (a path, a folder or a glob) and tensors whose names
/// match globs. Empty lists mean everything.
public struct DiffFilter: Sendable {
    public var paths: [String]
    public var tensors: [String]

    public init(paths: [String] = [], tensors: [String] = []) {
        self.paths = paths.map(Repository.normalizedPathSpec)
        self.tensors = tensors
    }

    public var isEmpty: Bool { paths.isEmpty && tensors.isEmpty }

    func includes(path: String) -> Bool { paths.isEmpty || paths.contains { PathSpec.matches($0, file: path) } }

    func includes(tensor name: String, in path: String) -> Bool {
        includes(path: path) && (tensors.isEmpty || tensors.contains { $0 == name || PathSpec.glob($0, name) })
    }
}

/// What `mrepo diff` found: two trees tensor by tensor, or two adapter commits ΔW by ΔW.
public enum DiffResult: Sendable {
    case tensors(DiffReport)
    case adapters(AdapterDiffReport)
}

extension Repository {
    /// `mrepo diff`: compares up to two revisions as the user typed them. None compares HEAD with
    /// the working tree, one compares that revision with the working tree, two compare each other;
    /// `A..B` compares A with B, `A...B` their merge base with B, and `REV:path` limits the diff
    /// to that path. Two adapter commits given whole are compared per adapted module from their
    /// factors (``adapterDiff(old:new:)``) unless `elementwise`, or a filter, asks for tensors.
    ///
    /// - Parameters:
    ///   - paths: compare only these files (paths, folders or globs).
    ///   - tensors: compare only tensors whose names match these globs.
    ///   - from: the folder the paths were typed in (absolute; nil: the root), as git takes
    ///     pathspecs in a subfolder.
    public func diff(revisions: [String], paths: [String] = [], tensors: [String] = [], elementwise: Bool = false,
                     from: String? = nil) throws -> DiffResult {
        guard revisions.count <= 2 else { throw RepoError.invalidArgument("diff takes at most two revisions") }
        // As git does without `--`: trailing arguments that are no revision but name something on
        // disk (from the current folder) are paths (`mrepo diff config.json`, `mrepo diff ../x`).
        var revisions = revisions, pathArguments = paths
        while let last = revisions.last, !last.contains(":"), (try? resolve(last)) == nil,
              FileStat.of(last.hasPrefix("/") ? last : (from ?? root) + "/" + last) != nil {
            pathArguments.insert(last, at: 0)
            revisions.removeLast()
        }
        let typed = try rootRelative(pathArguments, from: from)
        if revisions.count == 2, !elementwise, pathArguments.isEmpty, tensors.isEmpty, !revisions.contains(where: { $0.contains(":") }),
           try isAdapter(revisions[0]), try isAdapter(revisions[1]) {
            return .adapters(try adapterDiff(old: revisions[0], new: revisions[1]))
        }
        var revs = revisions
        var paths = typed
        for (i, r) in revs.enumerated() {
            if let (rev, spec) = Repository.splitPathRevision(r) {
                revs[i] = rev
                // REV:path is from the root, as in git; REV:./path and REV:../path from the current folder.
                let path = spec.hasPrefix("./") || spec.hasPrefix("../") ? try rootRelative([spec], from: from)[0] : spec
                if !paths.contains(path) { paths.append(path) }
            }
        }
        var old = revs.first ?? "HEAD", new: String? = revs.count > 1 ? revs[1] : nil
        var names: (old: String, new: String)?
        if revs.count == 1, let range = try resolveRange(revs[0]) {
            // Resolved by id; shown as typed (`math`, `HEAD`), the merge base of A...B by its short id.
            let spec = revs[0], dots = spec.range(of: "...") ?? spec.range(of: "..")!
            let typed = (a: spec[..<dots.lowerBound].isEmpty ? "HEAD" : String(spec[..<dots.lowerBound]),
                         b: spec[dots.upperBound...].isEmpty ? "HEAD" : String(spec[dots.upperBound...]))
            if let (a, b) = range.symmetric {
                let base = try mergeBases([a, b]).first ?? a
                old = base.hex
                new = b.hex
                names = (old: base.short, new: typed.b)
            } else {
                old = range.exclude[0].hex
                new = range.include[0].hex
                names = (old: typed.a, new: typed.b)
            }
        }
        var report = try diff(old: old, new: new, filter: DiffFilter(paths: paths, tensors: tensors))
        if let names { (report.oldName, report.newName) = names }
        return .tensors(report)
    }

    /// Compares two revisions, or a revision with the working tree (`new == nil`), tensor by tensor.
    ///
    /// Tensors are matched by name across files, so a re-sharded checkpoint compares cleanly.
    /// Identical objects are not read. Changed tensors are streamed in blocks; memory stays at a
    /// few blocks whatever the tensor size.
    public func diff(old: String, new: String?, filter: DiffFilter = DiffFilter()) throws -> DiffReport {
        try withReadLock { try diffLocked(old: old, new: new, filter: filter) }
    }

    private func diffLocked(old: String, new: String?, filter: DiffFilter) throws -> DiffReport {
        let oldID = try resolve(old)
        let oldTree = try tree(of: oldID)
        let newID = try new.map { try resolve($0) }
        var worktreeFiles: [String: SafetensorsFile] = [:]
        var newTree: Tree
        if let newID {
            newTree = try tree(of: newID)
        } else {
            let current = try status(against: oldTree).current
            newTree = Tree(files: Array(current.values))
            // A safetensors file that does not parse (status hashed it as a blob) fails here with the codec's error.
            for f in newTree.files where (f.kind == .safetensors || isSafetensorsPath(f.path)) && filter.includes(path: f.path) {
                do {
                    worktreeFiles[f.path] = try SafetensorsFile(path: root + "/" + f.path, displayName: f.path)
                } catch {
                    throw RepoError.delta(error)
                }
            }
        }
        let baseID = try newID.flatMap { try mergeBases([oldID, $0]).first }

        var files: [FileDiff] = []
        for path in Set(oldTree.files.map(\.path)).union(newTree.files.map(\.path)).sorted() {
            let a = oldTree.file(at: path), b = newTree.file(at: path)
            switch (a, b) {
            case (nil, _?): files.append(FileDiff(path: path, status: .added))
            case (_?, nil): files.append(FileDiff(path: path, status: .removed))
            case let (a?, b?) where a.identity != b.identity:
                // Statistics files (mrepo_stats/) show as files: their tensors are not the model's.
                files.append(FileDiff(path: path, status: a.kind == .blob || a.objectID != b.objectID || StatisticsLayout.isStatistics(path) ? .changed : .unchanged))
            default: break
            }
        }
        files.removeAll { $0.status == .unchanged || !filter.includes(path: $0.path) }

        // Tensors are paired by name, as a re-shard moves them between files; a name that more
        // than one file of either tree holds (two text encoders' `q.weight`, two checkpoints'
        // folders) is paired by file and name (by name alone, the first file's hid the other's).
        let shared = Tree.namesInSeveralFiles(oldTree.modelTensors.map { ($0.path, $0.tensor.name) })
            .union(Tree.namesInSeveralFiles(newTree.modelTensors.map { ($0.path, $0.tensor.name) }))
        func byKey(_ t: Tree) -> [String: (String, TreeTensor)] {
            t.modelTensors.reduce(into: [String: (String, TreeTensor)]()) { out, e in
                let key = Tree.pairingKey(path: e.path, name: e.tensor.name, shared: shared)
                if out[key] == nil { out[key] = (e.path, e.tensor) }
            }
        }
        let oldByName = byKey(oldTree), newByName = byKey(newTree)
        let baseByKey = try baseID.map { byKey(try tree(of: $0)) } ?? [:]
        let keys = Set(oldByName.keys).union(newByName.keys).sorted().filter { k in
            let (path, t) = (newByName[k] ?? oldByName[k])!
            return filter.includes(tensor: t.name, in: path)
        }
        let total = keys.reduce(0) { sum, k in
            guard let a = oldByName[k]?.1, let b = newByName[k]?.1, a.objectID != b.objectID else { return sum }
            return sum + a.byteCount
        }
        let counter = ProgressCounter(progress, title: "diff", total: total)
        var out: [TensorDiff] = []
        for k in keys {
            let a = oldByName[k], b = newByName[k]
            let name = (b ?? a)!.1.name
            var d = TensorDiff(name: name, path: (b ?? a)!.0, status: .unchanged, oldDType: a?.1.dtype, newDType: b?.1.dtype,
                               oldShape: a?.1.shape, newShape: b?.1.shape,
                               elementCount: ((b ?? a)!.1.shape.elementCount ?? 0))
            guard let (_, ta) = a else { d.status = .added; out.append(d); continue }
            guard let (pb, tb) = b else { d.status = .removed; out.append(d); continue }
            if ta.dtype != tb.dtype || ta.shape != tb.shape { d.status = .retyped; out.append(d); continue }
            if ta.objectID == tb.objectID { out.append(d); continue }
            let oldReader = try TensorReader(store: objects, object: ta.objectID)
            let newReader: TensorReader
            if let file = worktreeFiles[pb], let info = file.tensor(named: name) {
                newReader = TensorReader(file: file, tensor: info)
            } else {
                newReader = try TensorReader(store: objects, object: tb.objectID)
            }
            var baseReader: TensorReader?
            if let bt = baseByKey[k]?.1, bt.dtype == ta.dtype, bt.shape == ta.shape, bt.objectID != ta.objectID, bt.objectID != tb.objectID {
                baseReader = try TensorReader(store: objects, object: bt.objectID)
            }
            let (change, pair) = try Repository.compare(oldReader, newReader, base: baseReader, progress: counter)
            try oldReader.finish()
            try newReader.finish()
            try baseReader?.finish()
            d.record(change, pair)
            out.append(d)
        }
        counter.finish()
        objects.releaseMappings()
        out.sort { ($0.name, $0.path) < ($1.name, $1.path) }
        return DiffReport(oldName: old, newName: new ?? "working tree", oldCommit: oldID, newCommit: newID, mergeBase: baseID,
                          tensors: out, files: files)
    }

    /// Streams two versions (and optionally their merge base) of a tensor in blocks.
    static func compare(_ a: TensorReader, _ b: TensorReader, base: TensorReader?, progress: ProgressCounter)
        throws -> (ChangeStatistics, TaskVectorPairStatistics?) {
        let dtype = a.dtype
        let elementSize = dtype.byteSize
        let blockElements = max(1, (1 << 20) / elementSize)
        var change = ChangeStatistics()
        var pair = base == nil ? nil : TaskVectorPairStatistics()
        let fa = UnsafeMutableBufferPointer<Float>.allocate(capacity: blockElements)
        let fb = UnsafeMutableBufferPointer<Float>.allocate(capacity: blockElements)
        let fm = UnsafeMutableBufferPointer<Float>.allocate(capacity: blockElements)
        defer { fa.deallocate(); fb.deallocate(); fm.deallocate() }
        var start = 0
        while start < a.elementCount {
            let count = min(blockElements, a.elementCount - start)
            let range = (start * elementSize)..<((start + count) * elementSize)
            let ra = try a.bytes(range)
            // Convert before reading the next input: a reader's bytes are valid until its next call.
            FloatConversion.toFloat(dtype, ra, into: fa)
            let aBytes = Array(ra)
            let rb = try b.bytes(range)
            FloatConversion.toFloat(dtype, rb, into: fb)
            var changed = 0
            aBytes.withUnsafeBytes { pa in
                changed = countDifferences(pa, rb, elementSize: elementSize)
            }
            let va = UnsafeBufferPointer(rebasing: fa[0..<count]), vb = UnsafeBufferPointer(rebasing: fb[0..<count])
            change.add(old: va, new: vb, changed: changed)
            if let base {
                FloatConversion.toFloat(dtype, try base.bytes(range), into: fm)
                pair?.add(base: UnsafeBufferPointer(rebasing: fm[0..<count]), a: va, b: vb)
            }
            progress.add(range.count)
            start += count
        }
        return (change, pair)
    }

    private static func countDifferences(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer, elementSize: Int) -> Int {
        var changed = 0
        let n = a.count / elementSize
        for i in 0..<n where memcmp(a.baseAddress! + i * elementSize, b.baseAddress! + i * elementSize, elementSize) != 0 {
            changed += 1
        }
        return changed
    }
}
