import Delta
import Dispatch
import Foundation
import Synchronization

/// The SHA-256 of a prepared file (``PreparedCheckout``) taken while the merge writes it: a thread
/// of its own hashes the file's bytes in order, as far as every byte before them has been written.
///
/// Why: the merged tensors arrive roughly in file order (the merge's queue follows the template's
/// tensor order), so most of the file can be hashed while the merge still computes, instead of in one
/// pass after it, which the merge's record had to wait for (about 50 ms for a 90 MB file).
///
/// Every write is reported (``wrote(_:)``), including the header and the tensors decoded before the
/// merge. A write over bytes already reported or already hashed makes the digest unknown (nil): the
/// caller then hashes the finished file, as before. Once nothing more will be written
/// (``complete()``), the rest of the file is hashed as it is; ``cancel()`` gives up (nil).
///
/// A digest started `held` hashes nothing until ``release()``: a merge done again writes a file
/// whose SHA-256 the history already records, and then never needs it (``PreparedCheckout``). Held
/// and complete, the thread runs `afterwards` (the file's sync) at once, without hashing.
final class FrontierDigest: Sendable {
    private struct State {
        /// Bytes hashed so far (a prefix of the file).
        var hashed = 0
        /// Written ranges beyond the hashed prefix, disjoint and sorted, adjacent ones joined.
        var written: [Range<Int>] = []
        /// No more writes: hash to the end.
        var complete = false
        var cancelled = false
        /// Nothing is hashed until released.
        var held = false
    }

    /// What the writers and the hashing thread share.
    private final class Shared: Sendable {
        let state: Mutex<State>
        let wake = DispatchSemaphore(value: 0)
        /// Whether `afterwards` ran (it runs once: held and complete, or after the digest).
        private let ranAfterwards = Mutex(false)

        init(held: Bool) {
            var s = State()
            s.held = held
            state = Mutex(s)
        }

        func runAfterwards(_ afterwards: (@Sendable () -> Void)?) {
            guard let afterwards else { return }
            let first = ranAfterwards.withLock { ran -> Bool in
                defer { ran = true }
                return !ran
            }
            if first { afterwards() }
        }
    }

    private let shared: Shared
    let byteCount: Int
    /// The digest (nil if unknown), computed on the thread.
    let value: BackgroundValue<Digest?>

    /// Starts the thread hashing the file at `path` (already its final size), or waiting to, when
    /// `held`; `afterwards` runs on that thread once the digest is known, or once the file is
    /// complete while held (the file's sync).
    init(path: String, byteCount: Int, held: Bool = false, afterwards: (@Sendable () -> Void)? = nil) {
        self.byteCount = byteCount
        let shared = Shared(held: held)
        self.shared = shared
        value = BackgroundValue({ FrontierDigest.hash(path: path, byteCount: byteCount, shared: shared, afterwards: afterwards) },
                                afterwards: { shared.runAfterwards(afterwards) })
    }

    /// Lets a held digest hash (what is written so far, then as it is written).
    func release() {
        let released = shared.state.withLock { s -> Bool in
            defer { s.held = false }
            return s.held
        }
        if released { shared.wake.signal() }
    }

    /// Whether the digest is still held: nothing of the file was hashed.
    var isHeld: Bool { shared.state.withLock { $0.held } }

    /// Whether the file was written as reported so far: every byte once, nothing after it was
    /// declared complete, no cancel.
    var isIntact: Bool { shared.state.withLock { !$0.cancelled } }

    /// Reports that `range` of the file was written (and is readable by another descriptor).
    func wrote(_ range: Range<Int>) {
        guard !range.isEmpty else { return }
        shared.state.withLock { s in
            guard !s.cancelled, !s.complete else {
                // A write after the file was declared complete: its digest may be stale.
                s.cancelled = true
                return
            }
            if range.lowerBound < s.hashed || s.written.contains(where: { $0.overlaps(range) }) {
                s.cancelled = true
                return
            }
            var r = range
            var i = s.written.firstIndex { $0.lowerBound > r.lowerBound } ?? s.written.count
            if i > 0, s.written[i - 1].upperBound == r.lowerBound {
                r = s.written[i - 1].lowerBound..<r.upperBound
                s.written.remove(at: i - 1)
                i -= 1
            }
            if i < s.written.count, s.written[i].lowerBound == r.upperBound {
                r = r.lowerBound..<s.written[i].upperBound
                s.written.remove(at: i)
            }
            s.written.insert(r, at: i)
        }
        shared.wake.signal()
    }

    /// Nothing more will be written: the rest of the file is hashed as it is.
    func complete() {
        shared.state.withLock { $0.complete = true }
        shared.wake.signal()
    }

    /// Gives up: the digest is nil.
    func cancel() {
        shared.state.withLock { $0.cancelled = true }
        shared.wake.signal()
    }

    private static func hash(path: String, byteCount: Int, shared: Shared, afterwards: (@Sendable () -> Void)?) -> Digest? {
        let wake = shared.wake
        guard let map = try? MappedFile(path: path), map.count == byteCount else {
            // Nothing to hash from: every later write is still reported, and ignored.
            shared.state.withLock { $0.cancelled = true }
            return nil
        }
        let sha = SHA256()
        let step = 4 << 20
        while true {
            // The end of the bytes that can be hashed now, or nil when none can yet.
            enum Next { case hash(Range<Int>), wait, idle, stop, done }
            let next = shared.state.withLock { s -> Next in
                if s.cancelled { return .stop }
                if s.held { return s.complete ? .idle : .wait }
                if s.hashed == byteCount { return s.complete ? .done : .wait }
                let end: Int
                if s.complete {
                    end = byteCount
                } else if let first = s.written.first, first.lowerBound == s.hashed {
                    end = first.upperBound
                } else {
                    return .wait
                }
                return .hash(s.hashed..<min(end, s.hashed + step))
            }
            switch next {
            case .stop:
                return nil
            case .done:
                return sha.finalize()
            case .wait:
                wake.wait()
            case .idle:
                // Complete but held: the file's sync need not wait for a digest that may never be taken.
                shared.runAfterwards(afterwards)
                wake.wait()
            case let .hash(range):
                sha.update(map.bytes(in: range))
                map.release(range)
                let stopped = shared.state.withLock { s -> Bool in
                    guard !s.cancelled else { return true }
                    s.hashed = range.upperBound
                    if let first = s.written.first, first.lowerBound < s.hashed {
                        if first.upperBound <= s.hashed { s.written.removeFirst() } else { s.written[0] = s.hashed..<first.upperBound }
                    }
                    return false
                }
                if stopped { return nil }
            }
        }
    }
}
