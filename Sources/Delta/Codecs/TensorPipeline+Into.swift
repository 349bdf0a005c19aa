import Foundation
import Synchronization

extension TensorPipeline {
    /// One tensor to decode straight into memory the caller owns.
    public struct DecodeTarget: Sendable {
        public var tensor: EncodedTensor
        /// Where the decoded bytes go: exactly `tensor.header.byteCount` bytes.
        public var destination: UnsafeMutableRawBufferPointer {
            get { destinationBytes.value }
            set { destinationBytes = UnsafeSendable(newValue) }
        }
        /// Written by the workers at disjoint chunk ranges while the caller waits; read (as a
        /// reference, or to hash) only after the chunk is marked decoded.
        private var destinationBytes: UnsafeSendable<UnsafeMutableRawBufferPointer>
        /// The identity the bytes must hash to.
        public var expected: Digest
        public var identity: Identity
        /// The delta reference, for delta encodings: the destination of an earlier target of the
        /// same call (its chunks are read as soon as they are decoded), bytes the caller holds, or
        /// a source that decodes its chunks.
        public var reference: Reference?
        /// Called once per chunk, on a worker thread, with the chunk's byte range, after the chunk is
        /// decoded into `destination` and before the call returns (e.g. to widen it to Float32).
        public var didDecode: (@Sendable (Range<Int>) -> Void)?

        public enum Reference: Sendable {
            case target(Int)
            /// Bytes the caller holds, only read while the call runs.
            case bytes(UnsafeSendable<UnsafeRawBufferPointer>)
            case chunks(ChunkSource)
        }

        public init(tensor: EncodedTensor, destination: UnsafeMutableRawBufferPointer, expected: Digest, identity: Identity = .tensor,
                    reference: Reference?, didDecode: (@Sendable (Range<Int>) -> Void)? = nil) {
            self.tensor = tensor
            self.destinationBytes = UnsafeSendable(destination)
            self.expected = expected
            self.identity = identity
            self.reference = reference
            self.didDecode = didDecode
        }
    }

    /// Decodes several tensors at once, on every core, straight into their destinations, and verifies
    /// every one's identity.
    ///
    /// Work items are the targets' chunks, in the order given (a target's reference target comes
    /// first, so its chunks are taken first and a chunk that needs one never waits for long). Each
    /// target is hashed in order by whichever worker decoded its next chunk, while the chunk is still
    /// in cache; the stored bytes of a mapped object are dropped from memory as they are decoded.
    /// Memory: the destinations, and two chunks of scratch per worker.
    ///
    /// - Throws: ``DeltaError/corruptData(object:problem:)`` when a chunk does not decode or a target
    ///   hashes to something other than its `expected` identity. Destinations then hold garbage.
    public static func decode(into targets: [DecodeTarget]) throws {
        for (i, t) in targets.enumerated() {
            precondition(t.destination.count == t.tensor.header.byteCount, "a destination holds the whole tensor")
            if case let .target(r)? = t.reference {
                precondition(r < i, "a reference target comes earlier")
                precondition(targets[r].tensor.header.chunkByteCount == t.tensor.header.chunkByteCount || !t.tensor.header.encoding.needsReference,
                             "delta and reference share their chunk size")
            }
        }
        let runs = targets.map { DecodeRun(target: $0) }
        var items: [(target: Int, chunk: Int)] = []
        for (i, t) in targets.enumerated() {
            for c in 0..<t.tensor.header.chunkCount { items.append((i, c)) }
        }
        let signal = NSCondition()
        let failure = Mutex<(any Error)?>(nil)
        func failed() -> Bool { failure.withLock { $0 != nil } }
        try Parallel.forEach(items.count) { item, _ in
            let (t, c) = items[item]
            let run = runs[t]
            let target = run.target
            if failed() { return }
            do {
                let header = target.tensor.header
                let range = header.chunkRange(c)
                var referenceChunk: UnsafeRawBufferPointer?
                var decodesReference = false
                if header.encoding.needsReference {
                    switch target.reference {
                    case let .target(r)?:
                        // Wait for the reference's chunk (taken earlier by another worker).
                        signal.lock()
                        while !runs[r].isDecoded(c), !failed() { signal.wait() }
                        signal.unlock()
                        if failed() { return }
                        referenceChunk = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(runs[r].target.destination)[range])
                    case let .bytes(held)?:
                        let bytes = held.value
                        guard bytes.count == header.byteCount else {
                            throw DeltaError.corruptData(object: target.tensor.name, problem: "reference holds \(bytes.count) bytes, expected \(header.byteCount)")
                        }
                        referenceChunk = UnsafeRawBufferPointer(rebasing: bytes[range])
                    case .chunks?:
                        decodesReference = true
                    case nil:
                        throw DeltaError.corruptData(object: target.tensor.name, problem: "delta chunk decoded without its reference")
                    }
                }
                // Sized by the tensor's chunk size, not this chunk's, so that the pool hands the same buffers back.
                let k = TensorEncoding.scratchFactor
                let size = min(header.chunkByteCount, max(header.byteCount, 1))
                try withScratch((decodesReference ? k + 1 : k) * size) { scratch in
                    if decodesReference, case let .chunks(source)? = target.reference {
                        let buffer = UnsafeMutableRawBufferPointer(rebasing: scratch[(k * size)..<(k * size + range.count)])
                        try source(c, buffer)
                        referenceChunk = UnsafeRawBufferPointer(buffer)
                    }
                    try target.tensor.decodeChunk(c, into: UnsafeMutableRawBufferPointer(rebasing: target.destination[range]),
                                                  referenceChunk: referenceChunk, scratch: scratch)
                }
                target.tensor.releaseStoredBytes(ofChunk: c)
                target.didDecode?(range)
                signal.lock()
                run.markDecoded(c)
                signal.broadcast()
                signal.unlock()
                run.hashReadyChunks()
            } catch {
                failure.withLock { if $0 == nil { $0 = error } }
                signal.lock()
                signal.broadcast()
                signal.unlock()
            }
        }
        if let error = failure.withLock({ $0 }) { throw error }
        for run in runs {
            let digest = run.finish()
            if digest != run.target.expected {
                throw DeltaError.corruptData(object: run.target.tensor.name,
                                             problem: "decoded bytes hash to \(digest.short), expected \(run.target.expected.short)")
            }
        }
    }
}

/// One target's progress: which chunks are decoded, and its identity hash, advanced in chunk
/// order by one worker at a time.
private final class DecodeRun: Sendable {
    let target: TensorPipeline.DecodeTarget
    /// Used by one worker at a time: the one that set `hashing` under the lock.
    private let hasher: UnsafeSendable<SHA256>
    private let chunkCount: Int
    /// Decoded chunks; how many are hashed; whether a worker is hashing (guarded by `state`).
    private let state: Mutex<(decoded: [Bool], hashed: Int, hashing: Bool)>

    init(target: TensorPipeline.DecodeTarget) {
        self.target = target
        let header = target.tensor.header
        hasher = UnsafeSendable(target.identity.hasher(dtype: header.dtype, shape: header.shape, byteCount: header.byteCount))
        chunkCount = header.chunkCount
        state = Mutex((decoded: [Bool](repeating: false, count: chunkCount), hashed: 0, hashing: false))
    }

    func isDecoded(_ chunk: Int) -> Bool { state.withLock { $0.decoded[chunk] } }

    func markDecoded(_ chunk: Int) { state.withLock { $0.decoded[chunk] = true } }

    /// Hashes the decoded chunks that follow the hashed ones, unless another worker is at it (it
    /// then sees them too: it checks again before it stops).
    func hashReadyChunks() {
        while true {
            let next: Range<Int>? = state.withLock { s in
                guard !s.hashing else { return nil }
                var end = s.hashed
                while end < chunkCount, s.decoded[end] { end += 1 }
                guard end > s.hashed else { return nil }
                s.hashing = true
                return s.hashed..<end
            }
            guard let next else { return }
            let header = target.tensor.header
            let bytes = header.chunkRange(next.lowerBound).lowerBound..<header.chunkRange(next.upperBound - 1).upperBound
            hasher.value.update(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(target.destination)[bytes]))
            state.withLock { s in
                s.hashed = next.upperBound
                s.hashing = false
            }
        }
    }

    /// The identity of the decoded bytes (every chunk hashed).
    func finish() -> Digest {
        hashReadyChunks()
        precondition(state.withLock { $0.hashed == chunkCount }, "every chunk is decoded before the run finishes")
        return hasher.value.finalize()
    }
}
