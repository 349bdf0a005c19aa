import Delta

/// What a block-wise method needs for one tensor.
struct BlockMergeInput {
    var context: TensorContext
    var count: Int
    var expertCount: Int
    /// The whole inputs, for methods whose first pass reads them (``BlockMergeMethod/readsInputs(_:parameters:expertCount:)``);
    /// nil for the others, which may then be fed one range at a time. `base` is also nil for
    /// methods that do not use one.
    var base: UnsafePointer<Float>?
    var experts: [UnsafePointer<Float>]?
    /// Whether the blocks will get the merge base.
    var hasBase: Bool
    var parameters: ParameterSet
    var seed: UInt64
    /// Per expert, the commit metrics the method declared (``MergeMethod/expertMetrics(_:)``).
    var expertMetrics: [[String: Double]] = []
    /// The experts' names, for errors (empty when the caller has none).
    var expertNames: [String] = []
}

/// Pass 2 of a method on one tensor: any block of the result, from that block of the inputs and
/// what pass 1 decided. Blocks are independent, so they run in parallel, and a block's result may
/// be stored over one of the inputs once it is computed.
protocol BlockMerger: AnyObject, Sendable {
    /// Writes result elements `r` to `out[0..<r.count]`. `r` is one of ``Kernels/blocks(_:_:)``'s
    /// ranges; `base` and `experts` point at element `r.lowerBound` of each input (`base` is nil
    /// for methods that do not use one).
    func mergeBlock(_ r: Range<Int>, base: UnsafePointer<Float>?, experts: [UnsafePointer<Float>], into out: UnsafeMutablePointer<Float>)
    /// After every block: the kept fractions (sparsifying methods) and the notes for the report.
    func finish() -> (keptFraction: [Double]?, notes: [String: Double])
}

/// A method that merges in two passes: ``prepare(_:)`` decides what it can before any block (from
/// the whole inputs when ``readsInputs(_:parameters:expertCount:)``: thresholds, norms, cosines), the returned
/// ``BlockMerger`` computes the result block by block. The array form of ``MergeMethod/merge(_:)``
/// runs the same code (``mergeArrays(_:)``), so both give the same bits.
protocol BlockMergeMethod: TensorMergeMethod {
    /// Whether ``prepare(_:)`` reads the inputs' values; when it does not, a tensor can be merged
    /// one range at a time without holding it whole.
    func readsInputs(_ context: TensorContext, parameters: ParameterSet, expertCount: Int) -> Bool
    func prepare(_ input: BlockMergeInput) throws -> any BlockMerger
}

extension BlockMergeMethod {
    /// ``MergeMethod/merge(_:)`` for arrays: every block into a new array.
    func mergeArrays(_ input: TensorMergeInput) throws -> TensorMergeOutput {
        let n = input.elementCount
        for e in input.experts where e.count != n {
            throw MergeError.invalidInputs(method: Self.id, problem: "experts of one tensor have different element counts (\(e.count) and \(n))")
        }
        if let base = input.base, base.count != n {
            throw MergeError.invalidInputs(method: Self.id, problem: "the base has \(base.count) elements, the experts \(n)")
        }
        var out = [Float](repeating: 0, count: n)
        let (kept, notes) = try BlockMergeRun.withPointers(input.experts) { experts in
            try BlockMergeRun.withOptionalPointer(input.base) { base in
                let merger = try prepare(BlockMergeInput(context: input.context, count: n, expertCount: experts.count, base: base,
                                                         experts: experts, hasBase: base != nil, parameters: input.parameters, seed: input.seed,
                                                         expertMetrics: input.expertMetrics))
                out.withUnsafeMutableBufferPointer { po in
                    guard n > 0, let o = po.baseAddress else { return }
                    Kernels.blocks(n) { r in
                        merger.mergeBlock(r, base: base.map { $0 + r.lowerBound }, experts: experts.map { $0 + r.lowerBound },
                                          into: o + r.lowerBound)
                    }
                }
                return merger.finish()
            }
        }
        return TensorMergeOutput(values: out, keptFraction: kept, notes: notes)
    }
}

enum BlockMergeRun {
    /// A valid pointer for empty inputs (never read).
    nonisolated(unsafe) static let empty = UnsafePointer<Float>(UnsafeMutablePointer<Float>.allocate(capacity: 1))

    static func withOptionalPointer<T>(_ values: [Float]?, _ body: (UnsafePointer<Float>?) throws -> T) rethrows -> T {
        guard let values else { return try body(nil) }
        return try values.withUnsafeBufferPointer { try body($0.baseAddress ?? empty) }
    }

    /// Runs `body` with a pointer to every array's elements, each valid only inside `body` (the
    /// arrays' buffers are pinned by nested `withUnsafeBufferPointer` calls, one per array).
    static func withPointers<T>(_ arrays: [[Float]], _ body: ([UnsafePointer<Float>]) throws -> T) rethrows -> T {
        var pointers: [UnsafePointer<Float>] = []
        pointers.reserveCapacity(arrays.count)
        func pin(_ i: Int) throws -> T {
            guard i < arrays.count else { return try body(pointers) }
            return try arrays[i].withUnsafeBufferPointer { buffer in
                pointers.append(buffer.baseAddress ?? empty)
                defer { pointers.removeLast() }
                return try pin(i + 1)
            }
        }
        return try pin(0)
    }
}

/// Per-block scratch buffers of Float32, reused across blocks and tensors (a fresh allocation of a
/// block's size costs a page fault per page every time).
enum BlockScratch {
    /// Runs `body` with at least `count` floats; sizes are rounded up to whole blocks so that the
    /// pool hands the same buffers back.
    static func with<T>(floats count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> T) rethrows -> T {
        let rounded = max(1, (count + Kernels.block - 1) / Kernels.block) * Kernels.block
        return try withScratch(rounded * MemoryLayout<Float>.stride) { raw in
            try body(raw.baseAddress!.bindMemory(to: Float.self, capacity: rounded))
        }
    }
}
