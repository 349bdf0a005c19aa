import Delta
import Foundation
import Merge

/// `commit --lowrank R` / `--energy E`: 2-D task vectors stored as truncated SVDs (lossy).
public struct LowRankPolicy: Sendable, Equatable {
    public var choice: LowRank.RankChoice

    public init(choice: LowRank.RankChoice) {
        self.choice = choice
    }

    var description: String {
        switch choice {
        case let .rank(r): return "rank \(r)"
        case let .energy(e): return "energy \(e)"
        }
    }
}

/// One tensor stored low-rank, with its measured error.
public struct LowRankTensorRecord: Sendable, Equatable {
    public var name: String
    public var rank: Int
    /// ‖θ̂ − θ‖_F / ‖θ − θ_base‖_F, measured on the decoded bytes.
    public var relativeError: Double
    public var storedByteCount: Int
    public var logicalByteCount: Int
}

extension ObjectStore {
    /// Stores an already encoded tensor whose identity the caller computed by decoding it.
    func writeEncoded(_ encoded: [UInt8], info: ObjectInfo, batch: Batch) throws -> WriteResult {
        if exists(info.id) || batch.contains(info.id) { return WriteResult(info: info, isNew: false) }
        let writer = try incomingWriter()
        do {
            try writer.write(ObjectStore.fileHeader(.tensor))
            try writer.write(encoded)
        } catch {
            writer.abort()
            throw error
        }
        return try stage(writer, info: info, batch: batch)
    }

    /// Encodes θ_ref + L·R as a low-rank object, decodes it to learn its identity, and stores it.
    ///
    /// - Returns: the write result and the decoded values (to measure the error).
    func writeLowRank(dtype: DType, shape: Shape, factors: LowRankFactors, reference: (info: ObjectInfo, header: EncodedTensorHeader),
                      batch: Batch) throws -> (WriteResult, decoded: [Float]) {
        let encoded = LowRankCodec.encode(dtype: dtype, shape: shape, reference: reference.info.id,
                                          chunkByteCount: reference.header.chunkByteCount, factors: factors)
        let source = try chunkSource(for: reference.info.id)
        var decoded = [Float](repeating: 0, count: shape[0] * shape[1])
        var filled = 0
        let digest = try encoded.withUnsafeBytes { raw -> Digest in
            let tensor = try EncodedTensor(bytes: raw, owner: nil, name: "low-rank tensor")
            return try decoded.withUnsafeMutableBufferPointer { out in
                try TensorPipeline.decode(tensor, reference: source, expected: nil) { bytes in
                    let n = bytes.count / dtype.byteSize
                    FloatConversion.toFloat(dtype, bytes, into: UnsafeMutableBufferPointer(rebasing: out[filled..<(filled + n)]))
                    filled += n
                }
            }
        }
        let info = ObjectInfo(id: digest, kind: .tensor, encoding: .lowRank, reference: reference.info.id,
                              logicalByteCount: shape[0] * shape[1] * dtype.byteSize,
                              storedByteCount: ObjectStore.headerByteCount + encoded.count, depth: reference.info.depth + 1)
        return (try writeEncoded(encoded, info: info, batch: batch), decoded)
    }
}

extension Snapshotter {
    /// Stores a tensor as its reference plus a truncated SVD of the difference, or returns nil
    /// when that does not apply or would not pay (then the tensor is stored losslessly).
    func storeLowRank(_ t: TensorInfo, source: UnsafeRawBufferPointer, reference: Reference, policy: LowRankPolicy,
                      batch: ObjectStore.Batch) throws -> (ObjectStore.WriteResult, LowRankTensorRecord)? {
        guard t.shape.count == 2, LowRankCodec.supports(t.dtype), reference.header.dtype == t.dtype, reference.header.shape == t.shape,
              reference.info.depth < ObjectStore.maxDepth else { return nil }
        let rows = t.shape[0], columns = t.shape[1]
        // Small tensors: the object's fixed overhead outweighs any saving.
        guard rows > 1, columns > 1, t.byteCount >= 4096 else { return nil }
        // Factors cost 4·r·(rows + columns) bytes; beyond half the tensor's bytes they do not pay.
        let maxRank = (rows * columns * t.dtype.byteSize / 2) / (4 * (rows + columns))
        guard maxRank >= 1 else { return nil }
        var original = [Float](repeating: 0, count: rows * columns)
        original.withUnsafeMutableBufferPointer { FloatConversion.toFloat(t.dtype, source, into: $0) }
        var base = try objects.floats(reference.info.id)
        var delta = [Float](repeating: 0, count: rows * columns)
        var deltaNorm = 0.0
        for i in delta.indices {
            delta[i] = original[i] - base[i]
            deltaNorm += Double(delta[i]) * Double(delta[i])
        }
        guard deltaNorm > 0 else { return nil }
        base = []
        let truncation = try LowRank.truncate(delta, rows: rows, columns: columns, choice: policy.choice)
        delta = []
        guard truncation.factors.rank >= 1, truncation.factors.rank <= maxRank else { return nil }
        let (result, decoded) = try objects.writeLowRank(dtype: t.dtype, shape: t.shape, factors: truncation.factors,
                                                          reference: reference, batch: batch)
        var err = 0.0
        for i in decoded.indices {
            let d = Double(decoded[i]) - Double(original[i])
            err += d * d
        }
        let record = LowRankTensorRecord(name: t.name, rank: truncation.factors.rank, relativeError: (err / deltaNorm).squareRoot(),
                                         storedByteCount: result.info.storedByteCount, logicalByteCount: t.byteCount)
        return (result, record)
    }
}

/// What a lossy commit records (`extra.lossy`, docs/format.md §3.7); `show` and `du` print it.
public struct LossyRecord: CommitExtraRecord {
    public static let member = "lossy"

    /// What the user asked for: a fixed rank, or the fraction of the energy to keep.
    public enum Setting: Sendable, Equatable {
        case rank(Int)
        case energy(Double)
    }

    /// One low-rank tensor: its rank and relative error.
    public struct Tensor: Sendable, Equatable {
        public var name: String
        public var rank: Int
        public var relativeError: Double
    }

    public var method: String
    public var setting: Setting?
    public var tensorCount: Int
    public var maxRelativeError: Double
    public var meanRelativeError: Double
    public var storedByteCount: Int
    public var denseByteCount: Int
    /// In the order they were stored.
    public var tensors: [Tensor]

    /// The fraction of the dense bytes the low-rank tensors save.
    public var savedFraction: Double { 1 - Double(storedByteCount) / Double(max(denseByteCount, 1)) }

    /// The setting as `show` prints it: `rank 8`, `energy 0.9`, or empty.
    public var settingDescription: String {
        switch setting {
        case let .rank(r)?: return "rank \(r)"
        case let .energy(e)?: return "energy \(e)"
        case nil: return ""
        }
    }

    init(policy: LowRankPolicy, tensors: [LowRankTensorRecord]) {
        let setting: Setting
        switch policy.choice {
        case let .rank(r): setting = .rank(r)
        case let .energy(e): setting = .energy(e)
        }
        self.init(tensors: tensors.map { Tensor(name: $0.name, rank: $0.rank, relativeError: $0.relativeError) }, setting: setting,
                  storedByteCount: tensors.reduce(0) { $0 + $1.storedByteCount }, denseByteCount: tensors.reduce(0) { $0 + $1.logicalByteCount })
    }

    /// A record of these low-rank tensors (stored by this commit, or taken from others with the
    /// rank and error their own records give), with their error statistics.
    init(tensors: [Tensor], setting: Setting?, storedByteCount: Int, denseByteCount: Int) {
        let errors = tensors.map(\.relativeError)
        method = "lowrank"
        self.setting = setting
        tensorCount = tensors.count
        maxRelativeError = errors.max() ?? 0
        meanRelativeError = errors.isEmpty ? 0 : errors.reduce(0, +) / Double(errors.count)
        self.storedByteCount = storedByteCount
        self.denseByteCount = denseByteCount
        self.tensors = tensors
    }

    /// The members in the format's order; `tensors` is an object keyed by tensor name.
    private enum CodingKeys: String, CodingKey {
        case method, rank, energy, tensorCount = "tensor_count", maxRelativeError = "max_relative_error"
        case meanRelativeError = "mean_relative_error", storedByteCount = "stored_bytes", denseByteCount = "dense_bytes", tensors
    }

    private enum TensorKeys: String, CodingKey {
        case rank, relativeError = "relative_error"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        method = try c.decodeIfPresent(String.self, forKey: .method) ?? "lowrank"
        if let r = try c.decodeIfPresent(Int.self, forKey: .rank) {
            setting = .rank(r)
        } else if let e = try c.decodeIfPresent(Double.self, forKey: .energy) {
            setting = .energy(e)
        } else {
            setting = nil
        }
        tensorCount = try c.decodeIfPresent(Int.self, forKey: .tensorCount) ?? 0
        maxRelativeError = try c.decodeIfPresent(Double.self, forKey: .maxRelativeError) ?? 0
        meanRelativeError = try c.decodeIfPresent(Double.self, forKey: .meanRelativeError) ?? 0
        storedByteCount = try c.decodeIfPresent(Int.self, forKey: .storedByteCount) ?? 0
        denseByteCount = try c.decodeIfPresent(Int.self, forKey: .denseByteCount) ?? 0
        tensors = []
        if c.contains(.tensors) {
            let byName = try c.nestedContainer(keyedBy: NameKey.self, forKey: .tensors)
            for key in byName.allKeys {
                let t = try byName.nestedContainer(keyedBy: TensorKeys.self, forKey: key)
                tensors.append(Tensor(name: key.stringValue, rank: try t.decodeIfPresent(Int.self, forKey: .rank) ?? 0,
                                      relativeError: try t.decodeIfPresent(Double.self, forKey: .relativeError) ?? 0))
            }
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(method, forKey: .method)
        switch setting {
        case let .rank(r)?: try c.encode(r, forKey: .rank)
        case let .energy(e)?: try c.encode(e, forKey: .energy)
        case nil: break
        }
        try c.encode(tensorCount, forKey: .tensorCount)
        try c.encode(maxRelativeError, forKey: .maxRelativeError)
        try c.encode(meanRelativeError, forKey: .meanRelativeError)
        try c.encode(storedByteCount, forKey: .storedByteCount)
        try c.encode(denseByteCount, forKey: .denseByteCount)
        var byName = c.nestedContainer(keyedBy: NameKey.self, forKey: .tensors)
        for t in tensors {
            var e = byName.nestedContainer(keyedBy: TensorKeys.self, forKey: NameKey(t.name))
            try e.encode(t.rank, forKey: .rank)
            try e.encode(t.relativeError, forKey: .relativeError)
        }
    }
}

/// A coding key that is any member name (records keyed by tensor or file name).
struct NameKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ name: String) { stringValue = name }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}

extension Repository {
    /// `extra.storage` (and `extra.lossy`) for a commit of `tree` whose tensors come from other
    /// commits (`sources`: the commit amended, the parents, or what a revert, a cherry-pick or a
    /// merge reads): lossy exactly when the tree keeps low-rank tensors a lossy source recorded,
    /// each with the rank and error that source gave. Without a lossy source, nil (the caller's
    /// label stands). Low-rank objects no lossy commit recorded (a reversible merge's view) are
    /// exact bytes and do not count.
    func carriedStorage(of tree: Tree, from sources: [ObjectID]) throws -> [JSONMember]? {
        var known: [ObjectID: (LossyRecord.Tensor, LossyRecord.Setting?)] = [:]
        for id in Set(sources) {
            let c = try commit(id)
            guard try c.record(CommitStorage.self) == .lossy, let record = try c.record(LossyRecord.self) else { continue }
            let byName = Dictionary(record.tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for file in try history.tree(c.treeID).files {
                for t in file.tensors { if let r = byName[t.name] { known[t.objectID] = (r, record.setting) } }
            }
        }
        guard !known.isEmpty else { return nil }
        var carried: [LossyRecord.Tensor] = [], settings: [LossyRecord.Setting?] = []
        var names = Set<String>(), counted = Set<ObjectID>()
        var stored = 0, dense = 0
        for file in tree.files {
            for t in file.tensors {
                guard let (r, s) = known[t.objectID], names.insert(t.name).inserted else { continue }
                carried.append(LossyRecord.Tensor(name: t.name, rank: r.rank, relativeError: r.relativeError))
                settings.append(s)
                if counted.insert(t.objectID).inserted, let info = try history.objectInfo(t.objectID) {
                    stored += info.storedByteCount
                    dense += info.logicalByteCount
                }
            }
        }
        guard !carried.isEmpty else { return [try CommitStorage.lossless.jsonMember()] }
        let agreed = settings.allSatisfy { $0 == settings[0] } ? settings[0] : nil
        let record = LossyRecord(tensors: carried, setting: agreed, storedByteCount: stored, denseByteCount: dense)
        return [try CommitStorage.lossy.jsonMember(), try record.jsonMember()]
    }
}
