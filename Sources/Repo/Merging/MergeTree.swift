import Delta
import Foundation
import Merge

extension MergeContext {
    /// Lays the merged tensors out as files: the first expert's files and tensor order, tensors
    /// added elsewhere in the files that hold them there. A file whose tensor layout is unchanged
    /// keeps its header bytes; others get a new header with the same metadata. A model card
    /// (README.md) and the recipe (merge_recipe.yml) are added.
    func buildTree(decided: [String: ObjectID], recipe: MergeRecipe, report: ConflictReport, recipeYAML: String,
                   batch: ObjectStore.Batch, newObjects: inout [ObjectInfo], card: String? = nil) throws -> Tree {
        let template = layoutTemplate
        let store = repository.objects
        var placed = Set<String>()
        var files: [TreeFile] = []
        var layoutChanged = false
        // Tensors by file: the template's files first, then files other experts add.
        var layout: [(path: String, names: [String], source: TreeFile)] = []
        for f in template.files where f.kind == .safetensors {
            layout.append((f.path, f.tensors.inDataOrder().map(\.name), f))
        }
        // Every input but the template (which may be any expert): its tensors are placed already.
        for tree in expertTrees + [baseTree] {
            for f in tree.files where f.kind == .safetensors {
                let extra = f.tensors.map(\.name).filter { name in decided[name] != nil && !layout.contains { $0.names.contains(name) } }
                guard !extra.isEmpty else { continue }
                layoutChanged = true
                if let i = layout.firstIndex(where: { $0.path == f.path }) {
                    layout[i].names += extra
                } else {
                    layout.append((f.path, extra, f))
                }
            }
        }
        for entry in layout {
            var tensors: [TreeTensor] = []
            var offset = 0
            for name in entry.names {
                guard let id = decided[name], placed.insert(name).inserted else { continue }
                let header = try store.header(of: id)
                tensors.append(TreeTensor(name: name, dtype: header.dtype, shape: header.shape,
                                          dataOffsets: offset..<(offset + header.byteCount), objectID: id))
                offset += header.byteCount
            }
            if tensors.isEmpty { layoutChanged = true; continue }
            let source = entry.source
            // The template's header bytes fit when names, dtypes, shapes and order are unchanged.
            let sameLayout = source.tensors.count == tensors.count
                && zip(source.tensors.inDataOrder(), tensors).allSatisfy {
                    $0.name == $1.name && $0.dtype == $1.dtype && $0.shape == $1.shape
                }
            if sameLayout {
                // Keep the header and its offsets (and header order) exactly.
                let byName = Dictionary(tensors.map { ($0.name, $0.objectID) }, uniquingKeysWith: { a, _ in a })
                let kept = source.tensors.map { t -> TreeTensor in
                    var t = t
                    t.objectID = byName[t.name]!
                    return t
                }
                files.append(TreeFile(path: entry.path, kind: .safetensors, objectID: source.objectID, byteCount: source.byteCount,
                                      executable: source.executable, tensors: kept))
                continue
            }
            layoutChanged = true
            let headerBytes = try store.read(source.objectID)
            let metadata = try metadataOf(headerBytes, file: entry.path)
            let (bytes, infos) = SafetensorsHeader.encode(tensors: tensors.map { ($0.name, $0.dtype, $0.shape) }, metadata: metadata)
            let blob = try store.writeBlob(bytes, options: repository.codecOptions, batch: batch)
            if blob.isNew { newObjects.append(blob.info) }
            let rebuilt = zip(tensors, infos).map { t, info in
                TreeTensor(name: t.name, dtype: t.dtype, shape: t.shape, dataOffsets: info.dataOffsets, objectID: t.objectID)
            }
            files.append(TreeFile(path: entry.path, kind: .safetensors, objectID: blob.info.id,
                                  byteCount: bytes.count + (infos.last?.dataOffsets.upperBound ?? 0), executable: source.executable, tensors: rebuilt))
        }
        // Other files, three-way; the shard index is rebuilt when tensors moved between files.
        for outcome in fileOutcomes() {
            guard var file = outcome.file else { continue }
            // Rebuilt too when the index chosen three-way (one side re-sharded, another did not)
            // does not describe the merged files.
            if ShardIndex.isIndexFile(file.path), try layoutChanged || !indexDescribes(file, files: files) {
                // The shards are the merged files, in the index's folder, that hold a tensor the
                // index named (other safetensors files, an optimizer's say, are not its business);
                // paths are relative to the index's folder, as the Hub writes them.
                let folder = Self.folder(of: file.path)
                let named = Self.indexedTensors(try? ShardIndex.parse(try repository.objects.read(file.objectID), file: file.path))
                let shards = files.filter { f in
                    f.kind == .safetensors && f.path.hasPrefix(folder) && (named.map { n in f.tensors.contains { n.contains($0.name) } } ?? true)
                }
                let weightMap = shards.flatMap { f in f.tensors.map { ($0.name, String(f.path.dropFirst(folder.count))) } }
                let total = shards.reduce(0) { $0 + $1.tensors.reduce(0) { $0 + $1.byteCount } }
                let index = ShardIndex(weightMap: weightMap, metadata: .object([JSONMember("total_size", .int(total))]))
                let blob = try store.writeBlob(index.serialized(), options: repository.codecOptions, batch: batch)
                if blob.isNew { newObjects.append(blob.info) }
                file = TreeFile(path: file.path, kind: .blob, objectID: blob.info.id, byteCount: index.serialized().count, executable: false,
                                sha256: SHA256.hash(index.serialized()))
            }
            files.append(file)
        }
        try alignConfigs(&files, batch: batch, newObjects: &newObjects)
        files += statisticsFiles
        // The model card and the recipe (not for a change applied by revert or cherry-pick).
        let mergeFiles = options.addsMergeFiles
            ? [("README.md", card ?? modelCard(recipe: recipe, report: report, recipeYAML: recipeYAML)), ("merge_recipe.yml", recipeYAML)] : []
        for (path, text) in mergeFiles {
            let bytes = Array(text.utf8)
            let blob = try store.writeBlob(bytes, options: repository.codecOptions, batch: batch)
            if blob.isNew { newObjects.append(blob.info) }
            files.removeAll { $0.path == path }
            files.append(TreeFile(path: path, kind: .blob, objectID: blob.info.id, byteCount: bytes.count, executable: false,
                                  sha256: SHA256.hash(bytes)))
        }
        return Tree(files: files)
    }

    /// Each `config.json` beside merged weights, brought in line with them (``ModelConfigText``):
    /// `vocab_size` when a vocabulary policy changed the embedding's rows, the dtype when the merge
    /// wrote another one.
    private func alignConfigs(_ files: inout [TreeFile], batch: ObjectStore.Batch, newObjects: inout [ObjectInfo]) throws {
        guard options.vocabulary != nil || options.outputDType != nil else { return }
        for i in files.indices where files[i].kind == .blob && (files[i].path == "config.json" || files[i].path.hasSuffix("/config.json")) {
            let folder = Self.folder(of: files[i].path)
            let matrices = files.filter { $0.kind == .safetensors && Self.folder(of: $0.path) == folder }.flatMap(\.tensors)
                .filter { TensorContext(name: $0.name, shape: $0.shape, layerCount: 0).isVocabularyMatrix }
            // The input embedding's rows (a head may be padded differently), else any vocabulary matrix's.
            let embedding = matrices.first { n in ["embed_tokens", "word_embeddings", "wte."].contains { n.name.lowercased().contains($0) } } ?? matrices.first
            let rows = options.vocabulary == nil ? nil : embedding?.shape.first
            let text = String(decoding: try repository.objects.read(files[i].objectID), as: UTF8.self)
            guard let updated = ModelConfigText.updated(text, vocabRows: rows, dtype: options.outputDType) else { continue }
            let bytes = Array(updated.utf8)
            let blob = try repository.objects.writeBlob(bytes, options: repository.codecOptions, batch: batch)
            if blob.isNew { newObjects.append(blob.info) }
            files[i] = TreeFile(path: files[i].path, kind: .blob, objectID: blob.info.id, byteCount: bytes.count,
                                executable: files[i].executable, sha256: SHA256.hash(bytes))
        }
    }

    /// `path`'s folder with a trailing slash ("" at the top).
    static func folder(of path: String) -> String {
        path.lastIndex(of: "/").map { String(path[...$0]) } ?? ""
    }

    /// The tensors an index names (nil when it does not parse: then every file of its folder).
    static func indexedTensors(_ index: ShardIndex?) -> Set<String>? {
        index.map { Set($0.weightMap.map(\.tensor)) }
    }

    /// Whether a shard index describes the merged files it lists: each tensor it names is in the
    /// file it names, and each of those files holds no tensor it does not name. (Other safetensors
    /// files of the tree, an optimizer's say, are not its business.)
    private func indexDescribes(_ index: TreeFile, files: [TreeFile]) throws -> Bool {
        guard let parsed = try? ShardIndex.parse(try repository.objects.read(index.objectID), file: index.path) else { return false }
        let folder = Self.folder(of: index.path)
        let byPath = Dictionary(files.map { ($0.path, Set($0.tensors.map(\.name))) }, uniquingKeysWith: { a, _ in a })
        var listed: [String: Set<String>] = [:]
        for (tensor, file) in parsed.weightMap { listed[folder + file, default: []].insert(tensor) }
        return listed.allSatisfy { path, names in byPath[path] == names }
    }

    /// A safetensors header's `__metadata__`, in order (a header is parsed as a value, not a record).
    private func metadataOf(_ headerBytes: [UInt8], file: String) throws -> [(key: String, value: String)]? {
        guard headerBytes.count > 8, let root = try? JSONValue.parse(Array(headerBytes[8...])) else {
            throw RepoError.corruptObject(object: file, problem: "stored header does not parse")
        }
        return root["__metadata__"]?.objectValue?.compactMap { m in m.value.stringValue.map { (m.key, $0) } }
    }

    /// A Hugging Face model card with the recipe, as merge tools on the Hub write one.
    /// The front matter has no `base_model`: the Hub takes it for a Hub model id and refuses a card
    /// whose `base_model` is none (the merge base is a commit, named in the inputs table).
    func modelCard(recipe: MergeRecipe, report: ConflictReport, recipeYAML: String) -> String {
        let method = (try? MethodRegistry.method(named: recipe.method))
        let counts = report.classCounts
        var card = """
            ---
            library_name: transformers
            tags:
            - merge
            - mrepo
            - \(recipe.method)
            ---
            # Merge of \(experts.map(\.name).joined(separator: ", "))

            This model was merged with mrepo \(Repository.toolVersion) using \(method?.displayName ?? recipe.method)\(method.map { " (\($0.paper))" } ?? ""),
            from the merge base `\(baseID.short)`. Arithmetic in float32, reductions in float64.

            ## Inputs

            | role | name | commit |
            |---|---|---|
            | merge base | | `\(baseID.hex)` |

            """
        for e in experts { card += "| expert | \(e.name) | `\(e.commit.hex)` |\n" }
        card += "\n## Recipe\n\n```yaml\n\(recipeYAML)```\n\n## Conflict report\n\n"
        card += "| " + MergeClass.allCases.map(\.rawValue).joined(separator: " | ") + " |\n|" + String(repeating: "---|", count: MergeClass.allCases.count) + "\n"
        card += "| " + MergeClass.allCases.map { "\(counts[$0] ?? 0)" }.joined(separator: " | ") + " |\n"
        let top = report.topConflicts(5).filter { $0.metrics != nil }
        if !top.isEmpty {
            card += "\nMost conflicting tensors (conflicting mass, sign conflict, smallest cosine):\n\n"
            for t in top {
                let m = t.metrics!
                card += String(format: "- `%@`: %.3f, %.3f, %@\n", t.name, m.conflictingMass, m.signConflict, m.minCosine.map { String(format: "%.3f", $0) } ?? "-")
            }
        }
        return card
    }
}
