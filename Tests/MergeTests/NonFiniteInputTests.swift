import Delta
import Merge
import Testing

/// A NaN or infinity in an input is refused, naming the tensor and the input, by every kind of
/// method: TIES dropped a NaN silently (its mask left it out), linear spread it, and the
/// subspace methods failed in LAPACK without saying why.
@Suite struct NonFiniteInputTests {
    let base: [Float] = (0..<16).map { Float($0) / 16 }
    var expert: [Float] { base.map { $0 + 0.01 } }

    func problem(_ method: String, base: [Float]? = nil, _ experts: [[Float]], shape: [Int] = [16]) -> String? {
        mergeError {
            _ = try merge(method, base: base ?? self.base, experts,
                          context: TensorContext(name: "model.layers.0.mlp.weight", shape: shape, layerCount: 1))
        }?.description
    }

    @Test(arguments: ["ties", "linear", "task_arithmetic", "dare_ties", "breadcrumbs", "tsv", "iso_c"])
    func aNaNInAnExpertIsRefused(_ method: String) {
        var bad = expert
        bad[3] = .nan
        let shape = ["tsv", "iso_c"].contains(method) ? [4, 4] : [16]
        #expect(problem(method, [expert, bad], shape: shape)
            == "tensor 'model.layers.0.mlp.weight': expert 'expert1' holds NaN or ±inf values, which no merge method can weigh ('mrepo check --finite' on its files lists them); nothing was written")
    }

    @Test func anInfinityInTheBaseIsRefused() {
        var bad = base
        bad[0] = -.infinity
        #expect(problem("ties", base: bad, [expert, expert])?.contains("the merge base holds NaN or ±inf values") == true)
    }

    /// A merge base the method does not read (linear) may hold what it likes.
    @Test func aBaseTheMethodIgnoresIsNotChecked() throws {
        var bad = base
        bad[0] = .nan
        let out = try merge("linear", base: bad, [expert, expert])
        #expect(out.values == expert)
    }

    /// Finite inputs whose merge overflows float32 still get the overflow's own message.
    @Test func anOverflowIsStillAnOverflow() {
        let big = base.map { _ in Float.greatestFiniteMagnitude }
        #expect(problem("task_arithmetic", base: base, [big, big])?.contains("beyond float32's range") == true)
    }
}
