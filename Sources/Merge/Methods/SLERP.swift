import Delta
import Foundation

/// Spherical interpolation between two experts, per tensor (mergekit's `slerp`).
///
/// The tensors are flattened; with normalised directions u₀, u₁ and θ = acos(u₀·u₁),
/// the result is sin((1−t)θ)/sin θ · v₀ + sin(tθ)/sin θ · v₁ on the original (unnormalised)
/// vectors. Nearly colinear pairs (|cos| > 0.9995) fall back to linear interpolation.
public struct SLERP: TensorMergeMethod {
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

    public func merge(_ input: TensorMergeInput) throws -> TensorMergeOutput {
        guard let t = input.parameters.number("t", input.context) else {
            throw MergeError.missingParameter(method: Self.id, parameter: "t")
        }
        let v0 = input.experts[0], v1 = input.experts[1]
        let (c0, c1) = Self.coefficients(v0, v1, t: t)
        var out = [Float](repeating: 0, count: v0.count)
        let f0 = Float(c0), f1 = Float(c1)
        out.withUnsafeMutableBufferPointer { po in
            v0.withUnsafeBufferPointer { pa in
                v1.withUnsafeBufferPointer { pb in
                    let o = UnsafeSendable(po), a = UnsafeSendable(pa), b = UnsafeSendable(pb)
                    Kernels.blocks(po.count) { r in for j in r { o.value[j] = f0 * a.value[j] + f1 * b.value[j] } }
                }
            }
        }
        return TensorMergeOutput(values: out, notes: ["t": t])
    }

    /// The two coefficients applied to v₀ and v₁.
    static func coefficients(_ v0: [Float], _ v1: [Float], t: Double) -> (Double, Double) {
        let n0 = Kernels.norm(v0), n1 = Kernels.norm(v1)
        let s0 = n0 > 1e-8 ? n0 : 1, s1 = n1 > 1e-8 ? n1 : 1
        let dot = Kernels.dot(v0, v1) / (s0 * s1)
        if abs(dot) > 0.9995 { return (1 - t, t) }
        let theta0 = acos(dot)
        let sinTheta0 = sin(theta0)
        let thetaT = theta0 * t
        return (sin(theta0 - thetaT) / sinTheta0, sin(thetaT) / sinTheta0)
    }
}
