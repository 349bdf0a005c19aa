import Delta
import Foundation
import Testing

@Suite struct SafetensorsFileTests {
    /// One tensor of every dtype, plus a scalar and zero-size tensors.
    static func sampleTensors() -> [(name: String, dtype: DType, shape: Shape, bytes: [UInt8])] {
        var out: [(name: String, dtype: DType, shape: Shape, bytes: [UInt8])] = []
        for (i, dtype) in DType.allCases.enumerated() {
            let shape: Shape = [3, 2]
            out.append(("t.\(dtype.rawValue)", dtype, shape, testTensor(dtype, elementCount: 6, seed: UInt64(i))))
        }
        out.append(("scalar", .f64, [], bytesOf([Double.pi])))
        out.append(("empty.rows", .f32, [0, 5], []))
        out.append(("empty.vector", .bf16, [0], []))
        out.append(("after.empty", .i8, [2], [0x80, 0x7F]))
        return out
    }

    @Test func writerAndReaderRoundTripEveryDType() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/model.safetensors"
            let tensors = Self.sampleTensors()
            try SafetensorsWriter.write(path: path, tensors: tensors, metadata: [("format", "pt"), ("a", "b")])
            let file = try SafetensorsFile(path: path, displayName: "model.safetensors")
            #expect(file.tensors.map(\.name) == tensors.map(\.name))
            #expect(file.header.metadata?.map(\.key) == ["format", "a"])
            #expect(file.header.metadata?.map(\.value) == ["pt", "b"])
            #expect(file.header.dataStart % 8 == 0)
            for t in tensors {
                let info = try #require(file.tensor(named: t.name))
                #expect(info.dtype == t.dtype)
                #expect(info.shape == t.shape)
                #expect(Array(file.data(of: info)) == t.bytes, "\(t.name)")
                #expect(file.fileRange(of: info).count == t.bytes.count)
            }
            #expect(file.tensor(named: "missing") == nil)
            // Data follows the header directly, in the declared order, with no gaps.
            let fileBytes = try readFile(path)
            let dataByteCount = tensors.reduce(0) { $0 + $1.bytes.count }
            #expect(fileBytes.count == file.header.dataStart + dataByteCount)
            #expect(Array(fileBytes[file.header.dataStart...]) == tensors.flatMap(\.bytes))
            #expect(Array(file.headerBytes) == Array(fileBytes[0..<file.header.dataStart]))
            // The header is the compact JSON padded with spaces.
            let text = String(decoding: fileBytes[8..<file.header.dataStart], as: UTF8.self)
            #expect(text.hasPrefix(#"{"__metadata__":{"format":"pt","a":"b"},"t.F64":{"dtype":"F64","shape":[3,2],"data_offsets":[0,48]}"#))
            #expect(text.trimmingCharacters(in: .whitespaces).hasSuffix("}"))
        }
    }

    @Test(arguments: 0..<16)
    func headerIsPaddedToAMultipleOfEight(nameLength: Int) throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/x.safetensors"
            let name = "w" + String(repeating: "x", count: nameLength)
            try SafetensorsWriter.write(path: path, tensors: [(name, .u8, [1], [42])], metadata: nil)
            let bytes = try readFile(path)
            let n = Int(values(Array(bytes[0..<8]), as: UInt64.self)[0])
            #expect(n % 8 == 0)
            #expect(bytes.count == 8 + n + 1)
            #expect(bytes.last == 42)
            // Padding is spaces only.
            let json = Array(bytes[8..<(8 + n)])
            let end = try #require(json.lastIndex(of: UInt8(ascii: "}")))
            let padding = Array(json[(end + 1)...])
            let paddingIsSpaces = padding.allSatisfy { $0 == 0x20 }
            #expect(paddingIsSpaces, "padding bytes: \(padding)")
            #expect(json.count - end - 1 < 8)
        }
    }

    @Test func writerAcceptsATensorInSeveralPieces() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/p.safetensors"
            let a = randomBytes(40, seed: 1), b = randomBytes(12, seed: 2)
            let writer = try SafetensorsWriter(path: path, tensors: [("a", .f32, [10]), ("b", .u16, [6])], metadata: nil)
            #expect(writer.pending?.name == "a")
            try writer.write(Array(a[0..<7]))
            try writer.write(Array(a[7...]) + Array(b[0..<5]))  // crosses the tensor boundary
            #expect(writer.pending?.name == "b")
            try writer.write(Array(b[5...]))
            try writer.finish()
            let file = try SafetensorsFile(path: path)
            #expect(Array(file.data(of: file.tensors[0])) == a)
            #expect(Array(file.data(of: file.tensors[1])) == b)
        }
    }

    @Test func writerRejectsDuplicatesExtraBytesAndMissingBytes() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/bad.safetensors"
            expectThrows(DeltaError.invalidTensor(file: path, tensor: "a", problem: "declared twice")) {
                _ = try SafetensorsWriter(path: path, tensors: [("a", .u8, [1]), ("a", .u8, [1])], metadata: nil)
            }
            do {
                let extra = try SafetensorsWriter(path: path, tensors: [("a", .u8, [2])], metadata: nil)
                expectThrows(DeltaError.invalidHeader(file: path, problem: "more bytes written than the header declares")) {
                    try extra.write([1, 2, 3])
                }
            }
            let short = try SafetensorsWriter(path: path, tensors: [("a", .u8, [2]), ("b", .u8, [4])], metadata: nil)
            try short.write([1, 2, 3])
            expectThrows(DeltaError.invalidTensor(file: path, tensor: "b", problem: "only 1 of 4 bytes written")) {
                try short.finish()
            }
            // Nothing was written under the final name, and no temporary file is left behind.
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        }
    }

    @Test func droppedWriterLeavesNoFile() throws {
        try withTemporaryDirectory { dir in
            do {
                let writer = try SafetensorsWriter(path: dir + "/w.safetensors", tensors: [("a", .u8, [4])], metadata: nil)
                try writer.write([1, 2])
            }
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir).isEmpty)
        }
    }

    @Test func releaseKeepsDataReadable() throws {
        try withTemporaryDirectory { dir in
            let path = dir + "/r.safetensors"
            let data = randomBytes(3 * 4096, seed: 9)
            try SafetensorsWriter.write(path: path, tensors: [("a", .u8, [data.count], data)], metadata: nil)
            let file = try SafetensorsFile(path: path)
            let t = file.tensors[0]
            file.release(t)
            file.release(t, range: 100..<5000)
            file.map.willNeed(0..<file.map.count)
            #expect(Array(file.data(of: t)) == data)
        }
    }

    @Test func mappedFileOfAnEmptyFileAndOfADirectory() throws {
        try withTemporaryDirectory { dir in
            try writeFile([], to: dir + "/empty")
            let map = try MappedFile(path: dir + "/empty")
            #expect(map.count == 0)
            #expect(map.bytes.isEmpty)
            #expect(map.bytes(in: 0..<0).isEmpty)
            var thrown: DeltaError?
            do throws(DeltaError) {
                _ = try MappedFile(path: dir)
            } catch {
                thrown = error
            }
            #expect(thrown == .io(path: dir, reason: "not a regular file"))
        }
    }
}
