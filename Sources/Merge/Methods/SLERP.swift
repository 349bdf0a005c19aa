import Delta
import Foundation

/// Spherical interpolation between two experts, per tensor (mergekit's `slerp`).
///
/// The tensors are flattened; with normalised directions u₀, u₁ and θ = acos(u₀·u₁),
/// the result is sin((1−t)θ)/sin θ · v₀ + sin(tθ)/sin θ · v₁ on the original (unnormalised)
/// vectors. Nearly colinear pairs (|cos| > 0.9995) fall back to linear interpolation.
public struct SLERP: BlockMergeMethod {
    public static let id = "slerp"
    public static let displayName = "SLERP"
    public static let paper = "https://en.wikipedia.org/wiki/Slerp"
    public static let summary = "Spherical interpolation between exactly two experts: t = 0 gives the first, t = 1 the second. Per tensor, on the flattened weights; nearly colinear tensors are interpolated linearly."
    public static let requiresBase = false
    public static let expertCount: ClosedRange<Int> = 2...2
    public static let parameters = [
        ParameterSpec("t", .number(range: 0...1), default: nil, help: "Interpolation position: 0 is the first expert, 1 the second; a list like [0, 0.5, 1] varies it over depth."),
    ]

    public init() {}

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput { try mergeArrays(input) }

    func readsInputs(_ context: TensorContext, parameters: ParameterSet, expertCount: Int) -> Bool { true }

    func prepare(_ input: BlockMergeInput) throws -> any BlockMerger {
        guard let t = input.parameters.number("t", input.context) else {
            throw MergeError.missingParameter(method: Self.id, parameter: "t")
        }
        guard let experts = input.experts else { preconditionFailure("SLERP reads whole inputs") }
        let (c0, c1) = Self.coefficients(experts[0], experts[1], count: input.count, t: t)
        return Merger(f0: Float(c0), f1: Float(c1), t: t)
    }

    final class Merger: BlockMerger, Sendable {
        let f0, f1: Float
        let t: Double

        init(f0: Float, f1: Float, t: Double) {
            (self.f0, self.f1, self.t) = (f0, f1, t)
        }

        func mergeBlock(_ r: Range<Int>, base: UnsafePointer<Float>?, experts: [UnsafePointer<Float>], into out: UnsafeMutablePointer<Float>) {
            let a = experts[0], b = experts[1]
            for j in 0..<r.count { out[j] = f0 * a[j] + f1 * b[j] }
        }

        func finish() -> (keptFraction: [Double]?, notes: [String: Double]) { (nil, ["t": t]) }
    }

    /// The two coefficients applied to v₀ and v₁ (norms and dot product in Float64).
    static func coefficients(_ v0: UnsafePointer<Float>, _ v1: UnsafePointer<Float>, count n: Int, t: Double) -> (Double, Double) {
        let n0 = Kernels.dot(v0, v0, count: n).squareRoot(), n1 = Kernels.dot(v1, v1, count: n).squareRoot()
        let s0 = n0 > 1e-8 ? n0 : 1, s1 = n1 > 1e-8 ? n1 : 1
        let dot = Kernels.dot(v0, v1, count: n) / (s0 * s1)
        if abs(dot) > 0.9995 { return (1 - t, t) }
        let theta0 = acos(dot)
        let sinTheta0 = sin(theta0)
        let thetaT = theta0 * t
        return (sin(theta0 - thetaT) / sinTheta0, sin(thetaT) / sinTheta0)
    }
}
