import CLinux
import Delta
import Glibc
import Synchronization

/// The decoded input chunks of a tensor decided by passes (``StreamingSelection``), kept so that its
/// later passes and its merge read them back instead of decoding every input again.
///
/// A TIES merge of a tensor too large to hold whole goes over its inputs three times (two threshold
/// passes, then the merge); decoding a delta costs several times what reading its bytes back does,
/// so the first pass keeps each decoded chunk and the others use it.
///
/// Where the inputs' bytes fit the merge's memory budget (a 3B model's MLP projections: 50 MB per
/// bf16 input, too large to hold whole only because of their Float32 copies), they are kept in
/// memory (``SpillArena``): the first pass decodes straight into it, the others read it in place.
/// Else (the 3B embedding: 2.4 GB for three inputs) they go to a file, whose writes and reads cost
/// two copies through the page cache (a sixth of a 3B merge's CPU when every spill was a file).
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
    /// The inputs' bytes in memory (input `i` at `i * inputByteCount`), or nil for a file.
    private let memory: UnsafeSendable<UnsafeMutableRawPointer>?
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
        memory = nil
        inputByteCount = byteCount
        self.inputCount = inputCount
        spilled = Mutex([Bool](repeating: false, count: chunkCount))
    }

    /// A spill in memory: `inputCount` inputs of `byteCount` bytes each at `memory` (the arena's,
    /// which outlives the spill).
    init(memory: UnsafeMutableRawPointer, inputCount: Int, byteCount: Int, chunkCount: Int) {
        fd = Mutex(-1)
        self.memory = UnsafeSendable(memory)
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

    /// In memory: where input `i`'s bytes `range` (of the tensor) live, to be decoded into once
    /// and read in place after. Nil for a file.
    func resident(input i: Int, range: Range<Int>) -> UnsafeMutableRawBufferPointer? {
        guard let memory else { return nil }
        return UnsafeMutableRawBufferPointer(start: memory.value + i * inputByteCount + range.lowerBound, count: range.count)
    }

    /// Writes chunk `c` (at byte `offset` of the tensor) of every input, in input order (in memory,
    /// where they were decoded in place: only noted). A failure (a full disk, say) stops the
    /// spilling; the merge goes on by decoding.
    func store(_ c: Int, offset: Int, inputs: [UnsafeRawBufferPointer]) {
        guard !stopped.load(ordering: .relaxed), inputs.count == inputCount else { return }
        if let memory {
            for (i, bytes) in inputs.enumerated() {
                let place = memory.value + i * inputByteCount + offset
                if let from = bytes.baseAddress, from != UnsafeRawPointer(place) { place.copyMemory(from: from, byteCount: bytes.count) }
            }
        } else {
            let fd = self.fd.withLock { $0 }
            guard fd >= 0 else { return }
            for (i, bytes) in inputs.enumerated() {
                guard PositionalIO.writeAll(fd, bytes, at: i * inputByteCount + offset) else {
                    stopped.store(true, ordering: .relaxed)
                    return
                }
            }
        }
        spilled.withLock { $0[c] = true }
    }

    /// Reads chunk `c` (at byte `offset`) of input `i` into `destination`; false if it could not.
    func load(_ c: Int, input i: Int, offset: Int, into destination: UnsafeMutableRawBufferPointer) -> Bool {
        if let memory {
            guard let to = destination.baseAddress else { return true }
            let place = memory.value + i * inputByteCount + offset
            if to != place { to.copyMemory(from: place, byteCount: destination.count) }
            return true
        }
        let fd = self.fd.withLock { $0 }
        return fd >= 0 && PositionalIO.readAll(fd, into: destination, at: i * inputByteCount + offset)
    }
}

/// The memory of in-memory spills (``PassSpill/init(memory:inputCount:byteCount:chunkCount:)``),
/// reused by every tensor decided by passes (they run one at a time): a 3B model's 84 MLP
/// projections share one 151 MB region instead of faulting in fresh pages each. Freed with
/// ``free()`` once the passes are over.
final class SpillArena: Sendable {
    private let region = Mutex<(pointer: UnsafeSendable<UnsafeMutableRawPointer>?, byteCount: Int)>((nil, 0))

    /// At least `byteCount` bytes, page aligned; the contents are whatever the last user left.
    func bytes(_ byteCount: Int) -> UnsafeMutableRawPointer {
        region.withLock { r in
            if let p = r.pointer, r.byteCount >= byteCount { return p.value }
            r.pointer?.value.deallocate()
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 1 << 12)
            r = (UnsafeSendable(p), byteCount)
            return p
        }
    }

    func free() {
        region.withLock { r in
            r.pointer?.value.deallocate()
            r = (nil, 0)
        }
    }

    deinit { free() }
}
