import Foundation
import Testing

@testable import Merge

/// `slerp`: spherical interpolation of two experts on the flattened tensor.
@Suite struct SLERPTests {
    @Test func sphericalInterpolationSection7() throws {
        let s = Section7.self
        let out = try merge("slerp", ["t": .number(0.3)], base: nil, [s.base, s.model1], context: s.context)
        expectClose(out.values, [0.2718735, -0.2467481, 0.3866221, -0.0989996, 0.5508704, -0.402371])
        #expect(out.metrics.notes["t"] == 0.3)
    }

    /// §7: a colinear pair (model = 2·base) falls back to linear interpolation.
    @Test func colinearFallsBackToLerpSection7() throws {
        let s = Section7.self
        let out = try merge("slerp", ["t": .number(0.3)], base: nil, [s.base, s.base.map { 2 * $0 }], context: s.context)
        expectClose(out.values, [0.13, -0.26, 0.39, 0.0, 0.65, -0.65])
    }

    @Test func antipodalPairsAlsoInterpolateLinearly() throws {
        let v = randomValues(64, seed: 1)
        let out = try merge("slerp", ["t": .number(0.25)], base: nil, [v, v.map { -$0 }])
        expectClose(out.values, v.map { 0.75 * Double($0) - 0.25 * Double($0) })
    }

    @Test func endpointsAreTheExperts() throws {
        let a = randomValues(100, seed: 2), b = randomValues(100, seed: 3)
        #expect(sameBits(try merge("slerp", ["t": .number(0)], base: nil, [a, b]).values, a))
        #expect(sameBits(try merge("slerp", ["t": .number(1)], base: nil, [a, b]).values, b))
    }

    /// Identical experts give the expert (the colinear branch).
    @Test func identicalExpertsGiveTheExpert() throws {
        let a = randomValues(100, seed: 4)
        expectClose(try merge("slerp", ["t": .number(0.6)], base: nil, [a, a]).values, a)
    }

    /// The coefficients apply to the original vectors: orthogonal unit-free inputs of different
    /// norms get sin((1−t)θ)/sin θ and sin(tθ)/sin θ with θ = π/2.
    @Test func coefficientsApplyToUnnormalizedVectors() throws {
        let out = try merge("slerp", ["t": .number(0.5)], base: nil, [[3, 0], [0, 10]])
        let c = sin(Double.pi / 4)
        expectClose(out.values, [3 * c, 10 * c])
    }

    /// mergekit's zero-norm guard: a zero vector is left unnormalised, so the angle is π/2.
    @Test func zeroVectorUsesTheRightAngle() throws {
        let v = randomValues(32, seed: 5)
        let out = try merge("slerp", ["t": .number(0.5)], base: nil, [[Float](repeating: 0, count: 32), v])
        expectClose(out.values, v.map { sin(Double.pi / 4) * Double($0) })
    }

    /// t as a gradient over depth: layer 0 of 3 is at t = 0, layer 2 at t = 1.
    @Test func gradientOverDepth() throws {
        let a = randomValues(50, seed: 6), b = randomValues(50, seed: 7)
        let t = ParameterValue.gradient([0, 1])
        let first = try merge("slerp", ["t": t], base: nil, [a, b],
                              context: TensorContext(name: "model.layers.0.mlp.weight", shape: [50], layerCount: 3))
        let last = try merge("slerp", ["t": t], base: nil, [a, b],
                             context: TensorContext(name: "model.layers.2.mlp.weight", shape: [50], layerCount: 3))
        let middle = try merge("slerp", ["t": t], base: nil, [a, b],
                               context: TensorContext(name: "model.layers.1.mlp.weight", shape: [50], layerCount: 3))
        #expect(sameBits(first.values, a))
        #expect(sameBits(last.values, b))
        #expect(middle.metrics.notes["t"] == 0.5)
    }

    /// §0.5: per-module schedules. For a 32-layer model, layer 8 has position 8/31 and the attention
    /// filter's [0, 0.5, 0.3, 0.7, 1] gives t = 0.5 − 0.2/31 ≈ 0.4935; the MLP gets 0.5 + 0.2/31; any
    /// other tensor the unconditioned 0.5.
    @Test func perModuleScheduleSection05() throws {
        let t = ParameterValue.conditional([
            ParameterCondition(filter: "self_attn", value: .gradient([0, 0.5, 0.3, 0.7, 1])),
            ParameterCondition(filter: "mlp", value: .gradient([1, 0.5, 0.7, 0.3, 0])),
            ParameterCondition(filter: nil, value: .number(0.5)),
        ])
        let a = randomValues(16, seed: 8), b = randomValues(16, seed: 9)
        func tAt(_ name: String) throws -> Double? {
            try merge("slerp", ["t": t], base: nil, [a, b], context: TensorContext(name: name, shape: [16], layerCount: 32))
                .metrics.notes["t"]
        }
        let attention = try #require(try tAt("model.layers.8.self_attn.q_proj.weight"))
        #expect(abs(attention - 0.4935) < 5e-5)
        #expect(abs(attention - (0.5 - 0.2 / 31)) < 1e-12)
        let mlp = try #require(try tAt("model.layers.8.mlp.up_proj.weight"))
        #expect(abs(mlp - (0.5 + 0.2 / 31)) < 1e-12)
        #expect(try tAt("model.layers.8.input_layernorm.weight") == 0.5)
        // Outside blocks the position is 0 (mergekit ≥ 0.1.2): the first entry of the attention list.
        #expect(try tAt("model.self_attn_pool.weight") == 0)
    }
}
