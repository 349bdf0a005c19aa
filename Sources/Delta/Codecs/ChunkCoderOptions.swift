/// What the writer may use for the chunks of one tensor, beyond raw and zstd.
public struct ChunkCoderOptions: Sendable, Equatable {
    /// Whether coder 2 (rANS) may be used; the tensor's header must then be version 2.
    public var rans: Bool
    /// Elements per row when the chunk's elements are in the tensor's order (not grouped), so
    /// that blocks of the rANS coder can follow rows.
    public var rowLength: Int?

    public init(rans: Bool, rowLength: Int? = nil) {
        self.rans = rans
        self.rowLength = rowLength
    }

    /// Whether the planes may be coded as a grid of rows and column classes (mode 4 of coder 2),
    /// which only readers of version 3 know: when the chunks follow rows of 64 to 65536 elements.
    public var grid: Bool {
        rans && rowLength.map { RansPlanner.gridColumns.contains($0) } == true
    }

    /// The version of the encoded tensor's header (docs/format.md §4.2): 1 for zstd and raw, 2
    /// when coder 2 may be used, 3 when its grid mode may be.
    public var headerVersion: UInt8 { grid ? 3 : rans ? 2 : 1 }

    /// zstd and raw only: what every reader of version 1 understands.
    public static let zstdOnly = ChunkCoderOptions(rans: false)

    /// Floating-point tensors of at least this many bytes may use rANS: below it, the tables cost
    /// more than they save (docs/benchmarks.md, "Codec choice").
    public static let ransMinimumTensorBytes = 1 << 10
    /// Chunks from this size on are not also tried with zstd when rANS shrinks them: on float
    /// planes zstd never came out smaller there, and trying both would halve the encoding speed.
    public static let zstdTrialBelow = 64 << 10

    /// The writer's choice for a tensor when rANS is asked for (docs/format.md §5.5).
    public static func writer(dtype: DType, shape: Shape, byteCount: Int, encoding: TensorEncoding) -> ChunkCoderOptions {
        guard dtype.isFloatingPoint, byteCount >= ransMinimumTensorBytes else { return .zstdOnly }
        let rows = shape.count >= 2 && encoding != .integerDeltaByExponent ? shape.last : nil
        return ChunkCoderOptions(rans: true, rowLength: rows)
    }
}
