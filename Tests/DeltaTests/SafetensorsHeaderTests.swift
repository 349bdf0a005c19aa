import Delta
import Foundation
import Testing

@Suite struct SafetensorsHeaderTests {
    // MARK: - Valid headers

    @Test func validHeaderParsesInHeaderOrderWithDataOrderAndMetadataOrder() throws {
        // Header order: w, b, __metadata__, s. Data order: b, s, w. Keys inside entries are unsorted.
        let json = #"{"w":{"shape":[2,2],"data_offsets":[10,26],"dtype":"F32"},"b":{"dtype":"F16","shape":[3],"data_offsets":[0,6]},"#
            + #""__metadata__":{"format":"pt","alpha":"1"},"s":{"dtype":"I32","shape":[],"data_offsets":[6,10]}}"#
        let bytes = safetensorsBytes(json: json, data: Array(0..<26), padTo: 8)
        let header = try parseHeader(bytes)
        #expect(header.tensors.map(\.name) == ["w", "b", "s"])
        #expect(header.tensorsInDataOrder.map(\.name) == ["b", "s", "w"])
        #expect(header.metadata?.map(\.key) == ["format", "alpha"])
        #expect(header.metadata?.map(\.value) == ["pt", "1"])
        let w = header.tensors[0]
        #expect(w.dtype == .f32)
        #expect(w.shape == [2, 2])
        #expect(w.dataOffsets == 10..<26)
        #expect(w.byteCount == 16)
        #expect(w.elementCount == 4)
        #expect(header.tensors[2].shape == [])
        #expect(header.tensors[2].elementCount == 1)
        #expect((8 + header.headerByteCount) % 8 == 0)
        #expect(header.dataStart == 8 + header.headerByteCount)
        #expect(header.dataByteCount == 26)
        #expect(header.fileByteCount == bytes.count)
    }

    @Test func headerWithoutMetadataHasNilMetadata() throws {
        let bytes = safetensorsBytes(json: #"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#, data: [1, 2])
        let header = try parseHeader(bytes)
        #expect(header.metadata == nil)
        #expect(header.tensors.count == 1)
    }

    @Test func emptyHeaderAndZeroSizeTensorsAreValid() throws {
        #expect(try parseHeader(safetensorsBytes(json: "{}")).tensors.isEmpty)
        // Zero-size tensors may sit anywhere, including at the end of the data.
        let json = #"{"e":{"dtype":"F32","shape":[0,4],"data_offsets":[4,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"#
            + #""z":{"dtype":"BF16","shape":[3,0],"data_offsets":[0,0]}}"#
        let header = try parseHeader(safetensorsBytes(json: json, data: [0, 0, 0x80, 0x3F]))
        #expect(header.tensors.map(\.byteCount) == [0, 4, 0])
    }

    @Test func paddingWithSpacesIsAccepted() throws {
        let json = #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"# + String(repeating: " ", count: 37)
        let header = try parseHeader(safetensorsBytes(json: json, data: [7]))
        #expect(header.headerByteCount == json.utf8.count)
    }

    @Test func encodePadsToAMultipleOfEightAndParsesBack() throws {
        for nameLength in 1...9 {
            let name = String(repeating: "n", count: nameLength)
            let (bytes, infos) = SafetensorsHeader.encode(tensors: [(name, .f32, [2]), ("b", .u8, [3])], metadata: [("k", "v")])
            #expect(bytes.count % 8 == 0)
            #expect(infos.map(\.dataOffsets) == [0..<8, 8..<11])
            let header = try parseHeader(bytes + [UInt8](repeating: 0, count: 11))
            #expect(header.tensors == infos)
            #expect(header.metadata?.map(\.key) == ["k"])
            #expect(header.dataStart == bytes.count)
        }
    }

    // MARK: - Hostile inputs, each with its exact one-line error

    @Test func fileShorterThanEightBytes() {
        #expect(headerError([1, 2, 3])?.description
            == "bad.safetensors: file is 3 bytes, too short for a safetensors header (needs at least 8)")
        #expect(headerError([])?.description
            == "bad.safetensors: file is 0 bytes, too short for a safetensors header (needs at least 8)")
    }

    @Test func headerLengthOverTheLimit() {
        let bytes = littleEndianBytes(UInt64(100_000_001)) + Array("{}".utf8)
        #expect(headerError(bytes)?.description == "bad.safetensors: header length 100000001 exceeds the 100000000-byte limit")
        // A length with the top bit set must not wrap around to something small.
        let huge = littleEndianBytes(UInt64.max) + Array("{}".utf8)
        #expect(headerError(huge)?.description == "bad.safetensors: header length 18446744073709551615 exceeds the 100000000-byte limit")
    }

    /// A file that is no safetensors at all is named for what it looks like (its first bytes made a
    /// header length "exceeding the limit", which said nothing to a user who gave config.json).
    @Test func filesThatAreNotSafetensorsAreNamed() {
        let json = Array(#"{"architectures": ["BertModel"], "hidden_size": 384}"#.utf8)
        #expect(headerError(json)?.description == "bad.safetensors: not a safetensors file: it begins like text (JSON)")
        #expect(headerError([0x50, 0x4B, 0x03, 0x04, 0x00, 0x00, 0x08, 0x00] + Array(repeating: 0, count: 40))?.description.contains("zip archive (a PyTorch .bin or .pt checkpoint?)") == true)
        #expect(headerError([0x80, 0x02] + Array(repeating: 0x41, count: 40))?.description.contains("Python pickle") == true)
        #expect(headerError(Array("GGUF".utf8) + Array(repeating: 3, count: 40))?.description.contains("GGUF") == true)
        // A truncated safetensors file whose header length (640) begins like a pickle is still one.
        #expect(headerError(littleEndianBytes(UInt64(640)) + Array(repeating: 0x20, count: 300))?.description
            == "bad.safetensors: header length 640 runs past the end of the file (308 bytes)")
    }

    @Test func headerLengthPastTheEndOfTheFile() {
        let bytes = safetensorsBytes(json: "{}      ", declaredLength: 100)
        #expect(headerError(bytes)?.description == "bad.safetensors: header length 100 runs past the end of the file (16 bytes)")
    }

    @Test func headerTooShortForAnObject() {
        let bytes = safetensorsBytes(json: "{", declaredLength: 1)
        #expect(headerError(bytes)?.description == "bad.safetensors: header length 1 is too short for a JSON object")
    }

    @Test func prefixShorterThanTheDeclaredHeader() {
        // The caller hands over fewer bytes than the header needs (a short read).
        let bytes = safetensorsBytes(json: #"{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, data: [1])
        var error: DeltaError?
        bytes.withUnsafeBytes { raw in
            do throws(DeltaError) {
                _ = try SafetensorsHeader.parse(prefix: UnsafeRawBufferPointer(rebasing: raw[0..<20]), fileSize: raw.count, file: "bad.safetensors")
            } catch let e {
                error = e
            }
        }
        #expect(error == .truncatedData(file: "bad.safetensors", expected: bytes.count - 1, actual: 20))
        #expect(error?.description == "bad.safetensors: truncated: expected \(bytes.count - 1) bytes, file has 20")
    }

    @Test func headerThatIsNotAnObject() {
        #expect(headerError(safetensorsBytes(json: "[1, 2]"))?.description == "bad.safetensors: header does not start with '{'")
        #expect(headerError(safetensorsBytes(json: " {}"))?.description == "bad.safetensors: header does not start with '{'")
    }

    @Test func invalidJSON() {
        // `{"a": }`: the parser stops at the '}' (JSON offset 6, file offset 14).
        #expect(headerError(safetensorsBytes(json: #"{"a": }"#))?.description
            == "bad.safetensors: header is not valid JSON: unexpected character '}' at byte 14")
        // Padding that is not white space is garbage after the JSON value.
        #expect(headerError(safetensorsBytes(json: "{}\0\0\0\0\0\0"))?.description
            == "bad.safetensors: header is not valid JSON: unexpected text after the JSON value at byte 10")
    }

    @Test func duplicateTensorName() {
        let json = #"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}}"#
        #expect(headerError(safetensorsBytes(json: json, data: [1, 2]))?.description
            == "bad.safetensors: header is not valid JSON: duplicate key 'w' at byte 61")
    }

    @Test func unknownDType() {
        let json = #"{"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}"#
        let error = headerError(safetensorsBytes(json: json, data: [UInt8](repeating: 0, count: 16)))
        #expect(error == .invalidTensor(file: "bad.safetensors", tensor: "w", problem: "unknown dtype 'F128'"))
        #expect(error?.description == "bad.safetensors: tensor 'w': unknown dtype 'F128'")
        // dtype spellings are exact: PyTorch names are not header spellings.
        let lower = #"{"w":{"dtype":"float32","shape":[1],"data_offsets":[0,4]}}"#
        #expect(headerError(safetensorsBytes(json: lower, data: [0, 0, 0, 0]))?.description
            == "bad.safetensors: tensor 'w': unknown dtype 'float32'")
    }

    @Test(arguments: ["[-1]", "[2.0]", "[\"2\"]", "[1e2]", "[99999999999999999999]"])
    func badShape(shape: String) {
        let json = #"{"w":{"dtype":"U8","shape":"# + shape + #","data_offsets":[0,2]}}"#
        #expect(headerError(safetensorsBytes(json: json, data: [1, 2]))?.description
            == "bad.safetensors: tensor 'w': shape must be a list of non-negative integers")
    }

    @Test func shapeThatOverflows() {
        let json = #"{"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}}"#
        #expect(headerError(safetensorsBytes(json: json, data: [UInt8](repeating: 0, count: 8)))?.description
            == "bad.safetensors: tensor 'w': shape 4294967296×4294967296 overflows")
    }

    @Test func rankBeyondWhatTheObjectFormatStores() throws {
        // Object headers store the rank in one byte: 255 dimensions parse, 256 are refused up front
        // (they used to trap when the tensor was encoded).
        func json(rank: Int) -> String {
            let dims = [String](repeating: "1", count: rank).joined(separator: ",")
            return #"{"w":{"dtype":"F32","shape":["# + dims + #"],"data_offsets":[0,4]}}"#
        }
        #expect(try parseHeader(safetensorsBytes(json: json(rank: 255), data: [0, 0, 0, 0])).tensors[0].shape.count == 255)
        #expect(headerError(safetensorsBytes(json: json(rank: 256), data: [0, 0, 0, 0]))?.description
            == "bad.safetensors: tensor 'w': shape has 256 dimensions; at most 255 are supported")
    }

    @Test func missingFields() {
        let cases: [(String, String)] = [
            (#"{"w":{"shape":[1],"data_offsets":[0,1]}}"#, "missing 'dtype'"),
            (#"{"w":{"dtype":"U8","data_offsets":[0,1]}}"#, "missing 'shape'"),
            (#"{"w":{"dtype":"U8","shape":[1]}}"#, "missing 'data_offsets'"),
            (#"{"w":[1]}"#, "entry is not an object"),
            (#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}}"#,
             "data_offsets must be two integers [begin, end] with 0 <= begin <= end"),
            (#"{"w":{"dtype":"U8","shape":[1],"data_offsets":[0]}}"#,
             "data_offsets must be two integers [begin, end] with 0 <= begin <= end"),
        ]
        for (json, problem) in cases {
            #expect(headerError(safetensorsBytes(json: json, data: [9]))?.description == "bad.safetensors: tensor 'w': " + problem)
        }
    }

    @Test func byteLengthDisagreesWithDTypeAndShape() {
        let json = #"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#
        #expect(headerError(safetensorsBytes(json: json, data: [UInt8](repeating: 0, count: 12)))?.description
            == "bad.safetensors: tensor 'w': byte length 12 does not match F32 × 2×2 = 16 bytes")
        let scalar = #"{"s":{"dtype":"BF16","shape":[],"data_offsets":[0,4]}}"#
        #expect(headerError(safetensorsBytes(json: scalar, data: [0, 0, 0, 0]))?.description
            == "bad.safetensors: tensor 's': byte length 4 does not match BF16 × scalar = 2 bytes")
    }

    @Test func dataPastTheDataSectionOfATruncatedFile() throws {
        let json = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#
        let whole = safetensorsBytes(json: json, data: [UInt8](repeating: 1, count: 16))
        #expect(try parseHeader(whole).dataByteCount == 16)
        let truncated = Array(whole.dropLast(5))
        #expect(headerError(truncated)?.description == "bad.safetensors: tensor 'w': data ends at byte 16, data section has 11")
    }

    @Test func overlappingTensors() {
        let json = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#
        #expect(headerError(safetensorsBytes(json: json, data: [UInt8](repeating: 0, count: 12)))?.description
            == "bad.safetensors: tensor 'b': bytes 4..<12 overlap tensor 'a' (bytes 0..<8)")
        // Two tensors on the same bytes overlap too.
        let same = #"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#
        #expect(headerError(safetensorsBytes(json: same, data: [1, 2, 3, 4]))?.description
            == "bad.safetensors: tensor 'b': bytes 0..<4 overlap tensor 'a' (bytes 0..<4)")
    }

    @Test func bytesThatBelongToNoTensor() {
        // A gap between tensors.
        let gap = #"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],"data_offsets":[5,7]}}"#
        #expect(headerError(safetensorsBytes(json: gap, data: [UInt8](repeating: 0, count: 7)))?.description
            == "bad.safetensors: data bytes 2..<5 belong to no tensor")
        // Bytes after the last tensor.
        let tail = #"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#
        #expect(headerError(safetensorsBytes(json: tail, data: [UInt8](repeating: 0, count: 6)))?.description
            == "bad.safetensors: data bytes 2..<6 belong to no tensor")
        // Data but no tensors at all.
        #expect(headerError(safetensorsBytes(json: "{}", data: [1]))?.description
            == "bad.safetensors: data bytes 0..<1 belong to no tensor")
    }

    @Test func nonStringMetadata() {
        let json = #"{"__metadata__":{"format":"pt","step":1000}}"#
        #expect(headerError(safetensorsBytes(json: json))?.description
            == "bad.safetensors: __metadata__ value for 'step' is not a string")
        #expect(headerError(safetensorsBytes(json: #"{"__metadata__":["pt"]}"#))?.description
            == "bad.safetensors: __metadata__ is not an object of strings")
    }

    @Test func everyErrorIsOneLine() {
        let hostile: [[UInt8]] = [
            [1, 2, 3],
            safetensorsBytes(json: "{\n\"a\": \n}"),
            safetensorsBytes(json: #"{"w":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}"#, data: [0]),
        ]
        for bytes in hostile {
            let text = headerError(bytes)?.description ?? ""
            #expect(!text.isEmpty)
            #expect(!text.dropLast().contains("\n"), "\(text)")
        }
    }

    // MARK: - The same files opened from disk

    @Test func hostileFilesOnDiskAreRejectedWithTheSameErrors() throws {
        try withTemporaryDirectory { dir in
            let files: [(String, [UInt8], String)] = [
                ("short.safetensors", [0, 0, 0], "short.safetensors: file is 3 bytes, too short for a safetensors header (needs at least 8)"),
                ("past.safetensors", safetensorsBytes(json: "{}", declaredLength: 64),
                 "past.safetensors: header length 64 runs past the end of the file (10 bytes)"),
                ("trunc.safetensors", safetensorsBytes(json: #"{"w":{"dtype":"I16","shape":[4],"data_offsets":[0,8]}}"#, data: [1, 2, 3]),
                 "trunc.safetensors: tensor 'w': data ends at byte 8, data section has 3"),
            ]
            for (name, bytes, expected) in files {
                let path = dir + "/" + name
                try writeFile(bytes, to: path)
                var thrown: DeltaError?
                do throws(DeltaError) {
                    _ = try SafetensorsFile(path: path, displayName: name)
                } catch {
                    thrown = error
                }
                #expect(thrown?.description == expected)
            }
            // A file that does not exist is an I/O error naming the path.
            var missing: DeltaError?
            do throws(DeltaError) {
                _ = try SafetensorsFile(path: dir + "/none.safetensors")
            } catch {
                missing = error
            }
            #expect(missing == .io(path: dir + "/none.safetensors", reason: "No such file or directory"))
        }
    }
}
