import Testing

@testable import Merge

/// `layer_swap`: the second expert's bottom and top blocks swapped into the first expert.
@Suite struct LayerSwapTests {
    static let first: [Float] = [1, 1, 1, 1]
    static let second: [Float] = [5, 5, 5, 5]

    func swap(_ name: String, layers: Int = 8, _ parameters: [String: ParameterValue] = [:]) throws -> (values: [Float], share: Double?) {
        let out = try merge("layer_swap", parameters, base: nil, [Self.first, Self.second],
                            context: TensorContext(name: name, shape: [4], layerCount: layers))
        return (out.values, out.metrics.notes["second_share"])
    }

    @Test func shareWithoutTransition() {
        let shares = (0..<8).map { LayerSwap.omega(layer: $0, layers: 8, bottom: 1, top: 1, transition: 0) }
        #expect(shares == [1, 0, 0, 0, 0, 0, 0, 1])
        let wider = (0..<8).map { LayerSwap.omega(layer: $0, layers: 8, bottom: 2, top: 3, transition: 0) }
        #expect(wider == [1, 1, 0, 0, 0, 1, 1, 1])
    }

    /// A transition of z blocks ramps 1 − d/(z+1) for the d-th block away from a swapped group.
    @Test func shareWithTransition() {
        let shares = (0..<8).map { LayerSwap.omega(layer: $0, layers: 8, bottom: 1, top: 1, transition: 2) }
        let expected = [1, 2.0 / 3, 1.0 / 3, 0, 0, 1.0 / 3, 2.0 / 3, 1]
        #expect(zip(shares, expected).allSatisfy { abs($0 - $1) < 1e-15 })
        // Overlapping ramps take the larger share.
        let narrow = (0..<4).map { LayerSwap.omega(layer: $0, layers: 4, bottom: 1, top: 1, transition: 3) }
        #expect(zip(narrow, [1, 0.75, 0.75, 1]).allSatisfy { abs($0 - $1) < 1e-15 })
    }

    @Test func blocksComeFromTheRightExpert() throws {
        #expect(try swap("model.layers.0.mlp.up_proj.weight").values == Self.second)
        #expect(try swap("model.layers.3.mlp.up_proj.weight").values == Self.first)
        #expect(try swap("model.layers.7.self_attn.q_proj.weight").values == Self.second)
        #expect(try swap("model.layers.3.mlp.up_proj.weight").share == 0)
    }

    @Test func transitionBlendsLinearly() throws {
        let out = try swap("model.layers.1.mlp.up_proj.weight", ["transition": .number(2)])
        expectClose(out.values, [Double](repeating: 2.0 / 3 * 5 + 1.0 / 3, count: 4))
        #expect(abs((out.share ?? 0) - 2.0 / 3) < 1e-15)
    }

    /// Outside blocks: embeddings follow the bottom group, everything else (final norm, head) the top.
    @Test func tensorsOutsideBlocksFollowTheNearerGroup() throws {
        #expect(try swap("model.embed_tokens.weight").values == Self.second)
        #expect(try swap("transformer.wte.weight").values == Self.second)
        #expect(try swap("model.norm.weight").values == Self.second)
        #expect(try swap("lm_head.weight").values == Self.second)
        #expect(try swap("model.embed_tokens.weight", ["bottom": .number(0)]).values == Self.first)
        #expect(try swap("lm_head.weight", ["top": .number(0)]).values == Self.first)
        #expect(try swap("model.embed_tokens.weight", ["top": .number(0)]).values == Self.second)
    }

    /// A layer past the recorded block count still counts as the top block.
    @Test func layerBeyondTheCountIsTheTop() throws {
        #expect(try swap("model.layers.9.mlp.weight", layers: 4).values == Self.second)
    }

    @Test func validation() {
        #expect(planError(MergeRecipe(method: "layer_swap", parameters: ["bottom": .number(1.5)], experts: ["a", "b"]))
            == "layer_swap: parameter 'bottom' must be an integer in [0, 10000], got 1.5")
        #expect(planError(MergeRecipe(method: "layer_swap", parameters: ["transition": .number(-1)], experts: ["a", "b"]))
            == "layer_swap: parameter 'transition' must be an integer in [0, 10000], got -1")
        #expect(planError(MergeRecipe(method: "layer_swap", experts: ["a", "b", "c"])) == "layer_swap: takes exactly 2 experts, got 3")
    }

    /// Bottom and top groups that cover every block leave nothing of the first expert: refused.
    @Test func groupsCoveringEveryBlockAreRefused() throws {
        let error = mergeError { _ = try swap("model.layers.3.mlp.up_proj.weight", layers: 4, ["bottom": .number(2), "top": .number(2)]) }?.description
        #expect(error?.contains("bottom + top = 2 + 2 covers all 4 blocks of the model") == true, "\(error ?? "no error")")
        #expect(try swap("model.layers.3.mlp.up_proj.weight", layers: 5, ["bottom": .number(2), "top": .number(2)]).values == Self.second)
        // Before any tensor is read, once the model's block count is known (a dry run included).
        let plan = try MergePlan(MergeRecipe(method: "layer_swap", parameters: ["top": .number(3)], experts: ["a", "b"]))
        #expect(mergeError { try plan.validate(layerCount: 4) }?.description.contains("1 + 3 covers all 4 blocks") == true)
        #expect(mergeError { try plan.validate(layerCount: 5) } == nil)
    }
}
