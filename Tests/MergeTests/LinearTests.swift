import Testing

@testable import Merge

/// `linear`: the weighted average (model soup) of the experts themselves.
@Suite struct LinearTests {
    @Test func weightedAverageSection7() throws {
        let s = Section7.self
        let out = try merge("linear", experts: weighted(s.weights), base: nil, s.experts, context: s.context)
        expectClose(out.values, [0.4111111, -0.1111111, 0.4277778, -0.2277778, 0.4288889, -0.0555556])
    }

    @Test func withoutNormalizeItIsTheWeightedSum() throws {
        let s = Section7.self
        let out = try merge("linear", ["normalize": .flag(false)], experts: weighted(s.weights), base: nil, s.experts)
        let expected = (0..<6).map { j in (0..<3).map { s.weights[$0] * Double(s.experts[$0][j]) }.reduce(0, +) }
        expectClose(out.values, expected)
    }

    @Test func defaultWeightsGiveTheUniformSoup() throws {
        let s = Section7.self
        let out = try merge("linear", base: nil, s.experts)
        expectClose(out.values, (0..<6).map { j in s.experts.map { Double($0[j]) }.reduce(0, +) / 3 })
    }

    /// The base is not an input of linear: giving one changes nothing.
    @Test func theBaseIsIgnored() throws {
        let s = Section7.self
        let without = try merge("linear", experts: weighted(s.weights), base: nil, s.experts)
        let with = try merge("linear", experts: weighted(s.weights), base: s.base, s.experts)
        #expect(sameBits(without.values, with.values))
    }

    @Test func identicalExpertsGiveTheExpert() throws {
        let e = randomValues(500, seed: 1)
        let out = try merge("linear", experts: weighted([0.1, 3, 0.7]), base: nil, [e, e, e])
        expectClose(out.values, e)
    }

    @Test func oneExpertGivesTheExpert() throws {
        let e = randomValues(100, seed: 2)
        #expect(sameBits(try merge("linear", base: nil, [e]).values, e))
    }

    @Test func expertOrderDoesNotMatter() throws {
        let es = (0..<4).map { randomValues(300, seed: 10 + UInt64($0)) }
        let ws = [0.4, 1.2, 0.25, 2.0]
        let forward = try merge("linear", experts: weighted(ws), base: nil, es)
        let order = [3, 1, 0, 2]
        let permuted = try merge("linear", experts: weighted(order.map { ws[$0] }), base: nil, order.map { es[$0] })
        expectClose(permuted.values, forward.values)
    }

    /// §3.1: with a base, the soup equals task arithmetic with normalize=true and the same weights.
    @Test func equalsNormalizedTaskArithmetic() throws {
        let s = Section7.self
        let soup = try merge("linear", experts: weighted(s.weights), base: nil, s.experts)
        let ta = try merge("task_arithmetic", ["normalize": .flag(true)], experts: weighted(s.weights), base: s.base, s.experts)
        expectClose(ta.values, soup.values)
    }

    /// mergekit divides by Σw without a guard (inf/NaN); mrepo refuses instead.
    @Test func weightsSummingToZeroCannotBeAveraged() {
        let error = mergeError { _ = try merge("linear", experts: weighted([1, -1]), base: nil, [[1], [2]]) }
        #expect(error?.description == "linear: the weights sum to 0; an average is undefined (use normalize=false)")
        #expect((try? merge("linear", ["normalize": .flag(false)], experts: weighted([1, -1]), base: nil, [[1], [2]]))?.values == [-1])
        // Weights that sum to 0 at some tensors only (a filter) fail there, naming the tensor.
        let filtered = ParameterValue.conditional([ParameterCondition(filter: "mlp", value: .number(-1)), ParameterCondition(filter: nil, value: .number(1))])
        let atTensor = mergeError { _ = try merge("linear", experts: [["weight": .number(1)], ["weight": filtered]], base: nil, [[1], [2]]) }
        #expect(atTensor?.description == "tensor 'model.layers.0.mlp.weight': linear: the weights sum to 0 here; an average is undefined (use normalize=false)")
    }
}
