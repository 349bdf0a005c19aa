import Delta
import Foundation

/// Where checkpoints come from: Hugging Face caches and Git LFS checkouts.
enum HuggingFaceCache {
    /// The folder `snapshot_download(local_dir=...)` writes beside the files (ignored by default).
    static let localDirMetadata = ".cache/huggingface"

    /// Whether the link at `path` is a Hugging Face cache snapshot's link to its blob: the folder
    /// being scanned lies in `<repo>/snapshots/<rev>`, and the link resolves to a regular file in
    /// `<repo>/blobs/`.
    static func isBlobLink(_ path: String, root: String) -> Bool {
        let realRoot = URL(fileURLWithPath: root).resolvingSymlinksInPath().path
        guard let snapshots = realRoot.range(of: "/snapshots/", options: .backwards) else { return false }
        let blobs = realRoot[..<snapshots.lowerBound] + "/blobs/"
        let target = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
        guard target.hasPrefix(blobs), let st = FileStat.of(target, followLinks: true) else { return false }
        return st.isRegular
    }

    /// Whether a file is a Git LFS pointer (a small text file naming the real file's hash).
    static func isLFSPointer(_ path: String) -> Bool {
        guard let st = FileStat.of(path, followLinks: true), st.size < 1024, let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        let head = (try? handle.read(upToCount: 64)) ?? Data()
        return head.starts(with: Data("version https://git-lfs.github.com/spec/".utf8))
    }
}
