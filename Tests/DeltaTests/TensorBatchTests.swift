import Delta
import Testing

/// ``TensorBatch`` codes many tensors as one run of chunks; what it writes must be exactly what
/// ``TensorPipeline`` writes tensor by tensor (the stored bytes are the format), and what it decodes
/// must be the tensors, in order.
@Suite struct TensorBatchTests {
    struct Item {
        var dtype: DType
        var shape: Shape
        var source: [UInt8]
        var reference: [UInt8]?
    }

    /// Tensors of one chunk, of several (the last one short), empty ones, with and without a
    /// reference, integer and float; more of them than one window holds (``WindowPlan``).
    func items() -> [Item] {
        var out: [Item] = []
        let big = testTensor(.f32, elementCount: 5000, seed: 1)
        out.append(Item(dtype: .f32, shape: [5000], source: big, reference: nearbyReference(.f32, big, seed: 2)))
        out.append(Item(dtype: .bf16, shape: [0], source: [], reference: nil))
        for k in 0..<700 {
            let small = testTensor(.bf16, elementCount: 17 + k % 50, seed: UInt64(10 + k))
            out.append(Item(dtype: .bf16, shape: [17 + k % 50], source: small, reference: k % 3 == 0 ? nearbyReference(.bf16, small, seed: UInt64(k)) : nil))
        }
        let ints = testTensor(.i32, elementCount: 3000, seed: 7)
        out.append(Item(dtype: .i32, shape: [30, 100], source: ints, reference: nearbyReference(.i32, ints, seed: 8)))
        out.append(Item(dtype: .f32, shape: [3000], source: testTensor(.f32, elementCount: 3000, seed: 9), reference: nil))
        return out
    }

    @Test func batchEncodingWritesWhatThePipelineWrites() throws {
        let options = CodecOptions(chunkByteCount: 4096, level: 1)
        let all = items()
        let owned = all.map { OwnedBytes($0.source) }
        let jobs = all.enumerated().map { i, item in
            TensorEncodeJob(dtype: item.dtype, shape: item.shape, source: owned[i].bytes, encoding: TensorEncoding.preferredDelta(for: item.dtype),
                            reference: item.reference.map { TensorPipeline.Reference(digest: tensorDigest(item.dtype, item.shape, $0),
                                                                                     chunks: memoryChunks($0, chunkByteCount: options.chunkByteCount)) },
                            options: options)
        }
        var batched = [[UInt8]](repeating: [], count: all.count)
        var finished: [Int] = []
        var processed = [Int](repeating: 0, count: all.count)
        try TensorBatch.encode(jobs, sink: { i, bytes in batched[i].append(contentsOf: bytes) },
                               finished: { i, count in
                                   finished.append(i)
                                   #expect(count == batched[i].count)
                               }, didProcess: { i, range in processed[i] += range.count })
        #expect(finished == Array(all.indices))
        #expect(processed == all.map(\.source.count))
        for (i, item) in all.enumerated() {
            let (expected, _) = try encodeTensor(item.source, dtype: item.dtype, shape: item.shape,
                                                 encoding: TensorEncoding.preferredDelta(for: item.dtype), reference: item.reference, options: options)
            #expect(batched[i] == expected, "tensor \(i)")
        }

        // And back, verifying each tensor's identity.
        let encoded = batched.map { OwnedBytes($0) }
        let decodeJobs = try all.enumerated().map { i, item in
            TensorDecodeJob(tensor: try EncodedTensor(bytes: encoded[i].bytes, owner: encoded[i], name: "tensor \(i)"),
                            reference: item.reference.map { memoryChunks($0, chunkByteCount: options.chunkByteCount) },
                            expected: (tensorDigest(item.dtype, item.shape, item.source), .tensor))
        }
        var decoded = [[UInt8]](repeating: [], count: all.count)
        try TensorBatch.decode(decodeJobs) { i, bytes in decoded[i].append(contentsOf: bytes) }
        #expect(decoded == all.map(\.source))
    }

    @Test func batchDecodingNamesATensorThatHashesToSomethingElse() throws {
        let options = CodecOptions(chunkByteCount: 4096, level: 1)
        let source = testTensor(.f32, elementCount: 3000, seed: 3)
        let (bytes, _) = try encodeTensor(source, dtype: .f32, shape: [3000], encoding: .whole, reference: nil, options: options)
        let owned = OwnedBytes(bytes)
        let good = TensorDecodeJob(tensor: try EncodedTensor(bytes: owned.bytes, owner: owned, name: "good"), reference: nil,
                                   expected: (tensorDigest(.f32, [3000], source), .tensor))
        // The same bytes, claimed to be another shape's tensor.
        let bad = TensorDecodeJob(tensor: try EncodedTensor(bytes: owned.bytes, owner: owned, name: "bad"), reference: nil,
                                  expected: (tensorDigest(.f32, [1, 3000], source), .tensor))
        var sunk = 0
        let error = try #require(throws: DeltaError.self) {
            try TensorBatch.decode([good, bad]) { _, bytes in sunk += bytes.count }
        }
        guard case let .corruptData(object, _) = error else {
            Issue.record("unexpected \(error)")
            return
        }
        #expect(object == "bad")
    }

    /// The encoded `items()` as decode jobs (every tensor verified), and what they decode to.
    func encodedItems(options: CodecOptions) throws -> (jobs: [TensorDecodeJob], sources: [[UInt8]]) {
        let all = items()
        let encoded = try all.map { item in
            OwnedBytes(try encodeTensor(item.source, dtype: item.dtype, shape: item.shape, encoding: TensorEncoding.preferredDelta(for: item.dtype),
                                        reference: item.reference, options: options).0)
        }
        let jobs = try all.enumerated().map { i, item in
            TensorDecodeJob(tensor: try EncodedTensor(bytes: encoded[i].bytes, owner: encoded[i], name: "tensor \(i)"),
                            reference: item.reference.map { memoryChunks($0, chunkByteCount: options.chunkByteCount) },
                            expected: (tensorDigest(item.dtype, item.shape, item.source), .tensor))
        }
        return (jobs, all.map(\.source))
    }

    /// Decoder threads run ahead of the sink through a ring of a few chunks (here 4 KiB ones, so
    /// the ring wraps hundreds of times): whatever their number, the sink and the consumer beside
    /// it get every tensor's bytes, in order, exactly as one thread decoding alone gives them.
    @Test(arguments: [1, 2, 3, 6])
    func streamedDecodingGivesWhatOneThreadGives(decoders: Int) throws {
        let (jobs, sources) = try encodedItems(options: CodecOptions(chunkByteCount: 4096, level: 1))
        var decoded = [[UInt8]](repeating: [], count: jobs.count)
        let beside = OrderedBytes()
        try TensorBatch.decode(jobs, decoders: decoders, alongside: { beside.append($0) }) { i, bytes in
            decoded[i].append(contentsOf: bytes)
        }
        #expect(decoded == sources)
        #expect(beside.bytes == Array(sources.joined()))
    }

    /// A sink that fails stops the decoders and the other consumers, and its error comes back.
    @Test func aFailingSinkStopsTheStream() throws {
        struct Stop: Error {}
        let (jobs, _) = try encodedItems(options: CodecOptions(chunkByteCount: 4096, level: 1))
        var calls = 0
        let decode = {
            try TensorBatch.decode(jobs, decoders: 2, alongside: { _ in }) { _, _ in
                calls += 1
                if calls == 40 { throw Stop() }
            }
        }
        #expect(throws: Stop.self) { try decode() }
        #expect(calls == 40)
    }
}

/// Bytes appended from one thread at a time (the consumer beside a sink).
final class OrderedBytes {
    var bytes: [UInt8] = []
    func append(_ b: UnsafeRawBufferPointer) { bytes.append(contentsOf: b) }
}
