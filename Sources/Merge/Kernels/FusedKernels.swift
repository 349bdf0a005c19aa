import CKernels

/// Element-wise loops that need one rounding per multiply-add (torch's CPU kernels use fused
/// multiply-adds, and mergekit's numbers come from them). The loops are C (``CKernels``): Swift
/// cannot compile one function for FMA instructions, and without them every element would be a
/// call to libm's `fmaf`. Software and hardware FMA round alike, so the bits do not depend on the
/// processor.
enum FusedKernels {
    /// out[j] = fma(x[j], w, out[j]) for j in 0..<count.
    @inline(__always)
    static func addProduct(_ out: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ w: Float, count: Int) {
        mrepo_add_product(out, x, w, count)
    }
}
