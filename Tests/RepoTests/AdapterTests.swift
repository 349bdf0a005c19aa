import Delta
import Foundation
import Merge
import ModelFactory
import Testing

@testable import Repo

/// LoRA adapters as commits: the `adapter` record and its base, adapters that do not fit,
/// `export --fold` against an independent θ + (alpha/r)·B·A, plain exports, and adapter diffs.
///
/// The fixture (one per test): the tiny base committed on `main` from `<dir>/base`, and `lora-math`
/// committed from `<dir>/lora-math` on a branch of that name; HEAD on `main`.
@Suite final class AdapterTests {
    static let math = LoRASpec(name: "lora-math", seed: 101, rank: 4, alpha: 8)
    static let code = LoRASpec(name: "lora-code", seed: 102, rank: 4, alpha: 8)

    let fixture: AdapterRepository
    var repo: Repository { fixture.repo }
    var dir: String { fixture.dir }
    var base: ObjectID { fixture.base }

    init() throws {
        fixture = try AdapterRepository([Self.math])
    }

    // MARK: - The adapter record

    @Test func adapterCommitRecordsItsBase() throws {
        let head = try repo.commit(try repo.resolve("lora-math"))
        let record = try #require(try head.record(AdapterRecord.self))
        #expect(record.base == base)
        #expect(record.rank == 4 && record.alpha == 8 && !record.useRSLoRA)
        #expect(record.targets == ["query", "value"])
        #expect(record.moduleCount == 4)   // 2 layers × (query, value)
        #expect(head.extra["adapter"]?["format"]?.stringValue == "peft-lora")
        #expect(head.extra["adapter"]?["base"]?.stringValue == base.hex)
        #expect(head.extra["storage"]?.stringValue == "lossless")
        #expect(try repo.isAdapter("lora-math") && !(try repo.isAdapter("main")))

        // A new version of the adapter on its branch keeps the base model, not the parent, as its base.
        _ = try repo.switchBranch("lora-math")
        try tinyFactory.writeAdapter(LoRASpec(name: "lora-math", seed: 999, rank: 4, alpha: 8), to: dir + "/math-v2")
        let v2 = try repo.commitFolder(dir + "/math-v2", "math v2")
        #expect(v2.adapter?.base == base)
        #expect(v2.commit.parents == [head.id])

        // --adapter-of names the base explicitly.
        _ = try repo.switchBranch("elsewhere", create: true, startPoint: "lora-math")
        let explicit = try repo.commitFolder(dir + "/lora-math", "explicit", adapterOf: "main")
        #expect(explicit.adapter?.base == base)
        #expect(try repo.fsck().isClean)
    }

    @Test func adapterOfNeedsAnAdapterFolderAndAFittingBase() throws {
        // A plain model folder with --adapter-of.
        let before = try repo.state()
        expectThrows(RepoError.notAnAdapterFolder) { try repo.commitFolder(dir + "/base", "x", adapterOf: "main") }
        // The adapter commit itself is no base for an adapter: it has no encoder weights.
        let adapter = try repo.resolve("lora-math")
        let message = "--adapter-of lora-math: commit \(adapter.short) is itself a LoRA adapter (of \(base.short)); name the base model's commit"
        expectThrows(RepoError.invalidArgument(message)) {
            try repo.commitFolder(dir + "/lora-math", "x", adapterOf: "lora-math")
        }
        #expect(try repo.state() == before)
    }

    @Test func anAdapterNeedsABaseInTheRepository() throws {
        // A repository of its own, without the fixture's base.
        let empty = try TemporaryRepository()
        let (repo, dir) = (empty.repo, empty.dir)
        try tinyFactory.writeAdapter(Self.math, to: dir + "/lora")
        expectThrows(RepoError.adapterWithoutBase(file: "adapter_model.safetensors")) { try repo.commitFolder(dir + "/lora", "adapter first") }
        #expect(try repo.history.allCommits().isEmpty)
        #expect(repo.objectFiles.isEmpty)
    }

    /// An adapter of the `small` family does not fit the `tiny` base: one error, nothing written.
    @Test(arguments: [true, false])
    func adapterOfAnotherModelLeavesTheRepositoryUntouched(fromFolder: Bool) throws {
        let small = ModelFactory(architecture: .small, dtype: .f32, seed: 42)
        try small.writeAdapter(LoRASpec(name: "lora-small", seed: 5, rank: 2, alpha: 4), to: dir + "/lora-small")
        let before = try repo.state()
        let worktree = try snapshot(repo.root)
        let error: (any Error)?
        if fromFolder {
            error = thrownError { try repo.commitFolder(dir + "/lora-small", "small adapter") }
        } else {
            // In place: the adapter files replace the model in the working tree.
            for name in ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json", "README.md"] {
                try? FileManager.default.removeItem(atPath: repo.root + "/" + name)
            }
            for name in ["adapter_config.json", "adapter_model.safetensors"] {
                try FileManager.default.copyItem(atPath: dir + "/lora-small/" + name, toPath: repo.root + "/" + name)
            }
            error = thrownError { try repo.commitAll("small adapter") }
        }
        let misfit = "module 'encoder.layer.0.attention.self.query': B·A is 128×128 but base tensor 'encoder.layer.0.attention.self.query.weight' is 16×16"
        #expect(error as? RepoError == .adapterBaseMismatch(file: "adapter_model.safetensors", base: base.short, problem: misfit))
        #expect(!"\(String(describing: error))".contains("\n"))
        #expect(try repo.state() == before)
        #expect(try repo.fsck().isClean)
        if fromFolder { #expect(sameFiles(try snapshot(repo.root), worktree)) }
    }

    @Test func doraAdaptersAreCommittedAsPlainFiles() throws {
        try tinyFactory.writeAdapter(Self.math, to: dir + "/dora")
        let path = dir + "/dora/adapter_config.json"
        let text = String(decoding: try readFile(path), as: UTF8.self).replacingOccurrences(of: "\"use_dora\": false", with: "\"use_dora\": true")
        try writeFile(text, to: path)
        _ = try repo.switchBranch("dora", create: true)
        let result = try repo.commitFolder(dir + "/dora", "dora")
        #expect(result.adapter == nil)
        #expect(result.notes.contains { $0.contains("DoRA") && $0.contains("committed as plain files") }, "\(result.notes)")
        #expect(try repo.commit(result.commit.id).extra["adapter"] == nil)
        // Naming a base insists on an adapter.
        expectThrows(RepoError.invalidAdapterConfig(.invalidRecipe(file: "adapter_config.json",
            problem: "DoRA adapters (use_dora: true) are not supported: their magnitude vectors are not a low-rank delta"))) {
            try repo.commitFolder(dir + "/dora", "dora again", adapterOf: "main")
        }
    }

    // MARK: - Exports

    /// `export --fold` = θ_base + (alpha/r)·B·A, computed here from the files; every other tensor
    /// and file is the base's, byte for byte.
    @Test(arguments: [DType.f32, .bf16])
    func foldEqualsBasePlusScaledProduct(dtype: DType) throws {
        // The fixture's base is float32; the bf16 family gets a repository of its own.
        let family = dtype == .f32 ? fixture : try AdapterRepository([Self.math], factory: ModelFactory(architecture: .tiny, dtype: dtype, seed: 42))
        let (repo, dir) = (family.repo, family.dir)
        let result = try repo.exportFolded("lora-math", to: dir + "/folded")
        #expect(result.commit == (try repo.resolve("lora-math")))
        let base = try Checkpoint(dir + "/base/model.safetensors")
        let adapter = try Checkpoint(dir + "/lora-math/adapter_model.safetensors")
        let folded = try Checkpoint(dir + "/folded/model.safetensors")
        #expect(folded.names == base.names)
        let modules = adapter.adapterModules
        #expect(modules.count == 4)
        let unit = dtype == .f32 ? 2e-7 : 1.0 / 128
        for name in base.names {
            let module = String(name.dropLast(".weight".count))
            guard name.hasSuffix(".weight"), modules.contains(module) else {
                #expect(try folded.bytes(name) == (try base.bytes(name)), "\(name) is not adapted and must be the base's")
                continue
            }
            let (delta, _, _) = try adapter.adapterDelta(module, scale: 8.0 / 4)
            let expected = Numbers.plus(try base.doubles(name), delta)
            let got = try folded.doubles(name)
            #expect(try folded.info(name).dtype == dtype)
            for j in expected.indices {
                #expect(abs(got[j] - expected[j]) <= unit * abs(expected[j]) + 1e-6 * abs(delta[j]) + 1e-9,
                        "\(name)[\(j)]: \(got[j]) vs \(expected[j])")
            }
            #expect(Numbers.norm(delta) > 0.01 * Numbers.norm(expected) || dtype == .bf16, "the adapter changes \(name) visibly")
        }
        // The base's other files come along; the adapter's files do not.
        for file in ["config.json", "tokenizer.json", "tokenizer_config.json", "README.md"] {
            #expect(try readFile(dir + "/folded/" + file) == (try readFile(dir + "/base/" + file)), "\(file)")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/folded/adapter_config.json"))
    }

    @Test func exportWithoutFoldIsTheAdapterAsCommitted() throws {
        _ = try repo.export("lora-math", to: dir + "/plain")
        #expect(sameFiles(try snapshot(dir + "/plain"), try snapshot(dir + "/lora-math")))
        // The working tree of the adapter branch is the adapter folder too.
        _ = try repo.switchBranch("lora-math")
        #expect(sameFiles(try snapshot(repo.root), try snapshot(dir + "/lora-math")))
        #expect(try repo.status().changes.isEmpty)
    }

    @Test func foldOfANonAdapterIsAnError() throws {
        expectThrows(RepoError.notAnAdapter(commit: base.short)) { _ = try repo.exportFolded("main", to: dir + "/x") }
    }

    /// rsLoRA scale, an embedding adapter (stored transposed) and a `modules_to_save` tensor, built by hand.
    @Test func rsLoRAEmbeddingsAndModulesToSaveFold() throws {
        let r = 4
        let qA = randomFloats(r * 16, seed: 1), qB = randomFloats(16 * r, seed: 2)
        let eA = randomFloats(r * 64, seed: 3), eB = randomFloats(16 * r, seed: 4)
        let pooler = randomFloats(16 * 16, seed: 5)
        func f32(_ name: String, _ shape: Shape, _ v: [Float]) -> (name: String, dtype: DType, shape: Shape, bytes: [UInt8]) {
            (name, .f32, shape, bytesOf(v))
        }
        let folder = dir + "/hand"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try SafetensorsWriter.write(path: folder + "/adapter_model.safetensors", tensors: [
            f32("base_model.model.encoder.layer.1.attention.self.query.lora_A.weight", [r, 16], qA),
            f32("base_model.model.encoder.layer.1.attention.self.query.lora_B.weight", [16, r], qB),
            f32("base_model.model.embeddings.word_embeddings.lora_embedding_A", [r, 64], eA),
            f32("base_model.model.embeddings.word_embeddings.lora_embedding_B", [16, r], eB),
            f32("base_model.model.pooler.dense.modules_to_save.default.weight", [16, 16], pooler),
        ], metadata: [("format", "pt")])
        try writeFile(#"{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_rslora": true, "target_modules": ["query", "word_embeddings"]}"#,
                      to: folder + "/adapter_config.json")
        _ = try repo.switchBranch("hand", create: true)
        let result = try repo.commitFolder(folder, "hand-made adapter")
        #expect(result.adapter?.useRSLoRA == true && result.adapter?.moduleCount == 2 && result.adapter?.base == base)
        #expect(result.adapter?.targets == ["query", "word_embeddings"])

        _ = try repo.exportFolded("hand", to: dir + "/folded")
        let b = try Checkpoint(dir + "/base/model.safetensors"), out = try Checkpoint(dir + "/folded/model.safetensors")
        let scale = 8.0 / Double(r).squareRoot()
        // The query: θ + (alpha/√r)·B·A.
        let q = "encoder.layer.1.attention.self.query.weight"
        let qExpected = Numbers.plus(try b.doubles(q), Numbers.product(b: qB, a: qA, rows: 16, rank: r, columns: 16, scale: scale))
        #expect(Numbers.relativeError(try out.doubles(q), qExpected) < 1e-6)
        // The embedding: θ[v, d] + scale·(B·A)[d, v].
        let e = "embeddings.word_embeddings.weight"
        let ba = Numbers.product(b: eB, a: eA, rows: 16, rank: r, columns: 64, scale: scale)
        var eExpected = try b.doubles(e)
        for v in 0..<64 { for d in 0..<16 { eExpected[v * 16 + d] += ba[d * 64 + v] } }
        #expect(Numbers.relativeError(try out.doubles(e), eExpected) < 1e-6)
        // The pooler is replaced whole; the other layer's query is untouched.
        #expect(try out.floats("pooler.dense.weight") == pooler)
        #expect(try out.bytes("encoder.layer.0.attention.self.query.weight") == (try b.bytes("encoder.layer.0.attention.self.query.weight")))
    }

    // MARK: - Diff

    @Test func adapterDiffMatchesTheDenseComputation() throws {
        try fixture.commitAdapter(Self.code)
        let report = try repo.adapterDiff(old: "lora-math", new: "lora-code")
        #expect(report.oldBase == base && report.newBase == base)
        #expect(report.oldCommit == (try repo.resolve("lora-math")))
        let a = try Checkpoint(dir + "/lora-math/adapter_model.safetensors"), b = try Checkpoint(dir + "/lora-code/adapter_model.safetensors")
        #expect(report.rows.map(\.module) == a.adapterModules)
        for row in report.rows {
            let (da, rows, columns) = try a.adapterDelta(row.module, scale: 2)
            let (db, _, _) = try b.adapterDelta(row.module, scale: 2)
            let na = Numbers.norm(da), nb = Numbers.norm(db)
            #expect(row.baseTensor == row.module + ".weight")
            #expect(row.oldRank == 4 && row.newRank == 4)
            #expect(abs(row.oldNorm - na) < 1e-6 * na && abs(row.newNorm - nb) < 1e-6 * nb, "\(row.module)")
            let cosine = Numbers.dot(da, db) / (na * nb)
            #expect(abs((row.cosine ?? .nan) - cosine) < 1e-5, "\(row.module): \(String(describing: row.cosine)) vs \(cosine)")
            let difference = Numbers.norm(Numbers.minus(db, da))
            #expect(abs((row.differenceNorm ?? .nan) - difference) < 1e-5 * difference, "\(row.module)")
            // Effective ranks from a dense SVD.
            for (delta, got) in [(da, row.oldEffectiveRank), (db, row.newEffectiveRank)] {
                let (_, s, _) = try LinearAlgebra.svd(delta.map(Float.init), rows: rows, columns: columns)
                let kept = s.filter { $0 > 1e-5 * s[0] }
                let sum = kept.reduce(0, +)
                let expected = exp(-kept.reduce(0) { $0 + ($1 / sum) * log($1 / sum) })
                #expect(abs((got ?? .nan) - expected) < 1e-3, "\(row.module)")
                #expect((got ?? 0) > 1 && (got ?? 5) <= 4)
            }
        }
        // An adapter against itself.
        let same = try repo.adapterDiff(old: "lora-math", new: "lora-math")
        #expect(same.rows.allSatisfy { abs(($0.cosine ?? 0) - 1) < 1e-9 && ($0.differenceNorm ?? 1) < 1e-6 * $0.oldNorm })
        // Not an adapter.
        expectThrows(RepoError.notAnAdapter(commit: base.short)) { _ = try repo.adapterDiff(old: "main", new: "lora-math") }
    }

    @Test func adapterDiffWithDifferentModules() throws {
        try fixture.commitAdapter(LoRASpec(name: "lora-wide", seed: 7, rank: 2, alpha: 4, targets: ["query", "key"]))
        let report = try repo.adapterDiff(old: "lora-math", new: "lora-wide")
        // query on both sides, value only in the old one, key only in the new one.
        #expect(report.rows.count == 6)
        for row in report.rows {
            let module = row.module
            if module.hasSuffix(".query") {
                #expect(row.oldRank == 4 && row.newRank == 2 && row.cosine != nil)
            } else if module.hasSuffix(".value") {
                #expect(row.newRank == nil && row.newNorm == 0 && row.cosine == nil && row.differenceNorm == nil && row.newEffectiveRank == nil)
                #expect(row.oldNorm > 0)
            } else {
                #expect(module.hasSuffix(".key") && row.oldRank == nil && row.oldNorm == 0 && row.cosine == nil)
            }
        }
    }
}

/// Seeded normal Float32 values.
func randomFloats(_ n: Int, seed: UInt64, scale: Double = 0.1) -> [Float] {
    var rng = SeededRandom(seed: seed)
    return (0..<n).map { _ in Float(rng.normalPair().0 * scale) }
}
