import Foundation
/// Chooses how the rANS coder stores one byte plane (writer side; docs/format.md §5.5):
/// raw, one table, tables switched per block, or tables selected by the byte of the next more
/// significant plane. Each mode's size is exact (the written section plus the coded symbols' bits
/// under the quantised tables), so the cheapest mode is chosen, not guessed; within a mode, which
/// contexts or blocks share a table is decided by entropy estimates
/// (``RansTableBuilder/estimate(_:)``), which cost a tenth of building each candidate table.
///
/// Why these modes: the exponent plane of a weight matrix varies with its rows' scales (blocks),
/// the top mantissa byte depends on the exponent (context), and the residual planes of a delta are
/// sorted by reference exponent, so their statistics change along the plane (blocks) and from one
/// plane to the next (context).
final class RansPlanner {
    /// Rows of a weight matrix, for blocks that follow them: `length` elements per row, the plane's
    /// first element at `offset` elements from the start of the tensor.
    struct Rows {
        var length: Int
        var offset: Int
    }

    /// What the planner decided for one plane.
    struct Plan {
        enum Mode: UInt8 {
            case raw = 0
            case single = 1
            case blocks = 2
            case context = 3
            case grid = 4
        }
        var mode: Mode = .raw
        /// Estimated stored bytes (section and coded symbols).
        var bytes: Double
        var tables: [RansTableBuilder.Choice] = []
        var blockLength = 0
        var firstLength = 0
        var selectors: [UInt8] = []
        var selectorTable: RansTableBuilder.Choice?
        /// Table of each context byte (256 entries).
        var contextMap: [UInt8] = []
        /// Grid mode: the row length, the column of the plane's first symbol, the row classes
        /// (`selectors` then holds one per row) and the class of each column.
        var grid = Grid()

        struct Grid {
            var columns = 0
            var phase = 0
            var rowClasses = 1
            var columnClasses = 2
            var columnMap: [UInt8] = []
        }

        /// The section's bytes before the coded symbols (docs/format.md §5.5): the mode, then
        /// the mode's parameters and tables. A raw plane's bytes follow its section directly.
        func section() -> [UInt8] {
            var out: [UInt8] = [mode.rawValue]
            switch mode {
            case .raw:
                break
            case .single:
                out += RansTable.serialized(kind: tables[0].kind, entries: tables[0].entries)
            case .blocks:
                out.appendLE(UInt32(blockLength))
                out.appendLE(UInt32(firstLength))
                out.append(UInt8(tables.count))
                for t in tables { out += RansTable.serialized(kind: t.kind, entries: t.entries) }
                out += RansTable.serialized(kind: .symbols, entries: selectorTable!.entries)
            case .context:
                out.append(UInt8(tables.count))
                for i in stride(from: 0, to: 256, by: 2) { out.append(contextMap[i] | contextMap[i + 1] << 4) }
                for t in tables { out += RansTable.serialized(kind: t.kind, entries: t.entries) }
            case .grid:
                out.appendLE(UInt32(grid.columns))
                out.appendLE(UInt32(grid.phase))
                out.append(UInt8(grid.rowClasses))
                out.append(UInt8(grid.columnClasses))
                out += RansGrid.packColumns(grid.columnMap, classes: grid.columnClasses)
                for t in tables { out += RansTable.serialized(kind: t.kind, entries: t.entries) }
                if grid.rowClasses > 1 { out += RansTable.serialized(kind: .symbols, entries: selectorTable!.entries) }
            }
            return out
        }
    }

    /// The most tables a plane may use (the format allows 16).
    static let maxTables = 16
    /// Planes whose order-0 entropy is above this many bits per byte are stored raw.
    static let rawAbove = 7.99
    /// Block length without a row hint, and the shortest run of rows a block covers.
    static let defaultBlockLength = 1024
    static let minimumRowBlock = 256
    /// Groups blocks are sorted into before their tables are merged.
    static let blockGroups = 32
    /// Context segments before merging by cost (adjacent contexts with the fewest symbols first).
    static let contextSegments = 48
    /// Rounds of moving blocks to their cheapest table and rebuilding the tables.
    static let iterations = 1

    private let joint = UnsafeMutablePointer<UInt32>.allocate(capacity: 256 * 256)
    deinit { joint.deallocate() }

    /// Plans plane `symbols` (`count` bytes); `context` is the next more significant plane.
    func plan(_ symbols: UnsafePointer<UInt8>, count m: Int, context: UnsafePointer<UInt8>?, rows: Rows?) -> Plan {
        var hist = [UInt32](repeating: 0, count: 256)
        hist.withUnsafeMutableBufferPointer { histogram(symbols, m, into: $0.baseAddress!) }
        var best = Plan(bytes: Double(m + 1))
        let single = RansTableBuilder.choose(hist, refined: true)
        if 1 + single.bytes < best.bytes {
            best = Plan(mode: .single, bytes: 1 + single.bytes, tables: [single])
        }
        if entropyBits(hist, m) > RansPlanner.rawAbove * Double(m) { return best }
        if let context, let p = planContext(symbols, m, context), p.bytes < best.bytes { best = p }
        let blocks = planBlocks(symbols, m, rows)
        if let p = blocks, p.bytes < best.bytes { best = p }
        if context == nil, let rows, let p = planGrid(symbols, m, rows, blocks: blocks), p.bytes < best.bytes { best = p }
        return best
    }

    // MARK: - Context

    private func planContext(_ symbols: UnsafePointer<UInt8>, _ m: Int, _ context: UnsafePointer<UInt8>) -> Plan? {
        joint.initialize(repeating: 0, count: 256 * 256)
        for i in 0..<m { joint[Int(context[i]) << 8 | Int(symbols[i])] += 1 }
        var rows: [[UInt32]] = []
        var members: [[Int]] = []
        for c in 0..<256 {
            let row = UnsafeBufferPointer(start: joint + c << 8, count: 256)
            if row.contains(where: { $0 > 0 }) {
                rows.append(Array(row))
                members.append([c])
            }
        }
        guard rows.count > 1 else { return nil }
        // Few segments before the costly merging: join the adjacent pair with the fewest symbols.
        var sizes = rows.map { $0.reduce(0) { $0 + Int($1) } }
        while rows.count > RansPlanner.contextSegments {
            var j = 0
            for k in 1..<(rows.count - 1) where sizes[k] + sizes[k + 1] < sizes[j] + sizes[j + 1] { j = k }
            merge(&rows, &members, &sizes, j)
        }
        let fixed = 2.0 + 128  // mode, table count, context map
        guard let (groups, merged) = mergeByCost(rows, members, fixed: fixed, selectors: false) else { return nil }
        let segments = merged.map { RansTableBuilder.choose($0, refined: true) }
        var map = [UInt8](repeating: 0, count: 256)
        for (t, group) in groups.enumerated() { for c in group { map[c] = UInt8(t) } }
        let bytes = fixed + segments.reduce(0) { $0 + $1.bytes }
        return Plan(mode: .context, bytes: bytes, tables: segments, contextMap: map)
    }

    // MARK: - Blocks

    private func planBlocks(_ symbols: UnsafePointer<UInt8>, _ m: Int, _ rows: Rows?) -> Plan? {
        var length = RansPlanner.defaultBlockLength, first = length
        if let rows, rows.length >= 64 {
            length = rows.length * max(1, RansPlanner.minimumRowBlock / rows.length)
            first = length - rows.offset % length
        }
        guard m >= 4 * length else { return nil }
        let layout = BlockLayout(m: m, length: length, first: first)
        let blockCount = layout.count
        let range = layout.range
        // Sort blocks by their mean byte (for the exponent plane: the rows' scale) into groups.
        var sums = [Int](repeating: 0, count: blockCount)
        for b in 0..<blockCount {
            let r = range(b)
            var s = 0
            for i in r { s += Int(symbols[i]) }
            sums[b] = s * 1024 / max(1, r.count)
        }
        let order = (0..<blockCount).sorted { sums[$0] != sums[$1] ? sums[$0] < sums[$1] : $0 < $1 }
        let groupCount = min(RansPlanner.blockGroups, blockCount)
        var group = [Int](repeating: 0, count: blockCount)
        for (rank, b) in order.enumerated() { group[b] = rank * groupCount / blockCount }
        var rowsOfGroup = [[UInt32]](repeating: [UInt32](repeating: 0, count: 256), count: groupCount)
        var members = [[Int]](repeating: [], count: groupCount)
        for b in 0..<blockCount {
            members[group[b]].append(b)
            let r = range(b)
            rowsOfGroup[group[b]].withUnsafeMutableBufferPointer { h in
                for i in r { h[Int(symbols[i])] += 1 }
            }
        }
        // Mode, block length, first length, table count.
        guard let (groups, merged) = mergeByCost(rowsOfGroup, members, fixed: 10, selectors: true), merged.count >= 2 else { return nil }
        var selectors = [UInt8](repeating: 0, count: blockCount)
        for (t, g) in groups.enumerated() { for b in g { selectors[b] = UInt8(t) } }
        // Refinement: move each block to the table that codes it cheapest, while that helps.
        // Every count here is exact, so the tables written are built from them directly.
        var counts = merged
        var current = counts.reduce(0.0) { sum, h in sum + h.withUnsafeBufferPointer { RansTableBuilder.estimate($0.baseAddress!) } }
        for _ in 0..<RansPlanner.iterations {
            let (moved, hists) = reassign(symbols, blockCount, range, counts.map { RansTableBuilder.choose($0) })
            let bytes = hists.reduce(0.0) { sum, h in sum + h.withUnsafeBufferPointer { RansTableBuilder.estimate($0.baseAddress!) } }
            guard bytes < current else { break }
            current = bytes
            (selectors, counts) = (moved, hists)
        }
        // One table is mode single's job (and the format refuses blocks of one table).
        guard counts.count >= 2 else { return nil }
        return blockPlan(counts.map { RansTableBuilder.choose($0, refined: true) }, selectors, length, first)
    }

    func blockPlan(_ tables: [RansTableBuilder.Choice], _ selectors: [UInt8], _ length: Int, _ first: Int) -> Plan {
        var counts = [UInt32](repeating: 0, count: tables.count)
        for s in selectors { counts[Int(s)] += 1 }
        let selector = RansTableBuilder.selectorChoice(counts)
        let bytes = 1 + 9 + tables.reduce(0) { $0 + $1.bytes } + selector.bytes
        return Plan(mode: .blocks, bytes: bytes, tables: tables, blockLength: length, firstLength: first,
                    selectors: selectors, selectorTable: selector)
    }

    /// The table of `tables` that codes each block cheapest, and the counts each table then
    /// gathers (tables without a block dropped).
    private func reassign(_ symbols: UnsafePointer<UInt8>, _ blockCount: Int, _ range: (Int) -> Range<Int>,
                          _ tables: [RansTableBuilder.Choice]) -> ([UInt8], [[UInt32]]) {
        // costs[s]: what symbol s costs in each of the (at most 16) tables, so that a block's cost
        // in every table is one vector multiply-add per distinct symbol of the block.
        precondition(tables.count <= 16, "at most 16 tables")
        var costs = [SIMD16<Float>](repeating: SIMD16(repeating: .infinity), count: 256)
        for (t, table) in tables.enumerated() {
            for s in 0..<256 { costs[s][t] = Float(RansTableBuilder.costBits[Int(table.table.freqs[s])]) }
        }
        var selectors = [UInt8](repeating: 0, count: blockCount)
        var h = [UInt32](repeating: 0, count: 256)
        var touched = [Int]()
        touched.reserveCapacity(256)
        var gathered = [UInt32](repeating: 0, count: tables.count * 256)
        costs.withUnsafeBufferPointer { cost in
            h.withUnsafeMutableBufferPointer { h in
                for b in 0..<blockCount {
                    let r = range(b)
                    for i in r {
                        let s = Int(symbols[i])
                        if h[s] == 0 { touched.append(s) }
                        h[s] += 1
                    }
                    var total = SIMD16<Float>(repeating: 0)
                    for s in touched { total += Float(h[s]) * cost[s] }  // not addProduct: a libm call per lane
                    var bestTable = 0
                    for t in 1..<tables.count where total[t] < total[bestTable] { bestTable = t }
                    selectors[b] = UInt8(bestTable)
                    for s in touched {
                        gathered[bestTable * 256 + s] += h[s]
                        h[s] = 0
                    }
                    touched.removeAll(keepingCapacity: true)
                }
            }
        }
        // Tables no block chose are dropped, and the selectors renumbered.
        var renumber = [UInt8](repeating: 0, count: tables.count)
        var hists: [[UInt32]] = []
        for t in 0..<tables.count {
            let h = Array(gathered[(t * 256)..<(t * 256 + 256)])
            guard h.contains(where: { $0 > 0 }) else { continue }
            renumber[t] = UInt8(hists.count)
            hists.append(h)
        }
        return (selectors.map { renumber[Int($0)] }, hists)
    }

    // MARK: - Merging

    /// Merges adjacent rows (contexts in value order, or block groups in order of their mean) by
    /// the smallest increase in estimated bytes (``RansTableBuilder/estimate(_:)``), down to one
    /// row; returns the cheapest partition with at most ``maxTables`` rows: the original members
    /// and the counts of each. With `selectors`, members are blocks and each partition also pays
    /// for coding one selector per block.
    private func mergeByCost(_ start: [[UInt32]], _ startMembers: [[Int]], fixed: Double,
                             selectors: Bool) -> ([[Int]], [[UInt32]])? {
        var rows = start, members = startMembers
        var sizes = rows.map { $0.reduce(0) { $0 + Int($1) } }
        func estimate(_ k: Int) -> Double { rows[k].withUnsafeBufferPointer { RansTableBuilder.estimate($0.baseAddress!) } }
        var tables = rows.indices.map(estimate)
        var bestBytes = Double.infinity
        var best: ([[Int]], [[UInt32]])?
        func selectorBytes() -> Double {
            guard selectors else { return 0 }
            var counts = [UInt32](repeating: 0, count: 256)
            for (t, m) in members.enumerated() { counts[t] = UInt32(m.count) }
            return counts.withUnsafeBufferPointer { RansTableBuilder.estimate($0.baseAddress!) }
        }
        // pairs[k]: the estimate of rows k and k + 1 joined.
        func joined(_ k: Int) -> Double {
            rows[k].withUnsafeBufferPointer { a in
                rows[k + 1].withUnsafeBufferPointer { b in RansTableBuilder.estimate(a.baseAddress!, plus: b.baseAddress!) }
            }
        }
        var pairs = (0..<max(0, rows.count - 1)).map(joined)
        while true {
            if rows.count <= RansPlanner.maxTables {
                let bytes = fixed + tables.reduce(0, +) + selectorBytes()
                if bytes < bestBytes {
                    bestBytes = bytes
                    best = (members, rows)
                }
            }
            if rows.count == 1 { break }
            var j = 0, bestIncrease = Double.infinity
            for k in 0..<pairs.count {
                let increase = pairs[k] - tables[k] - tables[k + 1]
                if increase < bestIncrease { bestIncrease = increase; j = k }
            }
            merge(&rows, &members, &sizes, j)
            tables[j] = pairs[j]
            tables.remove(at: j + 1)
            pairs.remove(at: j)
            if j > 0 { pairs[j - 1] = joined(j - 1) }
            if j < pairs.count { pairs[j] = joined(j) }
        }
        return best
    }

    private func merge(_ rows: inout [[UInt32]], _ members: inout [[Int]], _ sizes: inout [Int], _ j: Int) {
        for s in 0..<256 { rows[j][s] += rows[j + 1][s] }
        members[j] += members[j + 1]
        sizes[j] += sizes[j + 1]
        rows.remove(at: j + 1)
        members.remove(at: j + 1)
        sizes.remove(at: j + 1)
    }

    // MARK: - Statistics

    func histogram(_ p: UnsafePointer<UInt8>, _ m: Int, into h: UnsafeMutablePointer<UInt32>) {
        // Four sub-histograms keep neighbouring equal bytes from waiting on each other's increments.
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 1024) { sub in
            let s = sub.baseAddress!
            s.initialize(repeating: 0, count: 1024)
            var i = 0
            while i + 4 <= m {
                s[Int(p[i])] += 1
                s[256 + Int(p[i + 1])] += 1
                s[512 + Int(p[i + 2])] += 1
                s[768 + Int(p[i + 3])] += 1
                i += 4
            }
            while i < m { s[Int(p[i])] += 1; i += 1 }
            for v in 0..<256 { h[v] = s[v] + s[256 + v] + s[512 + v] + s[768 + v] }
        }
    }

    private func entropyBits(_ h: [UInt32], _ m: Int) -> Double {
        let n = Double(m)
        var bits = 0.0
        for c in h where c > 0 { bits -= Double(c) * log2(Double(c) / n) }
        return bits
    }
}

