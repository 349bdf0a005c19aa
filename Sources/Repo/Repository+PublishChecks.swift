import Delta
import Foundation

/// What `commit` applies to a folder, applied to a commit made through `mrepo serve`'s Hub API
/// (``Repository/commitFiles(toBranch:changes:message:author:expectedParent:)``): the shard-index
/// checks (shards present, weight map matching them) and the `pre-commit` and `post-commit` hooks.
extension Repository {
    /// Refuses a tree whose shard indexes (`*.safetensors.index.json`) name a shard outside their
    /// folder or one the tree lacks, as ``checkShardIndexes(_:)`` refuses such a folder. Indexes
    /// read from `written` (path → uploaded file) or, when unchanged, from the store.
    func checkShardIndexes(paths: Set<String>, written: [String: String], unchanged: [String: TreeFile]) throws {
        for path in paths.sorted() where ShardIndex.isIndexFile(splitPath(path).name) {
            let bytes: [UInt8]
            if let source = written[path] {
                do {
                    bytes = try Array(Data(contentsOf: URL(fileURLWithPath: source)))
                } catch {
                    throw RepoError.io(path: path, reason: "cannot read: \(error.localizedDescription)")
                }
            } else if let file = unchanged[path] {
                // An index is a small JSON file; refuse to read a huge one into memory.
                guard file.byteCount <= 64 << 20 else { throw RepoError.invalidArgument("\(path): a shard index of \(file.byteCount) bytes is not credible") }
                var out: [UInt8] = []
                let cursor = try FileReader(store: objects, file: file).cursor()
                while try cursor.next({ out.append(contentsOf: $0) }) {}
                bytes = out
            } else {
                continue
            }
            let dir = splitPath(path).dir
            let index: ShardIndex
            do throws(DeltaError) {
                index = try ShardIndex.parse(bytes, file: path)
                try index.checkShardsExist(file: path) { paths.contains(dir.isEmpty ? $0 : dir + "/" + $0) }
            } catch {
                throw RepoError.delta(error)
            }
            // As commit's: the weight map must match the shards, read from their uploads or, when
            // unchanged, from the tree (each tensor's name is recorded there).
            try checkWeightMap(index, indexPath: path) { (shard) throws(DeltaError) in
                let shardPath = dir.isEmpty ? shard : dir + "/" + shard
                if let source = written[shardPath] {
                    return Set(try SafetensorsFile(path: source, displayName: shardPath).tensors.map(\.name))
                }
                return Set(unchanged[shardPath]?.tensors.map(\.name) ?? [])
            }
        }
    }

    /// Runs the `pre-commit` hook for a commit of `written` (path → uploaded file) onto `branch`,
    /// with the environment `commit` gives it. `MREPO_SOURCE` is a temporary folder holding the
    /// files the commit adds or changes (hard links to the uploads, read-only; unchanged files
    /// are in the parent commit already and are not written out), `MREPO_DELETED` the paths it
    /// removes, one a line, and `MREPO_VIA` is `hub`. Returns the environment, for `post-commit`.
    /// - Throws: ``RepoError/hookRejected(hook:status:)`` when the hook refuses; also when it
    ///   changed an uploaded file (what was verified is what is stored).
    func runPublishPreCommitHook(branch: String, parent: ObjectID?, message: String, author: String,
                                 written: [(path: String, source: String)], deleted: [String]) throws -> [String: String] {
        var env = ["MREPO_MESSAGE": message, "MREPO_AUTHOR": author, "MREPO_METRICS": "{}", "MREPO_BRANCH": branch,
                   "MREPO_PARENT": parent?.hex ?? "", "MREPO_DELETED": deleted.joined(separator: "\n"), "MREPO_VIA": "hub"]
        guard FileStat.of(metaDirectory + "/hooks/pre-commit")?.isRegular == true else { return env }
        let folder = TemporaryName.path(in: metaDirectory, name: "hook-source")
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var before: [(String, FileStat)] = []
        do {
            for item in written {
                let target = folder + "/" + item.path
                try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
                chmod(item.source, 0o444)
                if link(item.source, target) != 0 { _ = try FileCopy.copy(from: item.source, to: target) }
                if let st = FileStat.of(item.source) { before.append((item.source, st)) }
            }
        } catch {
            throw RepoError.io(path: folder, reason: "cannot prepare the folder for the pre-commit hook: \(RepoError.wrap(error).description)")
        }
        env["MREPO_SOURCE"] = folder
        try runHook("pre-commit", environment: env)
        for (source, st) in before {
            guard let now = FileStat.of(source), now.size == st.size, now.mtimeNs == st.mtimeNs, now.ctimeNs == st.ctimeNs else {
                throw RepoError.failed("the pre-commit hook changed an uploaded file; nothing was written")
            }
        }
        return env
    }
}
