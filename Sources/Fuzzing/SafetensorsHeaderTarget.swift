import Delta
import Foundation

/// `safetensors-header`: ``SafetensorsHeader/parse(prefix:fileSize:file:)`` on whole files and on
/// short reads, and one input in 16 as a file on disk through ``SafetensorsFile`` and
/// ``CheckpointCheck`` (what `mrepo check` and every commit run).
enum SafetensorsHeaderTarget {
    static let fileName = "fuzz.safetensors"

    static let target = FuzzTarget(
        name: "safetensors-header", summary: "safetensors header parsing and validation, SafetensorsFile, mrepo check",
        dialect: .binary, maxInputBytes: 4096, mention: fileName,
        seeds: { seeds() }, hostile: { hostile() }, mutate: mutateStructured, prepare: prepare)

    /// Valid files: several dtypes, metadata, zero-size and scalar tensors, an empty header.
    static func seeds() -> [[UInt8]] {
        var rng = SeededRandom(seed: 7)
        func file(_ tensors: [(name: String, dtype: DType, shape: Shape)], metadata: [(key: String, value: String)]?) -> [UInt8] {
            let (header, infos) = SafetensorsHeader.encode(tensors: tensors, metadata: metadata)
            let data = (0..<(infos.last?.dataOffsets.upperBound ?? 0)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            return header + data
        }
        return [
            file([("a", .f32, [2, 3]), ("b.weight", .f32, [4])], metadata: [("format", "pt")]),
            file([], metadata: nil),
            file([], metadata: [("k", "v"), ("empty", "")]),
            file([("empty", .u8, [0]), ("scalar", .bf16, []), ("bytes", .u8, [5])], metadata: nil),
            file([("d", .f64, [2]), ("i", .i64, [1]), ("m", .bool, [3]), ("e", .f8e4m3, [4]), ("f", .f8e5m2, [2]),
                  ("h", .f16, [2, 2]), ("s", .i8, [3]), ("u", .u16, [1]), ("w", .u32, [1]), ("z", .i32, [1, 1, 1, 1])],
                 metadata: [("__note__", "all dtypes")]),
            file([("model.layers.0.self_attn.q_proj.weight", .bf16, [4, 4]), ("lm_head.weight", .f16, [2, 8])], metadata: nil),
        ]
    }

    /// The hostile headers the fuzzing issue lists: a length of 2⁶³, overlapping offsets, a shape
    /// whose product overflows, a duplicate name; and a name with a newline (found by fuzzing).
    static func hostile() -> [[UInt8]] {
        func file(_ json: String, data: Int, length: UInt64? = nil) -> [UInt8] {
            let text = Array(json.utf8)
            let n = length ?? UInt64(text.count)
            return (0..<8).map { UInt8(truncatingIfNeeded: n >> (8 * UInt64($0))) } + text + [UInt8](repeating: 0, count: data)
        }
        return [
            file("{}", data: 0, length: 1 << 63),
            file(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#, data: 12),
            file(#"{"w":{"dtype":"F32","shape":[3037000500,3037000500],"data_offsets":[0,4]}}"#, data: 4),
            file(#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#, data: 2),
            file(#"{"a\nb":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}}"#, data: 1),
        ]
    }

    /// Edits the JSON text between the length prefix and the data, then (usually) fixes the
    /// prefix, so the edit reaches the validation instead of stopping at the framing.
    @Sendable static func mutateStructured(_ m: inout Mutator, _ input: [UInt8], _ corpus: [[UInt8]]) -> [UInt8] {
        guard input.count >= 8 else { return m.mutate(input, corpus: corpus) }
        var n = 0
        for i in (0..<8).reversed() { n = n << 8 | Int(input[i]) }
        guard n >= 0, n <= input.count - 8 else { return m.mutate(input, corpus: corpus) }
        var json = Array(input[8..<(8 + n)])
        var data = Array(input[(8 + n)...])
        var text = Mutator(rng: m.rng, dialect: .json, maxBytes: m.maxBytes)
        for _ in 0..<(1 + m.below(3)) {
            if m.chance(5) { text.byteEdit(&json, corpus: []) } else { text.tokenEdit(&json) }
        }
        m.rng = text.rng
        switch m.below(6) {
        case 0: data.removeLast(m.below(data.count + 1))
        case 1: data += [UInt8](repeating: UInt8(truncatingIfNeeded: m.rng.next()), count: 1 + m.below(16))
        default: break
        }
        var length = UInt64(json.count)
        if m.chance(8) { length = m.pick(Mutator.interestingIntegers) }
        return (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) } + json + data
    }

    static func prepare(_ scratch: String) throws -> FuzzRunner {
        let path = scratch + "/" + fileName
        return FuzzRunner { input in
            let header = try parse(input, prefixCount: input.count)
            try check(header, fileSize: input.count)
            // A short read: the same header when it fits in the prefix, else a truncation error.
            let short = input.count * 3 / 4
            var truncated: DeltaError?
            var again: SafetensorsHeader?
            do throws(DeltaError) { again = try parse(input, prefixCount: short) } catch { truncated = error }
            if header.dataStart <= short {
                try require(again == header, "a prefix holding the whole header parses differently")
            } else {
                try require(truncated == .truncatedData(file: fileName, expected: short < 8 ? 8 : header.dataStart, actual: short),
                            "a short read of \(short) bytes gives \(String(describing: truncated)), not a truncation error")
            }
            if slowChecks(input, oneIn: 16) { try onDisk(input, path: path, header: header) }
        }
    }

    static func parse(_ input: [UInt8], prefixCount: Int) throws(DeltaError) -> SafetensorsHeader {
        let result: Result<SafetensorsHeader, DeltaError> = input.withUnsafeBytes { raw in
            do throws(DeltaError) {
                return .success(try SafetensorsHeader.parse(prefix: UnsafeRawBufferPointer(rebasing: raw[0..<prefixCount]),
                                                             fileSize: raw.count, file: fileName))
            } catch {
                return .failure(error)
            }
        }
        return try result.get()
    }

    /// What an accepted header promises: the file is exactly header plus data, every data byte
    /// belongs to exactly one tensor, sizes agree with dtype × shape, names are unique, and the
    /// header survives being written and read again.
    static func check(_ header: SafetensorsHeader, fileSize: Int) throws {
        try require(header.fileByteCount == fileSize, "header describes \(header.fileByteCount) bytes, file has \(fileSize)")
        try require(Set(header.tensors.map(\.name)).count == header.tensors.count, "duplicate tensor names accepted")
        var end = 0
        for t in header.tensorsInDataOrder {
            try require(t.shape.count <= 255, "'\(t.name)' has rank \(t.shape.count)")
            let size = t.shape.elementCount.map { $0.multipliedReportingOverflow(by: t.dtype.byteSize) }
            try require(size?.overflow == false && size?.partialValue == t.byteCount, "'\(t.name)': size disagrees with dtype × shape")
            try require(t.dataOffsets.lowerBound == end,
                        "'\(t.name)' starts at \(t.dataOffsets.lowerBound), previous data ends at \(end)")
            end = max(end, t.dataOffsets.upperBound)
        }
        try require(end == header.dataByteCount, "tensors cover \(end) of \(header.dataByteCount) data bytes")
        let ordered = header.tensorsInDataOrder
        let (bytes, _) = SafetensorsHeader.encode(tensors: ordered.map { ($0.name, $0.dtype, $0.shape) }, metadata: header.metadata)
        let again = try parse(bytes + [UInt8](repeating: 0, count: header.dataByteCount), prefixCount: bytes.count + header.dataByteCount)
        try require(again.tensors.map(\.name) == ordered.map(\.name) && again.tensors.map(\.shape) == ordered.map(\.shape)
                    && again.tensors.map(\.dtype) == ordered.map(\.dtype) && again.metadata?.map(\.key) == header.metadata?.map(\.key)
                    && again.metadata?.map(\.value) == header.metadata?.map(\.value),
                    "the header does not survive being written again")
    }

    /// The input as a file: opened, every tensor read, checked for non-finite values.
    static func onDisk(_ input: [UInt8], path: String, header: SafetensorsHeader) throws {
        try writeScratch(input, to: path)
        let file = try SafetensorsFile(path: path, displayName: fileName)
        try require(file.header == header, "the file on disk parses differently")
        for t in file.tensors {
            try require(file.tensor(named: t.name) == t, "lookup by name of '\(t.name)' fails")
            let bytes = file.data(of: t)
            try require(bytes.count == t.byteCount, "'\(t.name)' reads \(bytes.count) bytes")
            if t.dtype.isFloatingPoint {
                var floats = [Float](repeating: 0, count: t.elementCount)
                floats.withUnsafeMutableBufferPointer { FloatConversion.toFloat(t.dtype, bytes, into: $0) }
            }
            file.release(t)
        }
        let report = CheckpointCheck.check(paths: [path], finite: true)
        for finding in report.findings {
            try require(!finding.description.contains(where: \.isNewline), "mrepo check finding spans lines: \(finding.description.debugDescription)")
        }
    }
}
