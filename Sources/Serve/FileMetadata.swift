import CCrypto
import Delta
import Foundation
import Repo
import Synchronization

/// What the Hub API says about a file besides its bytes: its SHA-256 (the ETag and LFS oid), its
/// git blob id (`oid` in tree listings, compared by clients before an upload), and whether the Hub
/// would keep it in LFS.
struct FileMetadata: Sendable {
    var sha256: Digest
    var gitOID: String
    var isLFS: Bool
    var size: Int
    /// The LFS pointer's size (134 for most files), when `isLFS`.
    var pointerSize: Int
}

/// Computes and remembers ``FileMetadata`` by file identity (the same objects give the same bytes).
final class FileMetadataCache: Sendable {
    private let cache = Mutex<[String: FileMetadata]>([:])

    func metadata(of file: TreeFile, in repo: Repository) throws -> FileMetadata {
        let key = file.identity
        if let known = cache.withLock({ $0[key] }) { return known }
        let sha = try repo.sha256(of: file)
        let lfs = GitHash.isLFS(path: file.path, size: file.byteCount)
        let oid: String
        var pointerSize = 0
        if lfs {
            let pointer = GitHash.lfsPointer(sha256: sha, size: file.byteCount)
            pointerSize = pointer.count
            oid = GitHash.blobID(pointer)
        } else {
            var bytes: [UInt8] = []
            bytes.reserveCapacity(file.byteCount)
            let cursor = try FileReader(store: repo.objects, file: file).cursor()
            while try cursor.next({ bytes.append(contentsOf: $0) }) {}
            oid = GitHash.blobID(bytes)
        }
        let meta = FileMetadata(sha256: sha, gitOID: oid, isLFS: lfs, size: file.byteCount, pointerSize: pointerSize)
        cache.withLock { c in
            if c.count > 100_000 { c.removeAll() }
            c[key] = meta
        }
        return meta
    }
}

/// Git's and git-LFS's identities, as the Hub reports them.
enum GitHash {
    /// Files the Hub keeps in LFS: weights and other binaries by extension, and anything of 10 MiB
    /// or more. Everything else is a regular (inline) file.
    static func isLFS(path: String, size: Int) -> Bool {
        if size >= 10 << 20 { return true }
        let ext = path.split(separator: ".").last.map { $0.lowercased() } ?? ""
        return binaryExtensions.contains(ext) && path.contains(".")
    }

    static let binaryExtensions: Set<String> = [
        "safetensors", "bin", "pt", "pth", "ckpt", "h5", "onnx", "msgpack", "gguf", "ggml", "npy", "npz", "pkl", "pickle",
        "model", "tflite", "ot", "arrow", "parquet", "zip", "gz", "tgz", "tar", "xz", "zst", "7z", "rar", "joblib", "mlmodel", "pb",
    ]

    /// The git-LFS pointer file of a blob.
    static func lfsPointer(sha256: Digest, size: Int) -> [UInt8] {
        Array("version https://git-lfs.github.com/spec/v1\noid sha256:\(sha256.hex)\nsize \(size)\n".utf8)
    }

    /// git's blob id: SHA-1 of `blob <size>\0` and the bytes.
    static func blobID(_ bytes: [UInt8]) -> String {
        sha1(Array("blob \(bytes.count)\0".utf8) + bytes)
    }

    static func sha1(_ bytes: [UInt8]) -> String {
        var out = [UInt8](repeating: 0, count: 20)
        var length: UInt32 = 0
        bytes.withUnsafeBytes { src in
            out.withUnsafeMutableBufferPointer { dst in
                _ = EVP_Digest(src.baseAddress, src.count, dst.baseAddress, &length, EVP_sha1(), nil)
            }
        }
        return out.map { String(format: "%02x", $0) }.joined()
    }
}
