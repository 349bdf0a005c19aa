import Delta
import Foundation
import Merge
import ModelFactory
import Testing

@testable import Repo

/// `merge --method rmm`: the merge commit, its report, experts rebuilt by checkout and export,
/// the views, refusals, full fine-tunes, and gc.
@Suite struct ReversibleMergeRepoTests {
    let names = ["lora-math", "lora-code", "lora-chat"]

    struct Merged {
        var commit: Commit
        var report: ReversibleMergeReport
    }

    func rmm(_ repo: Repository, _ branches: [String]? = nil, basis: Int, _ parameters: [String: ParameterValue] = [:]) throws -> Merged {
        var p = parameters
        p["basis"] = .number(Double(basis))
        let outcome = try repo.merge(MergeOptions(branches: branches ?? names, recipe: MergeRecipe(method: "rmm", parameters: p, experts: [])))
        guard case let .committed(c) = outcome.status else {
            Issue.record("the merge did not commit: \(outcome.status)")
            throw RepoError.failed("no commit")
        }
        return Merged(commit: c, report: try #require(outcome.reversible))
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

    func message(_ error: (any Error)?) -> String {
        if case let .invalidArgument(text)? = error as? RepoError { return text }
        return "not an invalid argument: \(String(describing: error))"
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
        try withAdapterRepository(standardAdapters()) { try self.expertsComeBackFromTheMergeBody($0, $1, $2, variant: variant) }
    }

    func expertsComeBackFromTheMergeBody(_ repo: Repository, _ dir: String, _ base: ObjectID, variant: String) throws {
        let mainBefore = try repo.resolve("main")
        let m = try rmm(repo, basis: 2, ["variant": .text(variant)])
        #expect(m.commit.parents == [mainBefore] + (try names.map { try repo.resolve($0) }))
        #expect(m.report.variant == variant && m.report.kind == "adapter" && m.report.basis == 2)
        #expect(m.report.experts.map(\.name) == names)
        #expect(m.report.modules.count == 4 && m.report.modules.allSatisfy { $0.variant == variant && $0.errors.count == 3 })
        #expect(m.report.experts.allSatisfy { $0.maxError < 1e-5 && $0.globalError < 1e-5 }, "\(m.report.experts.map(\.maxError))")
        let record = try #require(try m.commit.record(ReversibleMergeRecord.self))
        #expect(record.base == base && record.basis == 2 && record.variant == variant && record.kind == "adapter")
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
        try withAdapterRepository(standardAdapters()) { try self.anExpertViewTracksLocalChangesBody($0, $1, $2) }
    }

    func anExpertViewTracksLocalChangesBody(_ repo: Repository, _ dir: String, _ base: ObjectID) throws {
        let m = try rmm(repo, basis: 2)
        _ = try repo.checkoutReversible("HEAD", view: nil, expert: "lora-code", fold: false)
        try writeFile("edited\n", to: repo.root + "/README.md")
        #expect(try repo.status().changes.map(\.path) == ["README.md"])
        // Another expert would overwrite the edit: refused without force.
        #expect(throws: RepoError.self) { _ = try repo.checkoutReversible(m.commit.id.hex, view: nil, expert: "lora-chat", fold: false) }
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
        try withAdapterRepository(standardAdapters()) { try self.foldedExpertEqualsTheExpertsOwnFoldBody($0, $1, $2) }
    }

    func foldedExpertEqualsTheExpertsOwnFoldBody(_ repo: Repository, _ dir: String, _ base: ObjectID) throws {
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
        try withAdapterRepository(standardAdapters()) { try self.viewsOfAnAdapterMergeBody($0, $1, $2) }
    }

    func viewsOfAnAdapterMergeBody(_ repo: Repository, _ dir: String, _ base: ObjectID) throws {
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
        // The default view exported or folded: the tree as committed, and its fold.
        _ = try repo.exportReversible("HEAD", view: .ta, expert: nil, fold: false, to: dir + "/ta")
        #expect(sameFiles(try snapshot(dir + "/ta"), try snapshot(repo.root)))
        _ = try repo.exportFolded("HEAD", to: dir + "/ta-folded")
        let folded = try Checkpoint(dir + "/ta-folded/model.safetensors")
        for module in modules {
            let got = Numbers.minus(try folded.doubles(module + ".weight"), try base.doubles(module + ".weight"))
            #expect(Numbers.relativeError(got, try view.adapterDelta(module, scale: 1).delta) < 1e-4)
        }
    }

    // MARK: - Report and storage

    @Test func reportAndStorage() throws {
        try withAdapterRepository(standardAdapters()) { try self.reportAndStorageBody($0, $1, $2) }
    }

    func reportAndStorageBody(_ repo: Repository, _ dir: String, _ base: ObjectID) throws {
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
        let specs = (0..<4).map { LoRASpec(name: "lora-\($0)", seed: 200 + UInt64($0), rank: 4, alpha: 8) }
        try withAdapterRepository(specs) { try self.smallerBasisStoresLessAndRebuildsApproximatelyBody($0, $1, $2) }
    }

    func smallerBasisStoresLessAndRebuildsApproximatelyBody(_ repo: Repository, _ dir: String, _ base: ObjectID) throws {
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
        let other = LoRASpec(name: "lora-all", seed: 9, rank: 4, alpha: 8, targets: LoRASpec.allProjections)
        try withAdapterRepository(standardAdapters() + [other]) { try self.refusedMergesLeaveTheRepositoryUntouchedBody($0, $1, $2) }
    }

    func refusedMergesLeaveTheRepositoryUntouchedBody(_ repo: Repository, _ dir: String, _ base: ObjectID) throws {
        let before = try repo.state()
        // K ≥ N, K = 0, a bad variant.
        let big = message(rmmError(repo, basis: 3))
        #expect(big.contains("N − 1 = 2"), "\(big)")
        #expect(rmmError(repo, basis: 0) is MergeError)
        #expect(rmmError(repo, basis: 2, ["variant": .text("nonsense")]) is MergeError)
        // Different target modules.
        let targets = message(rmmError(repo, ["lora-math", "lora-code", "lora-all"], basis: 2))
        #expect(targets.contains("adapt different modules") && targets.contains("lora-all adds"), "\(targets)")
        // --no-commit.
        #expect(rmmError(repo, basis: 2, noCommit: true) != nil)
        #expect(try repo.state() == before)
        // Adapters mixed with a full model.
        _ = try repo.switchBranch("full", create: true, startPoint: "main")
        try tinyFactory.writeCheckpoint(to: dir + "/full", fineTune: .light("math", seed: 11))
        try repo.commitFolder(dir + "/full", "full fine-tune")
        _ = try repo.switchBranch("main")
        let after = try repo.state()
        let mixed = message(rmmError(repo, ["lora-math", "full"], basis: 1))
        #expect(mixed.contains("mix LoRA adapters and full models"), "\(mixed)")
        #expect(try repo.state() == after)
        #expect(try repo.fsck().isClean)
    }

    @Test func adaptersOfDifferentBasesAreRefused() throws {
        try withAdapterRepository(standardAdapters()) { try self.adaptersOfDifferentBasesAreRefusedBody($0, $1, $2) }
    }

    func adaptersOfDifferentBasesAreRefusedBody(_ repo: Repository, _ dir: String, _ base: ObjectID) throws {
        // A second base model on a branch, and an adapter of it.
        _ = try repo.switchBranch("base2", create: true, startPoint: "main")
        try tinyFactory.writeCheckpoint(to: dir + "/base2", fineTune: .light("b2", seed: 77))
        try repo.commitFolder(dir + "/base2", "second base")
        _ = try repo.switchBranch("lora-other", create: true, startPoint: "main")
        try repo.commitFolder(dir + "/lora-chat", "adapter of base2", adapterOf: "base2")
        _ = try repo.switchBranch("main")
        let before = try repo.state()
        let message = invalidArgument { _ = try rmm(repo, ["lora-math", "lora-code", "lora-other"], basis: 2) }
        #expect(message?.contains("different base models") == true, "\(String(describing: message))")
        #expect(try repo.state() == before)
    }

    @Test func unknownExpertsAndNonMerges() throws {
        try withAdapterRepository(standardAdapters()) { try self.unknownExpertsAndNonMergesBody($0, $1, $2) }
    }

    func unknownExpertsAndNonMergesBody(_ repo: Repository, _ dir: String, _ base: ObjectID) throws {
        let m = try rmm(repo, basis: 2)
        let message = invalidArgument { _ = try repo.checkoutReversible(m.commit.id.hex, view: nil, expert: "nobody", fold: false) }
        #expect(message?.contains("'nobody' is not an expert") == true && message?.contains("lora-math, lora-code, lora-chat") == true,
                "\(String(describing: message))")
        #expect(try repo.currentView() == nil && (try repo.status().changes.isEmpty))
        #expect(invalidArgument { _ = try repo.exportReversible("HEAD", view: nil, expert: "nobody", fold: false, to: dir + "/x") } != nil)
        #expect(!FileManager.default.fileExists(atPath: dir + "/x/adapter_model.safetensors"))
        // Not a reversible merge.
        let plain = invalidArgument { _ = try repo.checkoutReversible("lora-math", view: nil, expert: "lora-math", fold: false) }
        #expect(plain?.contains("not a reversible merge") == true)
        #expect(invalidArgument { _ = try repo.reversibleReport("lora-math") }?.contains("not a reversible merge") == true)
    }

    @Test func adaptersOfDifferentRanksUseTheDenseVariant() throws {
        var specs = standardAdapters()
        specs[2].rank = 2
        specs[2].alpha = 4
        try withAdapterRepository(specs) { try self.adaptersOfDifferentRanksUseTheDenseVariantBody($0, $1, $2) }
    }

    func adaptersOfDifferentRanksUseTheDenseVariantBody(_ repo: Repository, _ dir: String, _ base: ObjectID) throws {
        let m = try rmm(repo, basis: 2)
        #expect(m.report.remarks.contains { $0.contains("ranks differ") && $0.contains("dense") }, "\(m.report.remarks)")
        #expect(m.report.modules.allSatisfy { $0.variant == "dense" })
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
        try withAdapterRepository(standardAdapters()) { try self.dryRunWritesNothingBody($0, $1, $2) }
    }

    func dryRunWritesNothingBody(_ repo: Repository, _ dir: String, _ base: ObjectID) throws {
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
        try withAdapterRepository(standardAdapters()) { try self.headIsAnExpertWhenItIsNotTheBaseBody($0, $1, $2) }
    }

    func headIsAnExpertWhenItIsNotTheBaseBody(_ repo: Repository, _ dir: String, _ base: ObjectID) throws {
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
        try withAdapterRepository(standardAdapters()) { try self.mergingFromAnExpertViewAgreesWithStatusBody($0, $1, $2) }
    }

    func mergingFromAnExpertViewAgreesWithStatusBody(_ repo: Repository, _ dir: String, _ base: ObjectID) throws {
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

    // MARK: - Full fine-tunes

    func withFullFamily<T>(_ body: (Repository, String) throws -> T) throws -> T {
        try withRepository { repo, dir in
            try tinyFactory.writeCheckpoint(to: dir + "/base")
            try repo.commitFolder(dir + "/base", "base")
            for ft in FineTune.standardFamily {
                try tinyFactory.writeCheckpoint(to: dir + "/" + ft.name, fineTune: ft)
                _ = try repo.switchBranch(ft.name, create: true, startPoint: "main")
                try repo.commitFolder(dir + "/" + ft.name, ft.name)
            }
            _ = try repo.switchBranch("main")
            return try body(repo, dir)
        }
    }

    @Test func fullFineTunesReducedByPTSVD() throws {
        try withFullFamily { try self.fullFineTunesReducedByPTSVDBody($0, $1) }
    }

    func fullFineTunesReducedByPTSVDBody(_ repo: Repository, _ dir: String) throws {
        let m = try rmm(repo, ["math", "code", "chat"], basis: 2, ["rank": .number(4)])
        #expect(m.report.kind == "full" && m.report.variant == "position")
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
        try withFullFamily { try self.denseVariantRebuildsFullFineTunesExactlyBody($0, $1) }
    }

    func denseVariantRebuildsFullFineTunesExactlyBody(_ repo: Repository, _ dir: String) throws {
        let m = try rmm(repo, ["math", "code", "chat"], basis: 2, ["variant": .text("dense")])
        #expect(m.report.kind == "full" && m.report.modules.allSatisfy { $0.variant == "dense" && $0.reductionErrors == nil })
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

    // MARK: - gc

    @Test func gcAfterDeletingTheExpertBranchesKeepsTheMergeRebuildable() throws {
        try withAdapterRepository(standardAdapters()) { try self.gcAfterDeletingTheExpertBranchesKeepsTheMergeRebuildableBody($0, $1, $2) }
    }

    func gcAfterDeletingTheExpertBranchesKeepsTheMergeRebuildableBody(_ repo: Repository, _ dir: String, _ base: ObjectID) throws {
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
