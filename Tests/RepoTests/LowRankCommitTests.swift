import Delta
import Foundation
import Merge
import ModelFactory
import Testing

@testable import Repo

/// `commit --lowrank R` / `--energy E`: 2-D task vectors stored as truncated SVDs against the base,
/// the `lossy` record, and errors checked against an independent measurement of the export.
///
/// The fixture (one per test) is an empty repository; each test commits the base model it needs
/// with ``commitFamily(_:)``.
@Suite final class LowRankCommitTests {
    let chat = FineTune.heavy("chat", seed: 13)
    /// Wider than `tiny`: its 32×32 Float32 and 64×32 BFloat16 matrices reach the 4096 bytes below
    /// which a tensor is never stored low-rank (its object overhead would outweigh the saving).
    static let architecture = Architecture(name: "lowrank", hidden: 32, layers: 2, vocab: 64, intermediate: 64, maxPositions: 32)
    static let wide = ModelFactory(architecture: architecture, dtype: .f32, seed: 42)

    let fixture: TemporaryRepository
    var repo: Repository { fixture.repo }
    var dir: String { fixture.dir }

    init() throws {
        fixture = try TemporaryRepository()
    }

    /// Commits `factory`'s base model on `main` from `<dir>/base`, and writes its heavy fine-tune to `<dir>/chat`.
    func commitFamily(_ factory: ModelFactory) throws {
        try factory.writeCheckpoint(to: dir + "/base")
        try factory.writeCheckpoint(to: dir + "/chat", fineTune: chat)
        try repo.commitFolder(dir + "/base", "base")
    }

    struct Measured {
        var error: [String: Double] = [:]
        var exact: [String] = []
    }

    /// Exports `revision` and measures every tensor against the original and the base:
    /// ‖θ̂ − θ‖ / ‖θ − θ_base‖, and which tensors came back byte for byte.
    func measure(_ repo: Repository, _ revision: String, dir: String, original: String, base: String) throws -> Measured {
        let out = dir + "/export-\(UUID().uuidString.prefix(6))"
        _ = try repo.export(revision, to: out)
        let o = try Checkpoint(original + "/model.safetensors"), b = try Checkpoint(base + "/model.safetensors")
        let e = try Checkpoint(out + "/model.safetensors")
        #expect(e.names == o.names)
        var m = Measured()
        for name in o.names {
            if try e.bytes(name) == (try o.bytes(name)) {
                m.exact.append(name)
                continue
            }
            let theta = try o.doubles(name)
            let delta = Numbers.minus(theta, try b.doubles(name))
            m.error[name] = Numbers.norm(Numbers.minus(try e.doubles(name), theta)) / Numbers.norm(delta)
        }
        for file in ["config.json", "tokenizer.json", "tokenizer_config.json", "README.md"] {
            #expect(try readFile(out + "/" + file) == (try readFile(original + "/" + file)), "\(file)")
        }
        return m
    }

    @Test(arguments: [DType.f32, .bf16])
    func rankCommitRecordsTheErrorsItCauses(dtype: DType) throws {
        let factory = ModelFactory(architecture: Self.architecture, dtype: dtype, seed: 42)
        try commitFamily(factory)
        let result = try repo.commitFolder(dir + "/chat", "chat, rank 2", lowRank: LowRankPolicy(choice: .rank(2)))
        let records = result.lowRankTensors
        #expect(!records.isEmpty)
        let commit = try repo.commit(result.commit.id)
        #expect(commit.extra["storage"]?.stringValue == "lossy")
        let lossy = try #require(commit.extra["lossy"])
        #expect(lossy["method"]?.stringValue == "lowrank" && lossy["rank"]?.intValue == 2)
        #expect(lossy["tensor_count"]?.intValue == records.count)
        let recorded = Dictionary((lossy["tensors"]?.objectValue ?? []).map { ($0.key, $0.value) }, uniquingKeysWith: { a, _ in a })
        #expect(Set(recorded.keys) == Set(records.map(\.name)))
        #expect(lossy["stored_bytes"]?.intValue == records.reduce(0) { $0 + $1.storedByteCount })
        #expect(lossy["dense_bytes"]?.intValue == records.reduce(0) { $0 + $1.logicalByteCount })
        #expect(lossy["max_relative_error"]?.doubleValue == records.map(\.relativeError).max())

        // Independent measurement of the export.
        let m = try measure(repo, "HEAD", dir: dir, original: dir + "/chat", base: dir + "/base")
        #expect(Set(m.error.keys) == Set(recorded.keys), "exactly the low-rank tensors differ from the original")
        let o = try Checkpoint(dir + "/chat/model.safetensors"), b = try Checkpoint(dir + "/base/model.safetensors")
        for (name, value) in recorded {
            let error = try #require(value["relative_error"]?.doubleValue)
            #expect(value["rank"]?.intValue == 2)
            let measured = try #require(m.error[name])
            #expect(abs(measured - error) <= 1e-9 + 1e-9 * error, "\(name): recorded \(error), measured \(measured)")
            // No better than the best rank-2 approximation, and close to it (up to the dtype's rounding).
            let t = try o.info(name)
            let delta = Numbers.minus(try o.doubles(name), try b.doubles(name)).map(Float.init)
            let (_, s, _) = try LinearAlgebra.svd(delta, rows: t.shape[0], columns: t.shape[1])
            let best = (s.dropFirst(2).reduce(0) { $0 + $1 * $1 } / s.reduce(0) { $0 + $1 * $1 }).squareRoot()
            let slack = dtype == .f32 ? 1e-4 : 0.05
            #expect(measured >= best - slack && measured <= best + slack, "\(name): \(measured) vs best \(best)")
            #expect(t.shape.count == 2)
            // Stored as a low-rank object against the base's tensor.
            let entry = try #require(try repo.tensors(of: "HEAD")[name])
            let info = try #require(try repo.history.objectInfo(entry.objectID))
            #expect(info.encoding == .lowRank)
            #expect(info.reference == (try repo.tensors(of: "main~1")[name])?.objectID)
        }
        // Small tensors, 1-D tensors and tensors the fine-tune left alone are exact.
        for name in o.names where try o.info(name).byteCount < 4096 { #expect(m.exact.contains(name), "\(name)") }
        #expect(records.allSatisfy { $0.logicalByteCount >= 4096 })
        for name in o.names where try o.info(name).shape.count != 2 { #expect(m.exact.contains(name), "\(name)") }
        for name in ["pooler.dense.weight", "embeddings.position_ids", "embeddings.token_type_embeddings.weight"] {
            #expect(m.exact.contains(name), "\(name)")
        }
        #expect(try commit.record(LossyRecord.self)?.tensorCount == records.count)
        // Committed from a folder: the working tree holds the commit's (approximate) weights.
        #expect(try repo.status().changes.isEmpty)
        #expect(try repo.fsck().isClean)
        let saved = Double(records.reduce(0) { $0 + $1.storedByteCount }) / Double(records.reduce(0) { $0 + $1.logicalByteCount })
        #expect(saved < 0.5, "rank 2 of 16-wide matrices stores less than half")
    }

    /// A fine-tune that is a folded rank-4 LoRA: `--energy` picks, per tensor, the smallest rank whose
    /// singular values keep the share asked for.
    @Test func energyCommitPicksTheSmallestSufficientRank() throws {
        try commitFamily(Self.wide)
        try Self.wide.writeAdapter(LoRASpec(name: "lora", seed: 3, rank: 4, alpha: 8, bScale: 0.05), to: dir + "/lora")
        _ = try repo.switchBranch("lora", create: true)
        try repo.commitFolder(dir + "/lora", "adapter")
        _ = try repo.exportFolded("lora", to: dir + "/folded")
        _ = try repo.switchBranch("folded", create: true, startPoint: "main")
        let target = 0.999
        let result = try repo.commitFolder(dir + "/folded", "folded, energy", lowRank: LowRankPolicy(choice: .energy(target)))
        let lossy = try #require(try repo.commit(result.commit.id).extra["lossy"])
        #expect(lossy["energy"]?.doubleValue == target && lossy["rank"] == nil)
        // Exactly the four adapted matrices changed, and each is stored low-rank.
        #expect(Set(result.lowRankTensors.map(\.name)) == Set(["query", "value"].flatMap { p in
            (0..<2).map { "encoder.layer.\($0).attention.self.\(p).weight" } }))
        let m = try measure(repo, "HEAD", dir: dir, original: dir + "/folded", base: dir + "/base")
        let o = try Checkpoint(dir + "/folded/model.safetensors"), b = try Checkpoint(dir + "/base/model.safetensors")
        for record in result.lowRankTensors {
            let measured = try #require(m.error[record.name])
            #expect(abs(measured - record.relativeError) < 1e-9, "\(record.name)")
            #expect(measured <= (1 - target).squareRoot() + 1e-4, "\(record.name): \(measured)")
            let delta = Numbers.minus(try o.doubles(record.name), try b.doubles(record.name)).map(Float.init)
            let (_, s, _) = try LinearAlgebra.svd(delta, rows: 32, columns: 32)
            let total = s.reduce(0) { $0 + $1 * $1 }
            let kept = s.prefix(record.rank).reduce(0) { $0 + $1 * $1 } / total
            let fewer = s.prefix(record.rank - 1).reduce(0) { $0 + $1 * $1 } / total
            #expect(record.rank >= 1 && record.rank <= 4, "\(record.name): rank \(record.rank)")
            #expect(kept >= target - 1e-6 && fewer < target, "\(record.name): rank \(record.rank) keeps \(kept), one less \(fewer)")
        }
    }

    @Test func inPlaceLowRankCommitLeavesTheWorkingTreeModified() throws {
        try commitFamily(tinyFactory)
        try tinyFactory.writeCheckpoint(to: repo.root, fineTune: chat)
        let result = try repo.commit(CommitOptions(message: "in place", author: testAuthor, lowRank: LowRankPolicy(choice: .rank(2))))
        #expect(!result.lowRankTensors.isEmpty)
        #expect(result.notes.contains { $0.contains("mrepo status") && $0.contains("model.safetensors") }, "\(result.notes)")
        let changes = try repo.status().changes
        #expect(changes.map(\.path) == ["model.safetensors"])
        #expect(changes.first?.kind == .modified)
        #expect(changes.first?.changedTensors == result.lowRankTensors.count)
        // The working tree is untouched: still the exact fine-tune.
        #expect(try readFile(repo.root + "/model.safetensors") == (try readFile(dir + "/chat/model.safetensors")))
        // A plain commit then records the exact weights, and the tree is clean again.
        let exact = try repo.commitAll("exact")
        #expect(exact.commit.extra["lossy"] == nil)
        #expect(try repo.status().changes.isEmpty)
        #expect(try repo.fsck().isClean)
    }

    @Test func nothingToApproximateIsLossless() throws {
        try repo.writeModel()
        let result = try repo.commit(CommitOptions(message: "first", author: testAuthor, lowRank: LowRankPolicy(choice: .rank(2))))
        #expect(result.lowRankTensors.isEmpty)
        #expect(result.commit.extra["storage"]?.stringValue == "lossless" && result.commit.extra["lossy"] == nil)
        #expect(result.notes.contains { $0.contains("lossless") })
        #expect(try repo.status().changes.isEmpty)
    }

    @Test func lossyCommitsSurviveGCAndDiff() throws {
        try commitFamily(tinyFactory)
        _ = try repo.switchBranch("lossy", create: true)
        try repo.commitFolder(dir + "/chat", "lossy", lowRank: LowRankPolicy(choice: .rank(3)))
        let before = try measure(repo, "lossy", dir: dir, original: dir + "/chat", base: dir + "/base")
        _ = try repo.switchBranch("main")
        _ = try repo.gc()
        #expect(try repo.fsck().isClean)
        let after = try measure(repo, "lossy", dir: dir, original: dir + "/chat", base: dir + "/base")
        #expect(before.error == after.error)
    }
}
