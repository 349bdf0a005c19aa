import Delta
import Foundation
import Testing

/// `mrepo synth`'s layout options: which fine-tunes, tensor orders, the Llama shapes.
@Suite struct SynthCLITests {
    func dataOrder(_ s: CLISandbox, _ file: String) throws -> [String] {
        try SafetensorsFile(path: s.path(file)).tensors.sorted { $0.dataOffsets.lowerBound < $1.dataOffsets.lowerBound }.map(\.name)
    }

    @Test func writesTheChosenFineTunesInTheChosenOrders() throws {
        let s = try CLISandbox()
        let r = try s.ok(["synth", "fam", "--size", "tiny", "--order", "state-dict", "--fine-tune-order", "save-file", "--fine-tunes", "chat"])
        #expect(r.stdout.contains("base, chat"))
        #expect(FileManager.default.fileExists(atPath: s.path("fam/chat/model.safetensors")))
        #expect(!FileManager.default.fileExists(atPath: s.path("fam/math")))
        let base = try dataOrder(s, "fam/base/model.safetensors")
        let chat = try dataOrder(s, "fam/chat/model.safetensors")
        #expect(base.first == "embeddings.position_ids" && base[1] == "embeddings.word_embeddings.weight")  // state_dict() order
        #expect(chat.first == "embeddings.position_ids" && Array(chat.dropFirst()) == chat.dropFirst().sorted())  // save_file's
        #expect(base != chat)
        // A reordered fine-tune still commits against its base, and comes back byte for byte.
        try s.ok(["init", "repo"])
        try s.ok(["commit", "-q", "--from", s.path("fam/base"), "-m", "base"], in: "repo")
        try s.ok(["switch", "-q", "-c", "chat"], in: "repo")
        try s.ok(["commit", "-q", "--from", s.path("fam/chat"), "-m", "chat"], in: "repo")
        try s.ok(["export", "-q", "chat", s.path("out")], in: "repo")
        #expect(s.read("out/model.safetensors") == s.read("fam/chat/model.safetensors"))
    }

    @Test func writesALlamaShapedFamilyInShards() throws {
        let s = try CLISandbox()
        try s.ok(["synth", "ll", "--size", "llama-tiny", "--dtype", "BF16", "--shards", "2", "--order", "save-file", "--fine-tunes", "math,chat"])
        for model in ["base", "math", "chat"] {
            #expect(FileManager.default.fileExists(atPath: s.path("ll/\(model)/model.safetensors.index.json")))
            #expect(FileManager.default.fileExists(atPath: s.path("ll/\(model)/model-00002-of-00002.safetensors")))
        }
        try s.ok(["check", "--finite", s.path("ll/base"), s.path("ll/chat")])
        let first = try dataOrder(s, "ll/base/model-00001-of-00002.safetensors")
        #expect(first.first == "model.embed_tokens.weight")
        #expect(first == first.sorted())
    }

    /// `--layers` keeps every tensor's shape with fewer layers (a small proxy of the 3B family).
    @Test func writesFewerLayersOfTheSameShapes() throws {
        let s = try CLISandbox()
        let said = try s.ok(["synth", "one", "--size", "llama-tiny", "--layers", "1", "--fine-tunes", "none"])
        #expect(said.stdout.hasPrefix("Wrote "))
        // -q, as every other command takes it.
        #expect(try s.ok(["synth", "-q", "two", "--size", "llama-tiny", "--layers", "1", "--fine-tunes", "none"]).stdout.isEmpty)
        let names = try SafetensorsFile(path: s.path("one/base/model.safetensors")).tensors.map(\.name)
        #expect(names.contains("model.layers.0.mlp.up_proj.weight") && !names.contains { $0.hasPrefix("model.layers.1.") })
        #expect(names.contains("model.embed_tokens.weight"))
        let zero = try s.run(["synth", "none", "--layers", "0"])
        expectOneLineError(zero, status: 64, contains: "--layers must be at least 1")
    }

    @Test func rejectsUnknownFineTunesAndAdaptersOfALlama() throws {
        let s = try CLISandbox()
        let unknown = try s.run(["synth", "x", "--fine-tunes", "math,poetry"])
        expectOneLineError(unknown, status: 64, contains: "unknown fine-tune 'poetry'")
        let adapters = try s.run(["synth", "y", "--size", "llama-tiny", "--adapters", "1"])
        expectOneLineError(adapters, status: 64, contains: "--adapters needs a BERT-shaped --size")
        let order = try s.run(["synth", "z", "--order", "random"])
        #expect(order.status == 64)
        #expect(!FileManager.default.fileExists(atPath: s.path("x")) && !FileManager.default.fileExists(atPath: s.path("y")))
    }
}
