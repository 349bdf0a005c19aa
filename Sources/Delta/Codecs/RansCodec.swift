/// The rANS chunk coder (coder 2, docs/format.md §5.5): each byte plane of a chunk is stored raw or
/// coded with static 12-bit frequency tables, one table, one per block or one per context byte;
/// the coded planes share one stream of eight interleaved rANS states.
///
/// Stored bytes: one section per plane, the most significant plane first (the order of
/// decoding), then the stream: the eight initial states (u32 each) and 16-bit words.
enum RansCodec {
    static let maxTables = 16
    /// The most chunk bytes a coder 2 chunk of one stored byte can stand for. A table gives a value
    /// at most 4095 of its 4096 slots, so each decoding step shrinks a state x by at least
    /// ⌊x / 4096⌋: a state falls from 2^32 below 2^16 within 48 500 steps, and is refilled only by
    /// reading 2 bytes. Eight states and 16-bit words give fewer than 24 300 symbols per stored
    /// byte, raw planes one; readers check this before reserving memory for a chunk.
    static let maximumExpansion = 1 << 15

    // MARK: - Encoding

    /// Encodes the `width` planes of one chunk (`planes`, plane 0 first, equal lengths).
    ///
    /// - Parameters:
    ///   - output: receives the stored bytes; at least `planes.count` bytes.
    ///   - scratch: at least `planes.count` bytes, for the stream before it is moved into place.
    ///   - limit: the size the result must stay below.
    /// - Returns: the stored size, or nil when it would not be below `limit`.
    static func encode(planes: UnsafeRawBufferPointer, width: Int, rows: RansPlanner.Rows?,
                       output: UnsafeMutableRawBufferPointer, scratch: UnsafeMutableRawBufferPointer, limit: Int) -> Int? {
        let n = planes.count
        precondition(width > 0 && n % width == 0 && output.count >= n && scratch.count >= n, "whole elements, room for the planes")
        let m = n / width
        guard m > 0 else { return nil }
        let base = planes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        func plane(_ k: Int) -> UnsafePointer<UInt8> { base + k * m }
        let ctx = encoders.take()
        defer { encoders.give(ctx) }
        var plans = [RansPlanner.Plan]()
        var estimate = Double(4 * RansKernel.stateCount)
        for k in (0..<width).reversed() {
            let p = ctx.planner.plan(plane(k), count: m, context: k + 1 < width ? plane(k + 1) : nil, rows: rows)
            estimate += p.bytes
            plans.append(p)
        }
        plans.reverse()  // plans[k] is plane k's
        // The estimate is exact to a few bytes: give up before coding when it cannot win.
        guard estimate + 16 < Double(limit), plans.contains(where: { $0.mode != .raw }) else { return nil }

        var out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let outEnd = out + min(output.count, limit)
        for k in (0..<width).reversed() {
            let section = plans[k].section()
            let extra = plans[k].mode == .raw ? m : 0
            guard outEnd - out > section.count + extra else { return nil }
            section.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: section.count) }
            out += section.count
            if plans[k].mode == .raw {
                out.update(from: plane(k), count: m)
                out += m
            }
        }
        let room = min(scratch.count, outEnd - out)
        guard room > 4 * RansKernel.stateCount else { return nil }
        let streamEnd = scratch.baseAddress!.assumingMemoryBound(to: UInt8.self) + room
        var writer = RansKernel.Writer(cursor: streamEnd, floor: streamEnd - room)
        let states = ctx.states
        states.initialize(repeating: RansKernel.lowerBound, count: RansKernel.stateCount)
        // Backwards: the last sequence the decoder reads is coded first.
        for k in 0..<width where plans[k].mode != .raw {
            ctx.encodePlane(plans[k], plane(k), m, context: k + 1 < width ? plane(k + 1) : nil, &writer)
            if writer.overflow { return nil }
        }
        guard writer.cursor - writer.floor >= 4 * RansKernel.stateCount else { return nil }
        for i in (0..<RansKernel.stateCount).reversed() {
            writer.cursor -= 4
            UnsafeMutableRawPointer(writer.cursor).storeBytes(of: states[i].littleEndian, as: UInt32.self)
        }
        let streamCount = streamEnd - writer.cursor
        out.update(from: writer.cursor, count: streamCount)
        let total = out + streamCount - output.baseAddress!.assumingMemoryBound(to: UInt8.self)
        return total < limit ? total : nil
    }

    // MARK: - Decoding

    /// One parsed plane section.
    private struct Section {
        var mode: RansPlanner.Plan.Mode
        var raw: Range<Int> = 0..<0
        var tables: [RansTable] = []
        var selectorTable: RansTable?
        var blockLength = 0
        var firstLength = 0
        var contextMap: [UInt8] = []
        var grid = RansPlanner.Plan.Grid()
    }

    /// Decodes `stored` into the `width` planes of `planes` (plane 0 first, equal lengths).
    ///
    /// - Parameter scratch: at least `planes.count / width` bytes (block selectors).
    /// - Throws: ``RansError`` when the bytes are not a valid coder 2 chunk of this size.
    static func decode(_ stored: UnsafeRawBufferPointer, width: Int, into planes: UnsafeMutableRawBufferPointer,
                       scratch: UnsafeMutableRawBufferPointer, grid: Bool = true) throws(RansError) {
        let n = planes.count
        precondition(width > 0 && n % width == 0, "whole elements")
        let m = n / width
        guard m > 0 else { throw RansError("empty chunk") }
        precondition(scratch.count >= m, "room for the selectors")
        var reader = ByteReader(stored)
        var sections = [Section](repeating: Section(mode: .raw), count: width)
        for k in (0..<width).reversed() {
            sections[k] = try parseSection(&reader, plane: k, width: width, m: m, grid: grid)
        }
        let stream = UnsafeRawBufferPointer(rebasing: stored[reader.offset...])
        guard stream.count >= 4 * RansKernel.stateCount else { throw RansError("stream is truncated") }
        let ctx = decoders.take()
        defer { decoders.give(ctx) }
        let states = ctx.states
        for i in 0..<RansKernel.stateCount {
            states[i] = UInt32(littleEndian: stream.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
            guard states[i] >= RansKernel.lowerBound else { throw RansError("initial state \(i) is below 2^16") }
        }
        let start = stream.baseAddress!.assumingMemoryBound(to: UInt8.self)
        var r = RansKernel.Reader(cursor: start + 4 * RansKernel.stateCount, end: start + stream.count)
        let out = planes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let selectors = scratch.baseAddress!.assumingMemoryBound(to: UInt8.self)
        for k in (0..<width).reversed() {
            let s = sections[k]
            let dst = out + k * m
            switch s.mode {
            case .raw:
                dst.update(from: stored.baseAddress!.assumingMemoryBound(to: UInt8.self) + s.raw.lowerBound, count: m)
            case .single:
                s.tables[0].fillSlots(ctx.slots)
                RansKernel.decode(0..<m, into: dst, RansKernel.FixedSlots(table: ctx.slots), states: states, &r)
            case .blocks:
                for (t, table) in s.tables.enumerated() { table.fillSlots(ctx.slots + t << 12) }
                let selectorSlots = ctx.slots + maxTables << 12
                s.selectorTable!.fillSlots(selectorSlots)
                let blocks = BlockLayout(m: m, length: s.blockLength, first: s.firstLength)
                RansKernel.decode(0..<blocks.count, into: selectors, RansKernel.FixedSlots(table: selectorSlots), states: states, &r)
                for b in 0..<blocks.count {
                    let table = UnsafePointer(ctx.slots + Int(selectors[b]) << 12)
                    RansKernel.decode(blocks.range(b), into: dst, RansKernel.FixedSlots(table: table), states: states, &r)
                }
            case .context:
                for (t, table) in s.tables.enumerated() { table.fillSlots(ctx.slots + t << 12) }
                for c in 0..<256 { ctx.pointers[c] = UnsafePointer(ctx.slots + Int(s.contextMap[c]) << 12) }
                let source = RansKernel.ContextSlots(context: UnsafePointer(out + (k + 1) * m), tables: UnsafePointer(ctx.pointers))
                RansKernel.decode(0..<m, into: dst, source, states: states, &r)
            case .grid:
                decodeGrid(s, m, into: dst, selectors: selectors, ctx, &r)
            }
            if r.overrun { throw RansError("plane \(k) runs past the end of the stream") }
        }
        guard r.cursor == r.end else { throw RansError("\(r.end - r.cursor) bytes left after the last plane") }
        for i in 0..<RansKernel.stateCount where states[i] != RansKernel.lowerBound {
            throw RansError("final state \(i) is \(states[i]), expected 65536")
        }
    }

    private static func decodeGrid(_ s: Section, _ m: Int, into dst: UnsafeMutablePointer<UInt8>, selectors: UnsafeMutablePointer<UInt8>,
                                   _ ctx: RansDecoderContext, _ r: inout RansKernel.Reader) {
        let g = s.grid
        for (t, table) in s.tables.enumerated() { table.fillSlots(ctx.slots + t << 12) }
        let layout = RansGrid.layout(m: m, columns: g.columns, phase: g.phase)
        if g.rowClasses > 1 {
            let selectorSlots = ctx.slots + maxTables << 12
            s.selectorTable!.fillSlots(selectorSlots)
            RansKernel.decode(0..<layout.count, into: selectors, RansKernel.FixedSlots(table: selectorSlots), states: ctx.states, &r)
        }
        g.columnMap.withUnsafeBufferPointer { map in
            for b in 0..<layout.count where !r.overrun {
                let base = (g.rowClasses > 1 ? Int(selectors[b]) : 0) * g.columnClasses
                for c in 0..<g.columnClasses { ctx.pointers[c] = UnsafePointer(ctx.slots + (base + c) << 12) }
                let range = layout.range(b)
                let source = RansKernel.GridSlots(columns: map.baseAddress!, offset: range.lowerBound - (b == 0 ? g.phase : 0),
                                                  tables: UnsafePointer(ctx.pointers))
                RansKernel.decode(range, into: dst, source, states: ctx.states, &r)
            }
        }
    }

    private static func parseSection(_ reader: inout ByteReader, plane k: Int, width: Int, m: Int, grid: Bool) throws(RansError) -> Section {
        guard let byte = reader.u8() else { throw RansError("plane \(k) section is truncated") }
        guard let mode = RansPlanner.Plan.Mode(rawValue: byte) else { throw RansError("plane \(k) has unknown mode \(byte)") }
        guard mode != .grid || grid else { throw RansError("plane \(k) is a grid in a tensor of version 2") }
        var s = Section(mode: mode)
        func tableCount() throws(RansError) -> Int {
            guard let t = reader.u8() else { throw RansError("plane \(k) section is truncated") }
            guard t >= 1, Int(t) <= maxTables else { throw RansError("plane \(k) has \(t) tables (1…16)") }
            return Int(t)
        }
        switch mode {
        case .raw:
            let start = reader.offset
            guard reader.bytes(m) != nil else { throw RansError("raw plane \(k) is truncated") }
            s.raw = start..<(start + m)
        case .single:
            s.tables = [try RansTable.parse(&reader)]
        case .blocks:
            guard let length = reader.u32(), let first = reader.u32() else { throw RansError("plane \(k) section is truncated") }
            guard length >= 1, first >= 1, first <= length else {
                throw RansError("plane \(k) has blocks of \(length) after a first block of \(first)")
            }
            s.blockLength = Int(length)
            s.firstLength = Int(first)
            let t = try tableCount()
            guard t >= 2 else { throw RansError("plane \(k) switches between blocks of one table") }
            for _ in 0..<t { s.tables.append(try RansTable.parse(&reader)) }
            let selector = try RansTable.parse(&reader)
            guard selector.freqs[t...].allSatisfy({ $0 == 0 }) else { throw RansError("plane \(k) selects a table beyond its \(t)") }
            s.selectorTable = selector
        case .context:
            guard k + 1 < width else { throw RansError("plane \(k) has no more significant plane to take its context from") }
            let t = try tableCount()
            guard let packed = reader.bytes(128) else { throw RansError("plane \(k) section is truncated") }
            s.contextMap = packed.flatMap { [$0 & 0x0f, $0 >> 4] }
            guard s.contextMap.allSatisfy({ Int($0) < t }) else { throw RansError("plane \(k) maps a context to a table beyond its \(t)") }
            for _ in 0..<t { s.tables.append(try RansTable.parse(&reader)) }
        case .grid:
            guard let columns = reader.u32(), let phase = reader.u32(), let rows = reader.u8(), let classes = reader.u8() else {
                throw RansError("plane \(k) section is truncated")
            }
            guard columns >= 1, phase < columns else { throw RansError("plane \(k) has rows of \(columns) starting at column \(phase)") }
            guard rows >= 1, RansGrid.columnClassRange.contains(Int(classes)), Int(rows) * Int(classes) <= maxTables else {
                throw RansError("plane \(k) has \(rows) row classes of \(classes) column classes")
            }
            s.grid = RansPlanner.Plan.Grid(columns: Int(columns), phase: Int(phase), rowClasses: Int(rows), columnClasses: Int(classes))
            s.grid.columnMap = try RansGrid.unpackColumns(&reader, columns: Int(columns), classes: Int(classes), plane: k)
            for _ in 0..<(Int(rows) * Int(classes)) { s.tables.append(try RansTable.parse(&reader)) }
            if rows > 1 {
                let selector = try RansTable.parse(&reader)
                guard selector.freqs[Int(rows)...].allSatisfy({ $0 == 0 }) else { throw RansError("plane \(k) selects a row class beyond its \(rows)") }
                s.selectorTable = selector
            }
        }
        return s
    }

    // MARK: - Contexts

    private static let encoders = ContextPool<RansEncoderContext>(make: { RansEncoderContext() })
    private static let decoders = ContextPool<RansDecoderContext>(make: { RansDecoderContext() })
}

/// How a plane of `m` symbols is cut into blocks: `first` symbols, then `length` each.
struct BlockLayout {
    let m: Int, length: Int, first: Int

    var count: Int { first >= m ? 1 : 1 + (m - first + length - 1) / length }

    func range(_ b: Int) -> Range<Int> {
        b == 0 ? 0..<min(first, m) : min(m, first + (b - 1) * length)..<min(m, first + b * length)
    }
}

/// Per-thread memory of the encoder: the planner and the coding tables of one plane.
final class RansEncoderContext {
    let planner = RansPlanner()
    /// Up to 16 tables of a plane, then its selector table: 256 entries each.
    let symbols = UnsafeMutablePointer<RansEncodeSymbol>.allocate(capacity: (RansCodec.maxTables + 1) * 256)
    let pointers = UnsafeMutablePointer<UnsafePointer<RansEncodeSymbol>>.allocate(capacity: 256)
    let states = UnsafeMutablePointer<UInt32>.allocate(capacity: RansKernel.stateCount)

    deinit {
        symbols.deallocate()
        pointers.deallocate()
        states.deallocate()
    }

    /// Codes plane `p` as `plan` says, its selectors after its symbols (backwards).
    func encodePlane(_ plan: RansPlanner.Plan, _ p: UnsafePointer<UInt8>, _ m: Int, context: UnsafePointer<UInt8>?,
                     _ w: inout RansKernel.Writer) {
        for (t, table) in plan.tables.enumerated() { table.table.fillEncodeSymbols(symbols + t * 256) }
        switch plan.mode {
        case .raw:
            return
        case .single:
            RansKernel.encode(0..<m, from: p, RansKernel.FixedSymbols(table: symbols), states: states, &w)
        case .blocks:
            let blocks = BlockLayout(m: m, length: plan.blockLength, first: plan.firstLength)
            for b in (0..<blocks.count).reversed() where !w.overflow {
                let table = UnsafePointer(symbols + Int(plan.selectors[b]) * 256)
                RansKernel.encode(blocks.range(b), from: p, RansKernel.FixedSymbols(table: table), states: states, &w)
            }
            let selectorTable = symbols + RansCodec.maxTables * 256
            plan.selectorTable!.table.fillEncodeSymbols(selectorTable)
            plan.selectors.withUnsafeBufferPointer { sel in
                RansKernel.encode(0..<sel.count, from: sel.baseAddress!, RansKernel.FixedSymbols(table: selectorTable), states: states, &w)
            }
        case .context:
            for c in 0..<256 { pointers[c] = UnsafePointer(symbols + Int(plan.contextMap[c]) * 256) }
            let source = RansKernel.ContextSymbols(context: context!, tables: UnsafePointer(pointers))
            RansKernel.encode(0..<m, from: p, source, states: states, &w)
        case .grid:
            let g = plan.grid
            let layout = RansGrid.layout(m: m, columns: g.columns, phase: g.phase)
            g.columnMap.withUnsafeBufferPointer { map in
                for b in (0..<layout.count).reversed() where !w.overflow {
                    let base = (g.rowClasses > 1 ? Int(plan.selectors[b]) : 0) * g.columnClasses
                    for c in 0..<g.columnClasses { pointers[c] = UnsafePointer(symbols + (base + c) * 256) }
                    let range = layout.range(b)
                    let source = RansKernel.GridSymbols(columns: map.baseAddress!, offset: range.lowerBound - (b == 0 ? g.phase : 0),
                                                        tables: UnsafePointer(pointers))
                    RansKernel.encode(range, from: p, source, states: states, &w)
                }
            }
            if g.rowClasses > 1 {
                let selectorTable = symbols + RansCodec.maxTables * 256
                plan.selectorTable!.table.fillEncodeSymbols(selectorTable)
                plan.selectors.withUnsafeBufferPointer { sel in
                    RansKernel.encode(0..<sel.count, from: sel.baseAddress!, RansKernel.FixedSymbols(table: selectorTable), states: states, &w)
                }
            }
        }
    }
}

/// Per-thread memory of the decoder: the decoding slots of one plane's tables (about 280 KB).
final class RansDecoderContext {
    /// Up to 16 tables, then the selector table: 4096 slots each.
    let slots = UnsafeMutablePointer<UInt32>.allocate(capacity: (RansCodec.maxTables + 1) << 12)
    let pointers = UnsafeMutablePointer<UnsafePointer<UInt32>>.allocate(capacity: 256)
    let states = UnsafeMutablePointer<UInt32>.allocate(capacity: RansKernel.stateCount)

    deinit {
        slots.deallocate()
        pointers.deallocate()
        states.deallocate()
    }
}
