import Delta
import Foundation
import ModelFactory
import Repo
import Testing

// Shared helpers for the Repo tests: temporary repositories, checkpoint folders, file listings.

/// Runs `body` with a fresh, empty folder that is deleted afterwards, however `body` ends.
func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let path = NSTemporaryDirectory() + "mrepo-repo-tests-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try body(path)
}

/// Runs `body` with a new repository in a temporary folder (`<tmp>/repo`), coded in small chunks so
/// that even the tiny model's tensors span several chunks. `<tmp>` itself is free for exports and
/// folders outside the working tree.
func withRepository<T>(_ body: (Repository, String) throws -> T) throws -> T {
    try withTemporaryDirectory { dir in
        let repo = try Repository.initialize(at: dir + "/repo")
        repo.codecOptions = smallChunks
        return try body(repo, dir)
    }
}

let smallChunks = CodecOptions(chunkByteCount: 256, level: 1)
let testAuthor = "Test Author <test@example.com>"

/// The tiny float32 family used by most tests.
let tinyFactory = ModelFactory(architecture: .tiny, dtype: .f32, seed: 42)

extension Repository {
    /// Commits the working tree with a fixed author.
    @discardableResult
    func commitAll(_ message: String, base: String? = nil, allowEmpty: Bool = false, extraParents: [ObjectID] = [],
                   followSymlinks: Bool = false) throws -> CommitResult {
        try commit(CommitOptions(message: message, base: base, author: testAuthor, allowEmpty: allowEmpty,
                                 followSymlinks: followSymlinks, extraParents: extraParents))
    }

    /// Writes the tiny model (or one of its fine-tunes) into the working tree.
    func writeModel(_ fineTune: FineTune? = nil, factory: ModelFactory = tinyFactory, shards: Int = 1) throws {
        try factory.writeCheckpoint(to: root, fineTune: fineTune, shards: shards)
    }

    /// Object files in the store.
    var objectFiles: Set<ObjectID> { Set(objects.listFiles().objects) }

    /// The tensors of a commit by name.
    func tensors(of revision: String) throws -> [String: TreeTensor] {
        try tree(of: resolve(revision)).tensorsByName
    }
}

/// The pid of a process that has ended (and been reaped): the owner of a crash's leftovers.
func deadPid() throws -> pid_t {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/true")
    try p.run()
    p.waitUntilExit()
    return p.processIdentifier
}

/// Writes bytes to a file, creating its folder.
func writeFile(_ bytes: [UInt8], to path: String, executable: Bool = false) throws {
    try FileManager.default.createDirectory(atPath: splitPath(path).dir, withIntermediateDirectories: true)
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    try FileManager.default.setAttributes([.posixPermissions: executable ? 0o755 : 0o644], ofItemAtPath: path)
}

func writeFile(_ text: String, to path: String, executable: Bool = false) throws {
    try writeFile(Array(text.utf8), to: path, executable: executable)
}

func readFile(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// Every regular file under `dir` (outside `.mrepo`) by relative path, with its bytes and
/// executable bit.
func snapshot(_ dir: String) throws -> [String: (bytes: [UInt8], executable: Bool)] {
    var out: [String: (bytes: [UInt8], executable: Bool)] = [:]
    let names = FileManager.default.enumerator(atPath: dir)?.compactMap { $0 as? String } ?? []
    for name in names where !name.hasPrefix(".mrepo") {
        let path = dir + "/" + name
        guard let st = FileStat.of(path), st.isRegular else { continue }
        out[name] = (try readFile(path), st.isExecutable)
    }
    return out
}

/// Whether two snapshots hold the same files with the same bytes and modes.
func sameFiles(_ a: [String: (bytes: [UInt8], executable: Bool)], _ b: [String: (bytes: [UInt8], executable: Bool)]) -> Bool {
    guard Set(a.keys) == Set(b.keys) else { return false }
    return a.allSatisfy { key, value in b[key].map { $0.bytes == value.bytes && $0.executable == value.executable } ?? false }
}

/// Sets a file's modification time an hour into the past, so that the stat cache trusts it.
func ageFile(_ path: String, seconds: TimeInterval = 3600) throws {
    try FileManager.default.setAttributes([.modificationDate: Date(timeIntervalSinceNow: -seconds)], ofItemAtPath: path)
}

/// The little-endian bytes of an array of values.
func bytesOf<T>(_ values: [T]) -> [UInt8] {
    values.withUnsafeBytes { Array($0) }
}

/// Writes a safetensors file from named float32 vectors (in the order given).
func writeFloats(_ tensors: [(String, [Float])], to path: String) throws {
    try FileManager.default.createDirectory(atPath: splitPath(path).dir, withIntermediateDirectories: true)
    try SafetensorsWriter.write(path: path, tensors: tensors.map { ($0.0, DType.f32, [$0.1.count], bytesOf($0.1)) }, metadata: nil)
}

/// A safetensors file built byte by byte: the header text exactly as given, then the data.
func safetensorsBytes(json: String, data: [UInt8]) -> [UInt8] {
    let text = Array(json.utf8)
    return withUnsafeBytes(of: UInt64(text.count).littleEndian) { Array($0) } + text + data
}

/// Flips one bit of a file in place.
func flipByte(at offset: Int, of path: String) throws {
    var bytes = try readFile(path)
    bytes[offset] ^= 0x01
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// The error `body` throws, or nil.
func thrownError(_ body: () throws -> Void) -> (any Error)? {
    do {
        try body()
        return nil
    } catch {
        return error
    }
}

// Swift 6.3.1 can run the wrong closure when a closure literal inside `#expect`/`#require` sits
// inside another closure literal (for example the body passed to `withRepository`): it may share
// a symbol with a neighbouring closure of the same type. Inside such bodies, keep closures out of
// the macros: hoist the closure-bearing expression into a local first, and write
// `#expect(throws: X) { ... }` as `expectThrows(X) { ... }`.

/// `#expect(throws: expected) { try body() }`, with no closure inside the macro: records an issue
/// unless `body` throws an error equal to `expected`.
func expectThrows<E: Error & Equatable, R>(_ expected: E, sourceLocation: SourceLocation = #_sourceLocation,
                                            _ body: () throws -> R) {
    do {
        _ = try body()
        Issue.record("Expected \(expected) to be thrown, but nothing was thrown", sourceLocation: sourceLocation)
    } catch {
        #expect(error as? E == expected, "Expected \(expected), got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
    }
}

/// `#expect(throws: E.self) { try body() }`, with no closure inside the macro: records an issue
/// unless `body` throws an error of type `E`.
func expectThrows<E: Error, R>(_ errorType: E.Type, sourceLocation: SourceLocation = #_sourceLocation,
                               _ body: () throws -> R) {
    do {
        _ = try body()
        Issue.record("Expected an error of type \(E.self) to be thrown, but nothing was thrown", sourceLocation: sourceLocation)
    } catch {
        #expect(error is E, "Expected an error of type \(E.self), got \(type(of: error)): \(error)", sourceLocation: sourceLocation)
    }
}
