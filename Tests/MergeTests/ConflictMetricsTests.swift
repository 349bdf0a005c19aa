import Testing

@testable import Merge

/// Conflict metrics on hand-computed examples.
@Suite struct ConflictMetricsTests {
    // Base 0.5 everywhere; τ₁ = [1, 2, −1, 0, 1], τ₂ = [3, −1, 0, 0, 1]; merged τ_M = [2, 1, −1, 0, 1].
    // Every value is exact in binary, so the counts below are exact.
    static let base: [Float] = [0.5, 0.5, 0.5, 0.5, 0.5]
    static let tau1: [Float] = [1, 2, -1, 0, 1]
    static let tau2: [Float] = [3, -1, 0, 0, 1]
    static let tauM: [Float] = [2, 1, -1, 0, 1]

    func measure(tallLambda: Double = 1, repeating times: Int = 1) -> ConflictMetrics {
        func theta(_ tau: [Float]) -> [Float] {
            Array([[Float]](repeating: zip(Self.base, tau).map { $0 + $1 }, count: times).joined())
        }
        return ConflictMetrics.measure(base: Array([[Float]](repeating: Self.base, count: times).joined()),
                                       experts: [theta(Self.tau1), theta(Self.tau2)], merged: theta(Self.tauM),
                                       keptFraction: nil, tallLambda: tallLambda, notes: [:])
    }

    @Test func handComputedExample() throws {
        let m = measure()
        #expect(m.elementCount == 5)
        // ‖τ₁‖² = 7, ‖τ₂‖² = 11, ⟨τ₁, τ₂⟩ = 3 − 2 + 1 = 2.
        #expect(m.taskVectorNorms == [(7.0).squareRoot(), (11.0).squareRoot()])
        #expect(m.cosines.count == 1)
        #expect(abs(try #require(m.cosines[0]) - 2 / (77.0).squareRoot()) < 1e-15)
        #expect(m.minCosine == m.cosines[0])
        #expect(abs(try #require(m.normRatio) - (11.0 / 7).squareRoot()) < 1e-15)
        // Elements where both are non-zero: 0, 1, 4; signs differ at 1 → 1/3.
        #expect(m.signConflict == 1.0 / 3)
        // Elected signs sgn(Σ τ) = +, +, −, + (zero sum), +; only τ₂[1] = −1 disagrees: 1 of Σ|τ| = 10.
        #expect(m.conflictingMass == 0.1)
        // |τ_M − τᵢ| > |τᵢ|: never for τ₁; for τ₂ at elements 1 (2 > 1) and 2 (1 > 0).
        #expect(m.farFromExpert == [0, 0.4])
        // TALL (λ = 1): selected by τ₂ only, τ₁ only, τ₁ only, nobody, both.
        #expect(m.tallNone == 0.2)
        #expect(m.tallOne == 0.6)
        #expect(m.tallShared == 0.2)
        // ‖τ_M‖ / ‖θ₀‖ = √7 / √1.25.
        #expect(abs(try #require(m.mergedRelativeUpdate) - (7 / 1.25).squareRoot()) < 1e-12)
    }

    /// TALL with λ = 2 (|τᵢ| > 2·|τ_M − τᵢ|): element 1 loses τ₁ (2 > 2 fails).
    @Test func tallLambda() {
        let m = measure(tallLambda: 2)
        #expect(m.tallNone == 0.4)
        #expect(m.tallOne == 0.4)
        #expect(m.tallShared == 0.2)
    }

    /// The same pattern over 2¹⁶·3 + 5 elements: the parallel block reduction gives the same fractions.
    @Test func reductionOverManyBlocks() throws {
        let times = (3 * Kernels.block + 5) / 5 + 1
        let m = measure(repeating: times)
        #expect(m.elementCount == 5 * times)
        #expect(abs(m.signConflict - 1.0 / 3) < 1e-12)
        #expect(abs(m.conflictingMass - 0.1) < 1e-12)
        #expect(abs(m.farFromExpert[1] - 0.4) < 1e-12)
        #expect(abs(m.tallOne - 0.6) < 1e-12)
        #expect(abs(try #require(m.cosines[0]) - 2 / (77.0).squareRoot()) < 1e-12)
    }

    /// Pairs come in (0,1), (0,2), (1,2) order; a zero task vector has no cosine.
    @Test func cosinesOfThreeExperts() throws {
        let base: [Float] = [0, 0, 0]
        let m = ConflictMetrics.measure(base: base, experts: [[1, 0, 0], [0, 1, 0], [1, 1, 0]], merged: [1, 1, 0],
                                        keptFraction: nil, tallLambda: 1, notes: [:])
        #expect(m.cosines.count == 3)
        #expect(m.cosines[0] == 0)
        #expect(abs(try #require(m.cosines[1]) - (0.5).squareRoot()) < 1e-15)
        #expect(abs(try #require(m.cosines[2]) - (0.5).squareRoot()) < 1e-15)
        #expect(m.minCosine == 0)
        let zero = ConflictMetrics.measure(base: base, experts: [[1, 0, 0], [0, 0, 0]], merged: [1, 0, 0],
                                           keptFraction: nil, tallLambda: 1, notes: [:])
        #expect(zero.cosines == [nil])
        #expect(zero.minCosine == nil)
        #expect(zero.normRatio == nil)
        #expect(zero.signConflict == 0)
    }

    @Test func withoutABaseOnlyTheSizeIsKnown() {
        let m = ConflictMetrics.measure(base: nil, experts: [[1], [2]], merged: [1.5], keptFraction: [1, 1], tallLambda: 1,
                                        notes: ["t": 0.5])
        #expect(m.elementCount == 1 && m.cosines.isEmpty && m.farFromExpert.isEmpty)
        #expect(m.keptFraction == [1, 1] && m.notes == ["t": 0.5])
    }

    /// Through a plan: task arithmetic sums the task vectors, and the metrics see the sum.
    @Test func measuredThroughAPlan() throws {
        let base = Self.base
        let experts = [Self.tau1, Self.tau2].map { tau in zip(base, tau).map { $0 + $1 } }
        let out = try merge("task_arithmetic", experts: weighted([0.5, 0.5]), base: base, experts)
        // τ_M = (τ₁ + τ₂)/2 = [2, 0.5, −0.5, 0, 1].
        #expect(out.values == [2.5, 1, 0, 0.5, 1.5])
        #expect(out.metrics.signConflict == 1.0 / 3)
        #expect(out.metrics.conflictingMass == 0.1)
        #expect(out.metrics.keptFraction == nil)
        // |τ_M − τ₁| = [1, 1.5, 0.5, 0, 0] vs |τ₁|: none farther; τ₂: [1, 1.5, 0.5, 0, 0] vs [3, 1, 0, 0, 1] → 2.
        #expect(out.metrics.farFromExpert == [0, 0.4])
    }

    // MARK: - Thresholds

    @Test func thresholdViolations() {
        let m = measure()
        #expect(ConflictThresholds().violation(m) == nil)
        #expect(ConflictThresholds().isEmpty)
        #expect(ConflictThresholds(maxSignConflict: 0.3).violation(m) == "sign conflict 0.333 > 0.300 (--max-sign-conflict)")
        #expect(ConflictThresholds(maxSignConflict: 0.5).violation(m) == nil)
        #expect(ConflictThresholds(minCosine: 0.5).violation(m) == "task-vector cosine 0.228 < 0.500 (--min-cosine)")
        #expect(ConflictThresholds(maxConflictingMass: 0.05).violation(m) == "conflicting mass 0.100 > 0.050 (--max-conflicting-mass)")
        // The first tripped threshold is reported.
        #expect(ConflictThresholds(maxSignConflict: 0.1, maxConflictingMass: 0.05).violation(m)?.hasPrefix("sign conflict") == true)
    }
}
