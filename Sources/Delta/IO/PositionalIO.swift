import Glibc

/// Whole reads and writes at a file offset: `pread`/`pwrite` until every byte is moved, again after
/// `EINTR`. Several writers fill one file from many threads at once (a merge's prepared checkout, a
/// clone's prefilled files, a search's candidate, a merge's spill), so nothing here moves the file's
/// position.
public enum PositionalIO {
    /// Writes every byte of `bytes` at `offset`; false on a failure (`errno` says which).
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int) -> Bool {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return false }
            done += n
        }
        return true
    }

    /// Fills `destination` with the bytes at `offset`; false on a failure (`errno` says which) or
    /// when the file ends first.
    public static func readAll(_ fd: Int32, into destination: UnsafeMutableRawBufferPointer, at offset: Int) -> Bool {
        var done = 0
        while done < destination.count {
            let n = pread(fd, destination.baseAddress! + done, destination.count - done, off_t(offset + done))
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { return false }
            done += n
        }
        return true
    }
}
