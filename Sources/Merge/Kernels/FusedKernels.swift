/// Element-wise loops that need one rounding per multiply-add (torch's CPU kernels use fused
/// multiply-adds, and mergekit's numbers come from them).
enum FusedKernels {
    /// out[j] = fma(x[j], w, out[j]) for j in 0..<count.
    @inline(__always)
    static func addProduct(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: Float, count: Int) {
        for j in 0..<count { out[j].addProduct(x[j], w) }
    }
}
