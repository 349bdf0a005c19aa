import Delta
import Testing

/// Hostile inputs: the ones the fuzzing issue lists and the ones `scripts/fuzz.sh` found
/// (docs/fuzzing.md), each refused with its exact one-line error instead of a crash.
@Suite struct DeltaFuzzRegressionTests {
    // MARK: - Safetensors headers

    /// A header length of 2⁶³ (and its neighbours) is refused by the limit; it must not wrap to a
    /// negative `Int` that slips past the bounds checks.
    @Test(arguments: [UInt64(1) << 63, (UInt64(1) << 63) - 1, (UInt64(1) << 63) + 8])
    func headerLengthNearTwoToTheSixtyThird(length: UInt64) {
        let bytes = littleEndianBytes(length) + Array("{}".utf8)
        #expect(headerError(bytes)?.description == "bad.safetensors: header length \(length) exceeds the 100000000-byte limit")
    }

    /// Found by the fuzzer: a caller that read fewer than 8 bytes of a longer file was told the
    /// file was too short.
    @Test func shortReadOfTheLengthIsATruncation() {
        let bytes = safetensorsBytes(json: "{}")
        var error: DeltaError?
        bytes.withUnsafeBytes { raw in
            do throws(DeltaError) {
                _ = try SafetensorsHeader.parse(prefix: UnsafeRawBufferPointer(rebasing: raw[0..<7]), fileSize: raw.count, file: "bad.safetensors")
            } catch let e {
                error = e
            }
        }
        #expect(error == .truncatedData(file: "bad.safetensors", expected: 8, actual: 7))
    }

    @Test func tensorEntirelyInsideAnotherOverlaps() {
        let json = #"{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#
        #expect(headerError(safetensorsBytes(json: json, data: [UInt8](repeating: 0, count: 8)))?.description
            == "bad.safetensors: tensor 'b': bytes 2..<4 overlap tensor 'a' (bytes 0..<8)")
    }

    @Test func zeroSizeTensorInsideAnotherOverlaps() {
        let json = #"{"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},"z":{"dtype":"U8","shape":[0],"data_offsets":[3,3]}}"#
        #expect(headerError(safetensorsBytes(json: json, data: [UInt8](repeating: 0, count: 8)))?.description
            == "bad.safetensors: tensor 'z': bytes 3..<3 overlap tensor 'a' (bytes 0..<8)")
    }

    /// Dimensions whose product overflows `Int`, and a product that fits but overflows once
    /// multiplied by the element size.
    @Test func dimensionProductsThatOverflow() {
        let elements = #"{"w":{"dtype":"F32","shape":[3037000500,3037000500],"data_offsets":[0,4]}}"#
        #expect(headerError(safetensorsBytes(json: elements, data: [0, 0, 0, 0]))?.description
            == "bad.safetensors: tensor 'w': shape 3037000500×3037000500 overflows")
        let bytes = #"{"w":{"dtype":"U16","shape":[2305843009213693952,2],"data_offsets":[0,2]}}"#
        #expect(headerError(safetensorsBytes(json: bytes, data: [0, 0]))?.description
            == "bad.safetensors: tensor 'w': shape 2305843009213693952×2 overflows")
    }

    @Test func duplicateMetadataIsRefused() {
        let json = #"{"__metadata__":{"a":"1"},"__metadata__":{"a":"2"}}"#
        #expect(headerError(safetensorsBytes(json: json))?.description
            == "bad.safetensors: header is not valid JSON: duplicate key '__metadata__' at byte 34")
    }

    /// Found by the fuzzer: names and values in a header may hold any character, and the error
    /// quoting them printed a newline, a carriage return or a vertical tab as it was.
    @Test func errorsQuotingControlCharactersStayOneLine() {
        let newline = #"{"a\nb":{"dtype":"U8","shape":[1],"data_offsets":[1,0]}}"#
        #expect(headerError(safetensorsBytes(json: newline, data: [0]))?.description
            == #"bad.safetensors: tensor 'a\x0Ab': tensor names must not contain control characters (found U+000A)"#)
        let carriageReturn = #"{"w":{"dtype":"\r","shape":[1],"data_offsets":[0,1]}}"#
        #expect(headerError(safetensorsBytes(json: carriageReturn, data: [0]))?.description
            == #"bad.safetensors: tensor 'w': unknown dtype '\r'"#)
        let escape = #"{"w":{"dtype":"\u001b[31m","shape":[1],"data_offsets":[0,1]}}"#
        #expect(headerError(safetensorsBytes(json: escape, data: [0]))?.description
            == #"bad.safetensors: tensor 'w': unknown dtype '\u{1B}[31m'"#)
        let verticalTab = safetensorsBytes(json: "{\"a\":\u{0B}1}")
        #expect(headerError(verticalTab)?.description == #"bad.safetensors: header is not valid JSON: unexpected character '\u{B}' at byte 13"#)
    }

    @Test func controlCharactersAreEscapedAndEverythingElseKept() {
        #expect("plain ü 🙂 'x'".escapingControlCharacters == "plain ü 🙂 'x'")
        #expect("a\nb\rc\td".escapingControlCharacters == #"a\nb\rc\td"#)
        #expect("\u{0}\u{1B}\u{7F}\u{85}\u{2028}\u{2029}".escapingControlCharacters == #"\u{0}\u{1B}\u{7F}\u{85}\u{2028}\u{2029}"#)
        #expect(DeltaError.invalidTensor(file: "f\n", tensor: "t\u{0B}", problem: "p\r").description == #"f\n: tensor 't\u{B}': p\r"#)
    }

    // MARK: - Shard indexes

    /// Found by the fuzzer: shard names that are empty or hold control characters were accepted
    /// (NUL cuts the name a system call sees; a newline splits every listing).
    @Test(arguments: ["", "a\\u0000b.safetensors", "a\\nb", "\\r", "x\\u007f"])
    func shardNameThatIsNotAFileName(_ escaped: String) throws {
        let text = #"{"weight_map": {"w": "\#(escaped)"}}"#
        let error: DeltaError?
        do throws(DeltaError) {
            _ = try ShardIndex.parse(Array(text.utf8), file: "model.safetensors.index.json")
            error = nil
        } catch let e {
            error = e
        }
        let shard = try #require(JSONValue.parse(Array(#""\#(escaped)""#.utf8)).stringValue)
        #expect(error == .invalidShardIndex(file: "model.safetensors.index.json", problem: "weight_map entry 'w' names '\(DisplayText.escaping(shard))', which is not a file name"))
        #expect(error?.description.contains(where: \.isNewline) == false)
    }

    /// Found by the fuzzer: `mrepo check` quoted a tensor name from the index as it was.
    @Test func checkFindingsQuotingControlCharactersStayOneLine() throws {
        try withTemporaryDirectory { dir in
            try SafetensorsWriter.write(path: dir + "/s1.safetensors", tensors: [("a", .f32, [1], bytesOf([Float(1)]))], metadata: nil)
            try writeFile(ShardIndex(weightMap: [("a", "s1.safetensors"), ("\r\u{1B}[2J", "s1.safetensors")], metadata: nil).serialized(),
                           to: dir + "/model.safetensors.index.json")
            let report = CheckpointCheck.check(paths: [dir], finite: false)
            #expect(report.findings.map(\.description)
                == [#"model.safetensors.index.json: tensor '\r\u{1B}[2J': listed in shard 's1.safetensors', which does not hold it"#])
        }
    }

    // MARK: - Encoded tensors

    /// Found by the fuzzer: a header declaring a 3.2 GB tensor in one chunk over a 96-byte zstd
    /// frame. Decoding reserved memory for the declared chunk (three times 3.2 GB) before the frame
    /// was looked at; now every record is checked against its chunk's size first.
    @Test func chunkRecordsAreCheckedAgainstTheirChunkBeforeDecoding() throws {
        let (zeros, _) = try encodeTensor([UInt8](repeating: 0, count: 256), dtype: .u8, shape: [256], encoding: .whole, reference: nil,
                                          options: CodecOptions(chunkByteCount: 256, level: 1))
        var huge = zeros
        let declared = 3_200_000_000
        huge.replaceSubrange(8..<12, with: littleEndianBytes(UInt32(0xFFFF_FFF8)))
        huge.replaceSubrange(12..<20, with: littleEndianBytes(UInt64(declared)))
        huge.replaceSubrange(20..<28, with: littleEndianBytes(UInt64(declared)))
        let owned = OwnedBytes(huge)
        var thrown: DeltaError?
        do throws(DeltaError) { _ = try EncodedTensor(bytes: owned.bytes, owner: owned, name: "obj") } catch { thrown = error }
        #expect(thrown == .corruptData(object: "obj", problem: "chunk 0 is a zstd frame of 256 bytes, the chunk has 3200000000 bytes"))

        let (raw, _) = try encodeTensor(randomBytes(16, seed: 9), dtype: .u8, shape: [16], encoding: .whole, reference: nil,
                                        options: CodecOptions(chunkByteCount: 16, level: 1))
        var short = raw
        short.replaceSubrange(12..<20, with: littleEndianBytes(UInt64(12)))
        short.replaceSubrange(20..<28, with: littleEndianBytes(UInt64(12)))
        let ownedRaw = OwnedBytes(short)
        do throws(DeltaError) { _ = try EncodedTensor(bytes: ownedRaw.bytes, owner: ownedRaw, name: "obj"); thrown = nil } catch { thrown = error }
        #expect(thrown == .corruptData(object: "obj", problem: "chunk 0 is raw with 16 bytes, the chunk has 12"))
    }

    /// Found by the fuzzer: a delta object asks its reference for chunk `i`; when the (damaged)
    /// reference has fewer chunks, computing chunk `i`'s byte range trapped (a range whose start
    /// is past its end) before the chunk table was consulted.
    @Test func chunkPastTheEndOfAReferenceIsCorruptNotATrap() throws {
        let (encoded, _) = try encodeTensor(randomBytes(70, seed: 4), dtype: .u8, shape: [70], encoding: .whole, reference: nil,
                                            options: CodecOptions(chunkByteCount: 64, level: 1))
        let owned = OwnedBytes(encoded)
        let tensor = try EncodedTensor(bytes: owned.bytes, owner: owned, name: "obj")
        #expect(tensor.header.chunkCount == 2)
        let destination = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 64)
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 3 * 64, alignment: 64)
        defer { destination.deallocate(); scratch.deallocate() }
        for index in [2, 3, Int.max / 64] {
            expectThrows(DeltaError.corruptData(object: "obj", problem: "chunk \(index) asked for, the tensor has 2 (a delta reference with another chunk size?)")) {
                try tensor.decodeChunk(index, into: destination, reference: nil, scratch: scratch)
            }
        }
    }
}
