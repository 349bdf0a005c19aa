import Delta
import Testing

@Suite struct DigestTests {
    static let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"

    @Test func sha256TestVectors() {
        #expect(SHA256.hash(Array("abc".utf8)).hex == Self.abc)
        #expect(SHA256.hash([]).hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        // FIPS 180-2, two-block message.
        #expect(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)).hex
            == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test func incrementalHashingEqualsOneShot() {
        let data = randomBytes(10_000, seed: 3)
        let h = SHA256()
        h.update(Array(data[0..<1]))
        h.update([])
        h.update(Array(data[1..<4097]))
        h.update(Array(data[4097...]))
        #expect(h.finalize() == SHA256.hash(data))
        let text = SHA256()
        text.update("a")
        text.update("bc")
        #expect(text.finalize().hex == Self.abc)
    }

    @Test func hexRoundTrip() throws {
        let digest = try #require(Digest(hex: Self.abc))
        #expect(digest.hex == Self.abc)
        #expect(digest.description == Self.abc)
        #expect(digest.short == "ba7816bf8f01")
        #expect(Digest(hex: Self.abc.uppercased()) == digest)
        #expect(Digest(bytes: digest.bytes) == digest)
        #expect(digest.bytes.first == 0xBA && digest.bytes.last == 0xAD)
        #expect(digest.words.0 == 0xBA78_16BF_8F01_CFEA)
    }

    @Test(arguments: ["", "abc", String(Self.abc.dropLast()), Self.abc + "0", String(Self.abc.dropLast()) + "g", String(Self.abc.dropLast()) + " "])
    func invalidHexIsRejected(text: String) {
        #expect(Digest(hex: text) == nil)
    }

    @Test func bytesMustBeThirtyTwo() {
        #expect(Digest(bytes: [UInt8](repeating: 1, count: 31)) == nil)
        #expect(Digest(bytes: [UInt8](repeating: 1, count: 33)) == nil)
        #expect(Digest(bytes: [UInt8](repeating: 0, count: 32)) == .zero)
    }

    @Test func orderingAndHashingFollowTheBytes() throws {
        let a = try #require(Digest(hex: String(repeating: "0", count: 63) + "1"))
        let b = try #require(Digest(hex: "1" + String(repeating: "0", count: 63)))
        let c = try #require(Digest(hex: String(repeating: "0", count: 48) + "1" + String(repeating: "0", count: 15)))
        #expect(Digest.zero < a)
        #expect(a < c)
        #expect(c < b)
        #expect(Set([a, b, c, a]).count == 3)
    }

    @Test func tensorHasherPrefix() {
        let expected: [UInt8] = Array("mrepo-tensor".utf8) + [0] + Array("F32".utf8) + [0] + Array("2,3".utf8) + [0]
        #expect(TensorHasher.prefix(dtype: .f32, shape: [2, 3]) == expected)
        #expect(TensorHasher.prefix(dtype: .bf16, shape: []) == Array("mrepo-tensor".utf8) + [0] + Array("BF16".utf8) + [0, 0])
        #expect(TensorHasher.prefix(dtype: .f8e4m3, shape: [0]) == Array("mrepo-tensor".utf8) + [0] + Array("F8_E4M3".utf8) + [0] + Array("0".utf8) + [0])
    }

    @Test func tensorIdentityCoversDTypeShapeAndBytes() {
        let bytes = randomBytes(24, seed: 5)
        let id = tensorDigest(.f32, [2, 3], bytes)
        #expect(id == SHA256.hash(TensorHasher.prefix(dtype: .f32, shape: [2, 3]) + bytes))
        #expect(id != tensorDigest(.f32, [3, 2], bytes))
        #expect(id != tensorDigest(.i32, [2, 3], bytes))
        #expect(id != tensorDigest(.f32, [6], bytes))
        var changed = bytes
        changed[23] ^= 1
        #expect(id != tensorDigest(.f32, [2, 3], changed))
        // Streaming gives the same identity.
        let h = TensorHasher(dtype: .f32, shape: [2, 3])
        bytes.withUnsafeBytes { raw in
            h.update(UnsafeRawBufferPointer(rebasing: raw[0..<10]))
            h.update(UnsafeRawBufferPointer(rebasing: raw[10...]))
        }
        #expect(h.finalize() == id)
    }

    @Test func blobIdentity() {
        let bytes = Array("hello".utf8)
        #expect(BlobHasher.prefix(byteCount: 5) == Array("mrepo-blob".utf8) + [0, UInt8(ascii: "5"), 0])
        let id = bytes.withUnsafeBytes { BlobHasher.hash($0) }
        #expect(id == SHA256.hash(BlobHasher.prefix(byteCount: 5) + bytes))
        // A blob and a U8 tensor with the same bytes are different objects.
        #expect(id != tensorDigest(.u8, [5], bytes))
        let empty = [UInt8]().withUnsafeBytes { BlobHasher.hash($0) }
        #expect(empty == SHA256.hash(Array("mrepo-blob".utf8) + [0, UInt8(ascii: "0"), 0]))
    }
}
