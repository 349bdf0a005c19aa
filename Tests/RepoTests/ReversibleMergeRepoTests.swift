import Delta
import Foundation
import Merge
import ModelFactory
import Testing

@testable import Repo

/// `merge --method rmm` of adapters: the merge commit, its report, experts rebuilt by checkout and
/// export, the views, refusals, and gc (full fine-tunes: ReversibleFineTuneRepoTests).
///
/// The fixture (one per test): the tiny base committed on `main` from `<dir>/base`, and the three
/// standard adapters committed from `<dir>/<name>` on branches `lora-math`, `lora-code`, `lora-chat`;
/// HEAD on `main`.
@Suite final class ReversibleMergeRepoTests {
    let names = ["lora-math", "lora-code", "lora-chat"]

    let fixture: AdapterRepository
    var repo: Repository { fixture.repo }
    var dir: String { fixture.dir }
    var base: ObjectID { fixture.base }

    init() throws {
        fixture = try AdapterRepository(standardAdapters())
    }

    /// A reversible merge (of the three adapters unless `branches` says otherwise) with basis size `basis`.
    func rmm(_ repo: Repository, _ branches: [String]? = nil, basis: Int, _ parameters: [String: ParameterValue] = [:]) throws
        -> (commit: Commit, report: ReversibleMergeReport) {
        var p = parameters
        p["basis"] = .number(Double(basis))
        return try repo.reversibleMerge(branches ?? names, p)
    }

    /// The error a reversible merge throws, or nil when it commits.
    func rmmError(_ repo: Repository, _ branches: [String]? = nil, basis: Int, _ parameters: [String: ParameterValue] = [:],
                  noCommit: Bool = false) -> (any Error)? {
        var p = parameters
        p["basis"] = .number(Double(basis))
        do {
            _ = try repo.merge(MergeOptions(branches: branches ?? names, recipe: MergeRecipe(method: "rmm", parameters: p, experts: []),
                                            noCommit: noCommit))
            return nil
        } catch {
            return error
        }
    }

    /// The rebuilt adapter file against the committed one: same tensors, same layout, values equal
    /// up to Float32 rounding (`factors`), or the same products B·A (`factors == false`).
    func expectSameAdapter(_ rebuilt: String, _ original: String, factors: Bool, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let r = try Checkpoint(rebuilt), o = try Checkpoint(original)
        #expect(r.names == o.names, sourceLocation: sourceLocation)
        for name in o.names {
            #expect(try r.info(name).dtype == (try o.info(name)).dtype && (try r.info(name)).shape == (try o.info(name)).shape,
                    "\(name)", sourceLocation: sourceLocation)
        }
        if factors {
            for name in o.names {
                let x = try r.doubles(name), y = try o.doubles(name)
                let largest = y.map(abs).max() ?? 0
                let worst = zip(x, y).map { abs($0 - $1) }.max() ?? 0
                #expect(worst <= 1e-5 * largest, "\(name): largest difference \(worst) of \(largest)", sourceLocation: sourceLocation)
                #expect(Numbers.relativeError(x, y) < 1e-6, "\(name)", sourceLocation: sourceLocation)
            }
        } else {
            for module in o.adapterModules {
                let (x, _, _) = try r.adapterDelta(module, scale: 1), (y, _, _) = try o.adapterDelta(module, scale: 1)
                #expect(Numbers.relativeError(x, y) < 1e-5, "\(module)", sourceLocation: sourceLocation)
            }
        }
    }

    // MARK: - Rebuilding experts

    /// The product requirement: with K = N − 1, `checkout MERGE --expert NAME` and
    /// `export MERGE DIR --expert NAME` give back the committed adapter up to float rounding.
    @Test(arguments: ["position", "layer", "dense"])
    func expertsComeBackFromTheMerge(variant: String) throws {
        let mainBefore = try repo.resolve("main")
        let m = try rmm(repo, basis: 2, ["variant": .text(variant)])
        #expect(m.commit.parents == [mainBefore] + (try names.map { try repo.resolve($0) }))
        #expect(m.report.variant.rawValue == variant && m.report.kind == .adapter && m.report.basis == 2)
        #expect(m.report.experts.map(\.name) == names)
        #expect(m.report.modules.count == 4 && m.report.modules.allSatisfy { $0.variant.rawValue == variant && $0.errors.count == 3 })
        #expect(m.report.experts.allSatisfy { $0.maxError < 1e-5 && $0.globalError < 1e-5 }, "\(m.report.experts.map(\.maxError))")
        let record = try #require(try m.commit.record(ReversibleMergeRecord.self))
        #expect(record.base == base && record.basis == 2 && record.variant.rawValue == variant && record.kind == "adapter")
        let expertCommits = try names.map { try repo.resolve($0) }
        #expect(record.experts.map(\.name) == names && record.experts.map(\.commit) == expertCommits)

        for name in names {
            let (result, description) = try repo.checkoutReversible(m.commit.id.hex, view: nil, expert: name, fold: false)
            #expect(description.contains("expert \(name)"))
            #expect(result.head == .detached(m.commit.id))
            try expectSameAdapter(repo.root + "/adapter_model.safetensors", dir + "/\(name)/adapter_model.safetensors",
                                  factors: variant != "dense")
            for file in ["adapter_config.json", "README.md"] {
                #expect(try readFile(repo.root + "/" + file) == (try readFile(dir + "/\(name)/" + file)), "\(file)")
            }
            #expect(Set(try snapshot(repo.root).keys) == ["adapter_model.safetensors", "adapter_config.json", "README.md"])
            let changes = try repo.status().changes
            #expect(changes.isEmpty, "\(changes)")
            #expect(try repo.currentView()?.description.contains("expert \(name)") == true)
            #expect(try repo.currentView()?.commit == m.commit.id)

            // export --expert writes the same files; the commit id prefix names the expert too.
            _ = try repo.exportReversible(m.commit.id.hex, view: nil, expert: name, fold: false, to: dir + "/x-\(name)")
            #expect(sameFiles(try snapshot(dir + "/x-\(name)"), try snapshot(repo.root)))
            let prefix = String(try repo.resolve(name).hex.prefix(10))
            _ = try repo.exportReversible(m.commit.id.hex, view: nil, expert: prefix, fold: false, to: dir + "/p-\(name)")
            #expect(sameFiles(try snapshot(dir + "/p-\(name)"), try snapshot(repo.root)))
        }
        // Back on the branch: the view is gone and the tree is the merge's.
        _ = try repo.switchBranch("main")
        #expect(try repo.currentView() == nil)
        #expect(try repo.status().changes.isEmpty)
        #expect(Set(try snapshot(repo.root).keys) == ["adapter_model.safetensors", "adapter_config.json", "rmm.safetensors", "README.md", "merge_recipe.yml"])
        #expect(try repo.fsck().isClean)
    }

    @Test func anExpertViewTracksLocalChanges() throws {
        let m = try rmm(repo, basis: 2)
        _ = try repo.checkoutReversible("HEAD", view: nil, expert: "lora-code", fold: false)
        try writeFile("edited\n", to: repo.root + "/README.md")
        #expect(try repo.status().changes.map(\.path) == ["README.md"])
        // Another expert would overwrite the edit: refused without force.
        expectThrows(RepoError.dirtyWorktree(operation: "checking out expert lora-chat of the reversible merge \(m.commit.id.short)", paths: ["README.md"])) {
            _ = try repo.checkoutReversible(m.commit.id.hex, view: nil, expert: "lora-chat", fold: false)
        }
        #expect(try repo.currentView()?.description.contains("expert lora-code") == true)
        _ = try repo.checkoutReversible(m.commit.id.hex, view: nil, expert: "lora-chat", fold: false, force: true)
        #expect(try repo.status().changes.isEmpty)
        // A plain checkout of the merge clears the view.
        _ = try repo.checkout(m.commit.id.hex)
        #expect(try repo.currentView() == nil)
        #expect(try repo.status().changes.isEmpty)
        #expect(FileManager.default.fileExists(atPath: repo.root + "/rmm.safetensors"))
    }

    @Test func foldedExpertEqualsTheExpertsOwnFold() throws {
        let m = try rmm(repo, basis: 2)
        _ = try repo.exportReversible(m.commit.id.hex, view: nil, expert: "lora-code", fold: true, to: dir + "/rebuilt")
        _ = try repo.exportFolded("lora-code", to: dir + "/own")
        let a = try Checkpoint(dir + "/rebuilt/model.safetensors"), b = try Checkpoint(dir + "/own/model.safetensors")
        let base = try Checkpoint(dir + "/base/model.safetensors")
        #expect(a.names == b.names)
        let adapted = Set(m.report.modules.map(\.baseTensor))
        for name in b.names {
            if adapted.contains(name) {
                let delta = Numbers.minus(try b.doubles(name), try base.doubles(name))
                let diff = Numbers.minus(try a.doubles(name), try b.doubles(name))
                #expect(Numbers.norm(diff) <= 1e-5 * Numbers.norm(delta), "\(name)")
                #expect(Numbers.norm(delta) > 0)
            } else {
                #expect(try a.bytes(name) == (try b.bytes(name)), "\(name)")
            }
        }
        for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
            #expect(try readFile(dir + "/rebuilt/" + file) == (try readFile(dir + "/own/" + file)))
        }
    }

    // MARK: - Views

    @Test func viewsOfAnAdapterMerge() throws {
        let m = try rmm(repo, basis: 2)
        let adapters = try names.map { try Checkpoint(dir + "/\($0)/adapter_model.safetensors") }
        let base = try Checkpoint(dir + "/base/model.safetensors")
        let modules = adapters[0].adapterModules
        var sums: [String: [Double]] = [:]
        for module in modules {
            sums[module] = try adapters.map { try $0.adapterDelta(module, scale: 2).delta }.reduce(into: [Double](repeating: 0, count: 256)) {
                $0 = Numbers.plus($0, $1)
            }
        }
        // The stored default view: an adapter of rank r and scale 1 holding the best rank-r approximation of Σ ΔWᵢ.
        let view = try Checkpoint(repo.root + "/adapter_model.safetensors")
        let config = try LoRAConfig(json: try readFile(repo.root + "/adapter_config.json"), file: "adapter_config.json")
        #expect(config.rank == 4 && config.alpha == 4 && config.targetModules == ["query", "value"])
        #expect(view.adapterModules == modules)
        var kept = 0.0, total = 0.0
        for module in modules {
            let sum = try #require(sums[module])
            let (_, s, _) = try LinearAlgebra.svd(sum.map(Float.init), rows: 16, columns: 16)
            let energy = s.reduce(0) { $0 + $1 * $1 }
            let best = (s.dropFirst(4).reduce(0) { $0 + $1 * $1 } / energy).squareRoot()
            let got = Numbers.relativeError(try view.adapterDelta(module, scale: 1).delta, sum)
            #expect(abs(got - best) < 1e-4, "\(module): \(got) vs best rank-4 \(best)")
            kept += s.prefix(4).reduce(0) { $0 + $1 * $1 }
            total += energy
        }
        #expect(abs(m.report.viewRetainedEnergy - kept / total) < 1e-4)
        #expect(m.report.viewRank == 4 && m.report.viewLambda == 1)

        // ta-full, folded: θ_base + Σ (alpha/r)·Bᵢ·Aᵢ exactly.
        _ = try repo.exportReversible("HEAD", view: .taFull, expert: nil, fold: true, to: dir + "/ta-full")
        let full = try Checkpoint(dir + "/ta-full/model.safetensors")
        for module in modules {
            let name = module + ".weight"
            let expected = Numbers.plus(try base.doubles(name), try #require(sums[module]))
            let diff = Numbers.minus(try full.doubles(name), expected)
            #expect(Numbers.norm(diff) < 1e-5 * Numbers.norm(try #require(sums[module])), "\(name)")
        }
        // ta-full as an adapter: rank N·r, scale 1, same product.
        _ = try repo.exportReversible("HEAD", view: .taFull, expert: nil, fold: false, to: dir + "/ta-full-adapter")
        let fullAdapter = try Checkpoint(dir + "/ta-full-adapter/adapter_model.safetensors")
        let fullConfig = try LoRAConfig(json: try readFile(dir + "/ta-full-adapter/adapter_config.json"), file: "c")
        #expect(fullConfig.rank == 12 && fullConfig.alpha == 12)
        for module in modules {
            #expect(Numbers.relativeError(try fullAdapter.adapterDelta(module, scale: 1).delta, try #require(sums[module])) < 1e-5)
        }
        // mean: the product of the averaged factors (separate averaging).
        _ = try repo.exportReversible("HEAD", view: .mean, expert: nil, fold: true, to: dir + "/mean")
        let mean = try Checkpoint(dir + "/mean/model.safetensors")
        for module in modules {
            var l = [Float](repeating: 0, count: 64), r = [Float](repeating: 0, count: 64)
            for a in adapters {
                let b = try a.floats("base_model.model.\(module).lora_B.weight"), x = try a.floats("base_model.model.\(module).lora_A.weight")
                for j in 0..<64 { l[j] += 2 * b[j] / 3; r[j] += x[j] / 3 }
            }
            let expected = Numbers.product(b: l, a: r, rows: 16, rank: 4, columns: 16)
            let got = Numbers.minus(try mean.doubles(module + ".weight"), try base.doubles(module + ".weight"))
            #expect(Numbers.relativeError(got, expected) < 1e-3, "\(module)")
        }
        // The default view exported or folded: the tree as committed without the basis (a view is a
        // model folder to load), and its fold.
        _ = try repo.exportReversible("HEAD", view: .ta, expert: nil, fold: false, to: dir + "/ta")
        var committed = try snapshot(repo.root)
        #expect(committed.removeValue(forKey: RMMBasisFile.fileName) != nil)
        #expect(sameFiles(try snapshot(dir + "/ta"), committed))
        _ = try repo.exportFolded("HEAD", to: dir + "/ta-folded")
        let folded = try Checkpoint(dir + "/ta-folded/model.safetensors")
        for module in modules {
            let got = Numbers.minus(try folded.doubles(module + ".weight"), try base.doubles(module + ".weight"))
            #expect(Numbers.relativeError(got, try view.adapterDelta(module, scale: 1).delta) < 1e-4)
        }
    }

    /// Adapters whose factors are stored the other way round from B·A = the base weight: GPT-2's
    /// Conv1D layout (`fan_in_fan_out`) and an embedding. The view is written in the experts' layout
    /// (it was written with `fan_in_fan_out: false`, which transposed the update of a square weight and
    /// made a non-square one unreadable), and experts of two layouts are refused.
    @Test func transposedLayoutsKeepTheirOrientationInTheView() throws {
        let fixture = try AdapterRepository([])
        let repo = fixture.repo, dir = fixture.dir
        let r = 2, dense = "encoder.layer.0.intermediate.dense", embedding = "embeddings.word_embeddings"
        var updates: [String: [String: [Double]]] = [:]
        // intermediate.dense.weight is 64×16; as a Conv1D weight it is (in, out), so B·A is 16×64, as an embedding's is.
        func commitAdapter(_ name: String, seed: UInt64, fanInFanOut: Bool) throws {
            let denseA = fanInFanOut ? randomFloats(r * 64, seed: seed) : randomFloats(r * 16, seed: seed)
            let denseB = fanInFanOut ? randomFloats(16 * r, seed: seed + 1) : randomFloats(64 * r, seed: seed + 1)
            let embA = randomFloats(r * 64, seed: seed + 2), embB = randomFloats(16 * r, seed: seed + 3)
            func f32(_ n: String, _ shape: Shape, _ v: [Float]) -> (name: String, dtype: DType, shape: Shape, bytes: [UInt8]) { (n, .f32, shape, bytesOf(v)) }
            let folder = dir + "/" + name
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            try SafetensorsWriter.write(path: folder + "/adapter_model.safetensors", tensors: [
                f32("base_model.model.\(dense).lora_A.weight", fanInFanOut ? [r, 64] : [r, 16], denseA),
                f32("base_model.model.\(dense).lora_B.weight", fanInFanOut ? [16, r] : [64, r], denseB),
                f32("base_model.model.\(embedding).lora_embedding_A", [r, 64], embA),
                f32("base_model.model.\(embedding).lora_embedding_B", [16, r], embB),
            ], metadata: [("format", "pt")])
            try writeFile(#"{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["dense", "word_embeddings"], "fan_in_fan_out": \#(fanInFanOut)}"#,
                          to: folder + "/adapter_config.json")
            _ = try repo.switchBranch(name, create: true, startPoint: "main")
            _ = try repo.commitFolder(folder, name)
            _ = try repo.switchBranch("main")
            // Each update in the base weight's layout (64×16): scale 2 · (B·A)ᵀ.
            let denseUpdate = fanInFanOut
                ? Self.transpose(Numbers.product(b: denseB, a: denseA, rows: 16, rank: r, columns: 64, scale: 2), rows: 16, columns: 64)
                : Numbers.product(b: denseB, a: denseA, rows: 64, rank: r, columns: 16, scale: 2)
            updates[name] = [dense: denseUpdate,
                             embedding: Self.transpose(Numbers.product(b: embB, a: embA, rows: 16, rank: r, columns: 64, scale: 2), rows: 16, columns: 64)]
        }
        try commitAdapter("fa", seed: 10, fanInFanOut: true)
        try commitAdapter("fb", seed: 20, fanInFanOut: true)
        try commitAdapter("plain", seed: 30, fanInFanOut: false)

        // Two layouts in one basis: refused, nothing written.
        let before = try repo.resolve("main")
        #expect(throws: RepoError.self) { _ = try repo.reversibleMerge(["fa", "plain"], ["basis": .number(1)]) }
        #expect(try repo.resolve("main") == before)

        _ = try repo.reversibleMerge(["fa", "fb"], ["basis": .number(1)])
        let config = try LoRAConfig(json: try readFile(repo.root + "/adapter_config.json"), file: "adapter_config.json")
        #expect(config.fanInFanOut, "the view is stored in the experts' layout")
        let view = try Checkpoint(repo.root + "/adapter_model.safetensors")
        #expect(view.names.contains("base_model.model.\(embedding).lora_embedding_A"))
        // ta-full folded: θ + Σ scale·(B·A)ᵀ; the stored view and a rebuilt expert fold too.
        _ = try repo.exportReversible("HEAD", view: .taFull, expert: nil, fold: true, to: dir + "/ta-full")
        _ = try repo.exportFolded("HEAD", to: dir + "/ta-folded")
        _ = try repo.exportReversible("HEAD", view: nil, expert: "fa", fold: true, to: dir + "/fa-rebuilt")
        _ = try repo.exportFolded("fa", to: dir + "/fa-folded")
        let base = try Checkpoint(dir + "/base/model.safetensors"), full = try Checkpoint(dir + "/ta-full/model.safetensors")
        let rebuilt = try Checkpoint(dir + "/fa-rebuilt/model.safetensors"), own = try Checkpoint(dir + "/fa-folded/model.safetensors")
        for module in [dense, embedding] {
            let name = module + ".weight"
            let sum = Numbers.plus(try #require(updates["fa"]?[module]), try #require(updates["fb"]?[module]))
            let got = Numbers.minus(try full.doubles(name), try base.doubles(name))
            #expect(Numbers.relativeError(got, sum) < 1e-5, "\(name)")
            #expect(Numbers.relativeError(try rebuilt.doubles(name), try own.doubles(name)) < 1e-6, "\(name)")
            // The stored view, folded: a rank-limited approximation of the same sum, in the same
            // layout (transposed, it would be as far from the sum as the sum is large, or more).
            let viewed = Numbers.minus(try Checkpoint(dir + "/ta-folded/model.safetensors").doubles(name), try base.doubles(name))
            #expect(Numbers.relativeError(viewed, sum) < 0.9, "\(name)")
        }
    }

    static func transpose(_ m: [Double], rows: Int, columns: Int) -> [Double] {
        var out = [Double](repeating: 0, count: m.count)
        for i in 0..<rows { for j in 0..<columns { out[j * rows + i] = m[i * columns + j] } }
        return out
    }

    // MARK: - Report and storage

    @Test func reportAndStorage() throws {
        let m = try rmm(repo, basis: 2)
        let (commit, record, report) = try repo.reversibleReport("HEAD")
        #expect(commit.id == m.commit.id && record.reportObject != nil)
        #expect(report.experts.map(\.name) == names && report.modules.count == 4)
        let (n, k, r, positions) = (3, 2, 4, 32)
        #expect(report.storedParameters == (k * (r + n) + r) * positions * 4)
        #expect(report.expertParameters == n * r * positions * 4)
        #expect(report.formulaRatio == 1.5 && abs(report.parameterRatio - 1.5) < 1e-12)
        #expect(report.storedBytes > 0 && report.expertBytes > 0)
        let baselineNames = ["task_arithmetic/factors", "ties/factors", "dare_ties/factors", "task_arithmetic/dense", "ties/dense", "dare_ties/dense"]
        #expect(report.baselines.map(\.name) == baselineNames)
        for module in report.modules {
            #expect(module.baselines.map(\.name) == baselineNames)
            #expect(module.errors.count == 3 && module.expertEnergy.count == 3 && module.k == 2 && module.rank == 4)
            #expect(module.storedParameters == (k * (r + n) + r) * positions)
            #expect(module.reductionErrors == nil)
        }
        // The baselines rebuild nothing: far worse than the merge's own errors.
        #expect(report.baselines.allSatisfy { $0.meanError > 0.1 })
        // The merge commit is also an adapter of the base, and carries the basis file.
        #expect(try commit.record(AdapterRecord.self)?.base == record.base)
        let loaded = try repo.loadReversible(commit.id)
        #expect(loaded.modules.count == 4 && loaded.tensors.count == 4 * 6)
    }

    @Test func smallerBasisStoresLessAndRebuildsApproximately() throws {
        // Four other adapters, in a repository of their own.
        let four = try AdapterRepository((0..<4).map { LoRASpec(name: "lora-\($0)", seed: 200 + UInt64($0), rank: 4, alpha: 8) })
        let (repo, dir) = (four.repo, four.dir)
        let m = try rmm(repo, (0..<4).map { "lora-\($0)" }, basis: 1, ["baselines": .flag(false)])
        #expect(m.report.baselines.isEmpty && m.report.modules.allSatisfy { $0.baselines.isEmpty })
        #expect(abs(m.report.parameterRatio - ReversibleMergeReport.formulaRatio(k: 1, rank: 4, experts: 4, center: true)) < 1e-12)
        #expect(m.report.parameterRatio < 1)
        for e in m.report.experts { #expect(e.maxError > 1e-3 && e.retainedEnergy < 1) }
        // What the report says is what the export gives.
        _ = try repo.exportReversible("HEAD", view: nil, expert: "lora-2", fold: false, to: dir + "/x")
        let rebuilt = try Checkpoint(dir + "/x/adapter_model.safetensors"), original = try Checkpoint(dir + "/lora-2/adapter_model.safetensors")
        for module in m.report.modules {
            let got = Numbers.relativeError(try rebuilt.adapterDelta(module.name, scale: 2).delta, try original.adapterDelta(module.name, scale: 2).delta)
            #expect(abs(got - module.errors[2]) < 1e-4, "\(module.name): \(got) vs \(module.errors[2])")
        }
    }

    // MARK: - Refusals

    @Test func refusedMergesLeaveTheRepositoryUntouched() throws {
        try fixture.commitAdapter(LoRASpec(name: "lora-all", seed: 9, rank: 4, alpha: 8, targets: LoRASpec.allProjections))
        let before = try repo.state()
        // K ≥ N, K = 0, a bad variant.
        #expect(rmmError(repo, basis: 3) as? MergeError == .invalidParameter(method: "rmm", parameter: "basis",
            problem: "is 3 with 3 experts: it must be between 1 and N − 1 = 2 (K = N − 1 rebuilds every expert exactly; a larger basis would store more than the experts)"))
        #expect(rmmError(repo, basis: 0) as? MergeError == .invalidParameter(method: "rmm", parameter: "basis", problem: "must be an integer in [1, 63], got 0"))
        #expect(rmmError(repo, basis: 2, ["variant": .text("nonsense")]) as? MergeError
            == .invalidParameter(method: "rmm", parameter: "variant", problem: "must be one of position, layer, dense, got 'nonsense'"))
        // Different target modules.
        #expect(rmmError(repo, ["lora-math", "lora-code", "lora-all"], basis: 2) as? RepoError
            == .adapterModulesDiffer(expert: "lora-all", adds: ["encoder.layer.0.attention.output.dense.weight", "encoder.layer.0.attention.self.key.weight",
                                                          "encoder.layer.0.intermediate.dense.weight"], lacks: [], reference: "lora-math"))
        // --no-commit.
        #expect(rmmError(repo, basis: 2, noCommit: true) as? RepoError == .reversibleMergeNoCommit)
        #expect(try repo.state() == before)
        // Adapters mixed with a full model.
        _ = try repo.switchBranch("full", create: true, startPoint: "main")
        try tinyFactory.writeCheckpoint(to: dir + "/full", fineTune: .light("math", seed: 11))
        try repo.commitFolder(dir + "/full", "full fine-tune")
        _ = try repo.switchBranch("main")
        let after = try repo.state()
        #expect(rmmError(repo, ["lora-math", "full"], basis: 1) as? RepoError
            == .mixedExpertKinds(experts: ["lora-math", "full"], kinds: [.adapter, .full]))
        #expect(try repo.state() == after)
        #expect(try repo.fsck().isClean)
    }

    @Test func adaptersOfDifferentBasesAreRefused() throws {
        // A second base model on a branch, and an adapter of it.
        _ = try repo.switchBranch("base2", create: true, startPoint: "main")
        try tinyFactory.writeCheckpoint(to: dir + "/base2", fineTune: .light("b2", seed: 77))
        try repo.commitFolder(dir + "/base2", "second base")
        _ = try repo.switchBranch("lora-other", create: true, startPoint: "main")
        try repo.commitFolder(dir + "/lora-chat", "adapter of base2", adapterOf: "base2")
        _ = try repo.switchBranch("main")
        let before = try repo.state()
        let base2 = try repo.resolve("base2")
        #expect(rmmError(repo, ["lora-math", "lora-code", "lora-other"], basis: 2) as? RepoError
            == .adapterBasesDiffer(experts: ["lora-math", "lora-code", "lora-other"], bases: [base.short, base.short, base2.short]))
        #expect(try repo.state() == before)
    }

    @Test func unknownExpertsAndNonMerges() throws {
        let m = try rmm(repo, basis: 2)
        let nobody = RepoError.unknownExpert("nobody", merge: m.commit.id.short, experts: names)
        expectThrows(nobody) { _ = try repo.checkoutReversible(m.commit.id.hex, view: nil, expert: "nobody", fold: false) }
        #expect(try repo.currentView() == nil && (try repo.status().changes.isEmpty))
        expectThrows(nobody) { _ = try repo.exportReversible("HEAD", view: nil, expert: "nobody", fold: false, to: dir + "/x") }
        #expect(!FileManager.default.fileExists(atPath: dir + "/x/adapter_model.safetensors"))
        // Not a reversible merge.
        let adapter = try repo.resolve("lora-math")
        expectThrows(RepoError.notAReversibleMerge(commit: adapter.short, revision: nil)) {
            _ = try repo.checkoutReversible("lora-math", view: nil, expert: "lora-math", fold: false)
        }
        expectThrows(RepoError.notAReversibleMerge(commit: adapter.short, revision: "lora-math")) { _ = try repo.reversibleReport("lora-math") }
    }

    @Test func adaptersOfDifferentRanksUseTheDenseVariant() throws {
        // lora-chat at rank 2, in a repository of its own.
        var specs = standardAdapters()
        specs[2].rank = 2
        specs[2].alpha = 4
        let mixed = try AdapterRepository(specs)
        let (repo, dir) = (mixed.repo, mixed.dir)
        let m = try rmm(repo, basis: 2)
        #expect(m.report.remarks.contains { $0.contains("ranks differ") && $0.contains("dense") }, "\(m.report.remarks)")
        #expect(m.report.modules.allSatisfy { $0.variant == .dense })
        #expect(m.report.formulaRatio == nil)
        #expect(m.report.experts.allSatisfy { $0.maxError < 1e-5 }, "\(m.report.experts.map(\.maxError))")
        #expect(m.report.experts.map(\.rank) == [4, 4, 2])
        for name in names {
            _ = try repo.exportReversible("HEAD", view: nil, expert: name, fold: false, to: dir + "/x-\(name)")
            // The expert's own layout (lora-chat keeps rank 2), and its products.
            try expectSameAdapter(dir + "/x-\(name)/adapter_model.safetensors", dir + "/\(name)/adapter_model.safetensors", factors: false)
        }
    }

    @Test func dryRunWritesNothing() throws {
        let before = try repo.state()
        let outcome = try repo.merge(MergeOptions(branches: names, recipe: MergeRecipe(method: "rmm", parameters: ["basis": .number(2)], experts: []),
                                                  dryRun: true))
        guard case .planned = outcome.status else {
            Issue.record("\(outcome.status)")
            return
        }
        #expect(outcome.report.tensors.count == 4)
        #expect(try repo.state() == before)
    }

    /// HEAD's own adapter is an expert too, named after its branch.
    @Test func headIsAnExpertWhenItIsNotTheBase() throws {
        _ = try repo.switchBranch("lora-math")
        let head = try repo.resolve("HEAD")
        let m = try rmm(repo, ["lora-code", "lora-chat"], basis: 2)
        #expect(m.report.experts.map(\.name) == names)
        #expect(try m.commit.record(ReversibleMergeRecord.self)?.experts.first?.commit == head)
        #expect(try m.commit.record(ReversibleMergeRecord.self)?.base == base)
        #expect(try repo.resolve("lora-math") == m.commit.id, "the merge is recorded on the current branch")
        _ = try repo.exportReversible("HEAD", view: nil, expert: "lora-math", fold: false, to: dir + "/x")
        try expectSameAdapter(dir + "/x/adapter_model.safetensors", dir + "/lora-math/adapter_model.safetensors", factors: true)
    }

    /// With an expert checked out, `status` reports a clean tree; a merge must agree (proceed and leave
    /// the merge result checked out, or refuse for another reason), not call the view's files
    /// uncommitted changes.
    @Test func mergingFromAnExpertViewAgreesWithStatus() throws {
        _ = try rmm(repo, basis: 2)
        _ = try repo.switchBranch("extra", create: true)
        try repo.commitAll("one more commit", allowEmpty: true)
        _ = try repo.checkoutReversible("main", view: nil, expert: "lora-code", fold: false)
        #expect(try repo.status().changes.isEmpty)
        do {
            _ = try repo.merge(MergeOptions(branches: ["extra"], recipe: MergeRecipe(method: "ties", experts: [])))
            #expect(try repo.currentView() == nil)
            #expect(try repo.status().changes.isEmpty)
            _ = try repo.export("HEAD", to: dir + "/head")
            #expect(sameFiles(try snapshot(dir + "/head"), try snapshot(repo.root)))
        } catch let RepoError.dirtyWorktree(operation, paths) {
            Issue.record("'\(operation)' calls \(paths) uncommitted changes while status reports the expert view as clean")
        } catch RepoError.invalidArgument {
            // Refusing to merge onto a view is acceptable.
        }
    }

    // MARK: - gc

    @Test func gcAfterDeletingTheExpertBranchesKeepsTheMergeRebuildable() throws {
        let m = try rmm(repo, basis: 2)
        _ = try repo.exportReversible("HEAD", view: nil, expert: "lora-chat", fold: true, to: dir + "/before")
        for name in names { _ = try repo.deleteBranch(name, force: true) }
        _ = try repo.gc()
        #expect(try repo.fsck().isClean)
        for e in try #require(try m.commit.record(ReversibleMergeRecord.self)).experts { #expect(try repo.history.commit(e.commit) != nil) }
        _ = try repo.exportReversible(m.commit.id.hex, view: nil, expert: "lora-chat", fold: true, to: dir + "/after")
        #expect(sameFiles(try snapshot(dir + "/before"), try snapshot(dir + "/after")))
        _ = try repo.checkoutReversible("HEAD", view: nil, expert: "lora-math", fold: false)
        try expectSameAdapter(repo.root + "/adapter_model.safetensors", dir + "/lora-math/adapter_model.safetensors", factors: true)
    }
}
