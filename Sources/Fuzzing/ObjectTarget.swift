import Delta
import Foundation
import Repo

/// `object`: object files under `.mrepo/objects`, read the ways mrepo reads them: opened and
/// decoded (following the delta chain), verified against their name, streamed by
/// ``TensorReader``, inspected by fsck, and used as the delta reference of another object.
///
/// Inputs are whole object files (the 8-byte `MROB` header and an encoded tensor). The seeds are
/// valid objects of every encoding with small chunks; the format-aware mutation edits header
/// fields and chunk records and keeps the byte count consistent with the shape, so mutants get
/// past the header checks to the chunk decoder.
enum ObjectTarget {
    /// The name the input is stored under. The input never hashes to it, so a verified read must
    /// fail; the structural decode does not check the name.
    static let inputID = SHA256.hash(Array("mrepo-fuzz: the object under test".utf8))
    /// A valid delta object whose reference is the input.
    static let dependentID = SHA256.hash(Array("mrepo-fuzz: a delta against the object under test".utf8))
    static let chunk = 64

    /// Tensors stored whole in the store, which delta seeds reference.
    struct Reference {
        var dtype: DType
        var shape: Shape
        var bytes: [UInt8]
        var id: Digest { bytes.withUnsafeBytes { TensorHasher.hash(dtype: dtype, shape: shape, bytes: $0) } }
    }

    static let references: [Reference] = {
        var rng = SeededRandom(seed: 11)
        // Small integers as floats: exponents repeat, so zstd has something to find.
        let f32 = (0..<64).map { _ in Float(Int(rng.next() % 9) - 4) * 0.25 }
        let bf16 = (0..<64).map { _ in FloatConversion.bfloat16Bits(Float(Int(rng.next() % 5) - 2)) }
        let i16 = (0..<40).map { _ in Int16(truncatingIfNeeded: rng.next() % 200) }
        return [
            Reference(dtype: .f32, shape: [8, 8], bytes: f32.withUnsafeBytes { Array($0) }),
            Reference(dtype: .bf16, shape: [4, 16], bytes: bf16.withUnsafeBytes { Array($0) }),
            Reference(dtype: .i16, shape: [40], bytes: i16.withUnsafeBytes { Array($0) }),
        ]
    }()

    static let target = FuzzTarget(
        name: "object", summary: "object files: header, chunk table, chunk codec, low-rank factors, delta chains",
        dialect: .binary, maxInputBytes: 4096, mention: "object",
        seeds: { try seeds() }, hostile: { try hostile() }, mutate: mutateStructured, prepare: prepare)

    // MARK: - Building objects

    static func fileHeader(_ kind: ObjectKind) -> [UInt8] {
        ObjectStore.magic + [ObjectStore.version, kind.rawValue, 0, 0]
    }

    /// An object file holding `bytes` coded with `encoding` against `reference` (if any).
    static func object(_ kind: ObjectKind = .tensor, dtype: DType, shape: Shape, bytes: [UInt8], encoding: TensorEncoding = .whole,
                       reference: (id: Digest, bytes: [UInt8])? = nil, chunkSize: Int = ObjectTarget.chunk, rans: Bool = false) throws -> [UInt8] {
        var out = fileHeader(kind)
        let ref = reference.map { r in
            TensorPipeline.Reference(digest: r.id, chunks: { index, into in
                try r.bytes.withUnsafeBytes { try memoryChunkSource($0, chunkByteCount: chunkSize)(index, into) }
            })
        }
        try bytes.withUnsafeBytes { source in
            _ = try TensorPipeline.encode(dtype: dtype, shape: shape, source: source, encoding: encoding, reference: ref,
                                          options: CodecOptions(chunkByteCount: chunkSize, level: 1, rans: rans),
                                          identity: kind == .blob ? .blob : .tensor, sink: { out += $0 })
        }
        return out
    }

    static func seeds() throws -> [[UInt8]] {
        var rng = SeededRandom(seed: 12)
        let f32 = references[0], bf16 = references[1], i16 = references[2]
        func nudged(_ r: Reference) -> [UInt8] {
            var b = r.bytes
            for _ in 0..<8 { b[Int(rng.next() % UInt64(b.count))] ^= 1 }
            return b
        }
        let text = Array("{\"architectures\": [\"BertModel\"], \"hidden_size\": 16, \"vocab_size\": 64}\n".utf8)
        var seeds: [[UInt8]] = [
            try object(dtype: f32.dtype, shape: f32.shape, bytes: f32.bytes),
            try object(dtype: .u8, shape: [text.count], bytes: text),
            try object(.blob, dtype: .u8, shape: [text.count], bytes: text),
            try object(dtype: .f64, shape: [], bytes: [0, 0, 0, 0, 0, 0, 0xF0, 0x7F]),
            try object(dtype: .f32, shape: [0, 4], bytes: []),
            try object(dtype: .bool, shape: [3, 3], bytes: [1, 0, 1, 0, 0, 1, 1, 1, 0]),
            // Valid, with a chunk size far beyond the tensor (the reference of the dependent object).
            try object(dtype: f32.dtype, shape: f32.shape, bytes: f32.bytes, chunkSize: 0xFFFF_FFF8),
            try object(dtype: f32.dtype, shape: f32.shape, bytes: nudged(f32), encoding: .integerDeltaByExponent, reference: (f32.id, f32.bytes)),
            try object(dtype: f32.dtype, shape: f32.shape, bytes: nudged(f32), encoding: .xor, reference: (f32.id, f32.bytes)),
            try object(dtype: bf16.dtype, shape: bf16.shape, bytes: nudged(bf16), encoding: .integerDelta, reference: (bf16.id, bf16.bytes)),
            try object(dtype: i16.dtype, shape: i16.shape, bytes: nudged(i16), encoding: .integerDelta, reference: (i16.id, i16.bytes)),
        ]
        // Coder 2 (rANS) chunks: float tensors of 1 KiB and more, with weight-like values whose
        // exponents follow their rows; one chunk each, and a bf16 tensor in two uneven chunks.
        seeds.append(try object(dtype: .f32, shape: [16, 40], bytes: weightLike(640, rng: &rng).withUnsafeBytes { Array($0) }, chunkSize: 4096, rans: true))
        let halves = weightLike(1200, rng: &rng).map { FloatConversion.bfloat16Bits($0) }
        seeds.append(try object(dtype: .bf16, shape: [30, 40], bytes: halves.withUnsafeBytes { Array($0) }, chunkSize: 1600, rans: true))
        // Rows of 256 with every other column 8 times larger: the exponent plane becomes a grid (mode 4).
        let outliers = weightLike(4096, rng: &rng).enumerated().map { $0.offset % 2 == 1 ? 8 * $0.element : $0.element }
        seeds.append(try object(dtype: .f32, shape: [16, 256], bytes: outliers.withUnsafeBytes { Array($0) }, chunkSize: 16384, rans: true))
        for (r, rank) in [(f32, 2), (bf16, 1)] {
            let rows = r.shape[0], columns = r.shape[1]
            let factors = LowRankFactors(rows: rows, columns: columns, rank: rank,
                                         left: (0..<(rows * rank)).map { Float($0 % 3) - 1 },
                                         right: (0..<(rank * columns)).map { Float($0 % 5) * 0.125 })
            seeds.append(fileHeader(.tensor) + LowRankCodec.encode(dtype: r.dtype, shape: r.shape, reference: r.id,
                                                                  chunkByteCount: chunk, factors: factors))
        }
        return seeds
    }

    /// Gaussian-like values (a sum of uniforms) with a scale per run of 40: what coder 2 is for.
    static func weightLike(_ count: Int, rng: inout SeededRandom) -> [Float] {
        var scale: Float = 0.05
        return (0..<count).map { i in
            if i % 40 == 0 { scale = Float(0.01 + 0.1 * rng.uniform()) }
            let g = (0..<4).reduce(0.0) { s, _ in s + rng.uniform() } - 2
            return scale * Float(g)
        }
    }

    /// Objects mrepo must refuse without crashing or looping.
    static func hostile() throws -> [[UInt8]] {
        let f32 = references[0]
        return [
            // A delta whose reference is itself: a cycle the reader must refuse, not follow forever.
            try object(dtype: f32.dtype, shape: f32.shape, bytes: f32.bytes, encoding: .xor, reference: (inputID, f32.bytes)),
        ]
    }

    // MARK: - Mutation

    /// Edits one header field or chunk record, keeping the byte count consistent with the shape
    /// most of the time (the header check would stop the mutant otherwise).
    @Sendable static func mutateStructured(_ m: inout Mutator, _ input: [UInt8], _ corpus: [[UInt8]]) -> [UInt8] {
        var out = input
        guard out.count >= 28 + 32 else { return m.mutate(input, corpus: corpus) }
        let rank = Int(out[15])
        let headerEnd = 28 + 8 * rank + 32
        guard out.count >= headerEnd else { return m.mutate(input, corpus: corpus) }
        var fixByteCount = !m.chance(4)
        switch m.below(9) {
        case 0: out[13] = UInt8(m.below(6))                       // encoding
        case 1: out[14] = UInt8(m.below(17))                      // dtype code
        case 2 where rank > 0:                                    // one dimension
            let at = 28 + 8 * m.below(rank)
            var dims = m.pick(Mutator.interestingIntegers)
            if m.chance(2) { dims = UInt64(m.below(70)) }
            put(&out, dims, at: at, width: 8)
        case 3:                                                   // chunk size
            let sizes: [UInt64] = [0, 1, 4, 8, 16, 24, 64, 128, 4096, 4 << 20, 0x8000_0000, 0xFFFF_FFF8, 0xFFFF_FFFF]
            put(&out, m.pick(sizes), at: 16, width: 4)
            fixByteCount = false
        case 4:                                                   // rank: add or drop a dimension
            if rank > 0, m.chance(2) {
                out.removeSubrange((28 + 8 * (rank - 1))..<(28 + 8 * rank))
                out[15] = UInt8(rank - 1)
            } else if rank < 255 {
                out.insert(contentsOf: [UInt8](repeating: 0, count: 8), at: 28 + 8 * rank)
                put(&out, UInt64(1 + m.below(4)), at: 28 + 8 * rank, width: 8)
                out[15] = UInt8(rank + 1)
            }
        case 5:                                                   // reference
            let at = 28 + 8 * rank
            let ids = [Digest.zero, inputID, dependentID] + references.map(\.id)
            out.replaceSubrange(at..<(at + 32), with: m.chance(8) ? (0..<32).map { _ in UInt8(truncatingIfNeeded: m.rng.next()) } : m.pick(ids).bytes)
            fixByteCount = false
        case 6:                                                   // object kind and version bytes
            out[m.chance(2) ? 5 : 4] = UInt8(m.below(4))
            fixByteCount = false
        default:                                                  // a chunk record
            mutateRecord(&m, &out, from: headerEnd)
            fixByteCount = false
        }
        if fixByteCount { fixUpByteCount(&out) }
        return out
    }

    static func put(_ out: inout [UInt8], _ value: UInt64, at: Int, width: Int) {
        for k in 0..<width { out[at + k] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(k))) }
    }

    /// Sets the byte count to dtype size × the product of the dimensions (wrapping: an overflow
    /// is a case of its own).
    static func fixUpByteCount(_ out: inout [UInt8]) {
        let rank = Int(out[15])
        guard out.count >= 28 + 8 * rank, let dtype = DType(code: out[14]) else { return }
        var product = UInt64(dtype.byteSize)
        for d in 0..<rank {
            var dim: UInt64 = 0
            for k in (0..<8).reversed() { dim = dim << 8 | UInt64(out[28 + 8 * d + k]) }
            product = product &* dim
        }
        put(&out, product, at: 20, width: 8)
    }

    /// Edits a chunk record: its coder, its length, its payload, or drops or repeats it.
    static func mutateRecord(_ m: inout Mutator, _ out: inout [UInt8], from start: Int) {
        var records: [Range<Int>] = []
        var at = start
        while at + 8 <= out.count {
            var length = 0
            for k in (0..<4).reversed() { length = length << 8 | Int(out[at + 4 + k]) }
            let end = min(out.count, at + 8 + length)
            records.append(at..<end)
            at = end
        }
        guard !records.isEmpty else {
            m.byteEdit(&out, corpus: [])
            return
        }
        let r = m.pick(records)
        switch m.below(5) {
        case 0: out[r.lowerBound] = UInt8(m.below(3))
        case 1: put(&out, m.chance(2) ? m.pick(Mutator.interestingIntegers) : UInt64(truncatingIfNeeded: r.count - 8 + m.below(5) - 2),
                    at: r.lowerBound + 4, width: 4)
        case 2 where r.count > 8: out[r.lowerBound + 8 + m.below(r.count - 8)] ^= UInt8(1) << UInt8(m.below(8))
        case 3: out.removeSubrange(r)
        default: out.insert(contentsOf: out[r], at: r.upperBound)
        }
    }

    // MARK: - Running

    static func prepare(_ scratch: String) throws -> FuzzRunner {
        let store = ObjectStore(root: scratch + "/objects")
        try FileManager.default.createDirectory(atPath: store.root, withIntermediateDirectories: true)
        let batch = store.makeBatch()
        for r in references {
            _ = try r.bytes.withUnsafeBytes { raw in
                try store.write(kind: .tensor, dtype: r.dtype, shape: r.shape, source: raw, reference: nil,
                                options: CodecOptions(chunkByteCount: chunk, level: 1), batch: batch)
            }
        }
        try batch.finish()
        let f32 = references[0]
        let dependent = try object(dtype: f32.dtype, shape: f32.shape, bytes: f32.bytes, encoding: .xor,
                                   reference: (inputID, [UInt8](repeating: 0, count: f32.bytes.count)))
        for id in [inputID, dependentID] {
            try FileManager.default.createDirectory(atPath: splitPath(store.path(for: id)).dir, withIntermediateDirectories: true)
        }
        try Data(dependent).write(to: URL(fileURLWithPath: store.path(for: dependentID)))
        let inputPath = store.path(for: inputID)
        return FuzzRunner { input in
            try writeScratch(input, to: inputPath)
            try run(store: store, streamed: slowChecks(input, oneIn: 4))
        }
    }

    static func run(store: ObjectStore, streamed: Bool) throws {
        // Used as a reference, the input is decoded chunk by chunk through its own header, with
        // chunk sizes that need not match its own: this may fail (typed, one line) without
        // making the input itself invalid.
        let asReference = FuzzOutcome.classify(mention: "object") {
            let (_, dependent) = try store.open(dependentID)
            let source = try store.chunkSource(for: inputID)
            try TensorPipeline.decode(dependent, reference: source, expected: nil) { _ in }
        }
        if case let .finding(problem) = asReference { throw FuzzViolation("as a delta reference: \(problem)") }
        let (kind, tensor) = try store.open(inputID)
        let header = tensor.header
        let reference = try header.reference.map { try store.chunkSource(for: $0) }
        var decoded = 0
        do {
            try TensorPipeline.decode(tensor, reference: reference, expected: nil, identity: kind == .blob ? .blob : .tensor) { decoded += $0.count }
        } catch let error as DeltaError {
            throw RepoError.delta(error)
        }
        try require(decoded == header.byteCount, "decoded \(decoded) bytes of \(header.byteCount)")
        // A verified read must notice that the bytes are not what the object's name promises.
        let verified = Result { try store.decode(inputID) { _ in } }
        guard case let .failure(error) = verified, case .corruptObject = error as? RepoError else {
            throw FuzzViolation("a verified read of an object that does not hash to its name gave \(verified)")
        }
        _ = try store.inspect(inputID)
        if streamed {
            // Streamed in three uneven pieces, then verified.
            let reader = try TensorReader(store: store, object: inputID)
            let cuts = [0, header.byteCount / 3, header.byteCount / 3 + 1, header.byteCount].map { min($0, header.byteCount) }
            for k in 0..<3 where cuts[k] < cuts[k + 1] { _ = try reader.bytes(cuts[k]..<cuts[k + 1]) }
            let finished = Result { try reader.finish() }
            if header.byteCount > 0, case .success = finished {
                throw FuzzViolation("TensorReader verified an object that does not hash to its name")
            }
        }
    }
}
