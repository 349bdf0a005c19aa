import Delta
import Foundation

// The second pass of ``DeltaMask``: per-block cursors the merge kernels read element by element,
// and the in-memory form (``Sparsify``) that tests and callers holding δ use.

extension DeltaMask {
    /// Runs `body` with the second pass's state for block `block`. The cursor's pointers into the
    /// mask's arrays are valid only inside `body`.
    func withCursor<T>(block: Int, _ body: (inout Cursor) throws -> T) rethrows -> T {
        var c = Cursor()
        reposition(&c, block: block)
        switch rule {
        case .all:
            c.kind = 0
            return try body(&c)
        case let .top(t):
            c.kind = 1
            (c.threshold1, c.need1) = (t.threshold, t.need)
            return try Self.withWords(t.chosen) { chosen in
                c.chosen1 = chosen
                return try body(&c)
            }
        case let .band(keep, drop):
            c.kind = 2
            (c.threshold1, c.need1) = (keep.threshold, keep.need)
            (c.threshold2, c.need2) = (drop.threshold, drop.need)
            return try Self.withWords(keep.chosen) { chosen1 in
                try Self.withWords(drop.chosen) { chosen2 in
                    (c.chosen1, c.chosen2) = (chosen1, chosen2)
                    return try body(&c)
                }
            }
        case let .explicit(mask):
            c.kind = 4
            return try mask.withUnsafeBufferPointer { m in
                c.explicit = m.baseAddress
                return try body(&c)
            }
        case let .bits(words):
            c.kind = 5
            return try words.withUnsafeBufferPointer { w in
                c.words = w.baseAddress
                return try body(&c)
            }
        }
    }

    /// Moves a cursor to the start of block `block` (its ranks among threshold-equal elements).
    func reposition(_ c: inout Cursor, block: Int) {
        switch rule {
        case let .top(t):
            c.rankBase1 = block < t.equalBefore.count ? t.equalBefore[block] : 0
        case let .band(keep, drop):
            c.rankBase1 = block < keep.equalBefore.count ? keep.equalBefore[block] : 0
            c.rankBase2 = block < drop.equalBefore.count ? drop.equalBefore[block] : 0
        case .all, .explicit, .bits:
            break
        }
    }

    private static func withWords<T>(_ words: [UInt64]?, _ body: (UnsafePointer<UInt64>?) throws -> T) rethrows -> T {
        guard let words else { return try body(nil) }
        return try words.withUnsafeBufferPointer { try body($0.baseAddress) }
    }

    /// Whether the threshold-equal element of rank `rank` (index order) is in: its bit, or else rank < need.
    @inline(__always)
    static func chosen(_ words: UnsafePointer<UInt64>?, rank: Int, need: Int) -> Bool {
        guard let words else { return rank < need }
        return words[rank >> 6] >> UInt64(rank & 63) & 1 != 0
    }

    /// Whether element `j` (task-vector value `d`) survives. Call in index order within a block.
    @inline(__always)
    static func keep(_ c: inout Cursor, _ d: Float, _ j: Int) -> Bool {
        switch c.kind {
        case 0:
            return true
        case 1:
            let bits = d.bitPattern & 0x7FFF_FFFF
            if bits > c.threshold1 { return true }
            if bits < c.threshold1 { return false }
            c.rankBase1 += 1
            return chosen(c.chosen1, rank: c.rankBase1 - 1, need: c.need1)
        case 2:
            let bits = d.bitPattern & 0x7FFF_FFFF
            var inKeep = bits > c.threshold1
            if bits == c.threshold1 {
                inKeep = chosen(c.chosen1, rank: c.rankBase1, need: c.need1)
                c.rankBase1 += 1
            }
            var inDrop = bits > c.threshold2
            if bits == c.threshold2 {
                inDrop = chosen(c.chosen2, rank: c.rankBase2, need: c.need2)
                c.rankBase2 += 1
            }
            return inKeep && !inDrop
        case 5:
            return c.words![j >> 6] >> UInt64(j & 63) & 1 != 0
        default:
            return c.explicit![j] != 0
        }
    }
}

/// Thins one task vector held in memory (the building block the methods stream; kept for tests
/// and for callers that hold δ).
enum Sparsify {
    /// Applies a sparsifier; returns the thinned vector and the fraction kept.
    static func apply(_ method: Sparsifier, _ x: [Float], density: Double, gamma: Double, epsilon: Double,
                      rows: Int, rescale: Bool, seed: UInt64, name: String) throws -> ([Float], Double) {
        let zeros = [Float](repeating: 0, count: x.count)
        return try x.withUnsafeBufferPointer { px in
            try zeros.withUnsafeBufferPointer { pz in
                let mask = try DeltaMask.build(method, expert: px, base: pz, density: density, gamma: gamma, epsilon: epsilon,
                                               rows: rows, rescale: rescale, seed: seed, name: name)
                var out = [Float](repeating: 0, count: x.count)
                var kept = 0
                var blockStart = -1
                mask.withCursor(block: 0) { cursor in
                    for j in 0..<x.count {
                        if j / Kernels.block != blockStart {
                            blockStart = j / Kernels.block
                            mask.reposition(&cursor, block: blockStart)
                        }
                        if DeltaMask.keep(&cursor, x[j], j) {
                            out[j] = x[j] * mask.scale
                            kept += 1
                        }
                    }
                }
                return (out, x.isEmpty ? 1 : Double(kept) / Double(x.count))
            }
        }
    }

    /// DELLA's keep decisions for a task vector held in memory.
    static func dellaMask(_ x: [Float], density: Double, epsilon: Double, rows: Int, seed: UInt64) -> [Bool] {
        let zeros = [Float](repeating: 0, count: x.count)
        return x.withUnsafeBufferPointer { px in
            zeros.withUnsafeBufferPointer { pz in
                DeltaMask.dellaMask(px, pz, density: density, epsilon: epsilon, rows: rows, seed: seed).map { $0 != 0 }
            }
        }
    }
}
