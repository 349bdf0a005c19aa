import Delta
import Foundation
import Testing

/// Names from hostile files: control characters in tensor names, shard indexes that point
/// elsewhere, and how such names are printed.
@Suite struct HostileNameTests {
    func headerError(_ json: String, data: [UInt8]) -> DeltaError? {
        do throws(DeltaError) {
            _ = try parseHeader(safetensorsBytes(json: json, data: data), file: "m.safetensors")
            return nil
        } catch {
            return error
        }
    }

    /// SQLite keeps a TEXT value only up to a NUL, so a tensor named `a\0b` used to be stored as
    /// `a` and break `fsck` from then on; a line break would split every listing.
    @Test(arguments: [("a\\u0000b", "a\\x00b", "U+0000"), ("a\\nb", "a\\x0Ab", "U+000A"), ("\\u001fx", "\\x1Fx", "U+001F"),
                      ("del\\u007f", "del\\x7F", "U+007F")])
    func tensorNamesWithControlCharactersAreRefused(jsonName: String, shown: String, codePoint: String) throws {
        let error = try #require(headerError(#"{"\#(jsonName)":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#, data: [1, 2]))
        #expect(error == .invalidTensor(file: "m.safetensors", tensor: shown,
                                        problem: "tensor names must not contain control characters (found \(codePoint))"))
        #expect(!error.description.contains("\n") && !error.description.contains("\0"))
    }

    @Test func printableUnicodeTensorNamesAreKept() throws {
        let header = try parseHeader(safetensorsBytes(json: #"{"é.poids\u00a0x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, data: [1]))
        #expect(header.tensors.map(\.name) == ["é.poids\u{a0}x"])
    }

    @Test func checkReportsTheControlCharacterInATensorName() throws {
        try withTemporaryDirectory { dir in
            try writeFile(safetensorsBytes(json: #"{"a\u0000b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, data: [7]),
                           to: dir + "/model.safetensors")
            let findings = CheckpointCheck.check(paths: [dir], finite: false).findings
            #expect(findings.count == 1)
            #expect(findings.first?.description.contains("'a\\x00b'") == true, "\(findings)")
        }
    }

    // MARK: - Shard indexes

    func indexError(_ shard: String) -> DeltaError? {
        let text = #"{"weight_map": {"w": "\#(shard)"}}"#
        do throws(DeltaError) {
            _ = try ShardIndex.parse(Array(text.utf8), file: "model.safetensors.index.json")
            return nil
        } catch {
            return error
        }
    }

    @Test(arguments: ["../x.safetensors", "/etc/passwd", "sub/x.safetensors", "..\\\\x.safetensors", ".hidden"])
    func shardsOutsideTheFolderAreRefused(shard: String) {
        let error = indexError(shard)
        guard case let .invalidShardIndex(file, problem)? = error else {
            Issue.record("expected invalidShardIndex, got \(String(describing: error))")
            return
        }
        #expect(file == "model.safetensors.index.json")
        #expect(problem.hasPrefix("weight_map entry 'w' names '") && problem.hasSuffix("outside the checkpoint folder"), "\(problem)")
    }

    @Test(arguments: ["", "a\\nb.safetensors"])
    func shardNamesThatAreNoFileNamesAreRefused(shard: String) {
        let error = indexError(shard)
        guard case let .invalidShardIndex(file, problem)? = error else {
            Issue.record("expected invalidShardIndex, got \(String(describing: error))")
            return
        }
        #expect(file == "model.safetensors.index.json")
        #expect(problem.hasSuffix("which is not a file name"), "\(problem)")
        #expect(!(error?.description.contains("\n") ?? true), "one line")
    }

    @Test func missingShardsAreNamedWithTheirEntry() throws {
        let index = ShardIndex(weightMap: [("a", "one.safetensors"), ("b", "two.safetensors"), ("c", "two.safetensors")], metadata: nil)
        try index.checkShardsExist(file: "sub/model.safetensors.index.json") { _ in true }
        do throws(DeltaError) {
            try index.checkShardsExist(file: "sub/model.safetensors.index.json") { $0 == "one.safetensors" }
            Issue.record("a missing shard was accepted")
        } catch {
            #expect(error == .invalidShardIndex(file: "sub/model.safetensors.index.json",
                                                problem: "weight_map entry 'b' names shard 'two.safetensors', which is not in the folder"))
        }
    }

    // MARK: - Printing names

    @Test func displayTextEscapesBytesAndControlCharacters() {
        #expect(DisplayText.escaping(bytes: Array("caf".utf8) + [0xE9] + Array(".txt".utf8)) == "caf\\xE9.txt")
        #expect(DisplayText.escaping(bytes: [0xC3, 0xA9, 0x0A, 0xFF, 0x5C]) == "é\\x0A\\xFF\\\\")
        // A truncated multi-byte sequence is shown byte by byte.
        #expect(DisplayText.escaping(bytes: [0x61, 0xE2, 0x82]) == "a\\xE2\\x82")
        #expect(DisplayText.escaping("tab\there") == "tab\\x09here")
        #expect(DisplayText.escapingNonASCII("e\u{301}.txt") == "e\\u{301}.txt")
        #expect(DisplayText.escapingNonASCII("\u{E9}.txt") == "\\u{E9}.txt")
        #expect(DisplayText.codePoint("\u{7F}") == "U+007F")
    }

    @Test func aFullDiskIsSaidInWords() {
        #expect(errnoDescription(ENOSPC).hasPrefix("disk full"))
        #expect(!errnoDescription(EACCES).hasPrefix("disk full"))
        #expect(DiskSpace.available(near: NSTemporaryDirectory() + "/no/such/folder") != nil)
    }
}
