import Delta
import Foundation
import ModelFactory
import Repo
import Testing

// Helpers for the Repo tests: temporary repositories, checkpoint folders, file listings. The helpers
// every target shares are in Tests/MrepoTestSupport.

/// A new repository in a temporary folder (`<dir>/repo`), coded in small chunks so that even the
/// tiny model's tensors span several chunks. `<dir>` itself is free for exports and folders
/// outside the working tree. The folder goes when the instance does: a suite that is a
/// `final class` keeps one in a stored property (Tests/README.md).
final class TemporaryRepository {
    let repo: Repository
    /// The folder that holds `repo` (at `<dir>/repo`).
    let dir: String
    private let folder: TemporaryDirectory

    init() throws {
        folder = try TemporaryDirectory()
        dir = folder.path
        repo = try Repository.initialize(at: dir + "/repo")
        repo.codecOptions = smallChunks
    }
}

/// Runs `body` with a ``TemporaryRepository``'s repository and folder.
func withRepository<T>(_ body: (Repository, String) throws -> T) throws -> T {
    let fixture = try TemporaryRepository()
    return try withExtendedLifetime(fixture) { try body(fixture.repo, fixture.dir) }
}

let smallChunks = CodecOptions(chunkByteCount: 256, level: 1)

/// Chunks of whole merge blocks (64 Ki floats), so that merges stream (``StreamingMerge``): the tiny
/// chunks of other tests do not.
let streamingChunks = CodecOptions(chunkByteCount: 1 << 18, level: 1)
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

/// Writes a safetensors file from named float32 vectors (in the order given).
func writeFloats(_ tensors: [(String, [Float])], to path: String) throws {
    try FileManager.default.createDirectory(atPath: splitPath(path).dir, withIntermediateDirectories: true)
    try SafetensorsWriter.write(path: path, tensors: tensors.map { ($0.0, DType.f32, [$0.1.count], bytesOf($0.1)) }, metadata: nil)
}
