/// Layer swapping: the first expert (the task expert) everywhere, except the bottom and top
/// blocks, which come from the second expert (e.g. a language expert), with optional linear
/// transition zones between.
///
/// Block ℓ of L takes ω(ℓ)·θ₂ + (1 − ω(ℓ))·θ₁ with ω = 1 in the bottom `bottom` and top `top`
/// blocks, ramping to 0 over `transition` blocks, 0 elsewhere. Tensors outside blocks follow the
/// nearer group: embeddings go with the bottom blocks, everything after the last block (final
/// norm, pooler, head) with the top blocks.
public struct LayerSwap: BlockMergeMethod {
    public static let id = "layer_swap"
    public static let displayName = "Layer swapping"
    public static let paper = "https://arxiv.org/abs/2410.01335"
    public static let summary = "Per-layer choice of source: the second expert's bottom and top blocks are swapped into the first expert, with optional linear transitions. Embeddings follow the bottom group, final norm and head the top group."
    public static let requiresBase = false
    public static let expertCount: ClosedRange<Int> = 2...2
    public static let parameters = [
        ParameterSpec("bottom", .integer(range: 0...10_000), default: .number(1), help: "Number of lowest blocks taken from the second expert."),
        ParameterSpec("top", .integer(range: 0...10_000), default: .number(1), help: "Number of highest blocks taken from the second expert; bottom + top must be fewer than the model's blocks."),
        ParameterSpec("transition", .integer(range: 0...10_000), default: .number(0), help: "Width in blocks of the linear blend between swapped and kept blocks."),
    ]

    public init() {}

    /// Groups that cover every block take every block from the second expert: that expert, not a
    /// swap. Refused before any tensor is read (``validate(_:layerCount:)``), and again per tensor.
    public static func validate(_ parameters: ParameterSet, layerCount: Int) throws(MergeError) {
        guard let bottom = parameters.uniform("bottom")?.numberValue, let top = parameters.uniform("top")?.numberValue else { return }
        try checkGroups(bottom: Int(bottom), top: Int(top), layerCount: layerCount)
    }

    static func checkGroups(bottom: Int, top: Int, layerCount: Int) throws(MergeError) {
        if layerCount > 0, bottom + top >= layerCount {
            throw .invalidInputs(method: id, problem: "bottom + top = \(bottom) + \(top) covers all \(layerCount) blocks of the model, so every block would come from the second expert; take fewer blocks (or use that expert as it is)")
        }
    }

    /// The second expert's share for block ℓ of L.
    static func omega(layer: Int, layers: Int, bottom: Int, top: Int, transition: Int) -> Double {
        if layer < bottom || layer >= layers - top { return 1 }
        let z = Double(transition)
        guard z > 0 else { return 0 }
        let aboveBottom = Double(layer - bottom + 1)  // 1 for the first block above the bottom group
        let belowTop = Double(layers - top - layer)  // 1 for the last block below the top group
        let fromBottom = aboveBottom <= z ? 1 - aboveBottom / (z + 1) : 0
        let fromTop = belowTop <= z ? 1 - belowTop / (z + 1) : 0
        return max(fromBottom, fromTop)
    }

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput { try mergeArrays(input) }

    func readsInputs(_ context: TensorContext, parameters: ParameterSet, expertCount: Int) -> Bool { false }

    func prepare(_ input: BlockMergeInput) throws -> any BlockMerger {
        let ctx = input.context
        let p = input.parameters
        let bottom = Int(p.number("bottom", ctx) ?? 1), top = Int(p.number("top", ctx) ?? 1)
        let transition = Int(p.number("transition", ctx) ?? 0)
        try Self.checkGroups(bottom: bottom, top: top, layerCount: ctx.layerCount)
        let omega: Double
        if let layer = ctx.layer {
            omega = Self.omega(layer: layer, layers: max(ctx.layerCount, layer + 1), bottom: bottom, top: top, transition: transition)
        } else {
            let lower = ctx.name.lowercased()
            let isBottom = lower.contains("embed") || lower.contains("wte") || lower.contains("wpe")
            omega = (isBottom ? bottom : top) > 0 ? 1 : 0
        }
        return Merger(omega: omega)
    }

    /// ω·θ₂ + (1 − ω)·θ₁; either expert as it is at ω = 0 and ω = 1.
    final class Merger: BlockMerger, Sendable {
        let omega: Double

        init(omega: Double) {
            self.omega = omega
        }

        func mergeBlock(_ r: Range<Int>, base: UnsafePointer<Float>?, experts: [UnsafePointer<Float>], into out: UnsafeMutablePointer<Float>) {
            let x = experts[0], y = experts[1]
            if omega == 0 { out.update(from: x, count: r.count); return }
            if omega == 1 { out.update(from: y, count: r.count); return }
            let w = Float(omega)
            for j in 0..<r.count { out[j] = w * y[j] + (1 - w) * x[j] }
        }

        func finish() -> (keptFraction: [Double]?, notes: [String: Double]) { (nil, ["second_share": omega]) }
    }
}
