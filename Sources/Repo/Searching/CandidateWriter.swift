import Delta
import Foundation
import Glibc
import Merge

/// Writes a search's candidates as model folders, cheaply: nothing is committed, and the experts'
/// decoded tensors are kept between trials when they fit the memory budget.
///
/// Once per search, the layout template (the first expert's files, with the non-tensor files and
/// the tensors the merge takes as they are, exactly as the merge would write them) is written to
/// `template/` in the search's scratch folder. Each candidate is a copy of it whose merged tensors
/// are then overwritten in place, computed by the merge engine (``MergePlan/merge(_:base:experts:)``)
/// with the candidate's recipe. With the cache on (`MREPO_SEARCH_CACHE_MB`, default 2048: the base
/// and every expert of every merged tensor in Float32 must fit), no tensor is decoded twice in a
/// search; otherwise each candidate decodes its inputs one tensor at a time (bounded memory).
final class CandidateWriter {
    struct Merged {
        var name: String
        var path: String
        var offset: Int
        var byteCount: Int
        var dtype: DType
        var shape: Shape
        var base: ObjectID
        var experts: [ObjectID]
    }

    let repository: Repository
    let directory: String
    let template: String
    let layerCount: Int
    let merged: [Merged]
    let outputDType: DType?
    private var cache: [String: (base: [Float], experts: [[Float]])] = [:]
    let caches: Bool

    init(repository: Repository, context: MergeContext, directory: String) throws {
        self.repository = repository
        self.directory = directory
        template = directory + "/template"
        outputDType = context.options.outputDType
        layerCount = TensorContext.layerCount(of: context.allNames)
        let layout = context.layoutTemplate
        var places: [String: (path: String, offset: Int, tensor: TreeTensor)] = [:]
        for f in layout.files where f.kind == .safetensors {
            let headerLength = try repository.objects.read(f.objectID).count
            for t in f.tensors where places[t.name] == nil { places[t.name] = (f.path, headerLength + t.dataOffsets.lowerBound, t) }
        }
        var merged: [Merged] = []
        var fixed: [(path: String, offset: Int, id: ObjectID)] = []
        for name in context.allNames {
            let place = places[name]
            switch context.decision(for: name) {
            case .merge:
                guard let place, let base = context.baseTensors[name]?.tensor,
                      place.tensor.dtype == base.dtype, place.tensor.shape == base.shape else {
                    throw RepoError.invalidArgument("--search: tensor '\(name)' is laid out differently in \(context.experts[0].name); search a merge whose experts share one layout")
                }
                let dtype = outputDType ?? base.dtype
                // The template's headers name the experts' dtypes: bytes of another dtype (even of
                // the same width, bf16 as f16) under them would be evaluated as garbage.
                guard dtype == base.dtype else {
                    throw RepoError.invalidArgument("--search writes candidates in the experts' dtypes; drop --dtype (the winner's merge may then be re-run with it)")
                }
                merged.append(Merged(name: name, path: place.path, offset: place.offset, byteCount: place.tensor.byteCount, dtype: dtype,
                                     shape: base.shape, base: base.objectID,
                                     experts: context.expertTensors.map { ($0[name] ?? context.baseTensors[name]!).tensor.objectID }))
            case let .take(id, _, _), let .nonFloat(id, _):
                guard let place else {
                    throw RepoError.invalidArgument("--search: tensor '\(name)' is not in \(context.experts[0].name)'s files; search a merge whose experts share one layout")
                }
                if place.tensor.objectID != id {
                    guard try repository.objects.header(of: id).byteCount == place.tensor.byteCount else {
                        throw RepoError.invalidArgument("--search: tensor '\(name)' differs in size between the experts")
                    }
                    fixed.append((place.path, place.offset, id))
                }
            case let .conflict(reason):
                throw RepoError.invalidArgument("--search: tensor '\(name)' is a conflict (\(reason)); a search needs a merge without conflicts")
            case .delete, .vocabulary:
                throw RepoError.invalidArgument("--search: tensor '\(name)' is deleted or its vocabulary rows differ; a search needs experts of one layout")
            }
        }
        self.merged = merged
        var bytes = 0
        for m in merged { bytes += (m.shape.elementCount ?? 0) * 4 * (1 + m.experts.count) }
        let budget = (ProcessInfo.processInfo.environment["MREPO_SEARCH_CACHE_MB"].flatMap(Int.init) ?? 2048) << 20
        caches = bytes <= budget
        try repository.createDirectory(directory)
        let staging = FileStaging(journal: repository.journal)
        do {
            for file in layout.files { _ = try repository.stage(file, at: template + "/" + file.path, in: staging, progress: nil) }
            // Non-tensor files as the merge would settle them (a config another expert changed).
            for (path, file, _) in context.fileOutcomes() where file != nil && file?.identity != layout.file(at: path)?.identity {
                _ = try repository.stage(file!, at: template + "/" + path, in: staging, progress: nil)
            }
            try staging.commit()
        } catch {
            staging.rollback()
            throw error
        }
        for f in fixed {
            var bytes = [UInt8]()
            try repository.objects.decode(f.id) { bytes.append(contentsOf: $0) }
            try CandidateWriter.write(bytes, to: template + "/" + f.path, at: f.offset)
        }
    }

    /// Writes trial `number`'s candidate and returns its folder.
    func write(_ plan: MergePlan, number: Int) throws -> String {
        let folder = directory + "/candidate-\(number)"
        try? FileManager.default.removeItem(atPath: folder)
        do {
            try FileManager.default.copyItem(atPath: template, toPath: folder)
        } catch {
            throw RepoError.io(path: folder, reason: "cannot copy the candidate's template: \(error.localizedDescription)")
        }
        for m in merged {
            let inputs = try self.inputs(m)
            let context = TensorContext(name: m.name, shape: m.shape, layerCount: layerCount)
            var (values, _) = try plan.merge(context, base: inputs.base, experts: inputs.experts)
            let output = try MergeContext.outputBytes(&values, as: m.dtype, name: m.name)
            try output.withBytes(of: values) { bytes in
                guard bytes.count == m.byteCount else { throw RepoError.failed("tensor '\(m.name)': merged size differs from its place") }
                try CandidateWriter.write(bytes, to: folder + "/" + m.path, at: m.offset)
            }
        }
        return folder
    }

    private func inputs(_ m: Merged) throws -> (base: [Float], experts: [[Float]]) {
        if let hit = cache[m.name] { return hit }
        let base = try repository.objects.floats(m.base)
        var decoded: [ObjectID: [Float]] = [m.base: base]
        let experts = try m.experts.map { id in
            if let d = decoded[id] { return d }
            let f = try repository.objects.floats(id)
            decoded[id] = f
            return f
        }
        if caches { cache[m.name] = (base, experts) }
        return (base, experts)
    }

    static func write(_ bytes: [UInt8], to path: String, at offset: Int) throws {
        try bytes.withUnsafeBytes { try write($0, to: path, at: offset) }
    }

    static func write(_ bytes: UnsafeRawBufferPointer, to path: String, at offset: Int) throws {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { throw RepoError.io(path: path, reason: "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard PositionalIO.writeAll(fd, bytes, at: offset) else {
            throw RepoError.io(path: path, reason: "cannot write: \(String(cString: strerror(errno)))")
        }
    }
}
