import Delta
import Testing

@Suite struct ShardIndexTests {
    static let name = "model.safetensors.index.json"

    func parseError(_ text: String) -> DeltaError? {
        do throws(DeltaError) {
            _ = try ShardIndex.parse(Array(text.utf8), file: Self.name)
            return nil
        } catch {
            return error
        }
    }

    @Test func parsesWeightMapInFileOrderAndKeepsMetadata() throws {
        let text = #"{"metadata": {"total_size": 28966928384, "format": "pt"}, "weight_map": {"z.weight": "model-00002-of-00002.safetensors", "a.weight": "model-00001-of-00002.safetensors", "b.bias": "model-00002-of-00002.safetensors"}}"#
        let index = try ShardIndex.parse(Array(text.utf8), file: Self.name)
        #expect(index.weightMap.map(\.tensor) == ["z.weight", "a.weight", "b.bias"])
        #expect(index.weightMap.map(\.file) == ["model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
        #expect(index.shardFiles == ["model-00002-of-00002.safetensors", "model-00001-of-00002.safetensors"])
        // The total size is kept as written, even beyond 2^32.
        #expect(index.metadata?["total_size"] == .number("28966928384"))
        #expect(index.metadata?.objectValue?.map(\.key) == ["total_size", "format"])
    }

    @Test func serializesAsTheHuggingFaceLibrariesDoAndParsesBack() throws {
        let index = ShardIndex(weightMap: [("b", "model-00002-of-00002.safetensors"), ("a", "model-00001-of-00002.safetensors")],
                               metadata: .object([JSONMember("total_size", .int(96))]))
        let text = String(decoding: index.serialized(), as: UTF8.self)
        #expect(text == """
            {
              "metadata": {"total_size":96},
              "weight_map": {
                "a": "model-00001-of-00002.safetensors",
                "b": "model-00002-of-00002.safetensors"
              }
            }

            """)
        let parsed = try ShardIndex.parse(index.serialized(), file: Self.name)
        // Keys come back sorted; the pairs are the same.
        #expect(parsed.weightMap.map(\.tensor) == ["a", "b"])
        #expect(parsed.metadata == index.metadata)
        let resorted = ShardIndex(weightMap: index.weightMap.sorted { $0.tensor < $1.tensor }, metadata: index.metadata)
        #expect(parsed == resorted)
        #expect(parsed != index)
    }

    @Test func indexWithoutMetadataSerializesWithoutIt() throws {
        let index = ShardIndex(weightMap: [("w", "s.safetensors")], metadata: nil)
        let text = String(decoding: index.serialized(), as: UTF8.self)
        #expect(!text.contains("metadata"))
        #expect(try ShardIndex.parse(index.serialized(), file: Self.name) == index)
    }

    @Test(arguments: ["sub/model.safetensors", "../model.safetensors", ".hidden.safetensors", "/etc/passwd"])
    func entryOutsideTheCheckpointFolderIsRejected(shard: String) {
        let text = #"{"weight_map": {"ok": "a.safetensors", "w": "\#(shard)"}}"#
        let error = parseError(text)
        #expect(error == .invalidShardIndex(file: Self.name, problem: "weight_map entry 'w' names '\(shard)', outside the checkpoint folder"))
        #expect(error?.description == "\(Self.name): weight_map entry 'w' names '\(shard)', outside the checkpoint folder")
    }

    @Test func malformedIndexesAreRejected() {
        #expect(parseError(#"{"metadata": {}}"#)?.description == "\(Self.name): missing 'weight_map' object")
        #expect(parseError(#"{"weight_map": []}"#)?.description == "\(Self.name): missing 'weight_map' object")
        #expect(parseError(#"{"weight_map": {"w": 3}}"#)?.description == "\(Self.name): weight_map entry 'w' is not a file name")
        #expect(parseError(#"{"weight_map": {"w": "a", "w": "b"}}"#)?.description
            == "\(Self.name): not valid JSON: duplicate key 'w' at byte 26")
    }

    @Test func indexFileNames() {
        #expect(ShardIndex.isIndexFile("model.safetensors.index.json"))
        #expect(ShardIndex.isIndexFile("sub/diffusion_pytorch_model.safetensors.index.json"))
        #expect(!ShardIndex.isIndexFile("model.safetensors"))
        #expect(!ShardIndex.isIndexFile("index.json"))
    }
}
