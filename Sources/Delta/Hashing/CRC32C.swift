import CKernels

/// CRC-32C (Castagnoli), the checksum an object's row records of its file's bytes
/// (docs/format.md §5.7): it catches damage to the stored bytes at memory speed, where SHA-256
/// of the decoded bytes costs a hash of every decoded byte.
public enum CRC32C {
    /// The checksum of `bytes`, continuing `crc` (0 to start; feed the pieces in order).
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return mrepo_crc32c(crc, base, bytes.count)
    }

    /// The checksum of an array's bytes.
    public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0, continuing: crc) }
    }

    /// The checksum of a mapped file, a window at a time, each window's pages given back once read:
    /// checking many files leaves none of them resident.
    public static func checksum(of map: MappedFile) -> UInt32 {
        let bytes = map.bytes, window = 1 << 20
        var crc: UInt32 = 0
        var at = 0
        while at < bytes.count {
            let end = min(bytes.count, at + window)
            crc = checksum(UnsafeRawBufferPointer(rebasing: bytes[at..<end]), continuing: crc)
            map.release(at..<end)
            at = end
        }
        return crc
    }

    /// The table-driven computation, for tests that compare it with the processor's.
    public static func portableChecksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return crc }
        return mrepo_crc32c_portable(crc, base, bytes.count)
    }
}
