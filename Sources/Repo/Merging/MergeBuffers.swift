import Delta
import Foundation

/// The working memory of a merge: one buffer per input, sized for the largest tensor merged and
/// reused for every tensor, so that no tensor pays for fresh pages (a page fault and the kernel's
/// zeroing per page) and memory stays at (experts + 1) tensors whatever their number.
///
/// Float32 buffers hold the base and each expert; narrower dtypes are decoded into raw buffers
/// first and widened chunk by chunk. The merged values are written over an expert's buffer
/// (``MergePlan/merge(_:base:experts:into:)`` stores each block after reading it), or into a buffer
/// of their own when every expert's buffer is shared with the base.
final class MergeBuffers {
    private var regions: [String: (pointer: UnsafeMutableRawPointer, byteCount: Int)] = [:]

    deinit {
        for r in regions.values { free(r.pointer) }
    }

    /// A buffer of at least `byteCount` bytes under `key`, kept for the next tensor. Its contents
    /// are whatever the last user left.
    func bytes(_ key: String, count byteCount: Int) -> UnsafeMutableRawBufferPointer {
        let needed = max(byteCount, 1)
        if let r = regions[key], r.byteCount >= needed {
            return UnsafeMutableRawBufferPointer(start: r.pointer, count: byteCount)
        }
        if let r = regions[key] { free(r.pointer) }
        // Page aligned. (Asking for huge pages, MADV_HUGEPAGE, makes the kernel compact memory on
        // the first touch where it is fragmented: measured 4 times slower than small pages here.)
        let alignment = 1 << 12
        let size = (needed + alignment - 1) / alignment * alignment
        var p: UnsafeMutableRawPointer?
        guard posix_memalign(&p, alignment, size) == 0, let p else {
            preconditionFailure("allocation of \(size) bytes fails only when memory is exhausted")
        }
        regions[key] = (p, size)
        return UnsafeMutableRawBufferPointer(start: p, count: byteCount)
    }

    func floats(_ key: String, count: Int) -> UnsafeMutableBufferPointer<Float> {
        let raw = bytes(key, count: count * MemoryLayout<Float>.stride)
        return UnsafeMutableBufferPointer(start: raw.baseAddress!.bindMemory(to: Float.self, capacity: max(count, 1)), count: count)
    }
}
