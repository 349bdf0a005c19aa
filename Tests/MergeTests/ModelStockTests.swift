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
}
