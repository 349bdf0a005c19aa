import Delta
import Testing

@testable import Merge

/// The sparsifiers of mergekit's `sparsify.py`: magnitude, Bernoulli (DARE), magnitude outliers
/// (Breadcrumbs) and DELLA's MagPrune, with the L1 rescale.
@Suite struct SparsifyTests {
    static let outlierInput: [Float] = [0.9, -0.05, 0.3, -0.7, 0.01, 0.45, -0.2, 0.6, -0.02, 0.15]

    func apply(_ method: Sparsifier, _ x: [Float], density: Double, gamma: Double = 0.01, epsilon: Double = 0.15,
               rows: Int = 1, rescale: Bool = false, seed: UInt64 = 0) throws -> ([Float], Double) {
        try Sparsify.apply(method, x, density: density, gamma: gamma, epsilon: epsilon, rows: rows,
                           rescale: rescale, seed: seed, name: "t")
    }

    // MARK: - Magnitude (TIES trim)

    @Test func magnitudeKeepsTheLargestFloorOfDensityTimesN() throws {
        let (out, kept) = try apply(.magnitude, Self.outlierInput, density: 0.35)
        #expect(out == [0.9, 0, 0, -0.7, 0, 0, 0, 0.6, 0, 0])
        #expect(kept == 0.3)
    }

    @Test func densityOneReturnsTheInputUnchanged() throws {
        for method in [Sparsifier.magnitude, .bernoulli, .magnitudeOutliers, .dellaMagprune] {
            let (out, kept) = try apply(method, Self.outlierInput, density: 1, gamma: 0.5, rescale: true)
            #expect(sameBits(out, Self.outlierInput), "\(method)")
            #expect(kept == 1)
        }
    }

    // MARK: - Magnitude outliers (Breadcrumbs)

    /// §7: ρ = 0.5, γ = 0.2 on ten values: N = 10, target 5, nTop 2, nBot 3.
    @Test func magnitudeOutliersSection7() throws {
        let (out, kept) = try apply(.magnitudeOutliers, Self.outlierInput, density: 0.5, gamma: 0.2)
        #expect(out == [0, 0, 0.3, 0, 0, 0.45, -0.2, 0.6, 0, 0.15])
        #expect(kept == 0.5)
    }

    /// γ = 0.01 on ten values gives nTop = 0. mergekit 0.1.4 slices `I[nBot:-0]`, which is empty, and
    /// zeroes the whole delta (§7 lists "all zeros"). mrepo deliberately keeps `I[nBot..<N]`: the
    /// five largest magnitudes. (mergekit 0.1.5 fixed the slice and agrees with mrepo.)
    @Test func magnitudeOutliersWithoutOutliersKeepsTheTop() throws {
        let (out, kept) = try apply(.magnitudeOutliers, Self.outlierInput, density: 0.5, gamma: 0.01)
        #expect(out == [0.9, 0, 0.3, -0.7, 0, 0.45, 0, 0.6, 0, 0])
        #expect(out.contains { $0 != 0 }, "not mergekit 0.1.4's all-zero quirk")
        #expect(kept == 0.5)
    }

    /// When density + γ > 1, fewer outliers are dropped so that ⌊ρN⌋ elements survive.
    @Test func magnitudeOutliersShrinksTheOutlierCutToKeepDensity() throws {
        // N = 10, target 9, nTop 2, nBot −1 → nTop 1, nBot 0: only the single largest (0.9) goes.
        let (out, _) = try apply(.magnitudeOutliers, Self.outlierInput, density: 0.9, gamma: 0.2)
        #expect(out == [0, -0.05, 0.3, -0.7, 0.01, 0.45, -0.2, 0.6, -0.02, 0.15])
    }

    // MARK: - Ties at a threshold (torch's order)

    /// Magnitudes of few levels, either sign, over several blocks of ``Kernels/block`` (no zeros, so
    /// an output element is nonzero exactly when kept).
    static func tiedVector(_ n: Int, levels: [Float], seed: UInt64) -> [Float] {
        var rng = SeededRandom(seed: seed)
        return (0..<n).map { _ in levels[Int(rng.uniform() * Double(levels.count))] * (rng.uniform() < 0.5 ? -1 : 1) }
    }

    /// TIES' trim keeps `argsort(|δ|, descending=True)[:k]` as torch orders it (the std::sort port),
    /// in the rescale pass and the apply pass alike, and the L1 rescale uses that set.
    @Test(arguments: [false, true])
    func magnitudeKeepsTorchsChoiceAmongTies(rescale: Bool) throws {
        let n = 3 * Kernels.block + 4321
        let x = Self.tiedVector(n, levels: [0.25, 0.5, 0.75, 1, 1.5], seed: 11)
        let k = n / 2
        let expected = Set(ReferenceIntrosort.order(x, descending: true).prefix(k))
        let (out, kept) = try apply(.magnitude, x, density: 0.5, rescale: rescale)
        let mine = Set(out.indices.filter { out[$0] != 0 })
        #expect(mine == expected)
        #expect(kept == Double(k) / Double(n))
        let scale = rescale ? Float(Kernels.l1(x) / expected.reduce(0.0) { $0 + Double(abs(x[$1])) }) : 1
        let scaled = out.indices.allSatisfy { out[$0] == (expected.contains($0) ? x[$0] * scale : 0) }
        #expect(scaled)
    }

    /// Breadcrumbs keeps `sort(|δ|).indices[nBot : nBot + target]` as torch orders it, whether the two
    /// thresholds tie in different magnitudes or in the same one.
    @Test(arguments: [([Float](arrayLiteral: 0.25, 0.5, 0.75, 1, 1.5), 0.5, 0.1), ([0.5, 1], 0.2, 0.1)])
    func magnitudeOutliersKeepTorchsChoiceAmongTies(levels: [Float], density: Double, gamma: Double) throws {
        let n = 2 * Kernels.block + 999
        let x = Self.tiedVector(n, levels: levels, seed: 12)
        let target = Int(density * Double(n)), nTop = Int(gamma * Double(n))
        let nBot = n - target - nTop
        let ascending = ReferenceIntrosort.order(x, descending: false)
        let expected = Set(ascending[nBot..<(nBot + target)])
        // The test is only meaningful when both cuts split ties.
        #expect(abs(x[ascending[nBot - 1]]) == abs(x[ascending[nBot]]))
        #expect(abs(x[ascending[nBot + target - 1]]) == abs(x[ascending[nBot + target]]))
        for rescale in [false, true] {
            let (out, kept) = try apply(.magnitudeOutliers, x, density: density, gamma: gamma, rescale: rescale)
            #expect(Set(out.indices.filter { out[$0] != 0 }) == expected, "rescale \(rescale)")
            #expect(kept == Double(target) / Double(n))
        }
    }

    /// A Breadcrumbs merge keeps, element for element, the band the trim keeps (the merge pass takes
    /// the elements strictly inside the band eight at a time and settles the ones at either threshold
    /// one by one), for thresholds in different magnitudes or in the same one; with a zero base the
    /// result is the two thinned task vectors' sum exactly, and each kept fraction is reported.
    @Test(arguments: [([Float](arrayLiteral: 0.25, 0.5, 0.75, 1, 1.5), 0.5, 0.1), ([0.5, 1], 0.2, 0.1)])
    func breadcrumbsMergeKeepsTheTrimsBand(levels: [Float], density: Double, gamma: Double) throws {
        let n = 2 * Kernels.block + 999
        let experts = [Self.tiedVector(n, levels: levels, seed: 21), Self.tiedVector(n, levels: levels, seed: 22)]
        let thinned = try experts.map { try apply(.magnitudeOutliers, $0, density: density, gamma: gamma).0 }
        let base = [Float](repeating: 0, count: n)
        let out = try merge("breadcrumbs", experts: weighted([1, 1], ["density": .number(density), "gamma": .number(gamma)]),
                            base: base, experts)
        let exact = (0..<n).allSatisfy { j in out.values[j].bitPattern == (0 + (thinned[0][j] + thinned[1][j])).bitPattern }
        #expect(exact)
        let target = Double(Int(density * Double(n))) / Double(n)
        #expect(out.metrics.keptFraction == [target, target])
    }

    /// Above the replay's size bound the earlier indices among the ties are kept, and the fallback is counted.
    @Test func tiesFallBackToPositionAboveTheBound() {
        let x = Self.tiedVector(1000, levels: [0.5, 1], seed: 13)
        let zeros = [Float](repeating: 0, count: x.count)
        let k = 600
        let (fallback, exact) = x.withUnsafeBufferPointer { e in
            zeros.withUnsafeBufferPointer { b in
                (DeltaMask.magnitudeTop(e, b, k: k, limit: 999), DeltaMask.magnitudeTop(e, b, k: k))
            }
        }
        let large = x.indices.filter { abs(x[$0]) == 1 }
        let small = x.indices.filter { abs(x[$0]) == 0.5 }
        // k and the band's cuts (100 and 600 in ascending order) fall inside runs of ties.
        #expect(large.count < k && small.count > 100 && small.count < 600)
        #expect(fallback.positional == 1 && exact.positional == 0)
        #expect(fallback.0.chosen == nil && exact.0.chosen != nil)
        let band = x.withUnsafeBufferPointer { e in
            zeros.withUnsafeBufferPointer { b in DeltaMask.outlierBand(e, b, below: 100, kept: 500, limit: 999) }
        }
        #expect(band.positional == 2)
        // Positional: all magnitudes 1 (the larger), then the first of the 0.5s.
        let positional = Set(large + small.prefix(k - large.count))
        let mask = DeltaMask(rule: .top(fallback.0), scale: 1, keptFraction: 1)
        let kept = mask.withCursor(block: 0) { cursor in
            Set(x.indices.filter { DeltaMask.keep(&cursor, x[$0], $0) })
        }
        #expect(kept == positional)
    }

    // MARK: - L1 rescale

    /// §7: L1 rescale of [.9, −.05, .3, −.7, .01, .45] with mask [1, 0, 1, 0, 1, 1]. The mask comes
    /// from a Bernoulli draw: the test looks for a seed that draws exactly that mask.
    @Test func l1RescaleSection7() throws {
        let x: [Float] = [0.9, -0.05, 0.3, -0.7, 0.01, 0.45]
        let wanted = [true, false, true, false, true, true]
        var found: [Float]?
        for seed in UInt64(0)..<5000 {
            let (out, _) = try apply(.bernoulli, x, density: 0.5, rescale: true, seed: seed)
            if out.map({ $0 != 0 }) == wanted {
                found = out
                break
            }
        }
        let out = try #require(found)
        expectClose(out, [1.3066265, 0, 0.4355422, 0, 0.0145181, 0.6533133])
        #expect(abs(Kernels.l1(out) - 2.41) < 2.41 * 1e-6)
    }

    /// Rescaling is skipped when the kept part (or the whole) is below 1e-7 in L1 norm.
    @Test func rescaleSkipsVanishingNorms() throws {
        let tiny = [Float](repeating: 1e-9, count: 16)
        let (out, _) = try apply(.bernoulli, tiny, density: 0.5, rescale: true, seed: 3)
        #expect(out.allSatisfy { $0 == 0 || $0 == 1e-9 })
        #expect(out.allSatisfy { $0.isFinite })
    }

    // MARK: - Bernoulli (DARE)

    /// DARE with L1 rescale: Σ|out| equals Σ|δ| (to Float rounding) and about ρ·n elements survive,
    /// within 6σ of the binomial(n, ρ) count.
    @Test(arguments: [0.1, 0.5, 0.9])
    func dareKeepsDensityAndL1Norm(density: Double) throws {
        let n = 100_000
        let x = randomValues(n, seed: 31, scale: 0.002)
        let (out, kept) = try apply(.bernoulli, x, density: density, rescale: true, seed: 77)
        let keptCount = out.filter { $0 != 0 }.count
        let sigma = (Double(n) * density * (1 - density)).squareRoot()
        #expect(abs(Double(keptCount) - density * Double(n)) <= 6 * sigma, "kept \(keptCount) of \(n) at ρ = \(density)")
        #expect(kept == Double(keptCount) / Double(n))
        let before = Kernels.l1(x), after = Kernels.l1(out)
        #expect(abs(after - before) <= before * 1e-6, "L1 \(after) vs \(before)")
        // Survivors are all scaled by one factor, which is about 1/ρ.
        let factors = zip(out, x).filter { $0.0 != 0 }.map { Double($0.0) / Double($0.1) }
        let f = try #require(factors.first)
        #expect(factors.allSatisfy { abs($0 - f) <= f * 1e-6 })
        #expect(abs(f * density - 1) < 0.05)
    }

    @Test func dareWithoutRescaleKeepsSurvivorsAsTheyAre() throws {
        let x = randomValues(1000, seed: 5)
        let (out, _) = try apply(.bernoulli, x, density: 0.3, rescale: false, seed: 6)
        for (o, v) in zip(out, x) { #expect(o == 0 || o == v) }
    }

    @Test func bernoulliMasksFollowTheSeed() throws {
        let x = randomValues(2048, seed: 8)
        let a = try apply(.bernoulli, x, density: 0.5, seed: 1).0
        let b = try apply(.bernoulli, x, density: 0.5, seed: 1).0
        let c = try apply(.bernoulli, x, density: 0.5, seed: 2).0
        #expect(sameBits(a, b))
        #expect(!sameBits(a, c))
    }

    // MARK: - DELLA MagPrune

    /// §7: on the row [.9, −.05, .3, −.7, .01] with ρ = 0.5 and ε = 0.15, the keep probabilities are
    /// [0.65, 0.425, 0.5, 0.575, 0.35] (rank ascending by magnitude, q = ρ − ε + 2ε·rank/(C−1)).
    /// Checked by frequency over 40 000 seeded draws, within 5σ.
    @Test func dellaKeepProbabilitiesSection7() {
        let row: [Float] = [0.9, -0.05, 0.3, -0.7, 0.01]
        let expected = [0.65, 0.425, 0.5, 0.575, 0.35]
        let frequencies = keepFrequencies(row, rows: 1, density: 0.5, epsilon: 0.15, trials: 40_000)
        for (f, q) in zip(frequencies, expected) {
            #expect(abs(f - q) <= 5 * (q * (1 - q) / 40_000).squareRoot(), "frequency \(f), probability \(q)")
        }
    }

    /// Ranks are per row (dimension 0 of a 2-D tensor): each row's largest entry gets ρ + ε,
    /// however small the row is next to another.
    @Test func dellaRanksEachRowSeparately() {
        let x: [Float] = [0.9, -0.05, 0.3, -0.7, 0.01, 100, 200, 300, 400, 500]
        let expected = [0.65, 0.425, 0.5, 0.575, 0.35, 0.35, 0.425, 0.5, 0.575, 0.65]
        let frequencies = keepFrequencies(x, rows: 2, density: 0.5, epsilon: 0.15, trials: 40_000)
        for (f, q) in zip(frequencies, expected) {
            #expect(abs(f - q) <= 5 * (q * (1 - q) / 40_000).squareRoot(), "frequency \(f), probability \(q)")
        }
    }

    /// A one-column row has no rank spread: it keeps with probability ρ (mergekit divides 0 by 0 there).
    @Test func dellaSingleColumnKeepsWithDensity() {
        let frequencies = keepFrequencies([1, 2, 3, 4], rows: 4, density: 0.3, epsilon: 0.1, trials: 20_000)
        for f in frequencies { #expect(abs(f - 0.3) <= 5 * (0.21 / 20_000).squareRoot()) }
    }

    func keepFrequencies(_ x: [Float], rows: Int, density: Double, epsilon: Double, trials: Int) -> [Double] {
        var counts = [Int](repeating: 0, count: x.count)
        for trial in 0..<trials {
            let mask = Sparsify.dellaMask(x, density: density, epsilon: epsilon, rows: rows, seed: 2024 &+ UInt64(trial))
            for (i, m) in mask.enumerated() where m { counts[i] += 1 }
        }
        return counts.map { Double($0) / Double(trials) }
    }

    /// With the L1 rescale (the della default), MagPrune also preserves Σ|δ|.
    @Test func dellaRescalePreservesL1() throws {
        let x = randomValues(64 * 128, seed: 40)
        let (out, kept) = try apply(.dellaMagprune, x, density: 0.4, epsilon: 0.2, rows: 64, rescale: true, seed: 41)
        #expect(abs(Kernels.l1(out) - Kernels.l1(x)) <= Kernels.l1(x) * 1e-6)
        #expect(abs(kept - 0.4) < 6 * (0.24 / Double(x.count)).squareRoot())
    }
}
