import CZstd
import Synchronization

/// libzstd, one frame at a time, with contexts reused across calls and threads.
public enum Zstd {
    /// The largest compressed size of `count` input bytes.
    public static func compressBound(_ count: Int) -> Int {
        ZSTD_compressBound(count)
    }

    /// Compresses `source` into `destination` as one frame with a content checksum.
    /// - Parameter level: zstd level (negative levels are the fast modes).
    /// - Returns: the compressed size, or nil when it would not fit in `destination`.
    public static func compress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer,
                                level: Int32) -> Int? {
        let ctx = compressors.take()
        defer { compressors.give(ctx) }
        ZSTD_CCtx_reset(ctx, ZSTD_reset_session_and_parameters)
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(ctx, ZSTD_c_checksumFlag, 1)
        let n = ZSTD_compress2(ctx, destination.baseAddress, destination.count, source.baseAddress, source.count)
        if ZSTD_isError(n) != 0 { return nil }
        return n
    }

    /// Compresses a whole buffer into a new array.
    public static func compress(_ source: UnsafeRawBufferPointer, level: Int32) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: compressBound(source.count))
        let n = out.withUnsafeMutableBytes { compress(source, into: $0, level: level) }
        out.removeSubrange((n ?? 0)...)
        return out
    }

    /// Decompresses one frame into `destination`, which must be exactly the frame's content size.
    /// The frame's checksum is verified.
    /// - Throws: a message naming zstd's error (the caller adds the object's name).
    public static func decompress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) throws(ZstdError) {
        let ctx = decompressors.take()
        defer { decompressors.give(ctx) }
        let n = ZSTD_decompressDCtx(ctx, destination.baseAddress, destination.count, source.baseAddress, source.count)
        if ZSTD_isError(n) != 0 { throw ZstdError(message: String(cString: ZSTD_getErrorName(n))) }
        if n != destination.count { throw ZstdError(message: "frame holds \(n) bytes, expected \(destination.count)") }
    }

    /// The content size a frame declares, or nil when it declares none or is not a frame.
    public static func frameContentSize(_ source: UnsafeRawBufferPointer) -> Int? {
        let n = ZSTD_getFrameContentSize(source.baseAddress, source.count)
        // ZSTD_CONTENTSIZE_UNKNOWN is 0ULL - 1 and ZSTD_CONTENTSIZE_ERROR is 0ULL - 2.
        if n >= UInt64.max - 1 { return nil }
        return n <= UInt64(Int.max) ? Int(n) : nil
    }

    private static let compressors = ContextPool<OpaquePointer>(make: { ZSTD_createCCtx() })
    private static let decompressors = ContextPool<OpaquePointer>(make: { ZSTD_createDCtx() })
}

/// A zstd failure, in zstd's words.
public struct ZstdError: Error, Sendable {
    public var message: String
}

/// A small pool of reusable C contexts shared by worker threads.
final class ContextPool<Context>: Sendable {
    private let free = Mutex<[UnsafeSendable<Context>]>([])
    private let make: @Sendable () -> Context?

    init(make: @escaping @Sendable () -> Context?) {
        self.make = make
    }

    func take() -> Context {
        if let ctx = free.withLock({ $0.popLast() }) { return ctx.value }
        guard let ctx = make() else { preconditionFailure("context allocation fails only when memory is exhausted") }
        return ctx
    }

    func give(_ ctx: Context) {
        free.withLock { $0.append(UnsafeSendable(ctx)) }
    }
}
