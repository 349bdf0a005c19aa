import Delta
import Testing

@testable import Merge

/// Exact top-k by magnitude and the element-wise building blocks.
@Suite struct KernelsTests {
    /// The reference rule, mergekit's: `torch.argsort(|x|, descending=True)[:k]`, torch's order being
    /// libstdc++'s std::sort (the port in TorchSortOrderTests). No NaN (the port compares floats).
    func referenceTopK(_ x: [Float], k: Int) -> [Bool] {
        let order = ReferenceIntrosort.order(x, descending: true)
        var mask = [Bool](repeating: false, count: x.count)
        for i in order.prefix(max(0, k)) { mask[i] = true }
        return mask
    }

    /// Short vectors (≤ 16 elements) are insertion-sorted, which is stable: among ties the earlier
    /// index wins, as torch gives.
    @Test func topKBreaksShortTiesAsTorch() {
        let x: [Float] = [1, -3, 3, 2, 3, -3]
        #expect(Kernels.topKMask(x, k: 2) == [false, true, true, false, false, false])
        #expect(Kernels.topKMask(x, k: 3) == [false, true, true, false, true, false])
        #expect(Kernels.topKMask(x, k: 5) == [false, true, true, true, true, true])
    }

    /// `torch.argsort(torch.full((100,), 0.25), descending=True)[:37]` is 51…75, 87 and 89…99 (torch
    /// 2.15 on CPU), not the first 37: the introsort's partitions move equal elements.
    @Test func topKOfAllEqualValuesKeepsTorchsChoice() {
        let x = [Float](repeating: -0.25, count: 100)
        let mask = Kernels.topKMask(x, k: 37)
        let torch = Set(Array(51...75) + [87] + Array(89...99))
        #expect(mask == (0..<100).map { torch.contains($0) })
    }

    @Test func topKEdgeCounts() {
        let x: [Float] = [3, 1, 2]
        #expect(Kernels.topKMask(x, k: 0) == [false, false, false])
        #expect(Kernels.topKMask(x, k: -1) == [false, false, false])
        #expect(Kernels.topKMask(x, k: 3) == [true, true, true])
        #expect(Kernels.topKMask(x, k: 10) == [true, true, true])
        #expect(Kernels.topKMask([], k: 1) == [])
    }

    /// Signs do not matter (−0 and +0 tie), NaN counts as the largest magnitude, infinities come next.
    @Test func topKSpecialValues() {
        let x: [Float] = [-0.0, 0.0, .nan, -.infinity, 1, .infinity]
        #expect(Kernels.topKMask(x, k: 1) == [false, false, true, false, false, false])
        #expect(Kernels.topKMask(x, k: 3) == [false, false, true, true, false, true])
        #expect(Kernels.topKMask(x, k: 5) == [true, false, true, true, true, true])
    }

    /// Random inputs, including many values that share their top 16 bits (the second radix pass)
    /// and exact ties, against torch's order (the std::sort port); the count kept is always exactly k.
    @Test(arguments: [1, 2, 17, 1000, 70_000])
    func topKMatchesTheReference(n: Int) {
        var rng = SeededRandom(seed: UInt64(n))
        var x = randomValues(n, seed: UInt64(n) &+ 100)
        for i in stride(from: 0, to: n, by: 3) {
            // 1 + tiny steps: one high-16-bit bucket, distinct low bits, and repeated values.
            x[i] = (rng.uniform() < 0.5 ? -1 : 1) * (1 + Float(Int(rng.uniform() * 50)) * 0x1p-23)
        }
        for k in Set([0, 1, n / 3, n / 2, n - 1, n].filter { $0 >= 0 && $0 <= n }).sorted() {
            let mask = Kernels.topKMask(x, k: k)
            #expect(mask.filter { $0 }.count == k, "n \(n) k \(k)")
            #expect(mask == referenceTopK(x, k: k), "n \(n) k \(k)")
        }
    }

    @Test func reductionsAccumulateInDouble() {
        // 2²⁴ + 1 is not a Float; a Float accumulator would lose the ones.
        let ones = [Float](repeating: 1, count: (1 << 24) + 3)
        #expect(Kernels.dot(ones, ones) == Double((1 << 24) + 3))
        #expect(Kernels.l1(ones.map { -$0 }) == Double((1 << 24) + 3))
        #expect(Kernels.norm([3, 4]) == 5)
        #expect(Kernels.l1([1, -2, 3]) == 6)
        #expect(Kernels.dot([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]) == 35)
    }

    /// add and subtract run in parallel blocks of 2¹⁶; a length that is not a multiple checks the seams.
    @Test func addAndSubtractAcrossBlocks() {
        let n = 3 * Kernels.block + 17
        let a = randomValues(n, seed: 1), b = randomValues(n, seed: 2)
        let d = Kernels.subtract(a, b), s = Kernels.add(a, b)
        #expect(d.count == n && s.count == n)
        #expect((0..<n).allSatisfy { d[$0] == a[$0] - b[$0] && s[$0] == a[$0] + b[$0] })
    }

    @Test func sumOfVectors() {
        let vectors: [[Float]] = [[1, 2, 3], [10, 20, 30], [-1, 0, 0.5]]
        #expect(Kernels.sum(vectors, count: 3) == [10, 22, 33.5])
    }
}
