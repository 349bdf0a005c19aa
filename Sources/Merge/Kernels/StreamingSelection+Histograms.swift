import Delta

extension ChunkPasses {
    /// Passes that read Float32 only.
    public func observe(_ elements: Range<Int>, bf16Base base: UnsafePointer<UInt16>, experts: [UnsafePointer<UInt16>]) -> Bool { false }
}

// The histogram passes (top bits, with a one-pass selection's kept bits; then low bits), one body
// for Float32 inputs and for bf16 inputs read where they lie: a bf16 value's Float32 is its bits
// shifted up 16, so each magnitude is the one the Float32 views give, without writing and reading
// back a Float32 copy of every input per chunk (a fifth of the passes' time).
extension StreamingSelection {
    /// The top-bits (and, for a one-pass selection, the kept bits) and low-bits passes, from bf16
    /// inputs; false for a tie pass, which takes the Float32 views.
    public func observe(_ elements: Range<Int>, bf16Base base: UnsafePointer<UInt16>, experts: [UnsafePointer<UInt16>]) -> Bool {
        precondition(elements.lowerBound % Kernels.block == 0, "ranges start at a block")
        let (pass, bucket, found, keys) = state.withLock { s in
            if keyed, s.pass == .high, s.keys.isEmpty { s.keys = allocateKeys(s.found) }
            return (s.pass, s.bucket, s.found, s.keys.map { UnsafeSendable($0) })
        }
        switch pass {
        case .done: return true
        case .ties: return false
        case .high, .low: break
        }
        histogramPass(pass, elements, bucket: bucket, found: found, keys: keys, base: base, experts: experts) { x, b in
            DeltaMask.magnitudeBits(Float(bitPattern: UInt32(x) << 16), Float(bitPattern: UInt32(b) << 16))
        }
        return true
    }

    /// One chunk of a histogram pass (`.high` or `.low`) over every expert still selecting, with
    /// `magnitude` giving an element's magnitude bits; the chunk's histograms are added to the pass's.
    @inline(__always)
    func histogramPass<T>(_ pass: Pass, _ elements: Range<Int>, bucket: [(high: UInt32, remaining: Int, greater: Int)?],
                          found: [Found?], keys: [UnsafeSendable<UnsafeMutablePointer<UInt32>?>],
                          base: UnsafePointer<T>, experts: [UnsafePointer<T>], magnitude: (T, T) -> UInt32) {
        let count = elements.count
        var local: [(Int, [UInt32])] = []
        for (i, x) in experts.enumerated() {
            let within: UInt32?
            if pass == .high {
                guard ks[i] != nil, found[i] == nil else { continue }
                within = nil
            } else {
                guard let b = bucket[i], found[i] == nil else { continue }
                within = b.high
            }
            var h = [UInt32](repeating: 0, count: 1 << 16)
            h.withUnsafeMutableBufferPointer { hp in
                let h = hp.baseAddress!
                if let within {
                    for j in 0..<count {
                        let bits = magnitude(x[j], base[j])
                        if bits >> 16 == within { h[Int(bits & 0xFFFF)] &+= 1 }
                    }
                } else if let out = keys.isEmpty ? nil : keys[i].value.map({ $0 + elements.lowerBound }) {
                    // One pass: the bits are kept for the low-bits histogram and the replay.
                    for j in 0..<count {
                        let bits = magnitude(x[j], base[j])
                        out[j] = bits
                        h[Int(bits >> 16)] &+= 1
                    }
                } else {
                    for j in 0..<count { h[Int(magnitude(x[j], base[j]) >> 16)] &+= 1 }
                }
            }
            local.append((i, h))
        }
        add(local, pass: pass)
    }
}
