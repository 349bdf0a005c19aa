import Delta
import Foundation

extension Repository {
    /// `diff --no-index A B`: two checkpoint folders (or two safetensors files) compared tensor by
    /// tensor, as two revisions are, with no repository involved. Tensors are matched by name across
    /// the files of each side (a re-sharded checkpoint compares cleanly); other files are compared
    /// byte for byte. Links to files are read through (a Hugging Face cache snapshot compares as
    /// its files). Memory stays at a few blocks whatever the tensor sizes.
    public static func diffFolders(old: String, new: String, filter: DiffFilter = DiffFilter(),
                                   progress: (any ProgressSink)? = nil) throws -> DiffReport {
        // Two files compare as one file whatever their names; a file against a folder compares
        // with the folder's file of that name.
        let bothFiles = FileStat.of(old, followLinks: true)?.isRegular == true && FileStat.of(new, followLinks: true)?.isRegular == true
        let name = bothFiles ? URL(fileURLWithPath: new).lastPathComponent : nil
        // A checkpoint against another kind of file has no tensors to pair: said, not reported as
        // "no tensor differs".
        if bothFiles, isSafetensorsPath(old) != isSafetensorsPath(new) {
            let (tensorFile, other) = isSafetensorsPath(old) ? (old, new) : (new, old)
            throw RepoError.invalidArgument("diff --no-index compares two safetensors files, two other files or two folders: \(tensorFile) is a safetensors file, \(other) is not")
        }
        let a = try FolderSide(old, name: name), b = try FolderSide(new, name: name)
        // Parsing every safetensors header first: a damaged file is an error naming it.
        let (oldFiles, oldList) = try a.parse(), (newFiles, newList) = try b.parse()
        // Paired by name (a re-shard moves tensors between files), or by file and name for a name
        // that several files of either side hold, as a diff of two revisions pairs them.
        let shared = Tree.namesInSeveralFiles(oldList.map { ($0.path, $0.info.name) })
            .union(Tree.namesInSeveralFiles(newList.map { ($0.path, $0.info.name) }))
        func byKey(_ list: [(path: String, file: SafetensorsFile, info: TensorInfo)]) -> [String: (path: String, file: SafetensorsFile, info: TensorInfo)] {
            list.reduce(into: [:]) { out, t in
                let key = Tree.pairingKey(path: t.path, name: t.info.name, shared: shared)
                if out[key] == nil { out[key] = t }
            }
        }
        let oldTensors = byKey(oldList), newTensors = byKey(newList)
        var files: [FileDiff] = []
        // What cannot be read as a file (a link to a folder or to nothing, a name that is not
        // UTF-8): compared as far as it can be, never passed over.
        for path in Set(a.unreadable.keys).union(b.unreadable.keys).sorted() where filter.includes(path: path) {
            switch (a.unreadable[path], b.unreadable[path]) {
            case (nil, _?): if a.files[path] == nil { files.append(FileDiff(path: path, status: .added)) }
            case (_?, nil): if b.files[path] == nil { files.append(FileDiff(path: path, status: .removed)) }
            case let (x?, y?):
                guard let lx = x.link, let ly = y.link else {
                    throw RepoError.unsafePath(path, reason: "cannot be compared: \(x.reason)")
                }
                if lx != ly { files.append(FileDiff(path: path, status: .changed)) }
            default: break
            }
        }
        for path in Set(a.files.keys).union(b.files.keys).sorted() where filter.includes(path: path) {
            switch (a.files[path], b.files[path]) {
            case (nil, _?): files.append(FileDiff(path: path, status: a.unreadable[path] == nil ? .added : .changed))
            case (_?, nil): files.append(FileDiff(path: path, status: b.unreadable[path] == nil ? .removed : .changed))
            case let (x?, y?):
                // A safetensors file shows here when its header changed (its tensors are compared
                // below), as in a diff of two revisions; any other file when its bytes did.
                let same: Bool
                if let hx = oldFiles[path]?.headerBytes, let hy = newFiles[path]?.headerBytes {
                    same = hx.elementsEqual(hy)
                } else {
                    same = try FolderSide.sameBytes(x, y)
                }
                if !same { files.append(FileDiff(path: path, status: .changed)) }
            default: break
            }
        }
        let keys = Set(oldTensors.keys).union(newTensors.keys).sorted().filter { k in
            let t = (newTensors[k] ?? oldTensors[k])!
            return filter.includes(tensor: t.info.name, in: t.path)
        }
        let total = keys.reduce(0) { $0 + (oldTensors[$1].map { $0.info.dataOffsets.count } ?? 0) }
        let counter = ProgressCounter(progress, title: "diff", total: total)
        var out: [TensorDiff] = []
        for key in keys {
            let x = oldTensors[key], y = newTensors[key]
            let name = (y ?? x)!.info.name
            var d = TensorDiff(name: name, path: (y ?? x)!.path, status: .unchanged, oldDType: x?.info.dtype, newDType: y?.info.dtype,
                               oldShape: x?.info.shape, newShape: y?.info.shape, elementCount: (y ?? x)!.info.shape.elementCount ?? 0)
            guard let x else { d.status = .added; out.append(d); continue }
            guard let y else { d.status = .removed; out.append(d); continue }
            if x.info.dtype != y.info.dtype || x.info.shape != y.info.shape { d.status = .retyped; out.append(d); continue }
            let oldReader = TensorReader(file: x.file, tensor: x.info), newReader = TensorReader(file: y.file, tensor: y.info)
            let (change, pair) = try compare(oldReader, newReader, base: nil, progress: counter)
            try oldReader.finish()
            try newReader.finish()
            d.record(change, pair)
            out.append(d)
        }
        counter.finish()
        out.sort { ($0.name, $0.path) < ($1.name, $1.path) }
        return DiffReport(oldName: old, newName: new, oldCommit: nil, newCommit: nil, mergeBase: nil, tensors: out,
                          files: files.sorted { $0.path < $1.path })
    }
}

/// One side of a `diff --no-index`: a folder's files, or a single file.
private struct FolderSide {
    /// Relative path (the file's name, or `name`, for a single file) → the file to read.
    var files: [String: String] = [:]
    /// What the scan could not read as a file, by (escaped) path: the reason, and the link's text
    /// for a link.
    var unreadable: [String: (reason: String, link: String?)] = [:]

    init(_ path: String, name: String? = nil) throws {
        guard let st = FileStat.of(path, followLinks: true) else { throw RepoError.io(path: path, reason: "no such file or folder") }
        if st.isRegular {
            files[name ?? URL(fileURLWithPath: path).lastPathComponent] = path
            return
        }
        guard st.isDirectory else { throw RepoError.io(path: path, reason: "neither a file nor a folder") }
        // Every file counts, as in git's --no-index: no .mrepoignore (only .mrepo, .git and
        // temporary files are left out).
        let scan = try FolderScanner.scanFolder(root: path, ignore: IgnoreRules(file: nil), symlinks: .readThrough)
        for f in scan.files { files[f.path] = f.absolutePath }
        for (p, reason) in scan.unstorable { unreadable[p] = (reason, scan.linkTargets[p]) }
    }

    /// The side's safetensors files, parsed, by path; and every tensor of them by name (the first
    /// file in path order wins a name given twice, as in a tree).
    func parse() throws -> ([String: SafetensorsFile], [(path: String, file: SafetensorsFile, info: TensorInfo)]) {
        var parsed: [String: SafetensorsFile] = [:]
        var tensors: [(path: String, file: SafetensorsFile, info: TensorInfo)] = []
        for path in files.keys.sorted() where isSafetensorsPath(path) {
            let file: SafetensorsFile
            do { file = try SafetensorsFile(path: files[path]!, displayName: files[path]!) } catch { throw RepoError.delta(error) }
            parsed[path] = file
            for t in file.tensors { tensors.append((path, file, t)) }
        }
        return (parsed, tensors)
    }

    /// Whether two files hold the same bytes (compared in blocks).
    static func sameBytes(_ a: String, _ b: String) throws -> Bool {
        guard let sa = FileStat.of(a, followLinks: true), let sb = FileStat.of(b, followLinks: true) else { return false }
        if sa.size != sb.size { return false }
        guard let fa = FileHandle(forReadingAtPath: a) else { throw RepoError.io(path: a, reason: "cannot read") }
        guard let fb = FileHandle(forReadingAtPath: b) else { throw RepoError.io(path: b, reason: "cannot read") }
        defer { try? fa.close(); try? fb.close() }
        while true {
            let x = fa.readData(ofLength: 1 << 20), y = fb.readData(ofLength: 1 << 20)
            if x != y { return false }
            if x.isEmpty { return true }
        }
    }
}
