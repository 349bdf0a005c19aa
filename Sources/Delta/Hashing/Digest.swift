import CCrypto

/// A SHA-256 digest: the identity of every object mrepo stores.
///
/// Printed as 64 lower-case hex digits. Compared and hashed as four 64-bit words.
public struct Digest: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The digest bytes as four big-endian 64-bit words, most significant first.
    public var words: (UInt64, UInt64, UInt64, UInt64)

    public init(words: (UInt64, UInt64, UInt64, UInt64)) {
        self.words = words
    }

    /// The digest from its 32 bytes.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 32 else { return nil }
        var w: [UInt64] = [0, 0, 0, 0]
        for (i, b) in bytes.enumerated() { w[i / 8] = w[i / 8] << 8 | UInt64(b) }
        words = (w[0], w[1], w[2], w[3])
    }

    /// The digest from 64 hex digits (either case).
    public init?(hex: String) {
        let utf8 = Array(hex.utf8)
        guard utf8.count == 64 else { return nil }
        var bytes = [UInt8](repeating: 0, count: 32)
        for i in 0..<32 {
            guard let hi = hexValue(utf8[2 * i]), let lo = hexValue(utf8[2 * i + 1]) else { return nil }
            bytes[i] = hi << 4 | lo
        }
        self.init(bytes: bytes)
    }

    /// The all-zero digest, used where a digest field is empty.
    public static let zero = Digest(words: (0, 0, 0, 0))

    /// The 32 bytes of the digest.
    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(32)
        for word in [words.0, words.1, words.2, words.3] {
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: word >> UInt64(shift))) }
        }
        return out
    }

    /// 64 lower-case hex digits.
    public var hex: String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(64)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 15)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    public var description: String { hex }

    /// The first 12 hex digits, as tables print ids.
    public var short: String { String(hex.prefix(12)) }

    public static func == (a: Digest, b: Digest) -> Bool {
        a.words.0 == b.words.0 && a.words.1 == b.words.1 && a.words.2 == b.words.2 && a.words.3 == b.words.3
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(words.0)
        hasher.combine(words.1)
    }

    public static func < (a: Digest, b: Digest) -> Bool {
        (a.words.0, a.words.1, a.words.2, a.words.3) < (b.words.0, b.words.1, b.words.2, b.words.3)
    }
}

private func hexValue(_ c: UInt8) -> UInt8? {
    switch c {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
    case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
    case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
    default: return nil
    }
}

/// An incremental SHA-256 computation (OpenSSL's EVP interface, SHA-NI where the CPU has it).
///
/// ``finalize()`` is called once; the hasher is not used after it.
public final class SHA256 {
    private let context: OpaquePointer
    private var finished = false

    public init() {
        guard let ctx = EVP_MD_CTX_new() else { preconditionFailure("EVP_MD_CTX_new fails only when memory is exhausted") }
        context = ctx
        EVP_DigestInit_ex(context, EVP_sha256(), nil)
    }

    deinit {
        EVP_MD_CTX_free(context)
    }

    /// Feeds bytes.
    public func update(_ bytes: UnsafeRawBufferPointer) {
        precondition(!finished, "a finalized hasher is not fed again")
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        EVP_DigestUpdate(context, base, bytes.count)
    }

    /// Feeds the bytes of an array.
    public func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Feeds the UTF-8 bytes of a string.
    public func update(_ text: String) {
        update(Array(text.utf8))
    }

    /// The digest of everything fed so far.
    public func finalize() -> Digest {
        precondition(!finished, "a hasher is finalized once")
        finished = true
        var out = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        out.withUnsafeMutableBufferPointer { p in
            _ = EVP_DigestFinal_ex(context, p.baseAddress, &length)
        }
        return Digest(bytes: out)!
    }

    /// The digest of one buffer.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> Digest {
        let h = SHA256()
        h.update(bytes)
        return h.finalize()
    }

    /// The digest of an array.
    public static func hash(_ bytes: [UInt8]) -> Digest {
        let h = SHA256()
        h.update(bytes)
        return h.finalize()
    }
}

/// Content identity of a tensor: SHA-256 over its dtype, shape and raw bytes.
///
/// The hashed text is `"mrepo-tensor\0" + dtype + "\0" + dims joined by "," + "\0"`, then the
/// raw little-endian element bytes (docs/format.md §3). Two tensors with equal bytes but different
/// dtype or shape have different identities.
public final class TensorHasher {
    private let sha = SHA256()

    public init(dtype: DType, shape: Shape) {
        sha.update(TensorHasher.prefix(dtype: dtype, shape: shape))
    }

    /// The bytes hashed before the tensor's data.
    public static func prefix(dtype: DType, shape: Shape) -> [UInt8] {
        Array("mrepo-tensor\0\(dtype.rawValue)\0\(shape.map(String.init).joined(separator: ","))\0".utf8)
    }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        sha.update(bytes)
    }

    public func finalize() -> Digest {
        sha.finalize()
    }

    /// The identity of a tensor whose bytes are all in memory.
    public static func hash(dtype: DType, shape: Shape, bytes: UnsafeRawBufferPointer) -> Digest {
        let h = TensorHasher(dtype: dtype, shape: shape)
        h.update(bytes)
        return h.finalize()
    }
}

/// Content identity of a non-tensor file: SHA-256 over `"mrepo-blob\0" + byte count + "\0"` and the bytes.
public enum BlobHasher {
    public static func prefix(byteCount: Int) -> [UInt8] {
        Array("mrepo-blob\0\(byteCount)\0".utf8)
    }

    public static func hash(_ bytes: UnsafeRawBufferPointer) -> Digest {
        let h = SHA256()
        h.update(prefix(byteCount: bytes.count))
        h.update(bytes)
        return h.finalize()
    }
}
