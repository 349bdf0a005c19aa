/// A frequency table of the rANS coder (docs/format.md §5.5): a probability for each byte value,
/// in units of 1/4096. Frequencies sum to exactly 4096; a value of frequency 0 cannot be coded.
struct RansTable: Equatable, Sendable {
    static let precisionBits = 12
    static let total: UInt32 = 1 << 12
    /// The largest frequency of a value: never all of `total`, so that every decoding step costs
    /// some of the state (the bound ``RansCodec/maximumExpansion`` rests on this).
    static let maximumFrequency: UInt32 = total - 1
    /// Symbols share their bin's frequency in the binned form: 16 bins of 16 byte values.
    static let binWidth = 16

    /// 256 frequencies.
    var freqs: [UInt32]

    init(freqs: [UInt32]) {
        precondition(freqs.count == 256 && freqs.reduce(0, +) == RansTable.total, "a table sums to 4096")
        self.freqs = freqs
    }

    /// How a table is written: each frequency, or one frequency per bin of 16 values spread evenly.
    enum Kind: UInt8 {
        case symbols = 0
        case bins = 1
    }

    // MARK: - Reading

    /// Parses a table written by ``serialized(kind:entries:)`` at `reader`'s position.
    ///
    /// Layout: `first` (u8), `count − 1` (u8), `kind << 4 | width` (u8), then `count` values of
    /// `width` bits, least significant bit first, padded to a whole byte.
    static func parse(_ reader: inout ByteReader) throws(RansError) -> RansTable {
        guard let first = reader.u8(), let countMinusOne = reader.u8(), let packed = reader.u8() else {
            throw RansError("table is truncated")
        }
        guard let kind = Kind(rawValue: packed >> 4) else { throw RansError("unknown table kind \(packed >> 4)") }
        let width = Int(packed & 0x0f)
        let count = Int(countMinusOne) + 1
        let entries = kind == .symbols ? 256 : 256 / binWidth
        guard width >= 1, width <= 13 else { throw RansError("table value width \(width) is outside 1…13") }
        guard Int(first) + count <= entries else { throw RansError("table entries \(first)+\(count) run past \(entries)") }
        let byteCount = (count * width + 7) / 8
        guard let body = reader.bytes(byteCount) else { throw RansError("table is truncated") }
        var values = [UInt32](repeating: 0, count: entries)
        var bitBuffer: UInt64 = 0, bitCount = 0
        var byteIndex = body.startIndex
        let mask = (UInt64(1) << width) - 1
        var sum: UInt32 = 0
        for i in 0..<count {
            while bitCount < width {
                bitBuffer |= UInt64(body[byteIndex]) << bitCount
                byteIndex += 1
                bitCount += 8
            }
            let v = UInt32(bitBuffer & mask)
            bitBuffer >>= width
            bitCount -= width
            guard v <= total else { throw RansError("table value \(v) exceeds 4096") }
            values[Int(first) + i] = v
            sum += v
        }
        guard sum == total else { throw RansError("table frequencies sum to \(sum), not 4096") }
        let freqs = kind == .symbols ? values : spread(bins: values)
        guard freqs.allSatisfy({ $0 <= maximumFrequency }) else { throw RansError("table gives one value all 4096 slots") }
        return RansTable(freqs: freqs)
    }

    /// The frequencies of the binned form: value `v` of bin `b` gets `F >> 4`, and the first
    /// `F & 15` values of the bin one more.
    static func spread(bins: [UInt32]) -> [UInt32] {
        var freqs = [UInt32](repeating: 0, count: 256)
        for b in 0..<(256 / binWidth) {
            let q = bins[b] / UInt32(binWidth), r = Int(bins[b] % UInt32(binWidth))
            for j in 0..<binWidth { freqs[b * binWidth + j] = q + (j < r ? 1 : 0) }
        }
        return freqs
    }

    // MARK: - Writing

    /// The bytes of a table given as `entries` (256 frequencies, or 16 bin frequencies).
    static func serialized(kind: Kind, entries: [UInt32]) -> [UInt8] {
        guard let lo = entries.firstIndex(where: { $0 > 0 }), let hi = entries.lastIndex(where: { $0 > 0 }) else {
            preconditionFailure("a table has a symbol")
        }
        let width = max(1, UInt32.bitWidth - entries.max()!.leadingZeroBitCount)
        var out: [UInt8] = [UInt8(lo), UInt8(hi - lo), kind.rawValue << 4 | UInt8(width)]
        var bitBuffer: UInt64 = 0, bitCount = 0
        for v in entries[lo...hi] {
            bitBuffer |= UInt64(v) << bitCount
            bitCount += width
            while bitCount >= 8 {
                out.append(UInt8(truncatingIfNeeded: bitBuffer))
                bitBuffer >>= 8
                bitCount -= 8
            }
        }
        if bitCount > 0 { out.append(UInt8(truncatingIfNeeded: bitBuffer)) }
        return out
    }

    /// Size in bytes of ``serialized(kind:entries:)`` without building it.
    static func serializedSize(entries: UnsafeBufferPointer<UInt32>) -> Int {
        var lo = -1, hi = -1, maxValue: UInt32 = 0
        for i in 0..<entries.count where entries[i] > 0 {
            if lo < 0 { lo = i }
            hi = i
            maxValue = max(maxValue, entries[i])
        }
        let width = max(1, UInt32.bitWidth - maxValue.leadingZeroBitCount)
        return 3 + ((hi - lo + 1) * width + 7) / 8
    }

    // MARK: - Coding tables

    /// Fills the 4096 decoding slots: slot `cum(s) + j` (0 ≤ j < f(s)) holds
    /// `s | (f(s) − 1) << 8 | j << 20`, everything one decoding step needs.
    func fillSlots(_ slots: UnsafeMutablePointer<UInt32>) {
        var cum = 0
        for s in 0..<256 {
            let f = Int(freqs[s])
            guard f > 0 else { continue }
            let base = UInt32(s) | UInt32(f - 1) << 8
            for j in 0..<f { slots[cum + j] = base | UInt32(j) << 20 }
            cum += f
        }
    }

    /// Fills 256 encoding entries (``RansEncodeSymbol``).
    func fillEncodeSymbols(_ symbols: UnsafeMutablePointer<RansEncodeSymbol>) {
        var cum: UInt32 = 0
        for s in 0..<256 {
            let f = freqs[s]
            symbols[s] = RansEncodeSymbol(freq: f, cum: cum)
            cum += f
        }
    }
}

/// What the encoder needs to code one symbol: its range and a reciprocal of its frequency, so the
/// division of the coding step becomes a multiplication.
struct RansEncodeSymbol {
    /// `x` at or above this leaves 16 bits before coding the symbol (`f << 20`; 2^32 when f = 4096).
    var limit: UInt64
    /// ⌊(2^64 − 1) / f⌋ + 1: `(reciprocal × x) >> 64` is exactly ⌊x / f⌋ for every 32-bit x
    /// (Lemire, Kaser and Kurz, "Faster remainder by direct computation", 2019). For f = 1 it
    /// would be 2^64: it is 0 there and ``oneMask`` adds x instead.
    var reciprocal: UInt64
    var cum: UInt32
    /// 4096 − f.
    var complement: UInt32
    /// All ones when f = 1, else 0.
    var oneMask: UInt32

    init(freq: UInt32, cum: UInt32) {
        self.cum = cum
        if freq == 0 {
            // Never coded: the planner only codes symbols the table holds.
            limit = 0
            reciprocal = 0
            complement = 0
            oneMask = 0
        } else {
            limit = UInt64(freq) << 20
            reciprocal = freq == 1 ? 0 : UInt64.max / UInt64(freq) &+ 1
            complement = RansTable.total - freq
            oneMask = freq == 1 ? UInt32.max : 0
        }
    }
}

/// A stored rANS stream or table that does not decode; ``ChunkCodec`` names the object.
struct RansError: Error, Equatable {
    var message: String
    init(_ message: String) { self.message = message }
}
