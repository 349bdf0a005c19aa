import Delta
import Foundation

/// How a task vector is thinned before merging (mergekit's `sparsify.py`).
public enum Sparsifier: String, Sendable {
    /// Keep the ⌊ρ·n⌋ largest magnitudes (TIES trim).
    case magnitude
    /// Keep each element with probability ρ (DARE).
    case bernoulli
    /// Drop the largest ⌊γ·n⌋ and the smallest magnitudes, keep ⌊ρ·n⌋ in between (Model Breadcrumbs).
    case magnitudeOutliers
    /// Per row, keep with a probability that grows with magnitude rank, in [ρ−ε, ρ+ε] (DELLA MagPrune).
    case dellaMagprune
}

/// Thins one task vector.
enum Sparsify {
    /// Applies a sparsifier; returns the thinned vector and the fraction kept.
    ///
    /// - Parameters:
    ///   - rescale: multiply the survivors so the L1 norm is unchanged (mergekit's `rescale`).
    ///   - rng: the stream for random sparsifiers (one per tensor and expert).
    static func apply(_ method: Sparsifier, _ x: [Float], density: Double, gamma: Double, epsilon: Double,
                      rows: Int, rescale: Bool, rng: inout SeededRandom, name: String) throws -> ([Float], Double) {
        if density >= 1 { return (x, 1) }
        let n = x.count
        var mask: [Bool]
        switch method {
        case .magnitude:
            let k = Int((density * Double(n)).rounded(.down))
            guard k > 0 else {
                throw MergeError.tensor(name: name, problem: "density \(density) keeps no element of \(n); raise density")
            }
            mask = Kernels.topKMask(x, k: k)
        case .bernoulli:
            mask = bernoulliMask(n, keep: density, rng: &rng)
        case .magnitudeOutliers:
            mask = outlierMask(x, density: density, gamma: gamma)
        case .dellaMagprune:
            guard density - epsilon > 0, density + epsilon < 1 else {
                throw MergeError.tensor(name: name, problem: "DELLA needs 0 < density − epsilon and density + epsilon < 1 (density \(density), epsilon \(epsilon))")
            }
            mask = dellaMask(x, density: density, epsilon: epsilon, rows: rows, rng: &rng)
        }
        var out = [Float](repeating: 0, count: n)
        var kept = 0
        for i in 0..<n where mask[i] {
            out[i] = x[i]
            kept += 1
        }
        if rescale {
            let before = Kernels.l1(x), after = Kernels.l1(out)
            if before >= 1e-7, after >= 1e-7 {
                let f = Float(before / after)
                for i in 0..<n { out[i] *= f }
            }
        }
        return (out, n == 0 ? 1 : Double(kept) / Double(n))
    }

    static func bernoulliMask(_ n: Int, keep p: Double, rng: inout SeededRandom) -> [Bool] {
        // 53-bit uniform against p: exact and seedable.
        var mask = [Bool](repeating: false, count: n)
        for i in 0..<n { mask[i] = rng.uniform() < p }
        return mask
    }

    /// Breadcrumbs: ascending by magnitude (ties by position), keep ranks in [nBot, n − nTop).
    static func outlierMask(_ x: [Float], density: Double, gamma: Double) -> [Bool] {
        let n = x.count
        let target = Int((density * Double(n)).rounded(.down))
        var nTop = Int((gamma * Double(n)).rounded(.down))
        var nBot = n - target - nTop
        if nBot < 0 {
            nTop += nBot
            nBot = 0
        }
        let keepTopWithoutOutliers = Kernels.topKMask(x, k: n - nBot)
        let outliers = Kernels.topKMask(x, k: nTop)
        return zip(keepTopWithoutOutliers, outliers).map { $0 && !$1 }
    }

    /// DELLA MagPrune: per row (dim 0 of a 2-D tensor; a 1-D tensor is one row), rank entries by
    /// magnitude ascending; keep probability (ρ−ε) + 2ε·rank/(C−1).
    static func dellaMask(_ x: [Float], density: Double, epsilon: Double, rows: Int, rng: inout SeededRandom) -> [Bool] {
        let n = x.count
        let r = max(1, rows)
        let c = n / r
        var mask = [Bool](repeating: false, count: n)
        var order = [Int](repeating: 0, count: c)
        for row in 0..<r {
            let start = row * c
            for j in 0..<c { order[j] = j }
            order.sort { (abs(x[start + $0]), $0) < (abs(x[start + $1]), $1) }
            for (rank, j) in order.enumerated() {
                let position = c > 1 ? Double(rank) / Double(c - 1) : 0.5
                let q = (density - epsilon) + 2 * epsilon * position
                mask[start + j] = rng.uniform() < q
            }
        }
        return mask
    }
}
