import Delta

extension ChunkPasses {
    /// Passes that read Float32 only.
    public func observe(_ elements: Range<Int>, bf16Base base: UnsafePointer<UInt16>, experts: [UnsafePointer<UInt16>]) -> Bool { false }
}

// The histogram passes of a bf16 tensor read its decoded bf16 bits where they lie: a bf16 value's
// Float32 is its bits shifted up 16, so each magnitude is the one the Float32 views give, without
// writing and reading back a Float32 copy of every input per chunk (a fifth of the passes' time).
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
        @inline(__always) func bits(_ x: UInt16, _ b: UInt16) -> UInt32 {
            DeltaMask.magnitudeBits(Float(bitPattern: UInt32(x) << 16), Float(bitPattern: UInt32(b) << 16))
        }
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
                        let key = bits(x[j], base[j])
                        if key >> 16 == within { h[Int(key & 0xFFFF)] &+= 1 }
                    }
                } else if let out = keys.isEmpty ? nil : keys[i].value.map({ $0 + elements.lowerBound }) {
                    for j in 0..<count {
                        let key = bits(x[j], base[j])
                        out[j] = key
                        h[Int(key >> 16)] &+= 1
                    }
                } else {
                    for j in 0..<count { h[Int(bits(x[j], base[j]) >> 16)] &+= 1 }
                }
            }
            local.append((i, h))
        }
        add(local, pass: pass)
        return true
    }
}
