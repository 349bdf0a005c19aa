import Synchronization

extension ModelStock {
    /// Model Stock's first pass: per row (the whole tensor unless `filter_wise`), the Gram table of
    /// the task vectors, G[i][j] = τᵢ·τⱼ with τᵢ = θᵢ − θ₀ formed element by element in Float32,
    /// and from it the row's t.
    ///
    /// Fed the elements in order, in one call (whole inputs) or chunk by chunk (``Passes``). Every
    /// sum keeps four Double lanes over the row's elements in groups of four from the row's start
    /// (element i of the row in lane i mod 4, the row's last n mod 4 elements in lane 0), reduced as
    /// (l₀ + l₁) + (l₂ + l₃) at the row's end. A call may end inside a row only at a multiple of four
    /// elements from the row's start, so how the elements are split between calls changes nothing.
    /// One pass computes every pair's sum from the same Float32 differences (each pair as its own
    /// dot product of differences would).
    final class Gram: @unchecked Sendable {
        let rows: Int
        let width: Int
        let n: Int
        let k: Int
        /// The row being summed, and the first element not yet fed.
        private var row = 0
        private var position = 0
        /// Four lanes per pair (i ≤ j), in the order (0,0), (0,1), …, (0,k−1), (1,1), …
        private let lanes: UnsafeMutablePointer<SIMD4<Double>>
        private let deltas: UnsafeMutablePointer<SIMD4<Double>>
        private var ts: [Float]
        private var tSum = 0.0

        init(context: TensorContext, parameters: ParameterSet, count n: Int, expertCount k: Int) {
            rows = max((parameters.flag("filter_wise", context) ?? false) && context.shape.count >= 2 ? context.shape[0] : 1, 1)
            width = n / rows
            self.n = n
            self.k = k
            lanes = .allocate(capacity: max(k * (k + 1) / 2, 1))
            lanes.initialize(repeating: SIMD4<Double>(), count: max(k * (k + 1) / 2, 1))
            deltas = .allocate(capacity: max(k, 1))
            deltas.initialize(repeating: SIMD4<Double>(), count: max(k, 1))
            ts = [Float](repeating: 0, count: rows)
        }

        deinit {
            lanes.deallocate()
            deltas.deallocate()
        }

        /// Whether the rows can be fed in chunks that start at multiples of `chunkElements`: every
        /// row starts at a multiple of four elements (or there is one row).
        static func splits(rows: Int, width: Int, chunkElements: Int) -> Bool {
            rows == 1 || (width % 4 == 0 && chunkElements % 4 == 0)
        }

        private func rowRange(_ r: Int) -> Range<Int> { (r * width)..<(r == rows - 1 ? n : (r + 1) * width) }

        /// Feeds elements `elements` (the next ones: `elements.lowerBound` is where the last call
        /// ended); pointers at `elements.lowerBound`.
        func feed(_ elements: Range<Int>, base: UnsafePointer<Float>, experts: [UnsafePointer<Float>]) {
            precondition(elements.lowerBound == position, "Model Stock's sums are fed in order")
            var j = elements.lowerBound
            while j < elements.upperBound {
                let range = rowRange(row)
                let end = min(elements.upperBound, range.upperBound)
                let local = j - elements.lowerBound
                let rowEnds = end == range.upperBound
                precondition((j - range.lowerBound) % 4 == 0 && (rowEnds || (end - range.lowerBound) % 4 == 0),
                              "Model Stock's sums are split at groups of four")
                // Whole groups of four, and at the row's end its last elements in lane 0.
                Kernels.addPairDots(count: end - j, base: base + local, experts: experts.map { $0 + local }, lanes: lanes, deltas: deltas)
                if rowEnds { finishRow() }
                j = end
            }
            position = elements.upperBound
        }

        /// The row's t from its Gram table, then the next row.
        private func finishRow() {
            var gram = [Double](repeating: 0, count: k * k)
            var p = 0
            for a in 0..<k {
                for b in a..<k {
                    let s = lanes[p]
                    gram[a * k + b] = (s[0] + s[1]) + (s[2] + s[3])
                    lanes[p] = SIMD4<Double>()
                    p += 1
                }
            }
            var cosSum = 0.0, pairs = 0.0
            for a in 0..<k {
                for b in (a + 1)..<k {
                    let denominator = max(gram[a * k + a].squareRoot() * gram[b * k + b].squareRoot(), 1e-6)
                    cosSum += min(max(gram[a * k + b] / denominator, -1), 1)
                    pairs += 1
                }
            }
            let cos = cosSum / pairs
            let kd = Double(k)
            // At 1 + (N−1)·cos = 0 (e.g. two opposite task vectors) t has no finite value; keep the
            // base there (t = 0), as mergekit ≥ 0.1.5 does, instead of returning NaN or huge values.
            let divisor = 1 + (kd - 1) * cos
            let t = abs(divisor) < 1e-6 ? 0 : kd * cos / divisor
            tSum += t
            ts[row] = Float(t)
            row += 1
        }

        /// The second pass, once every element was fed.
        func merger() -> Merger {
            precondition(row == rows, "every row is summed")
            return Merger(ts: ts, width: width, t: tSum / Double(rows))
        }
    }

    /// Model Stock over a tensor fed chunk by chunk, in element order (``ChunkPasses``): one pass
    /// sums the Gram tables, then the tensor is merged a range at a time (its inputs decoded again),
    /// without holding it whole.
    final class Passes: ChunkPasses {
        let plan: MergePlan
        let context: TensorContext
        let n: Int
        let expertCount: Int
        private let gram: Mutex<Gram>
        private let done = Atomic<Bool>(false)

        init(plan: MergePlan, context: TensorContext, count n: Int, expertCount: Int) {
            self.plan = plan
            self.context = context
            self.n = n
            self.expertCount = expertCount
            gram = Mutex(Gram(context: context, parameters: plan.parameterSet, count: n, expertCount: expertCount))
        }

        var needsPass: Bool { !done.load(ordering: .acquiring) }
        var ordered: Bool { true }
        /// One pass, then the merge: the inputs are decoded twice rather than spilled.
        var spillPays: Bool { false }

        func observe(_ elements: Range<Int>, base: UnsafePointer<Float>, experts: [UnsafePointer<Float>]) {
            gram.withLock { $0.feed(elements, base: base, experts: experts) }
        }

        func endPass() { done.store(true, ordering: .releasing) }

        func stream() throws -> TensorStream {
            let merger = gram.withLock { $0.merger() }
            return try TensorStream(plan: plan, context: context, count: n, expertCount: expertCount, hasBase: true,
                                    wholeBase: nil, wholeExperts: nil, prepared: merger)
        }

        /// Its Gram tables are a few numbers per row: nothing worth freeing early.
        func release() {}
    }
}

extension ModelStock {
    /// Model Stock's passes for a tensor of `count` elements stored in chunks of `chunkElements`,
    /// or nil when the plan is not Model Stock, rescales whole task vectors first (`--balance norm`),
    /// or its rows cannot be summed chunk by chunk.
    public static func passes(plan: MergePlan, context: TensorContext, count n: Int, expertCount: Int, chunkElements: Int) -> (any ChunkPasses)? {
        guard n > 0, plan.instance is ModelStock, plan.recipe.balance != .norm else { return nil }
        let rows = max((plan.parameterSet.flag("filter_wise", context) ?? false) && context.shape.count >= 2 ? context.shape[0] : 1, 1)
        guard Gram.splits(rows: rows, width: n / rows, chunkElements: chunkElements) else { return nil }
        return Passes(plan: plan, context: context, count: n, expertCount: expertCount)
    }
}
