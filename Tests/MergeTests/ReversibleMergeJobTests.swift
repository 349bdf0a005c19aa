import Delta
import Foundation
import Testing

@testable import Merge

/// ``ReversibleMergeJob``: a whole reversible merge on small matrices, module by module (fit,
/// errors, energies, baselines, the default view, PT-SVD of full fine-tunes), the report it adds
/// up, and the views rebuilt from a stored module.
@Suite struct ReversibleMergeJobTests {
    /// N experts of one module with a shared component (as adapters from one init are).
    func experts(_ n: Int, rows: Int, columns: Int, rank: Int, seed: UInt64) -> [LowRankFactors] {
        let shared = Dense.factors(rows: rows, columns: columns, rank: rank, seed: seed + 1000)
        return (0..<n).map { i in
            let own = Dense.factors(rows: rows, columns: columns, rank: rank, seed: seed + UInt64(i) * 7, scale: 0.5)
            return LowRankFactors(rows: rows, columns: columns, rank: rank, left: zip(shared.left, own.left).map { $0 + $1 },
                                  right: zip(shared.right, own.right).map { $0 + $1 })
        }
    }

    func adapterInput(_ name: String, _ f: [LowRankFactors]) -> RMMModuleInput {
        RMMModuleInput(module: name, baseTensor: name + ".weight", rows: f[0].rows, columns: f[0].columns,
                       experts: .adapters(f, scales: f.indices.map { 0.5 + Double($0) }, transposed: false))
    }

    func makeJob(_ kind: RMMExpertKind, _ settings: ReversibleMergeSettings, n: Int = 3, viewRank: Int = 4) -> ReversibleMergeJob {
        ReversibleMergeJob(kind: kind, settings: settings, expertCount: n, viewRank: viewRank, layerCount: 2, seed: 1)
    }

    /// λ·Σ of the experts' products, in Float64.
    func sum(_ f: [LowRankFactors], lambda: Double) -> [Double] {
        var out = [Double](repeating: 0, count: f[0].rows * f[0].columns)
        for x in f { for (j, v) in Dense.product(x).enumerated() { out[j] += lambda * v } }
        return out
    }

    // MARK: - Adapters

    @Test func adapterMergeRebuildsEveryExpertAndAddsUpTheReport() throws {
        let n = 3, rank = 2
        let modules = [experts(n, rows: 9, columns: 7, rank: rank, seed: 1), experts(n, rows: 5, columns: 8, rank: rank, seed: 2)]
        // View rank N·r: the truncation keeps the whole sum.
        var job = makeJob(.adapter, ReversibleMergeSettings(basis: n - 1, viewLambda: 0.5), viewRank: n * rank)
        var fitted: [RMMFittedModule] = []
        for (i, f) in modules.enumerated() { fitted.append(try job.run(adapterInput("m\(i)", f))) }
        for (m, f) in zip(fitted, modules) {
            #expect(m.module.variant == .position && m.report.errors.count == n && m.report.errors.allSatisfy { $0 < 1e-5 }, "\(m.report.errors)")
            #expect(m.metadata == RMMBasisFile.ModuleMetadata(module: m.report.name, baseTensor: m.report.name + ".weight", rows: f[0].rows,
                                                              columns: f[0].columns, rank: rank, k: n - 1, variant: .position,
                                                              scales: [0.5, 1.5, 2.5], transposed: false))
            #expect(m.report.expertParameters == n * rank * (f[0].rows + f[0].columns))
            #expect(m.report.storedParameters == m.module.storedParameterCount)
            #expect(m.report.baselines.map(\.name) == ["task_arithmetic/factors", "ties/factors", "dare_ties/factors",
                                                        "task_arithmetic/dense", "ties/dense", "dare_ties/dense"])
            #expect(m.view.rank == min(n * rank, f[0].rows, f[0].columns))
            #expect(Dense.relativeError(Dense.product(m.view), reference: sum(f, lambda: 0.5)) < 1e-5)
        }
        let report = job.report(experts: [("a", "01"), ("b", "02"), ("c", "03")], storedBytes: 11, expertBytes: 22)
        #expect(report.kind == .adapter && report.variant == .position && report.basis == n - 1 && report.center)
        #expect(report.experts.map(\.name) == ["a", "b", "c"] && report.experts.map(\.commit) == ["01", "02", "03"])
        #expect(report.experts.allSatisfy { $0.rank == rank && $0.maxError < 1e-5 && $0.globalError < 1e-5 && abs($0.retainedEnergy - 1) < 1e-6 })
        for i in 0..<n {
            let errors = fitted.map { $0.report.errors[i] }
            #expect(report.experts[i].maxError == errors.max() && report.experts[i].meanError == errors.reduce(0, +) / 2)
        }
        // Each baseline's numbers are every module's errors, module by module.
        for b in report.baselines {
            let all = fitted.flatMap { m in m.report.baselines.first { $0.name == b.name }?.errors ?? [] }
            #expect(all.count == 2 * n && b.meanError == all.reduce(0, +) / Double(all.count) && b.maxError == all.max(), "\(b.name)")
        }
        #expect(report.storedParameters == fitted.reduce(0) { $0 + $1.report.storedParameters })
        #expect(report.expertParameters == fitted.reduce(0) { $0 + $1.report.expertParameters })
        #expect(report.storedBytes == 11 && report.expertBytes == 22 && report.viewRank == n * rank && report.viewLambda == 0.5)
        #expect(report.formulaRatio == ReversibleMergeReport.formulaRatio(k: n - 1, rank: rank, experts: n, center: true))
        #expect(abs(report.viewRetainedEnergy - 1) < 1e-9 && report.remarks.isEmpty)
    }

    @Test func truncatedViewKeepsTheLeadingEnergy() throws {
        let f = experts(3, rows: 9, columns: 7, rank: 3, seed: 3)
        var job = makeJob(.adapter, ReversibleMergeSettings(basis: 2), viewRank: 2)
        let m = try job.run(adapterInput("m", f))
        let expected = try LowRank.truncate(sum(f, lambda: 1).map(Float.init), rows: 9, columns: 7, choice: .rank(2))
        #expect(m.view.rank == 2 && Dense.relativeError(Dense.product(m.view), reference: Dense.product(expected.factors)) < 1e-4)
        let report = job.report(experts: [("a", ""), ("b", ""), ("c", "")], storedBytes: 0, expertBytes: 0)
        #expect(abs(report.viewRetainedEnergy - expected.retainedEnergy) < 1e-3 && report.viewRetainedEnergy < 1)
    }

    @Test func adaptersOfDifferentRanksUseTheDenseVariant() throws {
        var f = experts(3, rows: 6, columns: 5, rank: 2, seed: 4)
        f[1] = Dense.factors(rows: 6, columns: 5, rank: 3, seed: 9)
        var job = makeJob(.adapter, ReversibleMergeSettings(basis: 2, variant: .layer))
        let m = try job.run(adapterInput("m", f))
        #expect(m.module.variant == .dense && m.metadata.variant == .dense && m.metadata.rank == 0 && m.report.variant == .dense)
        #expect(m.report.errors.allSatisfy { $0 < 1e-5 })
        // Only the dense baselines apply to different ranks.
        #expect(m.report.baselines.map(\.name) == ["task_arithmetic/dense", "ties/dense", "dare_ties/dense"])
        let report = job.report(experts: [("a", ""), ("b", ""), ("c", "")], storedBytes: 0, expertBytes: 0)
        #expect(report.formulaRatio == nil && report.experts.map(\.rank) == [2, 3, 2])
    }

    // MARK: - Full fine-tunes

    /// A base and N experts that change it by rank-2 matrices.
    func fullFineTunes(_ n: Int, rows: Int, columns: Int) -> (base: [Float], experts: [[Float]], deltas: [[Double]]) {
        let base = randomValues(rows * columns, seed: 50)
        let deltas = (0..<n).map { Dense.product(Dense.factors(rows: rows, columns: columns, rank: 2, seed: 60 + UInt64($0), scale: 0.1)) }
        return (base, deltas.map { d in zip(base, d).map { $0 + Float($1) } }, deltas)
    }

    @Test(arguments: [RMMVariant.position, .dense])
    func fullFineTunesAreReducedThenFitted(variant: RMMVariant) throws {
        let n = 3, rows = 8, columns = 6
        let (base, thetas, deltas) = fullFineTunes(n, rows: rows, columns: columns)
        var job = makeJob(.full, ReversibleMergeSettings(basis: n - 1, variant: variant, rank: 4, baselines: false))
        #expect(job.remarks.count == 1 && job.remarks[0].hasPrefix("full fine-tunes: "))
        var read: [Int] = []
        let input = try job.fullFineTuneInput(tensor: "w", rows: rows, columns: columns, base: base) { i in
            read.append(i)
            return thetas[i]
        }
        #expect(read == [0, 1, 2] && input.module == "w" && input.baseTensor == "w")
        guard case let .fullFineTunes(taskVectors, reduction) = input.experts else {
            Issue.record("not full fine-tunes")
            return
        }
        for i in 0..<n { #expect(Dense.relativeError(taskVectors[i].map(Double.init), reference: deltas[i]) < 1e-5) }
        let m = try job.run(input)
        if variant == .dense {
            #expect(reduction == nil && m.report.reductionErrors == nil && m.module.variant == .dense)
            #expect(m.report.expertParameters == n * rows * columns)
        } else {
            // Rank-2 changes reduced to rank 4: exact, with two zero components appended (the
            // reported error, √(1 − kept energy), is exact to about √ε of Float32).
            let r = try #require(reduction)
            #expect(r.factors.allSatisfy { $0.rank == 4 } && r.errors.allSatisfy { $0 < 1e-3 } && m.report.reductionErrors == r.errors, "\(r.errors)")
            for i in 0..<n { #expect(Dense.relativeError(Dense.product(r.factors[i]), reference: deltas[i]) < 1e-5) }
            #expect(m.module.variant == .position && m.report.expertParameters == n * 4 * (rows + columns))
        }
        #expect(m.metadata.scales == nil && m.metadata.transposed == nil)
        #expect(m.report.errors.allSatisfy { $0 < 1e-4 }, "\(m.report.errors)")
        let report = job.report(experts: [("a", ""), ("b", ""), ("c", "")], storedBytes: 0, expertBytes: 0)
        #expect(report.kind == .full && report.experts.allSatisfy { $0.rank == 4 } && report.baselines.isEmpty)
    }

    @Test func passThroughTensorsTakeTaskArithmetic() {
        let base: [Float] = [1, 2, 3]
        let experts: [[Float]?] = [[2, 2, 3], nil, [1, 0, 3]]
        #expect(ReversibleMergeJob.taskArithmetic(base: base, lambda: 0.5, expertCount: 3) { experts[$0] } == [1.5, 1, 3])
        let job = makeJob(.full, ReversibleMergeSettings(basis: 1, viewLambda: 2), n: 3)
        #expect(job.passThroughView(base: base) { experts[$0] } == [3, -2, 3])
        #expect(job.passThroughView(base: base) { _ in nil } == base)
    }

    @Test func inputsThatDoNotFitTheJobAreRefused() throws {
        let f = experts(3, rows: 4, columns: 4, rank: 1, seed: 5)
        var full = makeJob(.full, ReversibleMergeSettings(basis: 2))
        expectThrows(MergeError.invalidInputs(method: "rmm", problem: "module 'm': adapters in a merge of full fine-tunes")) {
            _ = try full.run(adapterInput("m", f))
        }
        var adapters = makeJob(.adapter, ReversibleMergeSettings(basis: 2), n: 4)
        expectThrows(MergeError.invalidInputs(method: "rmm", problem: "module 'm' has 3 experts, the merge 4")) {
            _ = try adapters.run(adapterInput("m", f))
        }
    }

    // MARK: - Views of a stored module

    @Test(arguments: RMMVariant.allCases)
    func meanAndSumViewsOfAModule(variant: RMMVariant) throws {
        let n = 3
        let f = experts(n, rows: 6, columns: 5, rank: 2, seed: 6)
        let module = try ReversibleMerge.fit(.factors(f), variant: variant, k: n - 1)
        let rebuilt = (0..<n).map { module.rebuild($0) }
        let sum = module.sumView(lambda: 0.5)
        #expect(Dense.relativeError(sum.dense().map(Double.init), reference: self.sum(f, lambda: 0.5)) < 1e-5)
        let mean = module.meanView()
        switch (variant, mean) {
        case let (.dense, .dense(d)):
            #expect(Dense.relativeError(d.map(Double.init), reference: self.sum(f, lambda: 1.0 / Double(n))) < 1e-5)
        case let (.position, .factors(m)), let (.layer, .factors(m)):
            // The mean of L times the mean of R: the basis with every coefficient zero.
            let parts = rebuilt.compactMap(\.factors)
            for j in m.left.indices { #expect(abs(m.left[j] - parts.reduce(0) { $0 + $1.left[j] / Float(n) }) < 1e-6) }
            for j in m.right.indices { #expect(abs(m.right[j] - parts.reduce(0) { $0 + $1.right[j] / Float(n) }) < 1e-6) }
            if case let .factors(s) = sum { #expect(s.rank == n * 2) } else { Issue.record("the sum of factors is dense") }
        default:
            Issue.record("\(variant): unexpected mean view")
        }
        // A dense part is truncated to the adapter's rank.
        let asFactors = try RMMRebuilt.dense(sum.dense()).factors(rows: 6, columns: 5, rank: 5)
        #expect(asFactors.rank == 5 && Dense.relativeError(Dense.product(asFactors), reference: sum.dense().map(Double.init)) < 1e-5)
    }

    @Test func storedArraysOfTheWrongSizeAreRefused() throws {
        let f = experts(3, rows: 4, columns: 3, rank: 2, seed: 7)
        let module = try ReversibleMerge.fit(.factors(f), variant: .layer, k: 2)
        let values = module.tensors.map(\.values)
        let back = try RMMModule(variant: .layer, k: module.k, rows: 4, columns: 3, rank: 2, expertCount: 3, center: true, values: values)
        for i in 0..<3 { #expect(back.rebuild(i).dense() == module.rebuild(i).dense()) }
        expectThrows(MergeError.invalidInputs(method: "rmm", problem: "a layer module stores 5 arrays, got 4")) {
            _ = try RMMModule(variant: .layer, k: module.k, rows: 4, columns: 3, rank: 2, expertCount: 3, center: true, values: Array(values.dropLast()))
        }
        var short = values
        short[0].removeLast()
        expectThrows(MergeError.invalidInputs(method: "rmm", problem: "'left.mean' has 7 values, its shape 4×2 needs 8")) {
            _ = try RMMModule(variant: .layer, k: module.k, rows: 4, columns: 3, rank: 2, expertCount: 3, center: true, values: short)
        }
    }

    // MARK: - Settings

    @Test func settingsFromARecipe() throws {
        let defaults = try ReversibleMergeSettings(recipe: MergeRecipe(method: "rmm", parameters: ["basis": .number(2)], experts: []))
        #expect(defaults == ReversibleMergeSettings(basis: 2, variant: .position, center: true, rank: 16, viewRank: 0, viewLambda: 1, baselines: true))
        #expect(defaults.viewRank(expertRank: 8) == 8)
        let set = try ReversibleMergeSettings(recipe: MergeRecipe(method: "rmm", parameters: [
            "basis": .number(1), "variant": .text("layer"), "center": .flag(false), "rank": .number(4), "view_rank": .number(3),
            "view_lambda": .number(0.25), "baselines": .flag(false),
        ], experts: []))
        #expect(set == ReversibleMergeSettings(basis: 1, variant: .layer, center: false, rank: 4, viewRank: 3, viewLambda: 0.25, baselines: false))
        #expect(set.viewRank(expertRank: 8) == 3)
        #expect(mergeError { _ = try ReversibleMergeSettings(recipe: MergeRecipe(method: "rmm", parameters: [:], experts: [])) }
            == .missingParameter(method: "rmm", parameter: "basis"))
        let bad = mergeError { _ = try ReversibleMergeSettings(recipe: MergeRecipe(method: "rmm", parameters: ["basis": .number(1), "variant": .text("rows")], experts: [])) }
        #expect(bad?.description == "rmm: parameter 'variant' must be one of position, layer, dense")
    }
}
