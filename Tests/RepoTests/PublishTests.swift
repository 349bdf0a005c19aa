import Delta
import Foundation
import ModelFactory
import Repo
import Testing

/// `FileReader` (files streamed from the object store, as `mrepo serve` sends them) and
/// `commitFiles` (commits made without a working tree, as uploads through `mrepo serve` are).
@Suite("Streaming files and committing uploads")
struct PublishTests {
    /// The bytes a cursor over `range` yields.
    func read(_ repo: Repository, _ file: TreeFile, _ range: Range<Int>? = nil) throws -> [UInt8] {
        let cursor = try FileReader(store: repo.objects, file: file).cursor(range)
        var out: [UInt8] = []
        while try cursor.next({ out.append(contentsOf: $0) }) {}
        return out
    }

    @Test("a streamed file and every range of it equal the exported bytes, across chunk and tensor boundaries")
    func streamedRanges() throws {
        try withRepository { repo, dir in
            try repo.writeModel()
            try repo.commitAll("base")
            try repo.writeModel(.light("math", seed: 11))
            try repo.commitAll("math")
            _ = try repo.export("HEAD", to: dir + "/out")
            let tree = try repo.tree(of: repo.resolve("HEAD"))
            for file in tree.files {
                let exported = try readFile(dir + "/out/" + file.path)
                let whole = try read(repo, file)
                #expect(whole == exported, "\(file.path)")
                var rng = SeededRandom(seed: 7)
                for _ in 0..<20 where exported.count > 1 {
                    let a = Int(rng.next() % UInt64(exported.count)), b = Int(rng.next() % UInt64(exported.count))
                    let range = min(a, b)..<(max(a, b) + 1)
                    let part = try read(repo, file, range)
                    #expect(part == Array(exported[range]), "\(file.path) \(range)")
                }
            }
        }
    }

    @Test("a damaged object stops the stream with an error instead of finishing a wrong file")
    func damagedObjectStops() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            try repo.commitAll("base")
            let file = try #require(try repo.tree(of: repo.resolve("HEAD")).files.first { $0.kind == .safetensors })
            let victim = try #require(file.tensors.max { $0.byteCount < $1.byteCount })
            let path = repo.objects.path(for: victim.objectID)
            let size = try #require(FileStat.of(path)?.size)
            try flipByte(at: size - 3, of: path)
            expectThrows(RepoError.self) { try read(repo, file) }
        }
    }

    @Test("commitFiles writes, reuses and deletes files on a branch, without touching HEAD's working tree")
    func commitFilesOnBranch() throws {
        try withRepository { repo, dir in
            try repo.writeModel()
            let base = try repo.commitAll("base").commit.id
            try repo.createBranch("upload")
            let factory = tinyFactory
            try factory.writeCheckpoint(to: dir + "/math", fineTune: .light("math", seed: 11))
            let weights = try #require(FileManager.default.contentsOfDirectory(atPath: dir + "/math").first { $0.hasSuffix(".safetensors") })
            try writeFile("hello\n", to: dir + "/notes.txt")
            let before = try snapshot(repo.root)
            let commit = try repo.commitFiles(toBranch: "upload", changes: [
                .write(path: weights, source: dir + "/math/" + weights),
                .write(path: "docs/notes.txt", source: dir + "/notes.txt"),
                .delete(path: "config.json"),
            ], message: "upload", author: testAuthor, expectedParent: base)
            #expect(commit.parents == [base])
            #expect(try repo.resolve("upload") == commit.id)
            #expect(try repo.resolve("main") == base, "other branches stay")
            #expect(sameFiles(try snapshot(repo.root), before), "the working tree is untouched")
            let tree = try repo.tree(of: commit.id)
            #expect(tree.file(at: "config.json") == nil)
            #expect(try readFile(dir + "/math/" + weights) == (try read(repo, try #require(tree.file(at: weights)))))
            #expect(tree.file(at: weights)?.sha256 != nil, "the file's SHA-256 is recorded")
            let digest = try #require(tree.file(at: weights)?.sha256)
            #expect(try repo.file(withSHA256: digest)?.path == weights)
            // A stale parent is refused and records nothing.
            expectThrows(RepoError.concurrentUpdate(ref: "upload")) {
                try repo.commitFiles(toBranch: "upload", changes: [.delete(path: "docs/notes.txt")], message: "x",
                                     author: testAuthor, expectedParent: base)
            }
            #expect(try repo.resolve("upload") == commit.id)
            // Paths that leave the tree, and deletions of missing files, are refused.
            for change: FileChange in [.write(path: "../x", source: dir + "/notes.txt"), .write(path: ".mrepo/x", source: dir + "/notes.txt"),
                                       .delete(path: "missing"), .write(path: "docs/notes.txt/y", source: dir + "/notes.txt")] {
                expectThrows(RepoError.self) {
                    try repo.commitFiles(toBranch: "upload", changes: [change], message: "x", author: testAuthor)
                }
            }
            #expect(try repo.resolve("upload") == commit.id)
            // The checked-out branch of a repository with a working tree is refused, as for pushes.
            expectThrows(RepoError.self) {
                try repo.commitFiles(toBranch: "main", changes: [.delete(path: "config.json")], message: "x", author: testAuthor)
            }
            #expect(try repo.resolve("main") == base)
            let fsck = try repo.fsck()
            #expect(fsck.errors.isEmpty, "\(fsck.errors)")
        }
    }

    @Test("the first commit of an unborn branch, and a revision resolved only by name or a 40+ digit id")
    func unbornAndExactResolve() throws {
        try withTemporaryDirectory { dir in
            let repo = try Repository.initialize(at: dir + "/repo", bare: true)
            try writeFile("a\n", to: dir + "/a.txt")
            let commit = try repo.commitFiles(toBranch: "main", changes: [.write(path: "a.txt", source: dir + "/a.txt")],
                                              message: "first", author: testAuthor)
            #expect(commit.parents.isEmpty)
            #expect(try repo.headCommit() == commit.id)
            #expect(try repo.resolveExact(String(commit.id.hex.prefix(40))) == commit.id)
            #expect(try repo.resolveExact(commit.id.hex) == commit.id)
            expectThrows(RepoError.self) { try repo.resolveExact(String(commit.id.hex.prefix(12))) }
            expectThrows(RepoError.self) { try repo.resolveExact("HEAD~1") }
            expectThrows(RepoError.self) {
                try repo.commitFiles(toBranch: "nope", changes: [], message: "x", author: testAuthor)
            }
        }
    }
}
