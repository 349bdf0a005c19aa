/// The inner loops of the rANS coder (docs/format.md §5.5): eight interleaved 32-bit states,
/// 12-bit frequencies, 16-bit renormalisation.
///
/// Symbol `j` of a sequence is coded by state `j mod 8`, so eight independent dependency chains
/// run side by side. The encoder works backwards from the last symbol and writes its 16-bit words
/// downwards from the end of a buffer; the decoder reads them forwards. Every step is branch-free:
/// a renormalisation is a conditional move, with the 16-bit word loaded (or stored) anyway.
enum RansKernel {
    static let stateCount = 8
    /// States live in [2^16, 2^32); every stream starts and ends with all states at 2^16.
    static let lowerBound: UInt32 = 1 << 16
    static let slotMask: UInt32 = RansTable.total - 1

    // MARK: - Decoding

    /// Where the decoder reads: `cursor` advances towards `end`; `overrun` is set instead of reading
    /// past it (the stream is corrupt).
    struct Reader {
        var cursor: UnsafePointer<UInt8>
        let end: UnsafePointer<UInt8>
        var overrun = false
    }

    /// Slots of symbol `j`: one table, or the table a context byte selects.
    protocol SlotSource {
        func slots(_ j: Int) -> UnsafePointer<UInt32>
    }

    struct FixedSlots: SlotSource {
        let table: UnsafePointer<UInt32>
        @inline(__always) func slots(_ j: Int) -> UnsafePointer<UInt32> { table }
    }

    struct ContextSlots: SlotSource {
        /// The context byte of each symbol (the next more significant plane).
        let context: UnsafePointer<UInt8>
        /// 256 table pointers, one per context value.
        let tables: UnsafePointer<UnsafePointer<UInt32>>
        @inline(__always) func slots(_ j: Int) -> UnsafePointer<UInt32> { tables[Int(context[j])] }
    }

    @inline(__always)
    static func decodeStep(_ x: inout UInt32, _ slots: UnsafePointer<UInt32>, _ cursor: inout UnsafePointer<UInt8>) -> UInt8 {
        let e = slots[Int(x & slotMask)]
        // f ≤ 4096 and x >> 12 < 2^20, so this stays below 2^32 for any x.
        x = ((e >> 8) & 0xfff &+ 1) &* (x >> 12) &+ (e >> 20)
        let small = x < lowerBound
        let word = UInt32(UInt16(littleEndian: UnsafeRawPointer(cursor).loadUnaligned(as: UInt16.self)))
        x = small ? (x << 16 | word) : x
        cursor += small ? 2 : 0
        return UInt8(truncatingIfNeeded: e)
    }

    @inline(__always)
    static func decodeStepChecked(_ x: inout UInt32, _ slots: UnsafePointer<UInt32>, _ r: inout Reader) -> UInt8 {
        let e = slots[Int(x & slotMask)]
        x = ((e >> 8) & 0xfff &+ 1) &* (x >> 12) &+ (e >> 20)
        if x < lowerBound {
            if r.end - r.cursor < 2 {
                r.overrun = true
            } else {
                x = x << 16 | UInt32(UInt16(littleEndian: UnsafeRawPointer(r.cursor).loadUnaligned(as: UInt16.self)))
                r.cursor += 2
            }
        }
        return UInt8(truncatingIfNeeded: e)
    }

    /// Decodes symbols `range` of a sequence into `out[range]`.
    @inline(__always)
    static func decode<S: SlotSource>(_ range: Range<Int>, into out: UnsafeMutablePointer<UInt8>, _ source: S,
                                      states s: UnsafeMutablePointer<UInt32>, _ r: inout Reader) {
        var j = range.lowerBound
        let end = range.upperBound
        while j < end, j & 7 != 0 {
            out[j] = decodeStepChecked(&s[j & 7], source.slots(j), &r)
            j += 1
        }
        if j + 8 <= end {
            var x0 = s[0], x1 = s[1], x2 = s[2], x3 = s[3], x4 = s[4], x5 = s[5], x6 = s[6], x7 = s[7]
            var c = r.cursor
            // Eight steps read at most 16 bytes.
            while j + 8 <= end, r.end - c >= 16 {
                out[j] = decodeStep(&x0, source.slots(j), &c)
                out[j + 1] = decodeStep(&x1, source.slots(j + 1), &c)
                out[j + 2] = decodeStep(&x2, source.slots(j + 2), &c)
                out[j + 3] = decodeStep(&x3, source.slots(j + 3), &c)
                out[j + 4] = decodeStep(&x4, source.slots(j + 4), &c)
                out[j + 5] = decodeStep(&x5, source.slots(j + 5), &c)
                out[j + 6] = decodeStep(&x6, source.slots(j + 6), &c)
                out[j + 7] = decodeStep(&x7, source.slots(j + 7), &c)
                j += 8
            }
            r.cursor = c
            s[0] = x0; s[1] = x1; s[2] = x2; s[3] = x3; s[4] = x4; s[5] = x5; s[6] = x6; s[7] = x7
        }
        while j < end {
            out[j] = decodeStepChecked(&s[j & 7], source.slots(j), &r)
            j += 1
        }
    }

    // MARK: - Encoding

    /// Where the encoder writes: `cursor` moves down towards `floor`; `overflow` is set when the
    /// stream would not fit (the caller then stores the chunk another way).
    struct Writer {
        var cursor: UnsafeMutablePointer<UInt8>
        let floor: UnsafeMutablePointer<UInt8>
        var overflow = false
    }

    /// Encoding entries of symbol `j`.
    protocol SymbolSource {
        func symbols(_ j: Int) -> UnsafePointer<RansEncodeSymbol>
    }

    struct FixedSymbols: SymbolSource {
        let table: UnsafePointer<RansEncodeSymbol>
        @inline(__always) func symbols(_ j: Int) -> UnsafePointer<RansEncodeSymbol> { table }
    }

    struct ContextSymbols: SymbolSource {
        let context: UnsafePointer<UInt8>
        let tables: UnsafePointer<UnsafePointer<RansEncodeSymbol>>
        @inline(__always) func symbols(_ j: Int) -> UnsafePointer<RansEncodeSymbol> { tables[Int(context[j])] }
    }

    @inline(__always)
    static func encodeStep(_ x: inout UInt32, _ e: UnsafePointer<RansEncodeSymbol>, _ cursor: inout UnsafeMutablePointer<UInt8>) {
        let big = UInt64(x) >= e.pointee.limit
        UnsafeMutableRawPointer(cursor - 2).storeBytes(of: UInt16(truncatingIfNeeded: x).littleEndian, as: UInt16.self)
        cursor -= big ? 2 : 0
        x = big ? x >> 16 : x
        let q = UInt32(truncatingIfNeeded: e.pointee.reciprocal.multipliedFullWidth(by: UInt64(x)).high) &+ (x & e.pointee.oneMask)
        x = x &+ e.pointee.cum &+ q &* e.pointee.complement
    }

    @inline(__always)
    static func encodeStepChecked(_ x: inout UInt32, _ e: UnsafePointer<RansEncodeSymbol>, _ w: inout Writer) {
        if UInt64(x) >= e.pointee.limit {
            if w.cursor - w.floor < 2 {
                w.overflow = true
                return
            }
            w.cursor -= 2
            UnsafeMutableRawPointer(w.cursor).storeBytes(of: UInt16(truncatingIfNeeded: x).littleEndian, as: UInt16.self)
            x >>= 16
        }
        let q = UInt32(truncatingIfNeeded: e.pointee.reciprocal.multipliedFullWidth(by: UInt64(x)).high) &+ (x & e.pointee.oneMask)
        x = x &+ e.pointee.cum &+ q &* e.pointee.complement
    }

    /// Encodes symbols `range` of a sequence, last first (the decoder reads them first to last).
    @inline(__always)
    static func encode<S: SymbolSource>(_ range: Range<Int>, from input: UnsafePointer<UInt8>, _ source: S,
                                        states s: UnsafeMutablePointer<UInt32>, _ w: inout Writer) {
        var j = range.upperBound
        let start = range.lowerBound
        while j > start, j & 7 != 0, !w.overflow {
            j -= 1
            encodeStepChecked(&s[j & 7], source.symbols(j) + Int(input[j]), &w)
        }
        if j - 8 >= start, !w.overflow {
            var x0 = s[0], x1 = s[1], x2 = s[2], x3 = s[3], x4 = s[4], x5 = s[5], x6 = s[6], x7 = s[7]
            var c = w.cursor
            // Eight steps write at most 16 bytes, plus the 2 below the cursor each step touches.
            while j - 8 >= start, c - w.floor >= 18 {
                j -= 8
                encodeStep(&x7, source.symbols(j + 7) + Int(input[j + 7]), &c)
                encodeStep(&x6, source.symbols(j + 6) + Int(input[j + 6]), &c)
                encodeStep(&x5, source.symbols(j + 5) + Int(input[j + 5]), &c)
                encodeStep(&x4, source.symbols(j + 4) + Int(input[j + 4]), &c)
                encodeStep(&x3, source.symbols(j + 3) + Int(input[j + 3]), &c)
                encodeStep(&x2, source.symbols(j + 2) + Int(input[j + 2]), &c)
                encodeStep(&x1, source.symbols(j + 1) + Int(input[j + 1]), &c)
                encodeStep(&x0, source.symbols(j) + Int(input[j]), &c)
            }
            w.cursor = c
            s[0] = x0; s[1] = x1; s[2] = x2; s[3] = x3; s[4] = x4; s[5] = x5; s[6] = x6; s[7] = x7
        }
        while j > start, !w.overflow {
            j -= 1
            encodeStepChecked(&s[j & 7], source.symbols(j) + Int(input[j]), &w)
        }
    }
}
