import Delta
import Foundation
import Merge

/// One file of an expert's tree as a squashed reversible merge records it (`extra.rmm.experts[].files`,
/// docs/format.md §3.7): enough to lay the expert out again without its commit.
///
/// Objects the rebuild reads (headers, small files, tensors outside the basis) are named under the
/// key `object`, so `gc`, `push` and `fetch` keep and carry them like any object an `extra` member
/// names; the tensors the basis rebuilds keep their original id under `rebuilt`, which nothing
/// keeps alive: once the experts' branches are gone, `gc` drops them.
public struct SquashedFile: Codable, Sendable, Equatable {
    public struct Tensor: Codable, Sendable, Equatable {
        public var name: String
        public var dtype: String
        public var shape: [Int]
        /// Byte range in the file's data section, `[start, end]`.
        public var offsets: [Int]
        /// The tensor object, kept (a tensor outside the basis).
        public var object: ObjectID?
        /// The original tensor object, not kept: the basis rebuilds it.
        public var rebuilt: ObjectID?
    }

    public var path: String
    public var kind: String
    public var bytes: Int
    public var executable: Bool
    /// The blob of a plain file, or the header of a safetensors file.
    public var object: ObjectID
    public var sha256: String?
    public var tensors: [Tensor]?

    init(_ f: TreeFile, rebuilt: (TreeTensor) -> Bool) {
        path = f.path
        kind = f.kind.rawValue
        bytes = f.byteCount
        executable = f.executable
        object = f.objectID
        sha256 = f.sha256?.hex
        tensors = f.kind == .safetensors ? f.tensors.map { t in
            let dropped = rebuilt(t)
            return Tensor(name: t.name, dtype: t.dtype.rawValue, shape: t.shape, offsets: [t.dataOffsets.lowerBound, t.dataOffsets.upperBound],
                          object: dropped ? nil : t.objectID, rebuilt: dropped ? t.objectID : nil)
        } : nil
    }

    /// The file as a tree holds it.
    func treeFile(merge: ObjectID) throws -> TreeFile {
        func bad(_ problem: String) -> RepoError { .corruptObject(object: merge.short, problem: "squashed expert file '\(path)': \(problem)") }
        guard let kind = TreeFile.Kind(rawValue: kind) else { throw bad("unknown kind '\(self.kind)'") }
        let tensors = try (self.tensors ?? []).map { t -> TreeTensor in
            guard let dtype = DType(rawValue: t.dtype), t.offsets.count == 2, t.offsets[0] <= t.offsets[1],
                  let id = t.object ?? t.rebuilt else { throw bad("tensor '\(t.name)' is malformed") }
            return TreeTensor(name: t.name, dtype: dtype, shape: t.shape, dataOffsets: t.offsets[0]..<t.offsets[1], objectID: id)
        }
        return TreeFile(path: path, kind: kind, objectID: object, byteCount: bytes, executable: executable, tensors: tensors,
                        sha256: sha256.flatMap(Digest.init(hex:)))
    }
}

extension Repository {
    /// The experts' trees as a squashed merge records them: every file but the statistics, with
    /// the tensors the basis rebuilds marked `rebuilt` (adapters: each module's lora_A and lora_B;
    /// full fine-tunes: each module's weight).
    func squashedExpertFiles(_ plan: ReversiblePlan) throws -> [[SquashedFile]] {
        var rebuilt = [Set<String>](repeating: [], count: plan.experts.count)
        for module in plan.modules {
            switch module.source {
            case let .adapters(mods):
                for (i, m) in mods.enumerated() { rebuilt[i].formUnion([m.aName, m.bName]) }
            case .full:
                for i in rebuilt.indices { rebuilt[i].insert(module.baseTensor) }
            }
        }
        return try plan.experts.enumerated().map { i, e in
            let tree = try self.tree(of: e.commit).withoutStatistics
            return tree.files.map { f in
                SquashedFile(f, rebuilt: { t in
                    // Adapters: only the weights file holds factors; full fine-tunes: any shard.
                    (plan.kind == .full || f.path == LoRAConfig.weightsFileName) && rebuilt[i].contains(t.name)
                })
            }
        }
    }

    /// Expert `i`'s tree for a rebuild: from the squashed record, or from its commit (statistics
    /// left out: a rebuilt expert is not the model they were measured on).
    func expertTree(_ loaded: LoadedReversible, _ i: Int) throws -> Tree {
        let expert = loaded.record.experts[i]
        if let files = expert.files {
            return Tree(files: try files.map { try $0.treeFile(merge: loaded.commit.id) })
        }
        return try tree(of: expert.commit).withoutStatistics
    }

    /// Expert `i`'s adapter for a rebuild (an adapter merge).
    func expertAdapter(_ loaded: LoadedReversible, _ i: Int) throws -> LoadedAdapter {
        let expert = loaded.record.experts[i]
        guard expert.files != nil else { return try loadAdapter(expert.commit) }
        return try loadAdapter(commit: expert.commit, tree: try expertTree(loaded, i), base: loaded.record.base)
    }
}
