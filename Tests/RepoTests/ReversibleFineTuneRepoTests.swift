import Delta
import Foundation
import Merge
import ModelFactory
import Testing

@testable import Repo

/// `merge --method rmm` of full fine-tunes: their 2-D task vectors reduced by PT-SVD (or kept dense),
/// the experts rebuilt by export, and the default view.
///
/// The fixture (one per test): the tiny base on `main` and the standard family's fine-tunes on
/// branches `math`, `code`, `chat` (``FineTuneRepository``).
@Suite final class ReversibleFineTuneRepoTests {
    let fixture: FineTuneRepository
    var repo: Repository { fixture.repo }
    var dir: String { fixture.dir }

    init() throws {
        fixture = try FineTuneRepository()
    }

    @Test func fullFineTunesReducedByPTSVD() throws {
        let m = try repo.reversibleMerge(["math", "code", "chat"], ["basis": .number(2), "rank": .number(4)])
        #expect(m.report.kind == .full && m.report.variant == .position)
        let record = try #require(try m.commit.record(ReversibleMergeRecord.self))
        #expect(record.kind == "full" && record.rank == 4)
        #expect(m.report.remarks.contains { $0.contains("reduced to rank 4") })
        let base = try Checkpoint(dir + "/base/model.safetensors")
        let matrices = base.names.filter { name in
            (try? base.info(name))?.shape.count == 2 && !FineTune.isUntouched(name)
        }
        #expect(Set(m.report.modules.map(\.baseTensor)) == Set(matrices))
        for module in m.report.modules {
            let reduction = try #require(module.reductionErrors)
            #expect(reduction.count == 3 && reduction.allSatisfy { $0 > 0 && $0 < 1 })
            // K = N − 1 rebuilds the reduced experts exactly: the error is the reduction's.
            for i in 0..<3 { #expect(abs(module.errors[i] - reduction[i]) < 1e-4, "\(module.name)") }
            #expect(module.rank == 4)
        }
        // The export of an expert: measured independently, each matrix's error is the reported one;
        // every other tensor is the expert's own.
        _ = try repo.exportReversible("HEAD", view: nil, expert: "chat", fold: false, to: dir + "/x")
        let rebuilt = try Checkpoint(dir + "/x/model.safetensors"), chat = try Checkpoint(dir + "/chat/model.safetensors")
        #expect(rebuilt.names == chat.names)
        for name in chat.names {
            guard let module = m.report.modules.first(where: { $0.baseTensor == name }) else {
                #expect(try rebuilt.bytes(name) == (try chat.bytes(name)), "\(name)")
                continue
            }
            let delta = Numbers.minus(try chat.doubles(name), try base.doubles(name))
            let error = Numbers.norm(Numbers.minus(try rebuilt.doubles(name), try chat.doubles(name))) / Numbers.norm(delta)
            #expect(abs(error - module.errors[2]) < 1e-4, "\(name): \(error) vs \(module.errors[2])")
        }
        // The default view: 1-D tensors are θ_base + Σ (θᵢ − θ_base), exactly computed here.
        let view = try Checkpoint(repo.root + "/model.safetensors")
        let experts = try ["math", "code", "chat"].map { try Checkpoint(dir + "/\($0)/model.safetensors") }
        for name in base.names {
            let info = try base.info(name)
            guard info.shape.count == 1, info.dtype == .f32 else { continue }
            let b = try base.doubles(name)
            var expected = b
            for e in experts { expected = Numbers.plus(expected, Numbers.minus(try e.doubles(name), b)) }
            let got = try view.doubles(name)
            for j in expected.indices { #expect(abs(got[j] - expected[j]) <= 1e-6 * (1 + abs(expected[j])), "\(name)[\(j)]") }
        }
        #expect(Set(try snapshot(repo.root).keys) == ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json",
                                                      "README.md", "merge_recipe.yml", "rmm.safetensors"])
        #expect(try repo.status().changes.isEmpty)
        #expect(try repo.fsck().isClean)
    }

    @Test func denseVariantRebuildsFullFineTunesExactly() throws {
        let m = try repo.reversibleMerge(["math", "code", "chat"], ["basis": .number(2), "variant": .text("dense")])
        #expect(m.report.kind == .full && m.report.modules.allSatisfy { $0.variant == .dense && $0.reductionErrors == nil })
        #expect(try m.commit.record(ReversibleMergeRecord.self)?.rank == nil)
        #expect(m.report.experts.allSatisfy { $0.maxError < 1e-5 }, "\(m.report.experts.map(\.maxError))")
        let base = try Checkpoint(dir + "/base/model.safetensors")
        for name in ["math", "code", "chat"] {
            _ = try repo.exportReversible("HEAD", view: nil, expert: name, fold: false, to: dir + "/x-\(name)")
            let rebuilt = try Checkpoint(dir + "/x-\(name)/model.safetensors"), original = try Checkpoint(dir + "/\(name)/model.safetensors")
            #expect(rebuilt.names == original.names)
            var rounded = 0
            for t in original.names {
                if try rebuilt.bytes(t) == (try original.bytes(t)) { continue }
                rounded += 1
                #expect(m.report.modules.contains { $0.baseTensor == t }, "\(t) differs but is not in the basis")
                let x = try rebuilt.doubles(t), y = try original.doubles(t)
                let delta = Numbers.minus(y, try base.doubles(t))
                let scale = delta.map(abs).max() ?? 0
                for j in y.indices {
                    #expect(abs(x[j] - y[j]) <= 1e-5 * scale + 2.4e-7 * abs(y[j]), "\(name) \(t)[\(j)]: \(x[j]) vs \(y[j])")
                }
            }
            #expect(rounded <= m.report.modules.count)
            for file in ["config.json", "tokenizer.json", "tokenizer_config.json", "README.md"] {
                #expect(try readFile(dir + "/x-\(name)/" + file) == (try readFile(dir + "/\(name)/" + file)))
            }
        }
    }
}
