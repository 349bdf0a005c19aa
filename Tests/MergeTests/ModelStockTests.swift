import Testing

@testable import Merge

/// `model_stock`: t = N·cos / (1 + (N−1)·cos) between the base and the experts' average.
@Suite struct ModelStockTests {
    /// §7: base + 3 experts, cos = 0.2128291, t = 0.4478544.
    @Test func section7() throws {
        let s = Section7.self
        let out = try merge("model_stock", base: s.base, s.experts, context: s.context)
        expectClose(out.values, [0.2044994, -0.1402861, 0.3597139, -0.0821066, 0.4358075, -0.313394])
        let t = try #require(out.metrics.notes["t"])
        #expect(abs(t - 0.4478544) < 1e-6)
        // Back from t to the mean pairwise cosine: cos = t / (N − (N−1)·t).
        #expect(abs(t / (3 - 2 * t) - 0.2128291) < 1e-6)
    }

    @Test func identicalExpertsGiveTheExpert() throws {
        let base = randomValues(200, seed: 1), e = randomValues(200, seed: 2)
        let out = try merge("model_stock", base: base, [e, e, e])
        expectClose(out.values, e)
        #expect(abs((out.metrics.notes["t"] ?? 0) - 1) < 1e-9)
    }

    @Test func zeroTaskVectorsGiveTheBase() throws {
        let base = randomValues(200, seed: 3)
        let out = try merge("model_stock", base: base, [base, base])
        #expect(sameBits(out.values, base))
        #expect(out.metrics.notes["t"] == 0)
    }

    /// Orthogonal task vectors give t = 0: the base.
    @Test func orthogonalTaskVectorsGiveTheBase() throws {
        let base: [Float] = [1, 2, 3, 4]
        let out = try merge("model_stock", base: base, [[2, 2, 3, 4], [1, 3, 3, 4]])
        #expect(out.values == base)
    }

    /// When 1 + (N−1)·cos vanishes (two opposite task vectors: cos = −1), t has no finite value.
    /// mergekit ≥ 0.1.5 keeps the base for that tensor (t = 0); mrepo does the same instead of
    /// returning NaN.
    @Test func singularDenominatorKeepsTheBase() throws {
        let base = randomValues(64, seed: 4), tau = randomValues(64, seed: 5, scale: 0.1)
        let up = zip(base, tau).map { $0 + $1 }, down = zip(base, tau).map { $0 - $1 }
        let out = try merge("model_stock", base: base, [up, down])
        #expect(out.values.allSatisfy { $0.isFinite })
        #expect(sameBits(out.values, base))
        #expect(out.metrics.notes["t"] == 0)
    }

    /// filter_wise: t per row. Row 0's task vectors are colinear (t = 1: the experts' mean), row 1's
    /// are orthogonal (t = 0: the base); the note reports the mean t.
    @Test func filterWiseComputesTPerRow() throws {
        let base: [Float] = [0, 0, 0, 0, 0, 0]
        let e1: [Float] = [1, 0, 0, 0, 1, 0], e2: [Float] = [2, 0, 0, 0, 0, 1]
        let ctx = TensorContext(name: "model.layers.0.mlp.weight", shape: [2, 3], layerCount: 1)
        let rows = try merge("model_stock", ["filter_wise": .flag(true)], base: base, [e1, e2], context: ctx)
        expectClose(rows.values, [1.5, 0, 0, 0, 0, 0])
        #expect(abs((rows.metrics.notes["t"] ?? 0) - 0.5) < 1e-9)
        // Per tensor: cos = 2/√10, t = 2c/(1 + c).
        let whole = try merge("model_stock", base: base, [e1, e2], context: ctx)
        let c = 2 / (10.0).squareRoot(), t = 2 * c / (1 + c)
        expectClose(whole.values, [1.5 * t, 0, 0, 0, 0.5 * t, 0.5 * t])
    }

    /// A 1-D tensor with filter_wise is one row, as in mergekit.
    @Test func filterWiseOnVectorsIsPerTensor() throws {
        let s = Section7.self
        let ctx = TensorContext(name: "model.norm.weight", shape: [6], layerCount: 1)
        let a = try merge("model_stock", ["filter_wise": .flag(true)], base: s.base, s.experts, context: ctx)
        let b = try merge("model_stock", base: s.base, s.experts, context: ctx)
        #expect(sameBits(a.values, b.values))
    }

    @Test func expertOrderDoesNotMatter() throws {
        let s = Section7.self
        let forward = try merge("model_stock", base: s.base, s.experts)
        let reversed = try merge("model_stock", base: s.base, s.experts.reversed())
        expectClose(reversed.values, forward.values)
    }

    /// t as Model Stock defined it before its sums were fed in chunks: one dot product of
    /// differences per pair over each row (``Kernels/dotOfDifferences(_:_:_:count:)``).
    static func pairwiseT(base: [Float], experts: [[Float]], rows: Int) -> Double {
        let n = base.count, width = n / rows, k = experts.count
        var tSum = 0.0
        for r in 0..<rows {
            let lo = r * width, hi = r == rows - 1 ? n : (r + 1) * width
            var cosSum = 0.0, pairs = 0.0
            func dot(_ a: Int, _ b: Int) -> Double {
                experts[a].withUnsafeBufferPointer { pa in experts[b].withUnsafeBufferPointer { pb in base.withUnsafeBufferPointer { pz in
                    Kernels.dotOfDifferences(pa.baseAddress! + lo, pb.baseAddress! + lo, pz.baseAddress! + lo, count: hi - lo)
                } } }
            }
            for a in 0..<k {
                for b in (a + 1)..<k {
                    cosSum += min(max(dot(a, b) / max(dot(a, a).squareRoot() * dot(b, b).squareRoot(), 1e-6), -1), 1)
                    pairs += 1
                }
            }
            let cos = cosSum / pairs, kd = Double(k)
            let divisor = 1 + (kd - 1) * cos
            tSum += abs(divisor) < 1e-6 ? 0 : kd * cos / divisor
        }
        return tSum / Double(rows)
    }

    /// The Gram tables summed chunk by chunk, in order (``ModelStock/Passes``), give the whole-input
    /// merge bit for bit, whose t is the pairwise dot products' (3 experts: the unrolled sums; 4:
    /// the general ones; rows with a tail of fewer than four elements; filter_wise rows).
    @Test(arguments: [(3, 1), (4, 1), (3, 96), (2, 48)])
    func gramFedInChunksGivesTheWholeInputMerge(experts k: Int, rows: Int) throws {
        let n = rows == 1 ? 3 * 65536 + 7 : rows * 2060
        let base = randomValues(n, seed: 11)
        let experts = (0..<k).map { e in zip(base, randomValues(n, seed: 20 + UInt64(e), scale: 0.01)).map { $0 + $1 } }
        let ctx = TensorContext(name: "model.layers.0.mlp.weight", shape: rows == 1 ? [n] : [rows, n / rows], layerCount: 1)
        let parameters: [String: ParameterValue] = rows == 1 ? [:] : ["filter_wise": .flag(true)]
        let whole = try merge("model_stock", parameters, base: base, experts, context: ctx)
        let plan = try MergePlan(MergeRecipe(method: "model_stock", parameters: parameters, experts: (0..<k).map { "e\($0)" }))
        let chunk = 65536
        let passes = try #require(ModelStock.passes(plan: plan, context: ctx, count: n, expertCount: k, chunkElements: chunk))
        #expect(passes.ordered)
        var out = [Float](repeating: 0, count: n)
        // Inputs at stable addresses for the whole test.
        let owned = experts.map { e in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: n)
            p.initialize(from: e, count: n)
            return p
        }
        defer { for p in owned { p.deallocate() } }
        let ps = owned.map { UnsafePointer($0) }
        try base.withUnsafeBufferPointer { b in
            var start = 0
            while passes.needsPass {
                while start < n {
                    let end = min(n, start + chunk)
                    passes.observe(start..<end, base: b.baseAddress! + start, experts: ps.map { $0 + start })
                    start = end
                }
                passes.endPass()
            }
            let stream = try passes.stream()
            out.withUnsafeMutableBufferPointer { o in
                stream.mergeRange(0..<n, base: b.baseAddress!, experts: ps, into: o.baseAddress!)
            }
            #expect(stream.finish().notes["t"] == whole.metrics.notes["t"])
        }
        #expect(sameBits(out, whole.values))
        #expect(whole.metrics.notes["t"] == Self.pairwiseT(base: base, experts: experts, rows: rows))
    }

    /// Rows that do not start at a multiple of four elements cannot be summed chunk by chunk: the
    /// tensor is merged whole.
    @Test func rowsOffTheGroupsOfFourAreMergedWhole() throws {
        let ctx = TensorContext(name: "model.layers.0.mlp.weight", shape: [1000, 131], layerCount: 1)
        let plan = try MergePlan(MergeRecipe(method: "model_stock", parameters: ["filter_wise": .flag(true)], experts: ["a", "b"]))
        #expect(ModelStock.passes(plan: plan, context: ctx, count: 131_000, expertCount: 2, chunkElements: 65536) == nil)
        let perTensor = try MergePlan(MergeRecipe(method: "model_stock", experts: ["a", "b"]))
        #expect(ModelStock.passes(plan: perTensor, context: ctx, count: 131_000, expertCount: 2, chunkElements: 65536) != nil)
    }
}
