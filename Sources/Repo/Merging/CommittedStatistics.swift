import Delta
import Foundation
import Merge
import Synchronization

extension Tree {
    /// The tree without its statistics folder (`mrepo_stats/`): the model a merge reads and writes.
    public var withoutStatistics: Tree {
        Tree(files: files.filter { !StatisticsLayout.isStatistics($0.path) })
    }

    /// Every tensor of the model, with the file that holds it: statistics files are not model tensors.
    public var modelTensors: [(path: String, tensor: TreeTensor)] {
        files.filter { !StatisticsLayout.isStatistics($0.path) }.flatMap { f in f.tensors.map { (f.path, $0) } }
    }
}

/// The statistics files committed with a merge's experts (`mrepo_stats/<kind>.safetensors`,
/// docs/format.md §4.8), read from the object store tensor by tensor as the methods ask.
final class CommittedStatistics: ExpertStatisticsSource {
    let expertNames: [String]
    /// Per expert, its statistics files by kind.
    private let files: [[String: TreeFile]]
    private let objects: ObjectStore
    /// Metadata and norms, computed once per file.
    private let metadataCache = Mutex<[String: [String: String]]>([:])
    private let normCache = Mutex<[String: Double]>([:])

    init(expertNames: [String], trees: [Tree], objects: ObjectStore) {
        self.expertNames = expertNames
        self.objects = objects
        files = trees.map { tree in
            var out: [String: TreeFile] = [:]
            for f in tree.files where StatisticsLayout.isStatistics(f.path) && f.kind == .safetensors {
                let name = String(f.path.dropFirst(StatisticsLayout.folder.count + 1))
                if name.hasSuffix(".safetensors"), !name.contains("/") { out[String(name.dropLast(".safetensors".count))] = f }
            }
            return out
        }
    }

    /// Whether any expert has any statistics file.
    var isEmpty: Bool { files.allSatisfy(\.isEmpty) }

    func hasFile(expert: Int, kind: String) -> Bool { expert < files.count && files[expert][kind] != nil }

    private func file(_ expert: Int, _ kind: String) throws -> TreeFile {
        guard expert < files.count, let f = files[expert][kind] else {
            throw MergeError.missingExpertStatistics(method: "merge", file: StatisticsLayout.path(kind), expert: expert < expertNames.count ? expertNames[expert] : "expert \(expert + 1)")
        }
        return f
    }

    private func name(_ expert: Int) -> String { expert < expertNames.count ? expertNames[expert] : "expert \(expert + 1)" }

    func tensor(expert: Int, kind: String, name tensorName: String) throws -> (shape: [Int], values: [Float])? {
        let f = try file(expert, kind)
        guard let t = f.tensors.first(where: { $0.name == tensorName }) else { return nil }
        guard t.dtype.isFloatingPoint else {
            throw RepoError.invalidArgument("\(name(expert)): \(StatisticsLayout.path(kind)): '\(tensorName)' is \(t.dtype.rawValue); statistics are floating-point (F32)")
        }
        let values = try objects.floats(t.objectID)
        objects.releasePages(of: t.objectID)
        return (t.shape, values)
    }

    func metadata(expert: Int, kind: String) throws -> [String: String] {
        let key = "\(expert)/\(kind)"
        if let m = metadataCache.withLock({ $0[key] }) { return m }
        let f = try file(expert, kind)
        let bytes = try objects.read(f.objectID)
        let header: SafetensorsHeader
        do {
            header = try bytes.withUnsafeBytes { try SafetensorsHeader.parse(prefix: $0, fileSize: f.byteCount, file: "\(name(expert)):\(f.path)") }
        } catch let error as DeltaError {
            throw RepoError.delta(error)
        }
        var out: [String: String] = [:]
        for m in header.metadata ?? [] { out[m.key] = m.value }
        metadataCache.withLock { $0[key] = out }
        return out
    }

    func norm(expert: Int, kind: String) throws -> Double {
        let key = "\(expert)/\(kind)"
        if let n = normCache.withLock({ $0[key] }) { return n }
        let f = try file(expert, kind)
        var sum = 0.0
        for t in f.tensors where t.dtype.isFloatingPoint {
            let values = try objects.floats(t.objectID)
            objects.releasePages(of: t.objectID)
            for x in values { sum += Double(x) * Double(x) }
        }
        let n = sum.squareRoot()
        normCache.withLock { $0[key] = n }
        return n
    }
}
