import Delta
import Merge

extension JobRun {
    /// Whether input `i` (0: the base, then each input) is hashed and checked against its id.
    func verifiesDigest(of i: Int) -> Bool {
        let trusted = checksumTrust()
        if trusted[i] { return false }
        return i > 0 || !JobRun.baseVerifiedByInput(job, trusted: trusted, selection: selection, spills: spills, arena: arena)
    }

    /// Whether the base's own digest is left out (its hasher gets nothing, and nothing is compared)
    /// because an input hashed against it verifies it (``baseVerifiedByInput(_:trusted:selection:spills:arena:)``).
    var skipsBaseDigest: Bool {
        !checksumTrust()[0] && JobRun.baseVerifiedByInput(job, trusted: checksumTrust(), selection: selection, spills: spills, arena: arena)
    }

    /// For the base, then each input: whether its file's checksum verifies it instead of a hash of
    /// its decoded bytes (docs/format.md §5.7). Worked out once per tensor, by the first worker that
    /// asks, before any of its chunks is hashed (after its first chunk is decoded; for a tensor
    /// decided by passes, after the first pass), so the files are read while the tensor is merged.
    /// A file that does not match its recorded checksum is hashed like any other (the checksum may
    /// be stale; damage then fails the hash). An input coded against the base counts only when the
    /// base does. Not for tensors whose passes keep their decoded inputs in a spill file.
    func checksumTrust() -> [Bool] {
        trustLock.lock()
        defer { trustLock.unlock() }
        if let known = trustKnown { return known }
        var out = [Bool](repeating: false, count: 1 + job.inputs.count)
        if !(selection != nil && spills && arena == nil) {
            for (i, check) in job.checksums.enumerated() where i < out.count {
                // The decoding reads the pages again, from the page cache.
                if let check { out[i] = CRC32C.checksum(of: check.map) == check.recorded }
            }
            for (k, input) in job.inputs.enumerated() where out[k + 1] {
                if case .base = input.reference, !out[0] { out[k + 1] = false }
            }
        }
        trustKnown = out
        return out
    }

    /// Whether an input of `job` verifies the base's decoded bytes, so that the base need not be
    /// hashed as well (docs/format.md §5.7).
    ///
    /// An input coded against the base (`.base`) is decoded from the very base chunks the merge
    /// then reads, and its own digest is checked. With XOR or integer differences (encodings 1
    /// and 2) its decoded bytes are a one-to-one function of the base's for its stored residuals,
    /// so any change to the base's bytes changes them and fails that check. With differences
    /// grouped by the base's exponents (encoding 3, what float fine-tunes use) the grouping
    /// follows the base too; a changed base could only give the same decoded input if the
    /// residuals it picks up compensated the change exactly, element for element, which damage
    /// on a disk does not do (objects from elsewhere were verified whole when received, §10).
    /// A low-rank input (encoding 4) rounds, so it does not count.
    ///
    /// It holds only when what the merge reads is what the input was decoded from: not for
    /// tensors whose passes keep their decoded inputs in a spill file (read back later, the file
    /// could differ); a spill in memory, or passes that decode again, keep it.
    /// An input verified by its checksum instead (`trusted`, ``checksumTrust()``) is not hashed, so it
    /// does not count.
    static func baseVerifiedByInput(_ job: StreamingMerge.Job, trusted: [Bool], selection: (any ChunkPasses)?, spills: Bool, arena: SpillArena?) -> Bool {
        if selection != nil, spills, arena == nil { return false }
        return job.inputs.enumerated().contains { i, input in
            guard !trusted[i + 1] else { return false }
            guard case .base = input.reference else { return false }
            switch input.tensor.header.encoding {
            case .xor, .integerDelta, .integerDeltaByExponent: return true
            case .whole, .lowRank: return false
            }
        }
    }
}
