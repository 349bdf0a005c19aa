import Delta
import Foundation
import ModelFactory
import Testing

/// Tensor orders, re-ordered families and the Llama-shaped architectures of the model factory.
@Suite struct ModelFactoryLayoutTests {
    /// Tensor names of a safetensors file in data order.
    func names(_ path: String) throws -> [String] {
        try SafetensorsFile(path: path).tensors.sorted { $0.dataOffsets.lowerBound < $1.dataOffsets.lowerBound }.map(\.name)
    }

    @Test func saveFileOrderPutsWiderDtypesFirstThenSortsByName() throws {
        try withTemporaryDirectory { dir in
            try ModelFactory(architecture: .tiny, dtype: .bf16).writeCheckpoint(to: dir, order: .saveFile)
            let order = try names(dir + "/model.safetensors")
            // The int64 position ids first (as in the real all-MiniLM-L6-v2 file), then every bf16 tensor by name.
            #expect(order.first == "embeddings.position_ids")
            #expect(Array(order.dropFirst()) == Architecture.tiny.tensors.map(\.name).filter { $0 != "embeddings.position_ids" }.sorted())
        }
    }

    @Test func stateDictOrderKeepsTheModelsOrder() throws {
        try withTemporaryDirectory { dir in
            try ModelFactory(architecture: .tiny, dtype: .f32).writeCheckpoint(to: dir, order: .stateDict)
            #expect(try names(dir + "/model.safetensors") == Architecture.tiny.tensors.map(\.name))
        }
    }

    @Test func shardedSaveFileOrderSplitsInStateDictOrderAndSortsEachShard() throws {
        try withTemporaryDirectory { dir in
            try ModelFactory(architecture: .llamaTiny, dtype: .bf16).writeCheckpoint(to: dir, shards: 2, order: .saveFile)
            let first = try names(dir + "/model-00001-of-00002.safetensors")
            let second = try names(dir + "/model-00002-of-00002.safetensors")
            let stateDict = Architecture.llamaTiny.tensors.map(\.name)
            // Shard 1 holds a prefix of the state_dict() order, shard 2 the rest, each sorted by name.
            #expect(Set(first) == Set(stateDict.prefix(first.count)))
            #expect(Set(second) == Set(stateDict.dropFirst(first.count)))
            #expect(!first.isEmpty && !second.isEmpty)
            #expect(first == first.sorted() && second == second.sorted())
            #expect(first + second != stateDict)
            let index = try ShardIndex.parse(try readFile(dir + "/model.safetensors.index.json"), file: "index")
            #expect(index.weightMap.count == stateDict.count)
            #expect(CheckpointCheck.check(paths: [dir], finite: true).findings.isEmpty)
        }
    }

    @Test func orderChangesTheFileButNotTheTensors() throws {
        try withTemporaryDirectory { dir in
            let factory = ModelFactory(architecture: .tiny, dtype: .f32)
            try factory.writeCheckpoint(to: dir + "/name")
            try factory.writeCheckpoint(to: dir + "/state", order: .stateDict)
            let a = try SafetensorsFile(path: dir + "/name/model.safetensors")
            let b = try SafetensorsFile(path: dir + "/state/model.safetensors")
            #expect(try readFile(dir + "/name/model.safetensors") != readFile(dir + "/state/model.safetensors"))
            for t in a.tensors {
                let u = try #require(b.tensor(named: t.name))
                #expect(u.dtype == t.dtype && u.shape == t.shape)
                #expect(a.data(of: t).elementsEqual(b.data(of: u)), "\(t.name)")
            }
        }
    }

    @Test func reorderedFamilyLaysFineTunesOutUnlikeTheirBase() throws {
        try withTemporaryDirectory { dir in
            try ModelFactory(architecture: .tiny, dtype: .f32).writeFamily(to: dir, layout: .reordered)
            let base = try names(dir + "/base/model.safetensors")
            let math = try names(dir + "/math/model.safetensors")
            #expect(base == Architecture.tiny.tensors.map(\.name))
            #expect(Set(base) == Set(math))
            // Most tensors sit at another position in the fine-tune than in its base.
            let samePlace = zip(base, math).filter { $0 == $1 }.count
            #expect(samePlace * 4 < base.count, "\(samePlace) of \(base.count) tensors in place")
            // The aligned layout is what the factory always wrote: every checkpoint by name.
            try ModelFactory(architecture: .tiny, dtype: .f32).writeFamily(to: dir + "/aligned", layout: .aligned)
            try ModelFactory(architecture: .tiny, dtype: .f32).writeCheckpoint(to: dir + "/plain", fineTune: .light("math", seed: 11))
            #expect(try readFile(dir + "/aligned/math/model.safetensors") == readFile(dir + "/plain/model.safetensors"))
        }
    }

    @Test func llama3bHasLlama32ThreeBsShape() {
        let arch = Architecture.llama3b
        let tensors = arch.tensors
        #expect(arch.parameterCount == 3_212_749_824)
        #expect(tensors.count == 1 + 28 * 9 + 1)
        func shape(_ name: String) -> Shape? { tensors.first { $0.name == name }?.shape }
        #expect(shape("model.embed_tokens.weight") == [128_256, 3072])
        #expect(shape("model.layers.27.self_attn.q_proj.weight") == [3072, 3072])
        #expect(shape("model.layers.0.self_attn.k_proj.weight") == [1024, 3072])
        #expect(shape("model.layers.0.self_attn.v_proj.weight") == [1024, 3072])
        #expect(shape("model.layers.0.self_attn.o_proj.weight") == [3072, 3072])
        #expect(shape("model.layers.0.mlp.gate_proj.weight") == [8192, 3072])
        #expect(shape("model.layers.0.mlp.up_proj.weight") == [8192, 3072])
        #expect(shape("model.layers.0.mlp.down_proj.weight") == [3072, 8192])
        #expect(shape("model.layers.0.input_layernorm.weight") == [3072])
        #expect(shape("model.norm.weight") == [3072])
        #expect(shape("lm_head.weight") == nil)  // tied to the embeddings
        #expect(!tensors.contains { $0.name.hasSuffix(".bias") })
    }

    @Test func llamaTinyCheckpointIsAValidLlamaFolder() throws {
        try withTemporaryDirectory { dir in
            let factory = ModelFactory(architecture: .llamaTiny, dtype: .bf16)
            try factory.writeFamily(to: dir, fineTunes: [.light("math", seed: 11)], shards: 2, order: .saveFile)
            #expect(CheckpointCheck.check(paths: [dir + "/base", dir + "/math"], finite: true).findings.isEmpty)
            let config = try JSONValue.parse(try readFile(dir + "/base/config.json"))
            #expect(config["model_type"]?.stringValue == "llama")
            #expect(config["num_key_value_heads"]?.intValue == 2)
            #expect(config["tie_word_embeddings"] == .bool(true))
            #expect(!FileManager.default.fileExists(atPath: dir + "/code"))
            // The fine-tune changes the trained tensors.
            let base = try SafetensorsFile(path: dir + "/base/model-00001-of-00002.safetensors")
            let math = try SafetensorsFile(path: dir + "/math/model-00001-of-00002.safetensors")
            let q = try #require(base.tensor(named: "model.layers.0.self_attn.q_proj.weight"))
            let qm = try #require(math.tensor(named: "model.layers.0.self_attn.q_proj.weight"))
            #expect(!base.data(of: q).elementsEqual(math.data(of: qm)))
        }
    }
}
