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

extension Repository {
    /// The `lossy` record of a low-rank commit (`extra.lossy`).
    static func lossyRecord(policy: LowRankPolicy, tensors: [LowRankTensorRecord]) -> JSONMember {
        let errors = tensors.map(\.relativeError)
        var members = [JSONMember("method", .string("lowrank"))]
        switch policy.choice {
        case let .rank(r): members.append(JSONMember("rank", .int(r)))
        case let .energy(e): members.append(JSONMember("energy", .double(e)))
        }
        members += [
            JSONMember("tensor_count", .int(tensors.count)),
            JSONMember("max_relative_error", .double(errors.max() ?? 0)),
            JSONMember("mean_relative_error", .double(errors.isEmpty ? 0 : errors.reduce(0, +) / Double(errors.count))),
            JSONMember("stored_bytes", .int(tensors.reduce(0) { $0 + $1.storedByteCount })),
            JSONMember("dense_bytes", .int(tensors.reduce(0) { $0 + $1.logicalByteCount })),
            JSONMember("tensors", .object(tensors.map {
                JSONMember($0.name, .object([JSONMember("rank", .int($0.rank)), JSONMember("relative_error", .double($0.relativeError))]))
            })),
        ]
        return JSONMember("lossy", .object(members))
    }
}

/// What `show` and `du` say about a lossy commit.
public struct LossySummary: Sendable {
    public var method: String
    public var setting: String
    public var tensorCount: Int
    public var maxRelativeError: Double
    public var meanRelativeError: Double
    public var storedByteCount: Int
    public var denseByteCount: Int
    /// Per tensor: rank and relative error.
    public var tensors: [(name: String, rank: Int, relativeError: Double)]

    /// The fraction of the dense bytes the low-rank tensors save.
    public var savedFraction: Double { 1 - Double(storedByteCount) / Double(max(denseByteCount, 1)) }

    public init?(commit: Commit) {
        guard let l = commit.extra["lossy"] else { return nil }
        method = l["method"]?.stringValue ?? "lowrank"
        if let r = l["rank"]?.intValue { setting = "rank \(r)" } else if let e = l["energy"]?.doubleValue { setting = "energy \(e)" } else { setting = "" }
        tensorCount = l["tensor_count"]?.intValue ?? 0
        maxRelativeError = l["max_relative_error"]?.doubleValue ?? 0
        meanRelativeError = l["mean_relative_error"]?.doubleValue ?? 0
        storedByteCount = l["stored_bytes"]?.intValue ?? 0
        denseByteCount = l["dense_bytes"]?.intValue ?? 0
        tensors = (l["tensors"]?.objectValue ?? []).map { m in
            (m.key, m.value["rank"]?.intValue ?? 0, m.value["relative_error"]?.doubleValue ?? 0)
        }
    }
}
