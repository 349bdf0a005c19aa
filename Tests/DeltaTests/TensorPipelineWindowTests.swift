import Delta
import Testing

@Suite struct TensorPipelineWindowTests {
    /// Decoding one chunk at a time (as transfers verify objects) gives the bytes and the identity
    /// of the default window, across many chunks and windows, with and without a delta reference.
    @Test(arguments: [1, 2, 3, 16])
    func anyWindowDecodesTheSameBytes(window: Int) throws {
        let options = CodecOptions(chunkByteCount: 64, level: 1)
        let source = testTensor(.f32, elementCount: 1001, seed: 5)
        let reference = nearbyReference(.f32, source, seed: 6)
        for (encoding, ref) in [(TensorEncoding.whole, nil), (.integerDeltaByExponent, reference)] as [(TensorEncoding, [UInt8]?)] {
            let (encoded, result) = try encodeTensor(source, dtype: .f32, shape: [1001], encoding: encoding, reference: ref, options: options)
            let owned = OwnedBytes(encoded)
            let tensor = try EncodedTensor(bytes: owned.bytes, owner: owned, name: "t")
            #expect(tensor.header.chunkCount > 16)
            let chunks = ref.map { memoryChunks($0, chunkByteCount: 64) }
            var out: [UInt8] = []
            let digest = try TensorPipeline.decode(tensor, reference: chunks, expected: result.digest, window: window) { out.append(contentsOf: $0) }
            #expect(digest == result.digest)
            #expect(out == source)
        }
    }

    /// A window of one still checks the identity: bytes that hash to another id are refused.
    @Test func oneChunkWindowStillVerifies() throws {
        let options = CodecOptions(chunkByteCount: 64, level: 1)
        let source = testTensor(.f32, elementCount: 300, seed: 9)
        let (encoded, result) = try encodeTensor(source, dtype: .f32, shape: [300], encoding: .whole, reference: nil, options: options)
        let owned = OwnedBytes(encoded)
        let tensor = try EncodedTensor(bytes: owned.bytes, owner: owned, name: "t")
        let wrong = tensorDigest(.f32, [300], testTensor(.f32, elementCount: 300, seed: 10))
        #expect(throws: DeltaError.corruptData(object: "t", problem: "decoded bytes hash to \(result.digest.short), expected \(wrong.short)")) {
            try TensorPipeline.decode(tensor, reference: nil, expected: wrong, window: 1) { _ in }
        }
    }
}
