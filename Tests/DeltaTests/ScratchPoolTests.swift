@testable import Delta
import Testing

/// The codec's scratch pool hands back memory already touched before it maps fresh memory.
@Suite struct ScratchPoolTests {
    @Test func smallRequestsReuseALargerFreeBufferBeforeAllocating() {
        let pool = ScratchPool()
        let big = pool.take(8 << 20)
        let bigStart = big.bytes.baseAddress
        pool.give([big])
        let small = pool.take(300 << 10)
        #expect(small.bytes.baseAddress == bigStart, "the free larger buffer is reused")
        #expect(small.bytes.count >= 300 << 10)
        // Nothing is free now: a buffer of the request's own size class.
        let fresh = pool.take(300 << 10)
        #expect(fresh.bytes.count == ScratchPool.sizeClass(300 << 10))
        pool.give([small, fresh])
        // With both free, the request's own class comes first, then the larger one.
        let first = pool.take(300 << 10), second = pool.take(300 << 10)
        #expect(first.bytes.baseAddress == fresh.bytes.baseAddress)
        #expect(second.bytes.baseAddress == bigStart)
        // A request larger than every free buffer gets a new one.
        pool.give([first])
        let larger = pool.take(16 << 20)
        #expect(larger.bytes.count >= 16 << 20)
        #expect(larger.bytes.baseAddress != first.bytes.baseAddress)
        pool.give([second, larger])
    }
}
