import Testing

@testable import Merge

/// Parameter values (numbers, gradients, conditions), their validation, tensor contexts and the
/// precedence of per-expert, global and default values.
@Suite struct ParametersTests {
    // MARK: - Parsing and printing

    @Test func parseCommandLineText() {
        #expect(ParameterValue.parse("0.5") == .number(0.5))
        #expect(ParameterValue.parse(" -2 ") == .number(-2))
        #expect(ParameterValue.parse("[0, 0.5, 1]") == .gradient([0, 0.5, 1]))
        #expect(ParameterValue.parse("[0.3]") == .gradient([0.3]))
        #expect(ParameterValue.parse("true") == .flag(true))
        #expect(ParameterValue.parse("false") == .flag(false))
        #expect(ParameterValue.parse("eval_loss") == .text("eval_loss"))
        #expect(ParameterValue.parse("[a, b]") == .text("[a, b]"))
        #expect(ParameterValue.parse("[]") == .text("[]"))
    }

    @Test func descriptions() {
        #expect(ParameterValue.number(1).description == "1")
        #expect(ParameterValue.number(0.25).description == "0.25")
        #expect(ParameterValue.gradient([0, 0.5, 1]).description == "[0, 0.5, 1]")
        #expect(ParameterValue.flag(true).description == "true")
        #expect(ParameterValue.text("score").description == "score")
        let conditional = ParameterValue.conditional([
            ParameterCondition(filter: "self_attn", value: .gradient([0, 1])),
            ParameterCondition(filter: nil, value: .number(0.5)),
        ])
        #expect(conditional.description == "{self_attn: [0, 1]; *: 0.5}")
    }

    // MARK: - Gradients

    @Test func gradientInterpolation() {
        let g = [0, 0.5, 0.3, 0.7, 1.0]
        #expect(ParameterValue.interpolate(g, at: 0) == 0)
        #expect(ParameterValue.interpolate(g, at: 1) == 1)
        #expect(ParameterValue.interpolate(g, at: 0.5) == 0.3)
        #expect(abs(ParameterValue.interpolate(g, at: 0.125) - 0.25) < 1e-15)
        // Clamped to [0, 1]; one entry is a constant; none is 0.
        #expect(ParameterValue.interpolate(g, at: 2) == 1)
        #expect(ParameterValue.interpolate(g, at: -1) == 0)
        #expect(ParameterValue.interpolate([0.7], at: 0.4) == 0.7)
        #expect(ParameterValue.interpolate([], at: 0.4) == 0)
    }

    /// §0.5: 32 layers, layer 8 → position 8/31, s = 1.0323; [0, 0.5, 0.3, 0.7, 1] gives 0.4935.
    @Test func gradientSection05() throws {
        let ctx = TensorContext(name: "model.layers.8.self_attn.o_proj.weight", shape: [4, 4], layerCount: 32)
        #expect(ctx.layer == 8)
        #expect(ctx.depthPosition == 8.0 / 31)
        let value = try #require(ParameterValue.gradient([0, 0.5, 0.3, 0.7, 1]).resolve(for: ctx)?.numberValue)
        #expect(abs(value - 0.4935) < 5e-5)
        #expect(abs(value - (0.5 - 0.2 / 31)) < 1e-12)
    }

    // MARK: - Tensor contexts

    @Test func layerIndexFromCommonNamingSchemes() {
        #expect(TensorContext.layerIndex(of: "model.layers.3.mlp.down_proj.weight") == 3)
        #expect(TensorContext.layerIndex(of: "transformer.h.11.attn.c_attn.weight") == 11)
        #expect(TensorContext.layerIndex(of: "bert.encoder.layer.5.attention.self.query.weight") == 5)
        #expect(TensorContext.layerIndex(of: "blocks.2.norm1.weight") == 2)
        #expect(TensorContext.layerIndex(of: "visual.transformer.resblocks.7.ln_1.weight") == 7)
        #expect(TensorContext.layerIndex(of: "encoder.block.0.layer.1.DenseReluDense.wi.weight") == 0)
        #expect(TensorContext.layerIndex(of: "model.embed_tokens.weight") == nil)
        #expect(TensorContext.layerIndex(of: "model.layers.weight") == nil)
        #expect(TensorContext.layerIndex(of: "model.layers.x.weight") == nil)
        #expect(TensorContext.layerIndex(of: "model.mylayers.3.weight") == nil)
    }

    @Test func layerCountAndDepthPosition() {
        let names = ["model.embed_tokens.weight", "model.layers.0.mlp.weight", "model.layers.11.mlp.weight", "lm_head.weight"]
        #expect(TensorContext.layerCount(of: names) == 12)
        #expect(TensorContext.layerCount(of: ["lm_head.weight"]) == 0)
        #expect(TensorContext(name: "model.layers.11.mlp.weight", shape: [1], layerCount: 12).depthPosition == 1)
        #expect(TensorContext(name: "model.layers.0.mlp.weight", shape: [1], layerCount: 12).depthPosition == 0)
        // Outside blocks: position 0 (mergekit ≥ 0.1.2 evaluates pre- and post-weights at t = 0).
        #expect(TensorContext(name: "lm_head.weight", shape: [1], layerCount: 12).depthPosition == 0)
        #expect(TensorContext(name: "model.norm.weight", shape: [1], layerCount: 12).depthPosition == 0)
        // A single block is at position 1 (mergekit: t = 1 when N = 1).
        #expect(TensorContext(name: "model.layers.0.mlp.weight", shape: [1], layerCount: 1).depthPosition == 1)
    }

    @Test func vocabularyMatrices() {
        func vocab(_ name: String, _ shape: [Int] = [100, 8]) -> Bool {
            TensorContext(name: name, shape: shape, layerCount: 2).isVocabularyMatrix
        }
        #expect(vocab("model.embed_tokens.weight"))
        #expect(vocab("lm_head.weight"))
        #expect(vocab("transformer.wte.weight"))
        #expect(vocab("bert.embeddings.word_embeddings.weight"))
        #expect(vocab("gpt_neox.embed_out.weight"))
        #expect(vocab("output.weight"))
        #expect(!vocab("model.layers.0.mlp.output.weight"))
        #expect(!vocab("model.layers.0.mlp.down_proj.weight"))
        #expect(!vocab("model.embed_tokens.weight", [100]))
    }

    // MARK: - Conditions

    @Test func conditionFiltersAreSubstringsOrGlobs() {
        func matches(_ filter: String?, _ name: String) -> Bool {
            ParameterCondition(filter: filter, value: .number(0)).matches(name)
        }
        #expect(matches("self_attn", "model.layers.0.self_attn.q_proj.weight"))
        #expect(!matches("self_attn", "model.layers.0.mlp.up_proj.weight"))
        #expect(matches(nil, "anything"))
        #expect(matches("*", "anything"))
        #expect(matches("*.mlp.*", "model.layers.0.mlp.up_proj.weight"))
        #expect(!matches("*.mlp.*", "model.layers.0.self_attn.q_proj.weight"))
        #expect(matches("model.layers.?.self_attn.*", "model.layers.3.self_attn.k_proj.weight"))
        #expect(!matches("model.layers.?.self_attn.*", "model.layers.13.self_attn.k_proj.weight"))
        #expect(matches("model.layers.[0-2].*", "model.layers.1.mlp.weight"))
        #expect(!matches("model.layers.[0-2].*", "model.layers.5.mlp.weight"))
        // A glob must match the whole name, unlike a plain filter.
        #expect(!matches("mlp*", "model.layers.0.mlp.weight"))
    }

    @Test func firstMatchingConditionWins() {
        let value = ParameterValue.conditional([
            ParameterCondition(filter: "self_attn", value: .number(0.1)),
            ParameterCondition(filter: "q_proj", value: .number(0.2)),
            ParameterCondition(filter: "mlp", value: .gradient([0, 1])),
        ])
        func at(_ name: String) -> ParameterValue? {
            value.resolve(for: TensorContext(name: name, shape: [1], layerCount: 5))
        }
        #expect(at("model.layers.1.self_attn.q_proj.weight") == .number(0.1))
        #expect(at("model.layers.4.mlp.up_proj.weight") == .number(1))
        #expect(at("model.layers.2.mlp.up_proj.weight") == .number(0.5))
        #expect(at("model.norm.weight") == nil)
    }

    // MARK: - Parameter sets

    @Test func precedenceIsExpertThenGlobalThenDefault() {
        let ctx = TensorContext(name: "model.layers.2.mlp.weight", shape: [1], layerCount: 5)
        let set = ParameterSet(global: ["density": .number(0.5), "lambda": .number(2)],
                               perExpert: [["density": .number(0.9)], [:]],
                               defaults: ["density": .number(1), "weight": .number(1), "lambda": .number(1), "mode": .text("loss")])
        #expect(set.number("density", expert: 0, ctx) == 0.9)
        #expect(set.number("density", expert: 1, ctx) == 0.5)
        #expect(set.number("density", expert: 5, ctx) == 0.5)
        #expect(set.number("weight", expert: 1, ctx) == 1)
        #expect(set.number("lambda", ctx) == 2)
        #expect(set.number("missing", ctx) == nil)
        #expect(set.text("mode") == "loss")
    }

    /// A conditional per-expert value that does not match falls back to the global value, then the
    /// default; a per-expert gradient is evaluated at the tensor's depth.
    @Test func unmatchedConditionsFallBack() {
        let set = ParameterSet(
            global: ["density": .conditional([ParameterCondition(filter: "mlp", value: .number(0.3))])],
            perExpert: [["density": .conditional([ParameterCondition(filter: "self_attn", value: .gradient([0.2, 0.6]))])]],
            defaults: ["density": .number(1)])
        let attention = TensorContext(name: "model.layers.4.self_attn.v_proj.weight", shape: [1], layerCount: 5)
        let mlp = TensorContext(name: "model.layers.0.mlp.up_proj.weight", shape: [1], layerCount: 5)
        let norm = TensorContext(name: "model.norm.weight", shape: [1], layerCount: 5)
        #expect(set.number("density", expert: 0, attention) == 0.6)
        #expect(set.number("density", expert: 0, mlp) == 0.3)
        #expect(set.number("density", expert: 0, norm) == 1)
    }

    @Test func flagsAcceptNumbers() {
        let ctx = TensorContext(name: "w", shape: [1], layerCount: 0)
        let set = ParameterSet(global: ["a": .flag(true), "b": .number(0), "c": .text("yes")], perExpert: [])
        #expect(set.flag("a", ctx) == true)
        #expect(set.flag("b", ctx) == false)
        #expect(set.flag("c", ctx) == nil)
    }

    // MARK: - Validation

    func validationError(_ spec: ParameterSpec, _ value: ParameterValue) -> String? {
        do {
            try spec.validate(value, method: "m")
            return nil
        } catch {
            return String(describing: error)
        }
    }

    @Test func rangeDescriptions() {
        #expect(ParameterSpec("density", .number(range: 0...1, lowerOpen: true), default: nil, help: "").rangeDescription == "(0, 1]")
        #expect(ParameterSpec("x", .number(range: 0...1, upperOpen: true), default: nil, help: "").rangeDescription == "[0, 1)")
        #expect(ParameterSpec("lambda", .number(range: -.infinity...(.infinity)), default: nil, help: "").rangeDescription == "[-inf, inf]")
        #expect(ParameterSpec("epsilon", .number(range: 0...0.5), default: nil, help: "").rangeDescription == "[0, 0.5]")
        #expect(ParameterSpec("n", .integer(range: 0...10), default: nil, help: "").rangeDescription == "[0, 10]")
        #expect(ParameterSpec("f", .flag, default: nil, help: "").rangeDescription == "true or false")
        #expect(ParameterSpec("c", .choice(["a", "b"]), default: nil, help: "").rangeDescription == "a | b")
    }

    @Test func numberValidation() {
        let density = ParameterSpec("density", .number(range: 0...1, lowerOpen: true), default: .number(1), help: "")
        #expect(validationError(density, .number(0.5)) == nil)
        #expect(validationError(density, .number(1)) == nil)
        #expect(validationError(density, .number(0)) == "m: parameter 'density' must be in (0, 1], got 0")
        #expect(validationError(density, .number(1.5)) == "m: parameter 'density' must be in (0, 1], got 1.5")
        #expect(validationError(density, .gradient([0.5, 1.2])) == "m: parameter 'density' must be in (0, 1], got 1.2")
        #expect(validationError(density, .conditional([ParameterCondition(filter: "mlp", value: .number(-1))]))
            == "m: parameter 'density' must be in (0, 1], got -1")
        #expect(validationError(density, .text("half")) == "m: parameter 'density' must be a number, got 'half'")
        #expect(validationError(density, .flag(true)) == "m: parameter 'density' must be a number, got 'true'")
        #expect(validationError(density, .number(.infinity)) == "m: parameter 'density' must be a finite number, got inf")
    }

    /// NaN compares false with every bound; it must still be rejected, even where the range is
    /// unbounded (lambda, weight).
    @Test func notANumberIsRejected() {
        let lambda = ParameterSpec("lambda", .number(range: -.infinity...(.infinity)), default: .number(1), help: "")
        #expect(validationError(lambda, .number(-3.5)) == nil)
        #expect(validationError(lambda, .number(.nan)) == "m: parameter 'lambda' must be a finite number, got nan")
        let density = ParameterSpec("density", .number(range: 0...1, lowerOpen: true), default: .number(1), help: "")
        #expect(validationError(density, .number(.nan)) == "m: parameter 'density' must be a finite number, got nan")
        // Finite as a double, infinite as the float32 the merge computes in: every merged value had
        // become ±inf, and the merge was committed.
        #expect(validationError(lambda, .number(1e39)) == "m: parameter 'lambda' must be within float32's range (±3.4e38, the merge computes in float32), got 1e+39")
        #expect(validationError(lambda, .gradient([1, -1e300])) != nil)
        #expect(validationError(lambda, .number(3e38)) == nil)
    }

    @Test func otherKindsValidation() {
        let bottom = ParameterSpec("bottom", .integer(range: 0...10), default: .number(1), help: "")
        #expect(validationError(bottom, .number(3)) == nil)
        #expect(validationError(bottom, .number(1.5)) == "m: parameter 'bottom' must be an integer in [0, 10], got 1.5")
        #expect(validationError(bottom, .number(11)) == "m: parameter 'bottom' must be an integer in [0, 10], got 11")
        #expect(validationError(bottom, .text("two")) == "m: parameter 'bottom' must be an integer, got 'two'")
        let flag = ParameterSpec("normalize", .flag, default: .flag(true), help: "")
        #expect(validationError(flag, .flag(false)) == nil)
        #expect(validationError(flag, .number(1)) == nil)
        #expect(validationError(flag, .text("yes")) == "m: parameter 'normalize' must be true or false, got 'yes'")
        let mode = ParameterSpec("mode", .choice(["loss", "score"]), default: .text("loss"), help: "")
        #expect(validationError(mode, .text("score")) == nil)
        #expect(validationError(mode, .text("best")) == "m: parameter 'mode' must be one of loss, score, got 'best'")
        let metric = ParameterSpec("metric", .text, default: .text("eval_loss"), help: "")
        #expect(validationError(metric, .number(2)) == "m: parameter 'metric' must be text, got '2'")
    }

    /// Every method's defaults pass its own validation, and every parameter is documented.
    @Test func everyDefaultIsValid() throws {
        for method in MethodRegistry.all {
            for spec in method.parameters + method.expertParameters {
                #expect(!spec.help.isEmpty, "\(method.id).\(spec.name)")
                if let d = spec.defaultValue { try spec.validate(d, method: method.id) }
            }
            #expect(Set(method.allParameterNames).count == method.allParameterNames.count, "\(method.id)")
        }
    }
}
