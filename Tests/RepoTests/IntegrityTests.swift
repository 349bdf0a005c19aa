import Delta
import Foundation
import GRDB
import Testing

@testable import Repo

/// Each file's SHA-256 recorded at commit and checked when files are written; trees checked
/// against their ids; fsck's checks of reference chains.
@Suite struct IntegrityTests {
    /// base on main, math on branch math, HEAD back on main (the working tree holds base).
    func twoBranches(_ repo: Repository) throws -> (base: ObjectID, math: ObjectID) {
        try repo.writeModel()
        let base = try repo.commitAll("base").commit.id
        _ = try repo.switchBranch("math", create: true)
        try repo.writeModel(.light("math", seed: 11))
        let math = try repo.commitAll("math").commit.id
        _ = try repo.switchBranch("main")
        return (base, math)
    }

    /// Two tensors of one file of a tree with the same dtype and shape but different objects.
    func swappable(_ tree: Tree) throws -> (path: String, a: TreeTensor, b: TreeTensor) {
        for f in tree.files {
            for (i, a) in f.tensors.enumerated() {
                if let b = f.tensors[(i + 1)...].first(where: { $0.dtype == a.dtype && $0.shape == a.shape && $0.objectID != a.objectID }) {
                    return (f.path, a, b)
                }
            }
        }
        throw RepoError.failed("no two tensors of the same shape")
    }

    /// A missing history database is said to be missing, and nothing is created in its place (a
    /// read-only `status` made an empty one and then said it had no format version).
    @Test func aMissingHistoryDatabaseIsNamedAndNotRecreated() throws {
        try withRepository { repo, _ in
            try writeFile("hello\n", to: repo.root + "/notes.txt")
            _ = try repo.commitAll("base")
            let db = repo.metaDirectory + "/mrepo.db"
            try FileManager.default.moveItem(atPath: db, toPath: db + ".saved")
            for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: db + suffix) }
            for access in [HistoryAccess.readOnly, .readWrite] {
                expectThrows(RepoError.unsupportedFormat(path: db, problem: "the history database is missing; nothing was created in its place "
                    + "(restore it from a backup, or clone the repository again)")) { _ = try Repository.open(at: repo.root, access: access) }
            }
            #expect(!FileManager.default.fileExists(atPath: db))
        }
    }

    @Test func commitRecordsEveryFilesSHA256() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            try writeFile("hello\n", to: repo.root + "/notes.txt")
            let id = try repo.commitAll("base").commit.id
            let tree = try repo.tree(of: id)
            #expect(tree.files.count > 2)
            for f in tree.files {
                #expect(f.sha256 == SHA256.hash(try readFile(repo.root + "/" + f.path)), "\(f.path)")
            }
            // A commit that reuses the stat cache records the same digests.
            try writeFile("more\n", to: repo.root + "/more.txt")
            let next = try repo.tree(of: try repo.commitAll("more").commit.id)
            for f in next.files { #expect(f.sha256 == SHA256.hash(try readFile(repo.root + "/" + f.path)), "\(f.path)") }
        }
    }

    @Test func aSwappedTreeRowStopsExportAndCheckout() throws {
        try withRepository { repo, dir in
            let (_, math) = try twoBranches(repo)
            let tree = try repo.tree(of: math)
            let (path, a, b) = try swappable(tree)
            // The row of tensor a now names b's object: a valid object, with other bytes.
            try repo.history.write { db in
                try db.execute(sql: "UPDATE treeTensor SET objectID = ? WHERE treeID = ? AND path = ? AND name = ?",
                               arguments: [b.objectID.hex, tree.id.hex, path, a.name])
            }
            let before = try snapshot(repo.root)
            let swapped = RepoError.corruptTree("tree \(tree.id.short) of commit \(math.short)",
                                                problem: "its rows do not hash to its id (the history database was altered)")
            expectThrows(swapped) { _ = try repo.export("math", to: dir + "/out") }
            #expect(FileStat.of(dir + "/out") == nil, "the export wrote nothing, not even its folder")

            expectThrows(swapped) { _ = try repo.switchBranch("math") }
            let after = try snapshot(repo.root)
            #expect(sameFiles(after, before), "the working tree is as it was")
            let mainID = try repo.resolve("main")
            #expect(try repo.history.head() == .branch("main", commit: mainID))
            let fsck = try repo.fsck()
            #expect(!fsck.isClean)
        }
    }

    @Test func theRecordedSHA256IsCheckedWhenAFileIsWritten() throws {
        try withRepository { repo, dir in
            let (base, math) = try twoBranches(repo)
            let mathTree = try repo.tree(of: math)
            let models = mathTree.files.filter { $0.kind == .safetensors }
            let model = try #require(models.first)
            let other = try #require(try repo.tree(of: base).file(at: model.path)?.sha256)
            #expect(other != model.sha256)
            // The digest column is not part of the tree id: only the rebuild can notice it.
            try repo.history.write { db in
                try db.execute(sql: "UPDATE treeFile SET sha256 = ? WHERE treeID = ? AND path = ?",
                               arguments: [other.hex, mathTree.id.hex, model.path])
            }
            // The file's digest disagrees: the tree, named by the file's path, is corrupt.
            let wrongDigest: (RepoError) -> Bool = { if case .corruptTree(model.path, _) = $0 { true } else { false } }
            expectThrows(RepoError.self, { _ = try repo.export("math", to: dir + "/out") }, matching: wrongDigest)
            #expect(FileStat.of(dir + "/out") == nil)
            let before = try snapshot(repo.root)
            expectThrows(RepoError.self, { _ = try repo.switchBranch("math") }, matching: wrongDigest)
            let after = try snapshot(repo.root)
            #expect(sameFiles(after, before))
            // Trees without digests (written by older versions) are not checked.
            try repo.history.write { db in
                try db.execute(sql: "UPDATE treeFile SET sha256 = NULL WHERE treeID = ?", arguments: [mathTree.id.hex])
            }
            _ = try repo.export("math", to: dir + "/out")
            _ = try repo.switchBranch("math")
            #expect(try readFile(dir + "/out/" + model.path) == readFile(repo.root + "/" + model.path))
            // A later commit records the digests of the files it reuses without reading them.
            let undigested = try repo.tree(of: math).files.filter { $0.sha256 == nil }.count
            #expect(undigested == mathTree.files.count)
            try writeFile("x\n", to: repo.root + "/x.txt")
            let next = try repo.tree(of: try repo.commitAll("x").commit.id)
            let digested = next.files.filter { $0.sha256 != nil }.count
            #expect(digested == next.files.count)
        }
    }

    @Test func fsckFollowsReferenceChains() throws {
        try withRepository { repo, _ in
            let (_, math) = try twoBranches(repo)
            #expect(try repo.fsck().isClean)
            let infos = try repo.history.allObjects()
            let deltas = infos.filter { $0.reference != nil }
            let blobs = infos.filter { $0.kind == .blob }
            let delta = try #require(deltas.first)
            let blob = try #require(blobs.first)
            // The index says the delta is coded against a blob.
            try repo.history.write { db in
                try db.execute(sql: "UPDATE object SET referenceID = ? WHERE id = ?", arguments: [blob.id.hex, delta.id.hex])
            }
            let report = try repo.fsck()
            let found = report.errors.filter { $0.contains(delta.id.short) && $0.contains("broken reference chain") }
            #expect(!found.isEmpty, "\(report.errors)")
            _ = math
        }
    }

    @Test func fsckReportsAReferenceOfAnotherShape() throws {
        try withRepository { repo, _ in
            _ = try twoBranches(repo)
            let infos = try repo.history.allObjects()
            let deltas = infos.filter { $0.reference != nil }
            let delta = try #require(deltas.first)
            let header = try repo.objects.header(of: delta.id)
            // A tensor object of another shape, named as the reference in the file and the row.
            var other: ObjectInfo?
            for info in infos where info.kind == .tensor && info.id != delta.reference {
                if let h = try? repo.objects.header(of: info.id), h.shape != header.shape { other = info; break }
            }
            let target = try #require(other)
            let path = repo.objects.path(for: delta.id)
            var bytes = try readFile(path)
            let offset = ObjectStore.headerByteCount + 20 + 8 * header.shape.count
            #expect(Array(bytes[offset..<(offset + 32)]) == delta.reference?.bytes)
            bytes.replaceSubrange(offset..<(offset + 32), with: target.id.bytes)
            chmod(path, 0o644)
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            try repo.history.write { db in
                try db.execute(sql: "UPDATE object SET referenceID = ? WHERE id = ?", arguments: [target.id.hex, delta.id.hex])
            }
            let report = try repo.fsck()
            let found = report.errors.filter { $0.contains("broken reference chain: reference \(target.id.short) is") }
            #expect(!found.isEmpty, "\(report.errors)")
        }
    }
}
