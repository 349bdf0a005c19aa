import Delta
import Merge

extension JobRun {
    /// Whether input `i` (0: the base, then each input) is hashed and checked against its id.
    func verifiesDigest(of i: Int) -> Bool {
        if JobRun.trustsChecksum(job, i, selection: selection, spills: spills, arena: arena) { return false }
        return i > 0 || !skipsBaseDigest
    }

    /// Whether input `i` of `job` is verified by its file's checksum, checked when the merge
    /// opened it, instead of by a hash of its decoded bytes (docs/format.md §5.7). Not for tensors
    /// whose passes keep their decoded inputs in a spill file: what is read back from it is checked
    /// only as ``baseVerifiedByInput(_:selection:spills:arena:)`` says, as before.
    static func trustsChecksum(_ job: StreamingMerge.Job, _ i: Int, selection: (any ChunkPasses)?, spills: Bool, arena: SpillArena?) -> Bool {
        guard i < job.checksummed.count, job.checksummed[i] else { return false }
        return !(selection != nil && spills && arena == nil)
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
    /// An input verified by its checksum instead (``trustsChecksum(_:_:selection:spills:arena:)``) is
    /// not hashed, so it does not count; a base verified so needs no hash either.
    static func baseVerifiedByInput(_ job: StreamingMerge.Job, selection: (any ChunkPasses)?, spills: Bool, arena: SpillArena?) -> Bool {
        if selection != nil, spills, arena == nil { return false }
        return job.inputs.enumerated().contains { i, input in
            guard !trustsChecksum(job, i + 1, selection: selection, spills: spills, arena: arena) else { return false }
            guard case .base = input.reference else { return false }
            switch input.tensor.header.encoding {
            case .xor, .integerDelta, .integerDeltaByExponent: return true
            case .whole, .lowRank: return false
            }
        }
    }
}
