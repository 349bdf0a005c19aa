import Delta
import Foundation
import Testing

@testable import Merge

/// ``ReversibleMerge``: fitting a basis per module and rebuilding each expert from it
/// (the reference check of `Fixtures/README.md`), and the single-model baselines it is compared with.
@Suite struct ReversibleMergeTests {
    /// N experts of one module, rank r, with a shared component (as adapters from one init are).
    func experts(_ n: Int, rows: Int = 9, columns: Int = 7, rank: Int = 4, seed: UInt64 = 1) -> [LowRankFactors] {
        let shared = Dense.factors(rows: rows, columns: columns, rank: rank, seed: seed + 1000)
        return (0..<n).map { i in
            let own = Dense.factors(rows: rows, columns: columns, rank: rank, seed: seed + UInt64(i) * 7, scale: 0.5)
            return LowRankFactors(rows: rows, columns: columns, rank: rank, left: zip(shared.left, own.left).map { $0 + $1 },
                                  right: zip(shared.right, own.right).map { $0 + $1 })
        }
    }

    /// Per expert, ‖ΔŴᵢ − ΔWᵢ‖ / ‖ΔWᵢ‖ computed densely here.
    func productErrors(_ module: RMMModule, _ inputs: [LowRankFactors]) -> [Double] {
        inputs.indices.map { i in
            Dense.relativeError(module.rebuild(i).dense().map(Double.init), reference: Dense.product(inputs[i]))
        }
    }

    func maxRelative(_ a: [Float], _ b: [Float]) -> Double {
        Dense.relativeError(a.map(Double.init), reference: b.map(Double.init))
    }

    func isInvalidBasis(_ error: MergeError?) -> Bool {
        if case let .invalidParameter(method, parameter, _)? = error { return method == "rmm" && parameter == "basis" }
        return false
    }

    // MARK: - Exact rebuilds

    @Test(arguments: RMMVariant.allCases)
    func basisOfNMinusOneRebuildsEveryExpert(variant: RMMVariant) throws {
        for n in [2, 3, 5] {
            let inputs = experts(n, seed: UInt64(n))
            let module = try ReversibleMerge.fit(.factors(inputs), variant: variant, k: n - 1)
            #expect(module.variant == variant && module.expertCount == n && module.center)
            #expect(abs(module.retainedEnergy - 1) < 1e-6, "\(variant) N = \(n)")
            for (i, e) in productErrors(module, inputs).enumerated() {
                #expect(e < 1e-5, "\(variant) N = \(n) expert \(i): \(e)")
            }
            for e in module.expertEnergy { #expect(abs(e - 1) < 1e-6) }
            // The factor variants rebuild the factors themselves, not only their product.
            if variant != .dense {
                for i in 0..<n {
                    guard case let .factors(f) = module.rebuild(i) else {
                        Issue.record("\(variant) rebuilt dense")
                        continue
                    }
                    #expect(f.rank == inputs[i].rank)
                    #expect(maxRelative(f.left, inputs[i].left) < 1e-5 && maxRelative(f.right, inputs[i].right) < 1e-5)
                }
            } else if case .factors = module.rebuild(0) {
                Issue.record("dense variant rebuilt factors")
            }
        }
    }

    @Test func denseExpertsRebuildExactly() throws {
        let n = 4, rows = 6, columns = 10
        let dense = (0..<n).map { randomValues(rows * columns, seed: 300 + UInt64($0)) }
        let module = try ReversibleMerge.fit(.dense(dense, rows: rows, columns: columns), variant: .dense, k: n - 1)
        #expect(module.rank == 0)
        for i in 0..<n { #expect(maxRelative(module.rebuild(i).dense(), dense[i]) < 1e-5) }
        // Factor variants need factors.
        for v in [RMMVariant.position, .layer] {
            expectThrows(MergeError.invalidInputs(method: "rmm", problem: "the \(v) variant needs low-rank factors; dense experts take variant=dense")) {
                _ = try ReversibleMerge.fit(.dense(dense, rows: rows, columns: columns), variant: v, k: 1)
            }
        }
    }

    /// The positions are fitted in parallel when there are many of them; the result must not change.
    @Test func manyPositionsFitInParallelAndStayExact() throws {
        let inputs = experts(3, rows: 600, columns: 12, rank: 2, seed: 60)   // 612 positions: at least 2 workers
        let a = try ReversibleMerge.fit(.factors(inputs), variant: .position, k: 2)
        let b = try ReversibleMerge.fit(.factors(inputs), variant: .position, k: 2)
        for e in productErrors(a, inputs) { #expect(e < 1e-5) }
        for key in a.arrays.keys { #expect(a.arrays[key]?.values == b.arrays[key]?.values, "\(key) differs between runs") }
    }

    // MARK: - Approximate rebuilds

    @Test(arguments: RMMVariant.allCases)
    func smallerBasesAreApproximateAndImproveWithK(variant: RMMVariant) throws {
        let n = 6
        let inputs = experts(n, rows: 12, columns: 10, rank: 5, seed: 90)
        var previous = Double.infinity
        var previousEnergy = 0.0
        for k in 1..<n {
            let module = try ReversibleMerge.fit(.factors(inputs), variant: variant, k: k)
            let errors = productErrors(module, inputs)
            let total = errors.reduce(0) { $0 + $1 * $1 }
            if k < n - 1 {
                #expect(errors.allSatisfy { $0 > 1e-3 }, "\(variant) k = \(k): \(errors)")
                #expect(module.retainedEnergy < 1 - 1e-6)
            } else {
                #expect(errors.allSatisfy { $0 < 1e-5 }, "\(variant) k = \(k): \(errors)")
            }
            #expect(module.retainedEnergy >= previousEnergy - 1e-12, "\(variant) k = \(k)")
            // The dense and layer variants are PCA of whole vectors: their summed squared error can only
            // fall as k grows. The position variant minimises the factors' error, so the product's
            // error falls too but only on the whole.
            if variant == .position { #expect(total < previous * 1.05, "\(variant) k = \(k)") } else { #expect(total < previous, "\(variant) k = \(k)") }
            previous = total
            previousEnergy = module.retainedEnergy
        }
    }

    /// The energy the position fit reports is the PCA's: the residual of the centred factors equals
    /// the discarded share of their energy.
    @Test func reportedEnergyMatchesTheResidual() throws {
        let n = 5, rows = 8, columns = 6, r = 3
        let inputs = experts(n, rows: rows, columns: columns, rank: r, seed: 17)
        // Centred energy of the factors, position by position (rows of L, columns of R).
        var total = 0.0
        var meanL = [Double](repeating: 0, count: rows * r), meanR = [Double](repeating: 0, count: r * columns)
        for f in inputs {
            for j in meanL.indices { meanL[j] += Double(f.left[j]) / Double(n) }
            for j in meanR.indices { meanR[j] += Double(f.right[j]) / Double(n) }
        }
        for f in inputs {
            for j in meanL.indices { total += pow(Double(f.left[j]) - meanL[j], 2) }
            for j in meanR.indices { total += pow(Double(f.right[j]) - meanR[j], 2) }
        }
        for k in 1..<n {
            let module = try ReversibleMerge.fit(.factors(inputs), variant: .position, k: k)
            var residual = 0.0
            for i in 0..<n {
                guard case let .factors(f) = module.rebuild(i) else { Issue.record("dense rebuild"); return }
                for j in f.left.indices { residual += pow(Double(f.left[j]) - Double(inputs[i].left[j]), 2) }
                for j in f.right.indices { residual += pow(Double(f.right[j]) - Double(inputs[i].right[j]), 2) }
            }
            #expect(abs((1 - module.retainedEnergy) * total - residual) < 1e-5 * total, "k = \(k)")
        }
    }

    @Test func uncentredBasesAreExactFromMinOfRankAndN() throws {
        // r = 2 < N = 4: k = 2 spans every expert's 2-D position vectors.
        let small = experts(4, rank: 2, seed: 33)
        for k in [2, 3] {
            let module = try ReversibleMerge.fit(.factors(small), variant: .position, k: k, center: false)
            #expect(!module.center && module.arrays["left.mean"] == nil && module.arrays["right.mean"] == nil)
            #expect(productErrors(module, small).allSatisfy { $0 < 1e-5 }, "k = \(k)")
        }
        #expect(productErrors(try ReversibleMerge.fit(.factors(small), variant: .position, k: 1, center: false), small).allSatisfy { $0 > 1e-3 })
        // r = 4 > N = 3: k = N − 1 = 2 is exact only when centred.
        let wide = experts(3, rank: 4, seed: 34)
        let uncentred = try ReversibleMerge.fit(.factors(wide), variant: .position, k: 2, center: false)
        let centred = try ReversibleMerge.fit(.factors(wide), variant: .position, k: 2, center: true)
        #expect(productErrors(uncentred, wide).contains { $0 > 1e-3 })
        #expect(productErrors(centred, wide).allSatisfy { $0 < 1e-5 })
    }

    // MARK: - Inputs and storage

    @Test func basisOutOfRangeOrTooFewExperts() {
        let inputs = experts(3)
        for k in [0, -1, 3, 4, 10] {
            let error = mergeError { _ = try ReversibleMerge.fit(.factors(inputs), variant: .position, k: k) }
            #expect(isInvalidBasis(error), "k = \(k): \(String(describing: error))")
        }
        let one = mergeError { _ = try ReversibleMerge.fit(.factors([inputs[0]]), variant: .position, k: 1) }
        guard case .invalidInputs? = one else {
            Issue.record("one expert: \(String(describing: one))")
            return
        }
    }

    @Test func positionVariantNeedsEqualRanks() throws {
        var inputs = experts(3, rank: 4)
        inputs[2] = Dense.factors(rows: 9, columns: 7, rank: 2, seed: 5)
        let error = mergeError { _ = try ReversibleMerge.fit(.factors(inputs), variant: .position, k: 2) }
        guard case let .invalidInputs(_, problem)? = error else {
            Issue.record("\(String(describing: error))")
            return
        }
        #expect(problem.contains("variant=dense"))
        // The dense variant takes them.
        let module = try ReversibleMerge.fit(.factors(inputs), variant: .dense, k: 2)
        #expect(productErrors(module, inputs).allSatisfy { $0 < 1e-5 })
    }

    /// The layer variant concatenates the experts' factors: different ranks are an error, not a crash.
    @Test func layerVariantNeedsEqualRanks() throws {
        var inputs = experts(3, rank: 4)
        inputs[1] = Dense.factors(rows: 9, columns: 7, rank: 3, seed: 6)
        let error = mergeError { _ = try ReversibleMerge.fit(.factors(inputs), variant: .layer, k: 2) }
        guard case let .invalidInputs(method, problem)? = error else {
            Issue.record("\(String(describing: error))")
            return
        }
        #expect(method == "rmm")
        #expect(problem.contains("different ranks") && problem.contains("variant=dense"))
    }

    /// Experts of different shapes, or dense experts of the wrong size, are rejected by every variant.
    @Test func everyVariantRejectsMismatchedShapes() throws {
        var inputs = experts(3)
        inputs[2] = Dense.factors(rows: 8, columns: 7, rank: 4, seed: 5)
        for v in RMMVariant.allCases {
            let error = mergeError { _ = try ReversibleMerge.fit(.factors(inputs), variant: v, k: 2) }
            var shapes = false
            if case let .invalidInputs(_, problem)? = error { shapes = problem.contains("different shapes") }
            #expect(shapes, "\(v): \(String(describing: error))")
        }
        var dense = (0..<3).map { randomValues(6 * 10, seed: 400 + UInt64($0)) }
        dense[1].removeLast()
        let error = mergeError { _ = try ReversibleMerge.fit(.dense(dense, rows: 6, columns: 10), variant: .dense, k: 2) }
        var sized = false
        if case let .invalidInputs(_, problem)? = error { sized = problem.contains("expert 1 has 59 values") }
        #expect(sized, "\(String(describing: error))")
    }

    @Test func storageFollowsTheLayout() throws {
        let n = 5, rows = 9, columns = 7, r = 4
        let inputs = experts(n, rows: rows, columns: columns, rank: r)
        for k in 1..<n {
            for center in [true, false] {
                let position = try ReversibleMerge.fit(.factors(inputs), variant: .position, k: k, center: center)
                #expect(position.storedParameterCount == (k * (r + n) + (center ? r : 0)) * (rows + columns), "k = \(k) centre \(center)")
                let ratio = Double(position.storedParameterCount) / Double(n * r * (rows + columns))
                #expect(abs(ratio - ReversibleMergeReport.formulaRatio(k: k, rank: r, experts: n, center: center)) < 1e-12)
                let layer = try ReversibleMerge.fit(.factors(inputs), variant: .layer, k: k, center: center)
                #expect(layer.storedParameterCount == (k + (center ? 1 : 0)) * r * (rows + columns) + k * n)
                let dense = try ReversibleMerge.fit(.factors(inputs), variant: .dense, k: k, center: center)
                #expect(dense.storedParameterCount == (k + (center ? 1 : 0)) * rows * columns + k * n)
                // Every stored array has the shape the layout declares.
                for m in [position, layer, dense] {
                    let layout = RMMModule.layout(variant: m.variant, k: m.k, rows: rows, columns: columns, rank: m.rank, experts: n, center: center)
                    #expect(Set(layout.map(\.0)) == Set(m.arrays.keys), "\(m.variant)")
                    for (key, shape) in layout {
                        #expect(m.arrays[key]?.shape == shape && m.arrays[key]?.values.count == shape.reduce(1, *), "\(m.variant) \(key)")
                    }
                }
            }
        }
    }

    @Test func formulaMatchesTheReferenceNumbers() {
        // The storage formula of Fixtures/README.md, n = 8.
        for (k, r, expected) in [(1, 16, 0.3125), (2, 16, 0.5), (3, 16, 0.6875), (4, 16, 0.875), (4, 64, 0.6875), (2, 128, 0.390625)] {
            #expect(abs(ReversibleMergeReport.formulaRatio(k: k, rank: r, experts: 8, center: true) - expected) < 1e-12, "k \(k) r \(r)")
        }
        #expect(ReversibleMergeReport.formulaRatio(k: 2, rank: 16, experts: 8, center: false) == 48.0 / 128)
    }

    @Test func fittingIsDeterministicAndSignFixed() throws {
        let inputs = experts(4, seed: 71)
        for v in RMMVariant.allCases {
            let a = try ReversibleMerge.fit(.factors(inputs), variant: v, k: 2)
            let b = try ReversibleMerge.fit(.factors(inputs), variant: v, k: 2)
            for key in a.arrays.keys { #expect(a.arrays[key]?.values == b.arrays[key]?.values, "\(v) \(key)") }
        }
    }

    @Test func reportJSONRoundTrips() throws {
        let report = ReversibleMergeReport(
            variant: .position, basis: 2, center: true, kind: .adapter,
            experts: [.init(name: "a", commit: "ab", rank: 4, meanError: 0.1, maxError: 0.2, globalError: 0.15, retainedEnergy: 0.9)],
            modules: [.init(name: "m", baseTensor: "m.weight", rows: 3, columns: 4, rank: 2, k: 2, variant: .position, retainedEnergy: 0.8,
                            errors: [0.1], expertEnergy: [0.9], reductionErrors: [0.01], baselines: [("ties/dense", [0.7])],
                            storedParameters: 10, expertParameters: 20)],
            baselines: [.init(name: "ties/dense", meanError: 0.7, maxError: 0.7)], storedParameters: 10, expertParameters: 20,
            storedBytes: 100, expertBytes: 200, formulaRatio: 0.5, viewRank: 4, viewLambda: 1, viewRetainedEnergy: 0.95, remarks: ["x"])
        let back = try JSONValueCoding.decode(ReversibleMergeReport.self, from: report.json)
        #expect(back.basis == 2 && back.kind == .adapter && back.experts.first?.maxError == 0.2)
        #expect(back.modules.first?.reductionErrors == [0.01] && back.modules.first?.baselines.first?.name == "ties/dense")
        #expect(back.parameterRatio == 0.5 && back.formulaRatio == 0.5 && back.remarks == ["x"])
        // The stored text is what it was: the kinds keep their spelling, and reading it back and
        // writing it again changes no byte.
        let text = report.json.serialized()
        #expect(text.hasPrefix(#"{"method":"rmm","variant":"position","basis":2,"center":true,"kind":"adapter","storage":{"#))
        #expect(text.contains(#""k":2,"variant":"position","retained_energy":0.8"#))
        #expect(back.json.serialized() == text)
        let notRMM = JSONValue.object([JSONMember("method", .string("ties"))])
        #expect(thrownError { _ = try JSONValueCoding.decode(ReversibleMergeReport.self, from: notRMM) } is DecodingError)
        guard case var .object(members) = report.json, let i = members.firstIndex(where: { $0.key == "kind" }) else { Issue.record("no kind"); return }
        members[i] = JSONMember("kind", .string("hologram"))
        #expect(thrownError { _ = try JSONValueCoding.decode(ReversibleMergeReport.self, from: .object(members)) } is DecodingError)
    }

    // MARK: - Baselines

    @Test func baselinesOnFactorsAndDense() throws {
        let n = 3
        let inputs = experts(n, seed: 5)
        let results = try RMMBaselines.evaluate(module: "encoder.layer.0.attention.self.query", experts: .factors(inputs), layerCount: 2, seed: 1)
        #expect(results.map(\.name) == ["task_arithmetic/factors", "ties/factors", "dare_ties/factors",
                                        "task_arithmetic/dense", "ties/dense", "dare_ties/dense"])
        for r in results {
            #expect(r.errors.count == n, "\(r.name)")
            #expect(r.errors.allSatisfy { $0.isFinite && $0 > 0 }, "\(r.name): \(r.errors)")
        }
        // Task arithmetic with λ = 1/N is the mean: checked independently, on the dense task vectors
        // and on the factors (mean L times mean R).
        let dense = inputs.map(Dense.product)
        var mean = [Double](repeating: 0, count: dense[0].count)
        for d in dense { for j in mean.indices { mean[j] += d[j] / Double(n) } }
        let taDense = try #require(results.first { $0.name == "task_arithmetic/dense" })
        for i in 0..<n { #expect(abs(taDense.errors[i] - Dense.relativeError(mean, reference: dense[i])) < 1e-5) }
        var meanL = [Float](repeating: 0, count: inputs[0].left.count), meanR = [Float](repeating: 0, count: inputs[0].right.count)
        for f in inputs {
            for j in meanL.indices { meanL[j] += f.left[j] / Float(n) }
            for j in meanR.indices { meanR[j] += f.right[j] / Float(n) }
        }
        let separate = Dense.product(LowRankFactors(rows: 9, columns: 7, rank: 4, left: meanL, right: meanR))
        let taFactors = try #require(results.first { $0.name == "task_arithmetic/factors" })
        for i in 0..<n { #expect(abs(taFactors.errors[i] - Dense.relativeError(separate, reference: dense[i])) < 1e-5) }

        // Mixed ranks, and dense experts: only the dense baselines apply.
        var mixed = inputs
        mixed[1] = Dense.factors(rows: 9, columns: 7, rank: 2, seed: 8)
        #expect(try RMMBaselines.evaluate(module: "m", experts: .factors(mixed), layerCount: 1, seed: 1).map(\.name)
            == ["task_arithmetic/dense", "ties/dense", "dare_ties/dense"])
        let d = try RMMBaselines.evaluate(module: "m", experts: .dense(dense.map { $0.map(Float.init) }, rows: 9, columns: 7), layerCount: 1, seed: 1)
        #expect(d.map(\.name) == ["task_arithmetic/dense", "ties/dense", "dare_ties/dense"])
        #expect(d.allSatisfy { $0.errors.count == n && $0.errors.allSatisfy(\.isFinite) })
    }

    @Test func rmmIsRegisteredButNotATensorMethod() throws {
        #expect(RMM.id == "rmm" && RMM.requiresBase)
        let specs = Dictionary(RMM.parameters.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(Set(specs.keys) == ["basis", "variant", "center", "rank", "view_rank", "view_lambda", "baselines"])
        let rmmByTensor = RMM.mergesTensorByTensor, tiesByTensor = TIES.mergesTensorByTensor
        #expect(!rmmByTensor && tiesByTensor)
    }
}
