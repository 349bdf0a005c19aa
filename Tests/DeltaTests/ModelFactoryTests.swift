import Delta
import Foundation
import ModelFactory
import Testing

@Suite struct ModelFactoryTests {
    let factory = ModelFactory(architecture: .tiny, dtype: .f32, seed: 42)

    func filesIn(_ dir: String) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: dir) {
            out[name] = try readFile(dir + "/" + name)
        }
        return out
    }

    @Test func sameSeedGivesIdenticalBytes() throws {
        try withTemporaryDirectory { dir in
            try factory.writeCheckpoint(to: dir + "/a")
            try ModelFactory(architecture: .tiny, dtype: .f32, seed: 42).writeCheckpoint(to: dir + "/b")
            try ModelFactory(architecture: .tiny, dtype: .f32, seed: 43).writeCheckpoint(to: dir + "/c")
            let a = try filesIn(dir + "/a"), b = try filesIn(dir + "/b"), c = try filesIn(dir + "/c")
            #expect(Set(a.keys) == ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "README.md"])
            #expect(a == b)
            #expect(a["model.safetensors"] != c["model.safetensors"])
            // The same fine-tune twice is the same too.
            try factory.writeCheckpoint(to: dir + "/ft1", fineTune: .light("math", seed: 11))
            try factory.writeCheckpoint(to: dir + "/ft2", fineTune: .light("math", seed: 11))
            #expect(try filesIn(dir + "/ft1") == filesIn(dir + "/ft2"))
        }
    }

    @Test func checkpointIsValidAndHoldsEveryTensorSortedByName() throws {
        try withTemporaryDirectory { dir in
            try factory.writeCheckpoint(to: dir)
            let file = try SafetensorsFile(path: dir + "/model.safetensors")
            let names = Architecture.tiny.tensors.map(\.name)
            #expect(file.tensors.map(\.name) == names.sorted())
            #expect(file.header.metadata?.map(\.key) == ["format"])
            #expect(file.tensor(named: "embeddings.position_ids")?.dtype == .i64)
            #expect(file.tensor(named: "pooler.dense.weight")?.dtype == .f32)
            let elementCount = file.tensors.reduce(0) { $0 + $1.elementCount }
            #expect(elementCount == Architecture.tiny.parameterCount)
            #expect(CheckpointCheck.check(paths: [dir], finite: true).findings.isEmpty)
        }
    }

    @Test(arguments: [2, 3])
    func shardedCheckpointHasAConsistentIndex(shards: Int) throws {
        try withTemporaryDirectory { dir in
            try ModelFactory(architecture: .tiny, dtype: .bf16, seed: 1).writeCheckpoint(to: dir, shards: shards)
            let shardNames = (1...shards).map { "model-0000\($0)-of-0000\(shards).safetensors" }
            for name in shardNames { #expect(FileManager.default.fileExists(atPath: dir + "/" + name)) }
            #expect(!FileManager.default.fileExists(atPath: dir + "/model.safetensors"))
            let index = try ShardIndex.parse(try readFile(dir + "/model.safetensors.index.json"), file: "index")
            #expect(index.shardFiles == shardNames)
            #expect(index.weightMap.count == Architecture.tiny.tensors.count)
            let bf16Bytes = Architecture.tiny.tensors.reduce(0) { $0 + $1.elementCount * ($1.kind == .positionIDs ? 8 : 2) }
            #expect(index.metadata?["total_size"]?.intValue == bf16Bytes)
            #expect(CheckpointCheck.check(paths: [dir], finite: true).findings.isEmpty)
        }
    }

    @Test func lightFineTuneChangesByTheCalibratedAmount() throws {
        let ft = FineTune.light("math", seed: 11)
        var ratios: [Double] = []
        for spec in Architecture.tiny.tensors where !FineTune.isUntouched(spec.name) && spec.kind != .embedding && spec.kind != .positionIDs {
            let base = factory.baseValues(spec)
            let tuned = factory.fineTunedValues(spec, ft)
            for (b, t) in zip(base, tuned) where b != 0 {
                ratios.append(abs(Double(t) - Double(b)) / abs(Double(b)))
            }
        }
        ratios.sort()
        let median = ratios[ratios.count / 2]
        #expect(median > 5e-4 / 2 && median < 5e-4 * 2, "median relative change \(median)")
        // A heavy fine-tune moves much further.
        let spec = Architecture.tiny.tensors.first { $0.kind == .matrix }!
        let base = factory.baseValues(spec), heavy = factory.fineTunedValues(spec, .heavy("chat", seed: 13))
        var heavyRatios = zip(base, heavy).map { abs(Double($1) - Double($0)) / abs(Double($0)) }
        heavyRatios.sort()
        #expect(heavyRatios[heavyRatios.count / 2] > 1e-2)
    }

    @Test(arguments: [DType.f32, .bf16, .f16])
    func untouchedTensorsAreBitIdenticalToTheBase(dtype: DType) {
        let factory = ModelFactory(architecture: .tiny, dtype: dtype, seed: 7)
        var untouched = 0
        for ft in FineTune.standardFamily {
            var changed = 0
            for spec in Architecture.tiny.tensors {
                let (baseType, base) = factory.tensorBytes(spec, fineTune: nil)
                let (tunedType, tuned) = factory.tensorBytes(spec, fineTune: ft)
                #expect(baseType == tunedType)
                if FineTune.isUntouched(spec.name) {
                    untouched += 1
                    #expect(base == tuned, "\(spec.name) must not change")
                } else if base != tuned {
                    changed += 1
                } else {
                    // Only a 16-bit dtype can round a light update away (a LayerNorm weight near
                    // 0.6 moves by less than half a bfloat16 step).
                    #expect(dtype != .f32 && spec.kind != .matrix && spec.kind != .embedding,
                            "\(spec.name) should change under \(ft.name)")
                }
            }
            #expect(changed > Architecture.tiny.tensors.count / 2)
        }
        // pooler weight and bias, position ids, token types: four per fine-tune.
        #expect(untouched == 4 * FineTune.standardFamily.count)
    }

    @Test func fineTunesOfTheFamilyDiffer() {
        let spec = Architecture.tiny.tensors.first { $0.name == "encoder.layer.1.attention.self.key.weight" }!
        let family = FineTune.standardFamily.map { factory.tensorBytes(spec, fineTune: $0).1 }
        #expect(Set(family.map { SHA256.hash($0) }).count == family.count)
        #expect(FineTune.standardFamily.map(\.name) == ["math", "code", "chat"])
    }

    @Test func embeddingsUpdateOnlySomeRows() {
        let spec = Architecture.tiny.tensors.first { $0.name == "embeddings.word_embeddings.weight" }!
        let ft = FineTune.light("math", seed: 11)
        let base = factory.baseValues(spec), tuned = factory.fineTunedValues(spec, ft)
        let columns = spec.shape[1]
        var updatedRows = 0
        for row in 0..<spec.shape[0] {
            // Rows without an update only shrink by the weight decay.
            let r = (0..<columns).map { abs(Double(tuned[row * columns + $0]) - Double(base[row * columns + $0]) * (1 - ft.decay)) }
            if r.max()! > 1e-6 { updatedRows += 1 }
        }
        #expect(updatedRows > 0)
        #expect(updatedRows < spec.shape[0] / 2)
    }

    @Test func seededRandomIsReproducible() {
        var a = SeededRandom(seed: 5, stream: "x"), b = SeededRandom(seed: 5, stream: "x"), c = SeededRandom(seed: 5, stream: "y")
        let sa = (0..<8).map { _ in a.next() }, sb = (0..<8).map { _ in b.next() }, sc = (0..<8).map { _ in c.next() }
        #expect(sa == sb)
        #expect(sa != sc)
        var u = SeededRandom(seed: 1)
        #expect((0..<1000).allSatisfy { _ in let x = u.uniform(); return x >= 0 && x < 1 })
        #expect(SeededRandom.fnv1a("") == 0xCBF2_9CE4_8422_2325)
        #expect(SeededRandom.fnv1a("a") == 0xAF63_DC4C_8601_EC8C)
    }
}
