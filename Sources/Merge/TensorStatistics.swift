/// Streaming statistics that compare two versions of a tensor, fed chunk by chunk.
///
/// Values arrive as `Float` (merge math is Float32); every sum is accumulated in `Double`.
public struct ChangeStatistics: Sendable, Equatable {
    public var elementCount = 0
    /// Elements whose bit patterns differ.
    public var changedCount = 0
    public var oldSquareSum = 0.0
    public var newSquareSum = 0.0
    /// Σ (new − old)².
    public var differenceSquareSum = 0.0

    public init() {}

    /// Adds one chunk of both versions.
    /// - Parameter changed: how many elements of the chunk differ bitwise.
    public mutating func add(old: UnsafeBufferPointer<Float>, new: UnsafeBufferPointer<Float>, changed: Int) {
        precondition(old.count == new.count, "chunks of both versions cover the same elements")
        var oo = 0.0, nn = 0.0, dd = 0.0
        for i in 0..<old.count {
            let a = Double(old[i]), b = Double(new[i])
            oo += a * a
            nn += b * b
            dd += (b - a) * (b - a)
        }
        oldSquareSum += oo
        newSquareSum += nn
        differenceSquareSum += dd
        elementCount += old.count
        changedCount += changed
    }

    /// ‖new − old‖₂.
    public var changeNorm: Double { differenceSquareSum.squareRoot() }
    /// ‖new − old‖₂ / ‖old‖₂ (nil when ‖old‖ is 0).
    public var relativeChange: Double? { oldSquareSum > 0 ? (differenceSquareSum / oldSquareSum).squareRoot() : nil }
    /// Fraction of elements that changed.
    public var changedFraction: Double { elementCount > 0 ? Double(changedCount) / Double(elementCount) : 0 }
}

/// Streaming inner products of two task vectors τ_a = a − base and τ_b = b − base.
public struct TaskVectorPairStatistics: Sendable, Equatable {
    public var dot = 0.0
    public var squareSumA = 0.0
    public var squareSumB = 0.0

    public init() {}

    public mutating func add(base: UnsafeBufferPointer<Float>, a: UnsafeBufferPointer<Float>, b: UnsafeBufferPointer<Float>) {
        var d = 0.0, aa = 0.0, bb = 0.0
        for i in 0..<base.count {
            let x = Double(a[i]) - Double(base[i])
            let y = Double(b[i]) - Double(base[i])
            d += x * y
            aa += x * x
            bb += y * y
        }
        dot += d
        squareSumA += aa
        squareSumB += bb
    }

    /// cos(τ_a, τ_b), or nil when either is zero.
    public var cosine: Double? {
        guard squareSumA > 0, squareSumB > 0 else { return nil }
        return dot / (squareSumA.squareRoot() * squareSumB.squareRoot())
    }
}
