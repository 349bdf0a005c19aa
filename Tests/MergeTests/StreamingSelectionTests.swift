import Delta
import Testing

@testable import Merge

/// TIES' trim decided by passes over chunks (``StreamingSelection``) gives the bits the whole-input
/// path gives, ties at the threshold included.
@Suite struct StreamingSelectionTests {
    /// Inputs with many equal magnitudes: deltas drawn from a few values, so thousands of elements
    /// tie at any threshold, spread over several blocks.
    static func inputs(count n: Int, experts: Int, seed: UInt64) -> (base: [Float], experts: [[Float]]) {
        var rng = SeededRandom(seed: seed)
        let base = (0..<n).map { _ in Float(rng.uniform() * 2 - 1) }
        let steps: [Float] = [0, 0.25, -0.25, 0.5, -0.5, 1, -1, 0.125]
        let xs = (0..<experts).map { _ in base.map { $0 + steps[Int(rng.next() % UInt64(steps.count))] } }
        return (base, xs)
    }

    /// Feeds every chunk (of `chunkBlocks` blocks, in a scrambled order) to every pass, then merges by range.
    /// `keyBudget` 0 takes the passes over the inputs; the default keeps the magnitudes (one pass)
    /// where ties are replayed.
    static func streamed(_ plan: MergePlan, _ context: TensorContext, base: [Float], experts: [[Float]], chunkBlocks: Int,
                         replayLimit: Int? = nil, keyBudget: Int = StreamingSelection.replayBudget,
                         passCount: UnsafeMutablePointer<Int>? = nil, bf16: Bool = false) throws -> (values: [Float], metrics: ConflictMetrics) {
        let n = base.count
        let selection = try #require(StreamingSelection.make(plan: plan, context: context, count: n, expertCount: experts.count,
                                                             replayLimit: replayLimit, keyBudget: keyBudget))
        let chunk = chunkBlocks * TensorStream.blockElements
        let chunks = (n + chunk - 1) / chunk
        let order = (0..<chunks).map { ($0 * 7 + 3) % chunks }
        let stream: TensorStream = try base.withUnsafeBufferPointer { b in
            try BlockMergeRun.withPointers(experts) { xs in
                var passes = 0
                while selection.needsPass {
                    for c in order {
                        let r = (c * chunk)..<min(n, (c + 1) * chunk)
                        // bf16: the inputs' bits as stored, where the pass reads them so.
                        if bf16, Self.observeBits(selection, r, base: b.baseAddress!, experts: xs) { continue }
                        selection.observe(r, base: b.baseAddress! + r.lowerBound, experts: xs.map { $0 + r.lowerBound })
                    }
                    selection.endPass()
                    passes += 1
                }
                #expect(passes == (selection.keyed ? 1 : 2) || (!selection.keyed && passes > 2))
                passCount?.pointee = passes
                return try selection.stream()
            }
        }
        var out = [Float](repeating: 0, count: n)
        base.withUnsafeBufferPointer { b in
            BlockMergeRun.withPointers(experts) { xs in
                out.withUnsafeMutableBufferPointer { o in
                    stream.mergeRange(0..<n, base: b.baseAddress!, experts: xs, into: o.baseAddress!)
                }
            }
        }
        return (out, stream.finish())
    }

    /// Feeds elements `r` of bf16-representable inputs to the bf16 observer, as their bf16 bits.
    static func observeBits(_ selection: StreamingSelection, _ r: Range<Int>, base: UnsafePointer<Float>, experts: [UnsafePointer<Float>]) -> Bool {
        func bits(_ p: UnsafePointer<Float>) -> UnsafeMutablePointer<UInt16> {
            let out = UnsafeMutablePointer<UInt16>.allocate(capacity: r.count)
            for j in r { out[j - r.lowerBound] = UInt16(p[j].bitPattern >> 16) }
            return out
        }
        let b = bits(base), xs = experts.map(bits)
        defer { for p in [b] + xs { p.deallocate() } }
        return selection.observe(r, bf16Base: b, experts: xs.map { UnsafePointer($0) })
    }

    /// bf16 inputs read as stored give the bits of their Float32 views, in one pass or in several.
    @Test func bf16BitsGiveTheFloatViewsBits() throws {
        let n = 3 * TensorStream.blockElements + 500
        let (wide, wideExperts) = Self.inputs(count: n, experts: 2, seed: 31)
        // bf16 values: the top 16 bits of each.
        func narrow(_ v: [Float]) -> [Float] { v.map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) } }
        let base = narrow(wide), experts = wideExperts.map(narrow)
        let context = TensorContext(name: "model.embed_tokens.weight", shape: [n], layerCount: 2)
        let plan = try MergePlan(MergeRecipe(method: "ties", expertParameters: [["density": .number(0.5)], ["density": .number(0.3)]],
                                             experts: ["a", "b"]))
        let whole = try plan.merge(context, base: base, experts: experts)
        for (keyBudget, replayLimit) in [(StreamingSelection.replayBudget, nil), (0, nil), (0, 0)] as [(Int, Int?)] {
            let floats = try Self.streamed(plan, context, base: base, experts: experts, chunkBlocks: 1, replayLimit: replayLimit, keyBudget: keyBudget)
            let read = try Self.streamed(plan, context, base: base, experts: experts, chunkBlocks: 1, replayLimit: replayLimit, keyBudget: keyBudget,
                                         bf16: true)
            #expect(sameBits(read.values, floats.values), "key budget \(keyBudget), replay limit \(String(describing: replayLimit))")
            if replayLimit == nil { #expect(sameBits(read.values, whole.values)) }
        }
    }

    @Test func passesGiveTheWholeInputBitsWithTiesAtTheThreshold() throws {
        let n = 3 * TensorStream.blockElements + 1234
        let (base, experts) = Self.inputs(count: n, experts: 3, seed: 7)
        let context = TensorContext(name: "model.layers.0.mlp.up_proj.weight", shape: [n], layerCount: 2)
        for (densities, chunkBlocks) in [([0.5, 0.3, 1.0], 1), ([0.999, 0.45, 0.01], 2)] {
            let plan = try MergePlan(MergeRecipe(method: "ties", expertParameters: densities.map { ["density": .number($0), "weight": .number(0.7)] },
                                                 experts: ["a", "b", "c"]))
            let whole = try plan.merge(context, base: base, experts: experts)
            for keyBudget in [0, StreamingSelection.replayBudget] {
                let streamed = try Self.streamed(plan, context, base: base, experts: experts, chunkBlocks: chunkBlocks, keyBudget: keyBudget)
                #expect(sameBits(streamed.values, whole.values), "densities \(densities), key budget \(keyBudget)")
                #expect(streamed.metrics.keptFraction == whole.metrics.keptFraction)
                #expect(streamed.metrics.notes["ties_by_position"] == nil)
            }
        }
    }

    /// Ties that torch's order settles differently from "earlier positions first": the replay
    /// matters, and the passes reproduce it.
    @Test func passesFollowTorchsOrderNotPositions() throws {
        let n = 3 * TensorStream.blockElements
        let (base, experts) = Self.inputs(count: n, experts: 2, seed: 11)
        let context = TensorContext(name: "w", shape: [n], layerCount: 1)
        let plan = try MergePlan(MergeRecipe(method: "ties", parameters: ["density": .number(0.4)], experts: ["a", "b"]))
        let whole = try plan.merge(context, base: base, experts: experts)
        let replayed = try Self.streamed(plan, context, base: base, experts: experts, chunkBlocks: 1)
        let read = try Self.streamed(plan, context, base: base, experts: experts, chunkBlocks: 1, keyBudget: 0)
        #expect(sameBits(read.values, whole.values))
        let positional = try Self.streamed(plan, context, base: base, experts: experts, chunkBlocks: 1, replayLimit: 0)
        #expect(sameBits(replayed.values, whole.values))
        #expect(!sameBits(positional.values, whole.values))
        #expect(positional.metrics.notes["ties_by_position"] == 2)
    }

    /// A one-pass selection (the magnitudes kept by the first pass) gives the bits of the passes over
    /// the inputs and of the whole-input path, with ties replayed, and where the budget is too small
    /// for its magnitudes the passes are taken.
    @Test func onePassFromKeptMagnitudesGivesThePassesBits() throws {
        let n = 4 * TensorStream.blockElements + 777
        let (base, experts) = Self.inputs(count: n, experts: 3, seed: 23)
        let context = TensorContext(name: "model.layers.1.mlp.down_proj.weight", shape: [n], layerCount: 2)
        for densities in [[0.5, 0.3, 1.0], [0.9, 0.02, 0.6]] {
            let plan = try MergePlan(MergeRecipe(method: "ties", expertParameters: densities.map { ["density": .number($0)] },
                                                 experts: ["a", "b", "c"]))
            let whole = try plan.merge(context, base: base, experts: experts)
            var keyedPasses = 0, passes = 0
            let keyed = try Self.streamed(plan, context, base: base, experts: experts, chunkBlocks: 1, passCount: &keyedPasses)
            let read = try Self.streamed(plan, context, base: base, experts: experts, chunkBlocks: 2, keyBudget: 0, passCount: &passes)
            #expect(keyedPasses == 1)
            #expect(passes >= 3, "ties at the thresholds take a tie pass")
            #expect(sameBits(keyed.values, read.values), "densities \(densities)")
            #expect(sameBits(keyed.values, whole.values), "densities \(densities)")
            #expect(keyed.metrics.keptFraction == whole.metrics.keptFraction)
        }
        // Room for one expert's magnitudes but not for two: the passes.
        let plan = try MergePlan(MergeRecipe(method: "ties", parameters: ["density": .number(0.5)], experts: ["a", "b"]))
        let small = try #require(StreamingSelection.make(plan: plan, context: context, count: n, expertCount: 2, keyBudget: 4 * n))
        let enough = try #require(StreamingSelection.make(plan: plan, context: context, count: n, expertCount: 2, keyBudget: 8 * n))
        let positional = try #require(StreamingSelection.make(plan: plan, context: context, count: n, expertCount: 2, replayLimit: n - 1))
        #expect(!small.keyed && enough.keyed && !positional.keyed)
    }

    /// Methods whose first pass is not a plain magnitude trim are not offered passes.
    @Test func onlyMagnitudeTrimsWithoutRescaleStream() throws {
        let context = TensorContext(name: "w", shape: [100], layerCount: 1)
        func selection(_ method: String, _ parameters: [String: ParameterValue]) throws -> StreamingSelection? {
            StreamingSelection.make(plan: try MergePlan(MergeRecipe(method: method, parameters: parameters, experts: ["a", "b"])),
                                    context: context, count: 100, expertCount: 2)
        }
        #expect(try selection("ties", ["density": .number(0.5)]) != nil)
        #expect(try selection("ties", ["density": .number(0.5), "rescale": .flag(true)]) == nil)
        #expect(try selection("ties", ["density": .number(1)]) == nil)
        #expect(try selection("dare_ties", ["density": .number(0.5)]) == nil)
        #expect(try selection("slerp", ["t": .number(0.5)]) == nil)
    }

    /// A merged tensor's selection forgets its thresholds: no pass is asked for, and no merge made.
    @Test func aReleasedSelectionIsDone() throws {
        let plan = try MergePlan(MergeRecipe(method: "ties", parameters: ["density": .number(0.5)], experts: ["a", "b"]))
        let selection = try #require(StreamingSelection.make(plan: plan, context: TensorContext(name: "w", shape: [100], layerCount: 1),
                                                             count: 100, expertCount: 2))
        #expect(selection.needsPass)
        selection.release()
        #expect(!selection.needsPass)
        #expect(throws: MergeError.self) { try selection.stream() }
    }
}
