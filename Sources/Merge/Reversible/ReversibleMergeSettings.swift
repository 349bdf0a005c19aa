import Foundation

/// The settings of a reversible merge, read from its recipe (the parameters of ``RMM``).
public struct ReversibleMergeSettings: Sendable, Equatable {
    /// The requested basis size K.
    public var basis: Int
    /// The requested variant; a module may fall back to ``RMMVariant/dense``.
    public var variant: RMMVariant
    /// Whether the experts' mean is subtracted before the fit. The default is `true`.
    public var center: Bool
    /// Full fine-tunes: the rank R each 2-D task vector is reduced to (PT-SVD). The default is 16.
    public var rank: Int
    /// The default view's rank; 0 (the default) takes the experts' rank.
    public var viewRank: Int
    /// The default view's λ in λ·Σᵢ ΔŴᵢ. The default is 1.
    public var viewLambda: Double
    /// Whether to measure the single-model baselines. The default is `true`.
    public var baselines: Bool

    public init(basis: Int, variant: RMMVariant = .position, center: Bool = true, rank: Int = 16, viewRank: Int = 0, viewLambda: Double = 1,
                baselines: Bool = true) {
        self.basis = basis
        self.variant = variant
        self.center = center
        self.rank = rank
        self.viewRank = viewRank
        self.viewLambda = viewLambda
        self.baselines = baselines
    }

    /// The settings of a recipe of method ``RMM``.
    /// - Throws: ``MergeError/missingParameter(method:parameter:)`` without `basis`,
    ///   ``MergeError/invalidParameter(method:parameter:problem:)`` for an unknown variant.
    public init(recipe: MergeRecipe) throws {
        func number(_ name: String) -> Double? {
            if case let .number(x)? = recipe.parameters[name] { return x }
            return nil
        }
        guard let k = number("basis") else { throw MergeError.missingParameter(method: RMM.id, parameter: "basis") }
        var variant = RMMVariant.position
        if case let .text(v)? = recipe.parameters["variant"] {
            guard let parsed = RMMVariant(rawValue: v) else {
                throw MergeError.invalidParameter(method: RMM.id, parameter: "variant", problem: "must be one of \(RMMVariant.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            variant = parsed
        }
        self.init(basis: Int(k), variant: variant, center: recipe.parameters["center"]?.boolValue ?? true, rank: Int(number("rank") ?? 16),
                  viewRank: Int(number("view_rank") ?? 0), viewLambda: number("view_lambda") ?? 1,
                  baselines: recipe.parameters["baselines"]?.boolValue ?? true)
    }

    /// The default view's rank: ``viewRank`` when set, else `expertRank` (the adapters' largest
    /// rank, or ``rank`` for full fine-tunes).
    public func viewRank(expertRank: Int) -> Int { viewRank > 0 ? viewRank : expertRank }
}
