import Delta
import Testing

@testable import Merge

/// The TIES block merge's lane kernels give the scalar loops' bits.
@Suite struct TaskArithmeticLanesTests {
    typealias TIES = GeneralizedTaskArithmetic<TIESConfig>

    /// The disjoint mean, eight lanes at a time: zero and negative-zero divisors, λ ≠ 1, a short tail.
    @Test func disjointMeanMatchesTheScalarLoop() {
        var rng = SeededRandom(seed: 5)
        let n = 8 * 37 + 5
        let acc = (0..<n).map { _ in Float(rng.uniform() * 2 - 1) }
        let div = (0..<n).map { j -> Float in j % 5 == 0 ? 0 : (j % 7 == 0 ? -0.0 : Float(rng.uniform() * 3)) }
        let base = (0..<n).map { _ in Float(rng.uniform() - 0.5) }
        for (normalize, lambda) in [(true, Float(1)), (true, Float(0.7)), (false, Float(1)), (false, Float(1.3))] {
            var expected = [Float](repeating: 0, count: n), got = expected
            for j in 0..<n {
                var mixed = normalize ? acc[j] / (div[j] == 0 ? 1 : div[j]) : acc[j]
                if lambda != 1 { mixed *= lambda }
                expected[j] = base[j] + mixed
            }
            got.withUnsafeMutableBufferPointer { out in
                TIES.disjointMean(acc, div, base: base, into: out.baseAddress!, count: n, normalize: normalize, lambda: lambda)
            }
            #expect(sameBits(got, expected), "normalize \(normalize), λ \(lambda)")
        }
    }

    /// The tied elements, found eight lanes at a time, are settled in index order as the scalar loop
    /// settles them: by the choice bits, or the first `need` when there are none.
    @Test func tiedElementsAreSettledInIndexOrder() {
        var rng = SeededRandom(seed: 9)
        let n = 8 * 50 + 3
        let steps: [Float] = [0, 0.25, -0.25, 0.5]
        let base = (0..<n).map { _ in Float(rng.uniform() * 2 - 1) }
        let x = base.map { $0 + steps[Int(rng.next() % 4)] }
        // The magnitude of the first nonzero delta: a value many elements share.
        let t = (0..<n).lazy.map { (x[$0] - base[$0]).bitPattern & 0x7FFF_FFFF }.first { $0 != 0 }!
        let equal = (0..<n).filter { (x[$0] - base[$0]).bitPattern & 0x7FFF_FFFF == t }.count
        #expect(equal > 16)
        let words: [UInt64] = (0..<((equal + 200 + 63) / 64)).map { _ in rng.next() }
        for chosen in [true, false] {
            words.withUnsafeBufferPointer { w in
                var c = DeltaMask.Cursor()
                c.threshold1 = t
                c.rankBase1 = 200
                c.need1 = 230
                c.chosen1 = chosen ? w.baseAddress : nil
                var expected = [Float](repeating: 0, count: n), got = expected
                var scalar = c
                for j in 0..<n {
                    let d = x[j] - base[j]
                    guard d.bitPattern & 0x7FFF_FFFF == t else { continue }
                    if DeltaMask.chosen(scalar.chosen1, rank: scalar.rankBase1, need: scalar.need1) { expected[j] = 0.7 * (d * 1.5) }
                    scalar.rankBase1 += 1
                }
                got.withUnsafeMutableBufferPointer { v in
                    TIES.settleEqual(x, base, into: v.baseAddress!, count: n, equal: equal, weight: 0.7, scale: 1.5, cursor: &c)
                }
                #expect(sameBits(got, expected), "chosen bits \(chosen)")
                #expect(c.rankBase1 == scalar.rankBase1)
            }
        }
    }
}
