/// A tensor stored as its reference plus a low-rank product: θ = θ_ref + L·R, with L (rows × rank)
/// and R (rank × columns) in Float32. This is the lossy encoding of `commit --lowrank` and of a
/// reversible merge's default view; its identity is the hash of the decoded bytes, which are
/// the same on every machine because ``LowRankProduct`` sums in a fixed order.
///
/// Layout after the encoded-tensor header (docs/format.md §4.6), all integers little-endian:
/// ```
/// rank           u32
/// coder          u8     ChunkCoder of the factor planes
/// reserved       3
/// storedLength   u32
/// stored bytes          the 4 byte planes of L then R (Float32 little-endian), zstd or raw
/// ```
public struct LowRankFactors: Sendable, Equatable {
    public var rows: Int
    public var columns: Int
    public var rank: Int
    /// rows × rank, row-major.
    public var left: [Float]
    /// rank × columns, row-major.
    public var right: [Float]

    public init(rows: Int, columns: Int, rank: Int, left: [Float], right: [Float]) {
        precondition(left.count == rows * rank && right.count == rank * columns, "factor sizes")
        self.rows = rows
        self.columns = columns
        self.rank = rank
        self.left = left
        self.right = right
    }

    /// Number of Float32 values the factors hold.
    public var parameterCount: Int { rank * (rows + columns) }

    /// The factors of (L·R)ᵀ = Rᵀ·Lᵀ: columns × rows.
    public func transposed() -> LowRankFactors {
        var l = [Float](repeating: 0, count: columns * rank), r = [Float](repeating: 0, count: rank * rows)
        for k in 0..<rank {
            for j in 0..<columns { l[j * rank + k] = right[k * columns + j] }
            for i in 0..<rows { r[k * rows + i] = left[i * rank + k] }
        }
        return LowRankFactors(rows: columns, columns: rows, rank: rank, left: l, right: r)
    }

    /// The dense product L·R (row-major), with the same summation order as the decoder.
    public func dense() -> [Float] {
        var out = [Float](repeating: 0, count: rows * columns)
        left.withUnsafeBufferPointer { l in
            right.withUnsafeBufferPointer { r in
                out.withUnsafeMutableBufferPointer { o in
                    LowRankProduct.compute(left: l.baseAddress!, right: r.baseAddress!, rank: rank, columns: columns,
                                           elements: 0..<(rows * columns), into: o.baseAddress!)
                }
            }
        }
        return out
    }
}

/// The product of low-rank factors over a range of elements, in a fixed order.
public enum LowRankProduct {
    /// out[e − elements.lowerBound] = Σₖ left[i, k]·right[k, j] for each element e = i·columns + j
    /// in `elements`, summed with k ascending and no fused multiply-add, so any split of a tensor
    /// into ranges gives the same bits.
    public static func compute(left: UnsafePointer<Float>, right: UnsafePointer<Float>, rank r: Int, columns n: Int,
                               elements: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        guard n > 0 else { return }
        let rightRaw = UnsafeRawPointer(right)
        var e = elements.lowerBound
        while e < elements.upperBound {
            let i = e / n
            let j0 = e - i * n
            let j1 = min(n, j0 + (elements.upperBound - e))
            let dst = UnsafeMutableRawPointer(out + (e - elements.lowerBound))
            let a = left + i * r
            var j = j0
            while j + 8 <= j1 {
                var acc = SIMD8<Float>(repeating: 0)
                for k in 0..<r {
                    let b = rightRaw.loadUnaligned(fromByteOffset: 4 * (k * n + j), as: SIMD8<Float>.self)
                    acc = acc + SIMD8<Float>(repeating: a[k]) * b
                }
                dst.storeBytes(of: acc, toByteOffset: 4 * (j - j0), as: SIMD8<Float>.self)
                j += 8
            }
            while j < j1 {
                var acc: Float = 0
                for k in 0..<r { acc = acc + a[k] * right[k * n + j] }
                dst.storeBytes(of: acc, toByteOffset: 4 * (j - j0), as: Float.self)
                j += 1
            }
            e += j1 - j0
        }
    }
}

/// Encoding and decoding of ``TensorEncoding/lowRank`` tensors.
public enum LowRankCodec {
    /// Dtypes a low-rank tensor may have: the sum is formed in Float32 and rounded once.
    public static func supports(_ dtype: DType) -> Bool {
        dtype == .f32 || dtype == .f16 || dtype == .bf16
    }

    /// The complete encoded tensor (header and factor section).
    ///
    /// - Parameter chunkByteCount: the reference's chunk size (chunk `i` is decoded against the
    ///   reference's chunk `i`).
    public static func encode(dtype: DType, shape: Shape, reference: Digest, chunkByteCount: Int,
                              factors: LowRankFactors, level: Int32 = 3) -> [UInt8] {
        precondition(shape.count == 2 && shape[0] == factors.rows && shape[1] == factors.columns, "factors match the shape")
        precondition(supports(dtype), "a low-rank dtype")
        let header = EncodedTensorHeader(encoding: .lowRank, dtype: dtype, shape: shape, byteCount: shape[0] * shape[1] * dtype.byteSize,
                                         chunkByteCount: chunkByteCount, reference: reference)
        var out = header.serialized()
        let values = factors.left + factors.right
        let count = values.count
        // Byte planes of the Float32 words, as the lossless codec splits 4-byte integers.
        var planes = [UInt8](repeating: 0, count: 4 * count)
        values.withUnsafeBytes { src in
            planes.withUnsafeMutableBytes { ChunkCodec.split(dtype: .u32, encoding: .whole, source: src, reference: nil, planes: $0) }
        }
        let compressed = planes.withUnsafeBytes { Zstd.compress($0, level: level) }
        let useZstd = !compressed.isEmpty && compressed.count < planes.count
        out.appendLE(UInt32(factors.rank))
        out.append(useZstd ? ChunkCoder.zstd.rawValue : ChunkCoder.raw.rawValue)
        out += [0, 0, 0]
        let stored = useZstd ? compressed : planes
        out.appendLE(UInt32(stored.count))
        out += stored
        return out
    }

    /// Parses the factor section that follows the header.
    static func decodeFactors(_ view: UnsafeRawBufferPointer, offset: Int, header: EncodedTensorHeader, object: String) throws(DeltaError) -> (LowRankFactors, Int) {
        var r = ByteReader(view)
        r.offset = offset
        func bad(_ problem: String) -> DeltaError { .corruptData(object: object, problem: problem) }
        guard header.shape.count == 2, supports(header.dtype) else { throw bad("low-rank encoding needs a 2-D F32, F16 or BF16 tensor") }
        guard let rank32 = r.u32(), let coderByte = r.u8(), let coder = ChunkCoder(rawValue: coderByte), r.bytes(3) != nil,
              let length = r.u32(), let stored = r.bytes(Int(length))
        else { throw bad("low-rank factor section is truncated") }
        let rows = header.shape[0], columns = header.shape[1], rank = Int(rank32)
        guard rank > 0, rank <= min(rows, columns) else { throw bad("low-rank rank \(rank) does not fit a \(rows)×\(columns) tensor") }
        // The size the factors must have, checked against what is stored before any memory is
        // reserved: a corrupt header may declare a huge shape and rank.
        let (sides, o1) = rows.addingReportingOverflow(columns)
        let (count, o2) = rank.multipliedReportingOverflow(by: sides)
        let (byteCount, o3) = count.multipliedReportingOverflow(by: 4)
        guard !o1, !o2, !o3 else { throw bad("low-rank rank \(rank) of a \(rows)×\(columns) tensor overflows") }
        switch coder {
        case .raw:
            guard stored.count == byteCount else { throw bad("low-rank factors hold \(stored.count) bytes, expected \(byteCount)") }
        case .rans:
            throw bad("low-rank factors use coder 2, which only chunk records may use")
        case .zstd:
            let declared = Zstd.frameContentSize(UnsafeRawBufferPointer(rebasing: stored))
            guard declared == byteCount else {
                throw bad("low-rank factors decompress to \(declared.map(String.init) ?? "an unknown size") bytes, expected \(byteCount)")
            }
        }
        var values = [Float](repeating: 0, count: count)
        func join(_ planes: UnsafeRawBufferPointer) {
            values.withUnsafeMutableBytes { ChunkCodec.join(dtype: .u32, encoding: .whole, planes: planes, reference: nil, destination: $0) }
        }
        switch coder {
        case .raw, .rans:
            join(UnsafeRawBufferPointer(rebasing: stored))
        case .zstd:
            var planes = [UInt8](repeating: 0, count: byteCount)
            do {
                try planes.withUnsafeMutableBytes { try Zstd.decompress(UnsafeRawBufferPointer(rebasing: stored), into: $0) }
            } catch {
                throw bad("low-rank factors do not decompress (\(error))")
            }
            planes.withUnsafeBytes { join($0) }
        }
        let factors = LowRankFactors(rows: rows, columns: columns, rank: rank,
                                     left: Array(values[0..<(rows * rank)]), right: Array(values[(rows * rank)...]))
        return (factors, r.offset)
    }

    /// Decodes the elements of one chunk: reference + L·R, rounded once to the dtype.
    ///
    /// - Parameters:
    ///   - reference: the reference's bytes for the same range.
    ///   - scratch: at least `4 × elements` bytes.
    static func decode(_ factors: LowRankFactors, dtype: DType, byteRange: Range<Int>, reference: UnsafeRawBufferPointer,
                       scratch: UnsafeMutableRawBufferPointer, destination: UnsafeMutableRawBufferPointer) {
        let size = dtype.byteSize
        let first = byteRange.lowerBound / size
        let count = byteRange.count / size
        let product = scratch.bindMemory(to: Float.self)
        factors.left.withUnsafeBufferPointer { l in
            factors.right.withUnsafeBufferPointer { r in
                LowRankProduct.compute(left: l.baseAddress!, right: r.baseAddress!, rank: factors.rank, columns: factors.columns,
                                       elements: first..<(first + count), into: product.baseAddress!)
            }
        }
        // Add the reference in blocks, then round to the dtype.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 1024) { block in
            var start = 0
            while start < count {
                let n = min(1024, count - start)
                let part = UnsafeMutableBufferPointer(rebasing: block[0..<n])
                FloatConversion.toFloat(dtype, UnsafeRawBufferPointer(rebasing: reference[(start * size)..<((start + n) * size)]), into: part)
                for i in 0..<n { product[start + i] = part[i] + product[start + i] }
                start += n
            }
        }
        FloatConversion.fromFloat(dtype, UnsafeBufferPointer(rebasing: product[0..<count]), into: destination)
    }
}
