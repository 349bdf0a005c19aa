import CLinux
import Delta
import Glibc
import Synchronization

/// The decoded input chunks of a tensor decided by passes (``StreamingSelection``), kept so that its
/// later passes and its merge read them back instead of decoding every input again.
///
/// A TIES merge of a tensor too large to hold whole goes over its inputs three times (two threshold
/// passes, then the merge); decoding a delta costs several times what reading its bytes back from the
/// page cache does, so the first pass writes each decoded chunk here and the others read it.
///
/// The file has no name (`O_TMPFILE`): it is never seen in the repository, a crash leaves nothing to
/// clean, and its blocks are freed when it is closed (``close()``, or when the spill is released).
/// It lives in the object store's folder, on the repository's own disk, not in a `/tmp`
/// that may be memory. Spilling is an optimisation only: where the file system has no `O_TMPFILE`,
/// where the disk has not twice the room, or when a write fails, the chunks not spilled are decoded
/// again, as before. What is read back is verified as before: the merge hashes every input chunk it
/// uses against the input's object id.
final class PassSpill: Sendable {
    private let fd: Mutex<Int32>
    /// Bytes of one input (the tensor's byte count); input `i` starts at `i * inputByteCount`.
    private let inputByteCount: Int
    private let inputCount: Int
    /// Chunks whose every input is in the file.
    private let spilled: Mutex<[Bool]>
    /// Set by a failed write: nothing more is spilled.
    private let stopped = Atomic<Bool>(false)

    /// Opens a spill for `inputCount` inputs of `byteCount` bytes each in `directory`, or nil when
    /// one cannot be made or the disk lacks room for it twice over (the merge's output needs room too).
    init?(directory: String, inputCount: Int, byteCount: Int, chunkCount: Int) {
        let total = inputCount * byteCount
        guard let free = DiskSpace.available(near: directory), free >= 2 * total + (1 << 30) else { return nil }
        let fd = mrepo_open_unnamed(directory)
        guard fd >= 0 else { return nil }
        self.fd = Mutex(fd)
        inputByteCount = byteCount
        self.inputCount = inputCount
        spilled = Mutex([Bool](repeating: false, count: chunkCount))
    }

    deinit { close() }

    /// Frees the file's blocks now.
    func close() {
        fd.withLock { fd in
            if fd >= 0 { _ = Glibc.close(fd) }
            fd = -1
        }
    }

    /// Whether chunk `c` of every input can be read back.
    func contains(_ c: Int) -> Bool { spilled.withLock { $0[c] } }

    /// Writes chunk `c` (at byte `offset` of the tensor) of every input, in input order. A failure
    /// (a full disk, say) stops the spilling; the merge goes on by decoding.
    func store(_ c: Int, offset: Int, inputs: [UnsafeRawBufferPointer]) {
        guard !stopped.load(ordering: .relaxed), inputs.count == inputCount else { return }
        let fd = self.fd.withLock { $0 }
        guard fd >= 0 else { return }
        for (i, bytes) in inputs.enumerated() {
            guard PositionalIO.writeAll(fd, bytes, at: i * inputByteCount + offset) else {
                stopped.store(true, ordering: .relaxed)
                return
            }
        }
        spilled.withLock { $0[c] = true }
    }

    /// Reads chunk `c` (at byte `offset`) of input `i` into `destination`; false if it could not.
    func load(_ c: Int, input i: Int, offset: Int, into destination: UnsafeMutableRawBufferPointer) -> Bool {
        let fd = self.fd.withLock { $0 }
        return fd >= 0 && PositionalIO.readAll(fd, into: destination, at: i * inputByteCount + offset)
    }
}
