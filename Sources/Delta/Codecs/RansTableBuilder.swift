import Foundation

/// Turns symbol counts into the cheapest table (writer side): frequencies normalised to 4096,
/// written per symbol or per bin of 16, whichever costs fewer bytes with the coded symbols.
enum RansTableBuilder {
    /// `costBits[f]` = 12 − log2(f): the bits a symbol of frequency f costs (index 0 unused).
    static let costBits: [Double] = (0...Int(RansTable.total)).map { f in
        f == 0 ? 64 : Double(RansTable.precisionBits) - log2(Double(f))
    }

    /// log2 of 0…4097 (index 0 unused).
    static let log2Table: [Double] = (0...Int(RansTable.total) + 1).map { $0 == 0 ? 0 : log2(Double($0)) }

    /// `c × log2(c)` for counts below 4096 (index 0 is 0), so that estimates rarely call `log2`.
    static let countBits: [Double] = (0..<4096).map { $0 == 0 ? 0 : Double($0) * log2(Double($0)) }

    /// Estimated bytes of a table for `counts` (256 entries) plus the coded symbols: the counts'
    /// entropy and the size of the per-symbol table (bits per value from the largest frequency).
    /// For comparing partitions while planning: about a tenth of ``choose(_:refined:)``'s cost,
    /// and within a few bytes of it on the planes the planner merges; tables that are written are
    /// still chosen exactly.
    @inline(__always)
    static func estimate(_ counts: UnsafePointer<UInt32>) -> Double {
        estimate { counts[$0] }
    }

    /// ``estimate(_:)`` of the sum of two count rows, without forming it.
    @inline(__always)
    static func estimate(_ a: UnsafePointer<UInt32>, plus b: UnsafePointer<UInt32>) -> Double {
        estimate { a[$0] &+ b[$0] }
    }

    @inline(__always)
    private static func estimate(_ count: (Int) -> UInt32) -> Double {
        countBits.withUnsafeBufferPointer { cb in
            @inline(__always) func cLogC(_ c: Int) -> Double { c < 4096 ? cb[c] : Double(c) * log2(Double(c)) }
            /// Bytes of a table of values `lo…hi` whose largest value stands for `top` of `n` counts.
            @inline(__always) func tableBytes(_ lo: Int, _ hi: Int, _ top: Int, _ n: Int) -> Int {
                let f = min(Int(RansTable.maximumFrequency), max(1, (top * Int(RansTable.total) + n / 2) / n))
                return 3 + ((hi - lo + 1) * (Int.bitWidth - f.leadingZeroBitCount) + 7) / 8
            }
            var n = 0, lo = -1, hi = 0, top = 0
            var sum = 0.0
            var bin = 0, binLo = -1, binHi = 0, binTop = 0
            var binSum = 0.0
            for b in 0..<(256 / RansTable.binWidth) {
                bin = 0
                for s in (b * RansTable.binWidth)..<((b + 1) * RansTable.binWidth) {
                    let c = Int(count(s))
                    if c == 0 { continue }
                    if lo < 0 { lo = s }
                    hi = s
                    top = max(top, c)
                    bin += c
                    sum += cLogC(c)
                }
                if bin == 0 { continue }
                if binLo < 0 { binLo = b }
                binHi = b
                binTop = max(binTop, bin)
                n += bin
                binSum += cLogC(bin)
            }
            guard n > 0 else { return 0 }
            let nLogN = Double(n) * log2(Double(n))
            let symbols = Double(tableBytes(lo, hi, top, n)) + (nLogN - sum) / 8
            // Binned: the bins' entropy, and log2(16) bits within a bin.
            let binned = Double(tableBytes(binLo, binHi, binTop, n)) + (nLogN - binSum + 4 * Double(n)) / 8
            return min(symbols, binned)
        }
    }

    /// A table chosen for some counts, with what it costs.
    struct Choice {
        var kind: RansTable.Kind
        /// What is written: 256 symbol frequencies or 16 bin frequencies.
        var entries: [UInt32]
        var table: RansTable
        /// Bytes of the written table plus the coded symbols.
        var bytes: Double
    }

    /// Frequencies proportional to `counts` (rounded), every counted symbol at least 1, summing to
    /// `total`. The rounding error goes to (or comes from) the most frequent symbols.
    static func normalise(_ counts: UnsafeBufferPointer<UInt32>, total: UInt32) -> [UInt32] {
        var n: UInt64 = 0
        for c in counts { n += UInt64(c) }
        precondition(n > 0, "counts hold a symbol")
        var freqs = [UInt32](repeating: 0, count: counts.count)
        var sum: Int64 = 0
        for i in 0..<counts.count where counts[i] > 0 {
            let f = max(1, (UInt64(counts[i]) * UInt64(total) + n / 2) / n)
            freqs[i] = UInt32(f)
            sum += Int64(f)
        }
        var excess = sum - Int64(total)
        while excess != 0 {
            // The most frequent symbol that can still give (or any, to take).
            var best = -1
            for i in 0..<counts.count where counts[i] > 0 && (excess < 0 || freqs[i] > 1) {
                if best < 0 || counts[i] > counts[best] { best = i }
            }
            if excess < 0 {
                freqs[best] += UInt32(-excess)
                excess = 0
            } else {
                let give = min(Int64(freqs[best] - 1), excess)
                freqs[best] -= UInt32(give)
                excess -= give
            }
        }
        return freqs
    }

    /// `freqs` with no value holding every slot: a lone symbol gives one slot to a neighbour, which
    /// costs it 0.00035 bits per symbol (``RansTable/maximumFrequency``).
    static func capped(_ freqs: [UInt32]) -> [UInt32] {
        guard let s = freqs.firstIndex(where: { $0 > RansTable.maximumFrequency }) else { return freqs }
        var out = freqs
        out[s] = RansTable.maximumFrequency
        // The neighbour below, so that a selector table over two or more tables stays within them.
        out[s == 0 ? 1 : s - 1] += RansTable.total - RansTable.maximumFrequency
        return out
    }

    /// Moves single units of frequency between symbols while that shortens the coded symbols: from
    /// the symbol that loses least to the one that gains most. The coded size is a separable convex
    /// function of the frequencies, so this exchange ends at the best table for these counts.
    static func refine(_ counts: UnsafeBufferPointer<UInt32>, _ freqs: inout [UInt32]) {
        log2Table.withUnsafeBufferPointer { lg in
            for _ in 0..<4096 {
                var bestGain = 0.0, to = -1
                var leastLoss = Double.infinity, from = -1
                for s in 0..<counts.count where counts[s] > 0 {
                    let f = Int(freqs[s]), c = Double(counts[s])
                    if f < Int(RansTable.maximumFrequency) {
                        let gain = c * (lg[f + 1] - lg[f])
                        if gain > bestGain { bestGain = gain; to = s }
                    }
                    if f > 1 {
                        let loss = c * (lg[f] - lg[f - 1])
                        if loss < leastLoss { leastLoss = loss; from = s }
                    }
                }
                guard to >= 0, from >= 0, to != from, bestGain > leastLoss * (1 + 1e-12) else { return }
                freqs[to] += 1
                freqs[from] -= 1
            }
        }
    }

    /// Bits to code `counts` with `freqs` (infinite when a counted symbol has frequency 0).
    static func codeBits(_ counts: UnsafeBufferPointer<UInt32>, _ freqs: [UInt32]) -> Double {
        var bits = 0.0
        costBits.withUnsafeBufferPointer { cost in
            for i in 0..<256 where counts[i] > 0 {
                bits += Double(counts[i]) * cost[Int(freqs[i])]
            }
        }
        return bits
    }

    /// The cheaper of the per-symbol and the binned table for `counts` (256 entries).
    /// - Parameter refined: whether to spend the time on the best per-symbol frequencies
    ///   (``refine(_:_:)``), for the tables that are written rather than only compared.
    static func choose(_ counts: UnsafeBufferPointer<UInt32>, refined: Bool = false) -> Choice {
        var full = capped(normalise(counts, total: RansTable.total))
        if refined { refine(counts, &full) }
        let fullBytes = full.withUnsafeBufferPointer { RansTable.serializedSize(entries: $0) }
        var best = Choice(kind: .symbols, entries: full, table: RansTable(freqs: full),
                          bytes: Double(fullBytes) + codeBits(counts, full) / 8)
        var binCounts = [UInt32](repeating: 0, count: 256 / RansTable.binWidth)
        for i in 0..<256 { binCounts[i / RansTable.binWidth] += counts[i] }
        var bins = binCounts.withUnsafeBufferPointer { normalise($0, total: RansTable.total) }
        // Every value of a counted bin must keep a frequency of at least 1.
        let floor = UInt32(RansTable.binWidth)
        var raised: UInt32 = 0
        for b in 0..<bins.count where binCounts[b] > 0 && bins[b] < floor {
            raised += floor - bins[b]
            bins[b] = floor
        }
        if raised > 0, let top = bins.indices.max(by: { bins[$0] < bins[$1] }), bins[top] >= raised + floor {
            bins[top] -= raised
        } else if raised > 0 {
            return best
        }
        let spread = RansTable.spread(bins: bins)
        let binBytes = bins.withUnsafeBufferPointer { RansTable.serializedSize(entries: $0) }
        let binned = Double(binBytes) + codeBits(counts, spread) / 8
        if binned < best.bytes {
            best = Choice(kind: .bins, entries: bins, table: RansTable(freqs: spread), bytes: binned)
        }
        return best
    }

    /// ``choose(_:refined:)`` for counts in an array.
    static func choose(_ counts: [UInt32], refined: Bool = false) -> Choice {
        counts.withUnsafeBufferPointer { choose($0, refined: refined) }
    }

    /// A table over the first `alphabet` symbols (block selectors), per symbol.
    static func selectorChoice(_ counts: [UInt32]) -> Choice {
        var padded = [UInt32](repeating: 0, count: 256)
        for (i, c) in counts.enumerated() { padded[i] = c }
        var freqs = capped(padded.withUnsafeBufferPointer { normalise($0, total: RansTable.total) })
        padded.withUnsafeBufferPointer { refine($0, &freqs) }
        let bytes = freqs.withUnsafeBufferPointer { RansTable.serializedSize(entries: $0) }
        let bits = padded.withUnsafeBufferPointer { codeBits($0, freqs) }
        return Choice(kind: .symbols, entries: freqs, table: RansTable(freqs: freqs), bytes: Double(bytes) + bits / 8)
    }
}
