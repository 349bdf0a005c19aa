/// Mode 4 of the rANS coder, *grid* (docs/format.md §5.5): the symbols of a plane laid out in rows
/// of `C` columns, each row in one of `R` row classes (a selector per row, as blocks have) and each
/// column in one of `G` column classes; symbol `j` is coded with table `rowClass × G + columnClass`.
///
/// Why: the exponent plane of a weight matrix varies with its rows' scales, which blocks already
/// follow, and also with its columns' (the input features a row multiplies: a few carry larger
/// weights throughout). Two column classes on top of the rows' tables take 36 kB (0.5 %) off the
/// exponent plane of the real MiniLM base (docs/benchmarks.md, "rANS grid").
enum RansGrid {
    /// Column classes a grid may have (2 take one bit per column, 3 or 4 two).
    static let columnClassRange = 2...4

    /// Bits per column of the written column map.
    static func bitsPerColumn(_ classes: Int) -> Int { classes == 2 ? 1 : 2 }

    /// The column map as written: `bitsPerColumn` bits per column, least significant bit first,
    /// packed from the low bit of each byte, padded with zero bits to a whole byte.
    static func packColumns(_ map: [UInt8], classes: Int) -> [UInt8] {
        let bits = bitsPerColumn(classes)
        var out = [UInt8](repeating: 0, count: (map.count * bits + 7) / 8)
        for (c, v) in map.enumerated() {
            let bit = c * bits
            out[bit >> 3] |= v << UInt8(bit & 7)
        }
        return out
    }

    /// Reads a column map of `columns` entries written by ``packColumns(_:classes:)``.
    static func unpackColumns(_ reader: inout ByteReader, columns: Int, classes: Int, plane k: Int) throws(RansError) -> [UInt8] {
        let bits = bitsPerColumn(classes)
        guard let packed = reader.bytes((columns * bits + 7) / 8) else { throw RansError("plane \(k) section is truncated") }
        let mask = UInt8((1 << bits) - 1)
        var map = [UInt8](repeating: 0, count: columns)
        let start = packed.startIndex
        for c in 0..<columns {
            let bit = c * bits
            let v = (packed[start + bit >> 3] >> UInt8(bit & 7)) & mask
            guard Int(v) < classes else { throw RansError("plane \(k) puts column \(c) in class \(v) of \(classes)") }
            map[c] = v
        }
        return map
    }

    /// The rows of a plane of `m` symbols whose first symbol sits in column `phase`: row `b`
    /// holds the symbols `j` with ⌊(j + phase) / C⌋ = b.
    static func layout(m: Int, columns: Int, phase: Int) -> BlockLayout {
        BlockLayout(m: m, length: columns, first: columns - phase)
    }
}

extension RansKernel {
    /// Decoding slots of a grid row: the table of the symbol's column class.
    struct GridSlots: SlotSource {
        /// The column class of every column of the row layout.
        let columns: UnsafePointer<UInt8>
        /// Symbol `j` sits in column `j − offset`.
        let offset: Int
        /// The row's table for each column class.
        let tables: UnsafePointer<UnsafePointer<UInt32>>
        @inline(__always) func slots(_ j: Int) -> UnsafePointer<UInt32> { tables[Int(columns[j &- offset])] }
    }

    /// Encoding entries of a grid row (``GridSlots``' counterpart).
    struct GridSymbols: SymbolSource {
        let columns: UnsafePointer<UInt8>
        let offset: Int
        let tables: UnsafePointer<UnsafePointer<RansEncodeSymbol>>
        @inline(__always) func symbols(_ j: Int) -> UnsafePointer<RansEncodeSymbol> { tables[Int(columns[j &- offset])] }
    }
}

extension RansPlanner {
    /// Row lengths planned as a grid: shorter rows' selectors would cost too much, and longer
    /// rows' column maps.
    static let gridColumns = 64...(1 << 16)
    /// The writer's column classes: the columns above and below the median of their mean symbol.
    static let gridColumnClasses = 2

    /// Plans the top plane as a grid of the tensor's rows and two column classes; the row classes
    /// are the tables of `blocks` when its blocks are single rows, else one.
    func planGrid(_ symbols: UnsafePointer<UInt8>, _ m: Int, _ rows: Rows, blocks: Plan?) -> Plan? {
        let C = rows.length, G = RansPlanner.gridColumnClasses
        guard RansPlanner.gridColumns.contains(C), m >= 4 * C else { return nil }
        let phase = rows.offset % C
        let layout = RansGrid.layout(m: m, columns: C, phase: phase)
        var rowClasses = 1
        var selectors: [UInt8] = []
        if let blocks, blocks.mode == .blocks, blocks.blockLength == C, blocks.firstLength == C - phase {
            guard blocks.tables.count * G <= RansPlanner.maxTables else { return nil }
            rowClasses = blocks.tables.count
            selectors = blocks.selectors
        }
        // Column classes: by each column's mean symbol, the upper half in class 1.
        // Row by row, so that the sums of a row's contiguous columns vectorise. (A sum wraps only
        // past 2^24 symbols per column, and then changes which class a column gets, not the
        // decoding.)
        var sums = [UInt32](repeating: 0, count: C)
        var counts = [Int](repeating: 0, count: C)
        sums.withUnsafeMutableBufferPointer { sums in
            let sum = sums.baseAddress!
            for b in 0..<layout.count {
                let range = layout.range(b)
                let column = sum + (b == 0 ? phase : 0), row = symbols + range.lowerBound
                for i in 0..<range.count { column[i] &+= UInt32(row[i]) }
            }
        }
        for c in 0..<C {
            let first = (c - phase + C) % C  // the first j with (j + phase) mod C = c
            counts[c] = first < m ? (m - 1 - first) / C + 1 : 0
        }
        let order = (0..<C).sorted { a, b in
            let l = Int(sums[a]) * max(1, counts[b]), r = Int(sums[b]) * max(1, counts[a])
            return l != r ? l < r : a < b
        }
        var map = [UInt8](repeating: 0, count: C)
        for (rank, c) in order.enumerated() { map[c] = UInt8(rank * G / C) }  // halves for G = 2
        // The counts of every table.
        var hists = [UInt32](repeating: 0, count: rowClasses * G * 256)
        hists.withUnsafeMutableBufferPointer { h in
            map.withUnsafeBufferPointer { map in
                for b in 0..<layout.count {
                    let base = (rowClasses > 1 ? Int(selectors[b]) : 0) * G
                    let range = layout.range(b)
                    var c = b == 0 ? phase : 0
                    for j in range {
                        h[(base + Int(map[c])) << 8 | Int(symbols[j])] += 1
                        c += 1
                    }
                }
            }
        }
        var tables: [RansTableBuilder.Choice] = []
        for t in 0..<(rowClasses * G) {
            var h = Array(hists[(t << 8)..<((t + 1) << 8)])
            if !h.contains(where: { $0 > 0 }) { h[0] = 1 }  // an unused table must still be a table
            tables.append(RansTableBuilder.choose(h, refined: true))
        }
        var bytes = 1.0 + 4 + 4 + 1 + 1 + Double((C * RansGrid.bitsPerColumn(G) + 7) / 8) + tables.reduce(0) { $0 + $1.bytes }
        var selectorTable: RansTableBuilder.Choice?
        if rowClasses > 1 {
            var used = [UInt32](repeating: 0, count: rowClasses)
            for s in selectors { used[Int(s)] += 1 }
            selectorTable = RansTableBuilder.selectorChoice(used)
            bytes += selectorTable!.bytes
        }
        return Plan(mode: .grid, bytes: bytes, tables: tables, selectors: selectors, selectorTable: selectorTable,
                    grid: Plan.Grid(columns: C, phase: phase, rowClasses: rowClasses, columnClasses: G, columnMap: map))
    }
}
