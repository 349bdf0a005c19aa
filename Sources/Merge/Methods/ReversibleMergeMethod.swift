import Foundation

/// Reversible model merging, declared for the registry (parameters, help, recipes, validation). It
/// is a whole-model method, not a ``TensorMergeMethod``: a reversible merge fits a basis per adapted
/// module over all experts at once (``ReversibleMergeJob``), and the repository runs it.
public struct RMM: MergeMethod {
    public static let id = "rmm"
    public static let displayName = "Reversible model merging (RMM)"
    public static let paper = "https://arxiv.org/abs/2510.14163"
    public static let summary = "Keeps a compact low-rank basis and per-expert coefficients instead of one merged model, so every expert can be rebuilt from the merge commit (mrepo checkout MERGE --expert NAME); the checkout of the merge itself is a task-arithmetic view. Inputs are LoRA adapters of one base, or full fine-tunes reduced to `rank` by SVD. Closed form, no data."
    public static let requiresBase = true
    public static let expertCount: ClosedRange<Int> = 2...64
    public static let parameters = [
        ParameterSpec("basis", .integer(range: 1...63), default: nil,
                      help: "Basis size K (--basis K): 1 ≤ K ≤ N − 1. K = N − 1 rebuilds every expert exactly; smaller K stores less and rebuilds approximately."),
        ParameterSpec("variant", .choice(RMMVariant.allCases.map(\.rawValue)), default: .text(RMMVariant.position.rawValue),
                      help: "position: a basis per row of L and column of R (the paper's per-position PCA); layer: one coefficient vector per expert and module; dense: PCA of the dense task vectors (any ranks; exact for full fine-tunes)."),
        ParameterSpec("center", .flag, default: .flag(true),
                      help: "Subtract the experts' mean before the PCA (then K = N − 1 is exact)."),
        ParameterSpec("rank", .integer(range: 1...4096), default: .number(16),
                      help: "Full fine-tunes only: each 2-D task vector is first reduced to this rank by a truncated SVD (PT-SVD). The reduction error is reported."),
        ParameterSpec("view_rank", .integer(range: 0...65536), default: .number(0),
                      help: "Rank of the default view (task arithmetic of the rebuilt experts, truncated by SVD); 0 uses the experts' rank."),
        ParameterSpec("view_lambda", .number(range: -.infinity...(.infinity)), default: .number(1),
                      help: "Scale λ of the default view: ΔW_view = λ·Σᵢ ΔŴᵢ."),
        ParameterSpec("baselines", .flag, default: .flag(true),
                      help: "Compare with task arithmetic, TIES and DARE on the factors and on the dense task vectors (reconstruction error per expert). Costs N dense task vectors per module."),
    ]

    /// The basis size is bounded by the number of experts: K = N − 1 already rebuilds every expert exactly.
    public static func validate(_ parameters: ParameterSet, experts: [String]) throws(MergeError) {
        let n = experts.count
        guard let k = parameters.global["basis"]?.numberValue else { return }
        guard k >= 1, Double(n - 1) >= k else {
            throw MergeError.invalidParameter(method: id, parameter: "basis",
                problem: "is \(ParameterValue.format(k)) with \(n) experts: it must be between 1 and N − 1 = \(n - 1) (K = N − 1 rebuilds every expert exactly; a larger basis would store more than the experts)")
        }
    }
}
