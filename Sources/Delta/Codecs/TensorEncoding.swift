/// How a tensor's bits are turned into a residual before byte-plane splitting.
///
/// Every encoding is a bijection on bit patterns, so decoding is bit-exact for any input,
/// NaN payloads, negative zero and subnormals included.
public enum TensorEncoding: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// No reference. Floating-point words are rotated left by one bit, so the exponent
    /// fills the top byte and the sign joins the lowest mantissa byte.
    case whole = 0
    /// Bitwise XOR with the reference tensor's word.
    case xor = 1
    /// Difference of the words as ordered integers, zigzag-coded (small changes of either
    /// sign give small unsigned numbers). Floats are first mapped to integers that sort like
    /// the float values, so a tiny change across zero or a binade stays a small number.
    case integerDelta = 2
    /// ``integerDelta`` with the elements grouped by the exponent of their reference value
    /// before plane splitting (a stable counting sort the decoder repeats from the reference).
    /// A fine-tune's update is about the same size in absolute terms everywhere, so its size
    /// in units of the last place depends on the reference's exponent; grouping puts alike
    /// residuals together, and zstd's per-block statistics then code them more tightly.
    case integerDeltaByExponent = 3
    /// The reference plus a product of low-rank Float32 factors (lossy: `commit --lowrank`, a
    /// reversible merge's view). See ``LowRankCodec``.
    case lowRank = 4

    public var description: String {
        switch self {
        case .whole: return "whole"
        case .xor: return "xor"
        case .integerDelta: return "int-delta"
        case .integerDeltaByExponent: return "int-delta/exp"
        case .lowRank: return "low-rank"
        }
    }

    /// Whether decoding needs a reference tensor.
    public var needsReference: Bool { self != .whole }

    /// The encodings of the byte-plane codec (every one but ``lowRank``).
    public static let lossless: [TensorEncoding] = [.whole, .xor, .integerDelta, .integerDeltaByExponent]

    /// The delta encoding mrepo uses for a dtype when a reference exists: the ordered-integer
    /// difference grouped by reference exponent for floating-point dtypes, the plain integer
    /// difference for integers, XOR for `BOOL`.
    /// (docs/benchmarks.md, "Codec choice", has the measurements.)
    public static func preferredDelta(for dtype: DType) -> TensorEncoding {
        if dtype.isFloatingPoint { return .integerDeltaByExponent }
        return dtype == .bool ? .xor : .integerDelta
    }

    /// Scratch bytes the codec needs per chunk byte (planes, and the grouped words).
    public static let scratchFactor = 2
}

/// How the planes of one chunk are stored.
public enum ChunkCoder: UInt8, Sendable, CaseIterable {
    /// Planes stored as they are (chosen when compression would not shrink them).
    case raw = 0
    /// Planes concatenated into one zstd frame with a content checksum.
    case zstd = 1
    /// Each plane raw or coded with static 12-bit frequency tables (one, one per block, or one per
    /// byte of the next more significant plane) into one interleaved rANS stream (``RansCodec``).
    /// Only in encoded tensors of version 2 (docs/format.md §5.5).
    case rans = 2
}
