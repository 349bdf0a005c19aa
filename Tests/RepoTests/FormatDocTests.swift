import Delta
import Foundation
import GRDB
@testable import Repo
import Testing

/// Recomputes every test vector of docs/format.md with the code, and checks that the document
/// still states them, so the format document cannot drift from the implementation.
@Suite struct FormatDocTests {
    // MARK: - The document

    /// The text of docs/format.md.
    static let document: String = {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let path = root.appendingPathComponent("docs/format.md").path
        return (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    }()

    /// The lines of the fenced code block that follows `<!-- test-vector: name -->`.
    static func block(_ name: String) throws -> [String] {
        let lines = document.components(separatedBy: "\n")
        let marker = try #require(lines.firstIndex(of: "<!-- test-vector: \(name) -->"), "docs/format.md has no test vector '\(name)'")
        let open = try #require(lines[(marker + 1)...].firstIndex { $0.hasPrefix("```") }, "test vector '\(name)' has no code block")
        let close = try #require(lines[(open + 1)...].firstIndex { $0.hasPrefix("```") }, "test vector '\(name)' is not closed")
        return Array(lines[(open + 1)..<close])
    }

    /// The bytes of a hex block: hex digits before each `#`, white space ignored.
    static func hexBlock(_ name: String) throws -> [UInt8] {
        var hex = ""
        for line in try block(name) {
            let data = line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            hex += data.filter { !$0.isWhitespace }
        }
        let digits = Array(hex.utf8)
        try #require(digits.count % 2 == 0 && digits.allSatisfy { UInt8(ascii: "0")...UInt8(ascii: "9") ~= $0 || UInt8(ascii: "a")...UInt8(ascii: "f") ~= $0 },
                     "test vector '\(name)' holds something other than pairs of lower-case hex digits")
        return stride(from: 0, to: hex.count, by: 2).map { i in
            let pair = hex[hex.index(hex.startIndex, offsetBy: i)..<hex.index(hex.startIndex, offsetBy: i + 2)]
            return UInt8(pair, radix: 16)!
        }
    }

    static func expectDocumented(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(document.contains(text), "docs/format.md does not state \(text)", sourceLocation: sourceLocation)
    }

    // MARK: - The documented values

    static let tensorValues: [Float] = [1, 2, 3, 4, 5, 6]
    static let tensorID = "69bd8b7e22d68047fe72dd50dc9676dfe04002b5462e394e0486c9bf5a180f07"
    static let deltaWords: [UInt32] = [0x3F80_0000, 0x4000_0000, 0x4040_0003, 0x4080_0001, 0x40A0_0000, 0x40BF_FFFF]
    static let deltaTensorID = "aa580d2e421b2fa2fb26ec353b052ad9510dcf9b7e2c0719697c2a5946ba0bb5"
    static let helloBlobID = "81072153948db691f39fc019068d7b4c0d7a65fba3c63d4d22a76300515fb1d6"
    static let emptyBlobID = "9d7ab43d6ac7cc87a31327c5178a0c2974191a3d8483d606ee8603361a52a5e2"
    static let headerBlobID = "5218c15c3a8ade0dbb84fd603df1922c4c65a2206d7cfa3386d0b1c049aa28f2"
    static let emptyTreeID = "c74a596208095f37db62b5463e9a14cdc82e45fbb103248f10cbdc2461edd9b7"
    static let treeID = "afc9eff75d56fe3d88485fc0089f8d8d4c1b1da818e342671ed3145998f1e8b1"
    static let rootCommitID = "ca672ccf5368f2d93f5a2d892e915cea9740d42f8282458ca60e1d26c4032b70"
    static let childCommitID = "b31c4a66760d9d139c7f4c869c3d295c06a1301510bb54c21189dc3001497006"

    static var tensorBytes: [UInt8] { tensorValues.flatMap { withUnsafeBytes(of: $0.bitPattern.littleEndian, Array.init) } }
    static var deltaBytes: [UInt8] { deltaWords.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) } }
    static let hello = Array("hello\n".utf8)

    /// The example safetensors file: one 2×3 F32 tensor `w`.
    static var safetensorsHeader: [UInt8] {
        SafetensorsHeader.encode(tensors: [(name: "w", dtype: .f32, shape: [2, 3])], metadata: nil).bytes
    }

    static func digest(_ hex: String) throws -> Digest {
        try #require(Digest(hex: hex))
    }

    /// The tree of the example: `model.safetensors` and `notes.txt`.
    static func exampleTree() throws -> Tree {
        Tree(files: [
            TreeFile(path: "notes.txt", kind: .blob, objectID: try digest(helloBlobID), byteCount: 6, executable: false),
            TreeFile(path: "model.safetensors", kind: .safetensors, objectID: try digest(headerBlobID), byteCount: 96, executable: false,
                     tensors: [TreeTensor(name: "w", dtype: .f32, shape: [2, 3], dataOffsets: 0..<24, objectID: try digest(tensorID))]),
        ])
    }

    // MARK: - §3 identities

    @Test func tensorAndBlobIDs() throws {
        let tensor = Self.tensorBytes.withUnsafeBytes { TensorHasher.hash(dtype: .f32, shape: [2, 3], bytes: $0) }
        #expect(tensor.hex == Self.tensorID)
        #expect(Self.tensorBytes == [0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x40, 0x40,
                                     0x00, 0x00, 0x80, 0x40, 0x00, 0x00, 0xA0, 0x40, 0x00, 0x00, 0xC0, 0x40])
        Self.expectDocumented("`DATA` = `0000803f 00000040 00004040 00008040 0000a040 0000c040`")
        let delta = Self.deltaBytes.withUnsafeBytes { TensorHasher.hash(dtype: .f32, shape: [2, 3], bytes: $0) }
        #expect(delta.hex == Self.deltaTensorID)
        Self.expectDocumented("words `3f800000 40000000 40400003 40800001 40a00000 40bfffff`")
        #expect(Self.hello.withUnsafeBytes { BlobHasher.hash($0) }.hex == Self.helloBlobID)
        #expect([UInt8]().withUnsafeBytes { BlobHasher.hash($0) }.hex == Self.emptyBlobID)
        // The prefixes, as §3.1 and §3.2 spell them.
        #expect(TensorHasher.prefix(dtype: .f32, shape: [2, 3]) == Array("mrepo-tensor\u{0}F32\u{0}2,3\u{0}".utf8))
        #expect(BlobHasher.prefix(byteCount: 6) == Array("mrepo-blob\u{0}6\u{0}".utf8))
        for id in [Self.tensorID, Self.deltaTensorID, Self.helloBlobID, Self.emptyBlobID] {
            Self.expectDocumented("`\(id)`")
        }
    }

    @Test func safetensorsHeaderBlob() throws {
        let json = #"{"w":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}"#
        #expect(json.utf8.count == 57)
        let expected: [UInt8] = [64, 0, 0, 0, 0, 0, 0, 0] + Array(json.utf8) + [UInt8](repeating: 0x20, count: 7)
        #expect(Self.safetensorsHeader == expected)
        #expect(Self.safetensorsHeader.withUnsafeBytes { BlobHasher.hash($0) }.hex == Self.headerBlobID)
        Self.expectDocumented("`\(json)`")
        Self.expectDocumented("`\(Self.headerBlobID)`")
    }

    @Test func treeID() throws {
        let tree = try Self.exampleTree()
        #expect(tree.id.hex == Self.treeID)
        #expect(Tree.empty.id.hex == Self.emptyTreeID)
        #expect(SHA256.hash(Array("mrepo-tree v1\n".utf8)).hex == Self.emptyTreeID)
        // The listing in the document hashes to the same id (every line ends with a line feed).
        let listing = try Self.block("tree-listing").map { $0 + "\n" }.joined()
        #expect(SHA256.hash(Array(listing.utf8)).hex == Self.treeID)
        Self.expectDocumented("`\(Self.treeID)`")
        Self.expectDocumented("`\(Self.emptyTreeID)`")
    }

    @Test func commitIDs() throws {
        let tree = try Self.digest(Self.treeID)
        let extra = JSONValue.object([JSONMember("storage", .string("lossless"))])
        let root = Commit.computeID(treeID: tree, parents: [], base: nil, author: "Doc <doc@example.com>", timestamp: 1_700_000_000,
                                    message: "base model", metrics: [Commit.Metric(name: "eval_loss", value: 1.83)], extra: extra)
        #expect(root.hex == Self.rootCommitID)
        let child = Commit.computeID(treeID: tree, parents: [root], base: root, author: "Doc <doc@example.com>", timestamp: 1_700_000_060.5,
                                     message: "math fine-tune\n\nLonger description.", metrics: [], extra: extra)
        #expect(child.hex == Self.childCommitID)
        // The texts in the document hash to the same ids (no line feed after the message).
        #expect(SHA256.hash(Array(try Self.block("commit-root").joined(separator: "\n").utf8)).hex == Self.rootCommitID)
        #expect(SHA256.hash(Array(try Self.block("commit-child").joined(separator: "\n").utf8)).hex == Self.childCommitID)
        Self.expectDocumented("`\(Self.rootCommitID)`")
        Self.expectDocumented("`\(Self.childCommitID)`")
    }

    @Test func jsonSpelling() {
        let cases: [(Double, String)] = [(1.83, "1.83"), (2.0, "2"), (-0.0, "0"), (0.0001, "0.0001"), (0.00001, "1e-05"),
                                         (1e20, "1e+20"), (1e15, "1000000000000000.0"), (0.1 + 0.2, "0.30000000000000004")]
        for (value, text) in cases {
            #expect(JSONValue.double(value).serialized() == text)
            Self.expectDocumented("| `\(text)` |")
        }
        #expect(JSONValue.string("a\"b\\c\nd\re\tf\u{8}g/\u{7F}é").serialized() == #""a\"b\\c\nd\re\tf\u0008g/"# + "\u{7F}é\"")
    }

    // MARK: - §4 binary structures

    /// Stores the two example tensors in a fresh object store and returns the bytes of both files.
    func storeExamples() throws -> (whole: [UInt8], delta: [UInt8]) {
        try withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir + "/objects", withIntermediateDirectories: true)
            let store = ObjectStore(root: dir + "/objects")
            let batch = store.makeBatch()
            let whole = try Self.tensorBytes.withUnsafeBytes { raw in
                try store.write(kind: .tensor, dtype: .f32, shape: [2, 3], source: raw, reference: nil, options: .default, batch: batch)
            }
            try batch.finish()
            let reference = (whole.info, try store.header(of: whole.info.id))
            let delta = try Self.deltaBytes.withUnsafeBytes { raw in
                try store.write(kind: .tensor, dtype: .f32, shape: [2, 3], source: raw, reference: reference, options: .default, batch: batch)
            }
            try batch.finish()
            #expect(whole.info.id.hex == Self.tensorID)
            #expect(delta.info.id.hex == Self.deltaTensorID)
            #expect(delta.info.encoding == .integerDeltaByExponent && delta.info.reference == whole.info.id && delta.info.depth == 1)
            #expect(try store.read(delta.info.id) == Self.deltaBytes)
            return (try readFile(store.path(for: whole.info.id)), try readFile(store.path(for: delta.info.id)))
        }
    }

    @Test func objectFileBytes() throws {
        let (whole, delta) = try storeExamples()
        #expect(whole == (try Self.hexBlock("whole-object")))
        #expect(delta == (try Self.hexBlock("delta-object")))
        #expect(whole.count == 108 && delta.count == 108)
        Self.expectDocumented("File `objects/69/bd8b…0f07`, 108 bytes")
        Self.expectDocumented("File `objects/aa/580d…0bb5`, 108 bytes")
        // The header length rule: 52 + 8 × rank bytes.
        let header = EncodedTensorHeader(encoding: .whole, dtype: .f32, shape: [2, 3], byteCount: 24, chunkByteCount: 8, reference: nil)
        #expect(header.serialized().count == 52 + 8 * 2)
        Self.expectDocumented("The header is `52 + 8 × rank` bytes long.")
    }

    @Test func codeTables() {
        for d in DType.allCases {
            Self.expectDocumented("| \(d.code) | \(d.rawValue) | \(d.byteSize) |")
        }
        #expect(DType(code: 0) == nil && DType(code: 16) == nil)
        Self.expectDocumented("| 16–255 | reserved | |")
        for e in TensorEncoding.allCases {
            Self.expectDocumented("| \(e.rawValue) | \(e) |")
        }
        #expect(TensorEncoding(rawValue: 5) == nil)
        #expect(ChunkCoder(rawValue: 0) == .raw && ChunkCoder(rawValue: 1) == .zstd && ChunkCoder(rawValue: 2) == .rans)
        #expect(ChunkCoder(rawValue: 3) == nil)
        Self.expectDocumented("| 0 | raw |")
        Self.expectDocumented("| 1 | zstd |")
        Self.expectDocumented("| 2 | rans |")
        #expect(ObjectKind(rawValue: 1) == .tensor && ObjectKind(rawValue: 2) == .blob && ObjectKind(rawValue: 0) == nil && ObjectKind(rawValue: 3) == nil)
        for (dtype, mantissa, exponent) in [(DType.f64, 52, 11), (.f32, 23, 8), (.bf16, 7, 8), (.f16, 10, 5), (.f8e4m3, 3, 4), (.f8e5m2, 2, 5)] {
            #expect(dtype.exponentBits == exponent && mantissa == 8 * dtype.byteSize - 1 - exponent)
            Self.expectDocumented("| \(dtype.rawValue) | \(mantissa) | \(exponent) | \(1 << exponent) |")
        }
        #expect(TensorEncoding.preferredDelta(for: .f32) == .integerDeltaByExponent)
        #expect(TensorEncoding.preferredDelta(for: .bool) == .xor)
        #expect(TensorEncoding.preferredDelta(for: .i64) == .integerDelta)
    }

    @Test func documentedConstants() {
        #expect(ObjectStore.magic == Array("MROB".utf8) && ObjectStore.version == 1 && ObjectStore.headerByteCount == 8)
        #expect(EncodedTensorHeader.magic == Array("MRTN".utf8) && EncodedTensorHeader.newestVersion == 3)
        Self.expectDocumented("| 4 | grid (version 3 tensors only) |")
        #expect(CodecOptions.default.chunkByteCount == 4_194_304 && CodecOptions.default.level == 1)
        Self.expectDocumented("chunks of 4 MiB (`chunkByteCount` = 4194304)")
        Self.expectDocumented("zstd frame at level 1")
        #expect(ObjectStore.maxDepth == 4)
        Self.expectDocumented("has depth below 4")
        #expect(HistoryDatabase.formatVersion == 1)
        Self.expectDocumented("**Format version 1.**")
        #expect(AtomicFileWriter.temporaryPrefix == ".mrepo-tmp-")
        #expect(SafetensorsHeader.maxHeaderByteCount == 100_000_000)
        Self.expectDocumented("header at most 100,000,000 bytes")
    }

    // MARK: - §6 the database, and a repository end to end

    /// Collapses white space, so SQL compares independently of indentation.
    static func squeezed(_ text: String) -> String {
        text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }

    @Test func repositoryMatchesTheDocument() throws {
        try withTemporaryDirectory { dir in
            let repo = try Repository.initialize(at: dir + "/repo")
            try SafetensorsWriter.write(path: dir + "/repo/model.safetensors",
                                        tensors: [(name: "w", dtype: .f32, shape: [2, 3], bytes: Self.tensorBytes)], metadata: nil)
            try writeFile(Self.hello, to: dir + "/repo/notes.txt")
            let result = try repo.commit(CommitOptions(message: "base model", metrics: [Commit.Metric(name: "eval_loss", value: 1.83)],
                                                       author: "Doc <doc@example.com>"))
            // The working tree of the example gives the documented tree, and the commit hashes as §3.4 says.
            #expect(result.commit.treeID.hex == Self.treeID)
            #expect(result.commit.id == Commit.computeID(treeID: result.commit.treeID, parents: [], base: nil, author: "Doc <doc@example.com>",
                                                         timestamp: result.commit.timestamp, message: "base model",
                                                         metrics: result.commit.metrics, extra: result.commit.extra))
            #expect(result.commit.extra.serialized() == #"{"storage":"lossless"}"#)
            #expect(Set(repo.objects.listFiles().objects.map(\.hex)) == [Self.tensorID, Self.helloBlobID, Self.headerBlobID])

            // Every table and index of a new repository, except SQLite's and GRDB's own.
            let schema = try repo.history.read { db in
                try String.fetchAll(db, sql: """
                    SELECT sql FROM sqlite_master
                    WHERE sql IS NOT NULL AND name NOT LIKE 'grdb%' AND name NOT LIKE 'sqlite%' ORDER BY rowid
                    """)
            }
            let migrations = try repo.history.read { db in try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations") }
            let version = try repo.history.read { db in try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'formatVersion'") }
            // The documented migrations, run in order on an empty database, give exactly this schema
            // (an ALTER TABLE rewrites its table's CREATE statement as SQLite stores it).
            let documentedSQL = try (Self.block("schema") + Self.block("schema-merge") + Self.block("schema-sha256") + Self.block("schema-worktrees") + Self.block("schema-remotes") + Self.block("schema-annotations") + Self.block("schema-shallow") + Self.block("schema-trials") + Self.block("schema-bisect") + Self.block("schema-crc32c")).joined(separator: "\n")
            let documented = try DatabaseQueue().write { db -> [String] in
                try db.execute(sql: documentedSQL)
                return try String.fetchAll(db, sql: """
                    SELECT sql FROM sqlite_master
                    WHERE sql IS NOT NULL AND name NOT LIKE 'grdb%' AND name NOT LIKE 'sqlite%' ORDER BY rowid
                    """)
            }
            #expect(!schema.isEmpty)
            #expect(schema.map(Self.squeezed) == documented.map(Self.squeezed), "the schema in docs/format.md differs from the repository's")
            #expect(migrations.first == "v1-history")
            for id in migrations { Self.expectDocumented("Migration `\(id)`") }
            #expect(version == "1")
        }
    }
}
