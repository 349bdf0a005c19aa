import Delta
import Foundation
@testable import Repo
import Testing

@Suite struct RepositoryTests {
    // MARK: - init and open

    @Test func initializeCreatesTheLayoutAndRefusesTwice() throws {
        try withTemporaryDirectory { dir in
            let repo = try Repository.initialize(at: dir + "/r")
            #expect(repo.root == dir + "/r")
            #expect(FileManager.default.fileExists(atPath: dir + "/r/.mrepo/mrepo.db"))
            #expect(FileManager.default.fileExists(atPath: dir + "/r/.mrepo/objects"))
            // Sample hooks are installed inactive.
            #expect(FileManager.default.fileExists(atPath: dir + "/r/.mrepo/hooks/pre-commit.sample"))
            #expect(!FileManager.default.fileExists(atPath: dir + "/r/.mrepo/hooks/pre-commit"))
            #expect(try repo.history.head() == .branch("main", commit: nil))
            expectThrows(RepoError.alreadyARepository(path: dir + "/r")) {
                try Repository.initialize(at: dir + "/r")
            }
            let other = try Repository.initialize(at: dir + "/o", initialBranch: "trunk")
            #expect(try other.history.head() == .branch("trunk", commit: nil))
            expectThrows(RepoError.invalidRefName("bad name", reason: "must not contain spaces, control characters or any of ~^:?*[\\")) {
                try Repository.initialize(at: dir + "/p", initialBranch: "bad name")
            }
        }
    }

    @Test func openSearchesParentFolders() throws {
        try withTemporaryDirectory { dir in
            let repo = try Repository.initialize(at: dir + "/r")
            try FileManager.default.createDirectory(atPath: dir + "/r/a/b", withIntermediateDirectories: true)
            #expect(try Repository.open(at: dir + "/r/a/b").root == repo.root)
            expectThrows(RepoError.notARepository(path: dir)) { _ = try Repository.open(at: dir) }
        }
    }

    // MARK: - Revisions

    @Test func revisionsResolve() throws {
        try withRepository { repo, _ in
            try writeFile("1", to: repo.root + "/f.txt")
            let c1 = try repo.commitAll("c1").commit.id
            try writeFile("2", to: repo.root + "/f.txt")
            let c2 = try repo.commitAll("c2").commit.id
            try repo.createTag("v2")
            try writeFile("3", to: repo.root + "/f.txt")
            let c3 = try repo.commitAll("c3").commit.id

            #expect(try repo.resolve("HEAD") == c3)
            #expect(try repo.resolve("@") == c3)
            #expect(try repo.resolve("main") == c3)
            #expect(try repo.resolve("v2") == c2)
            #expect(try repo.resolve("HEAD~1") == c2)
            #expect(try repo.resolve("HEAD~") == c2)
            #expect(try repo.resolve("HEAD~2") == c1)
            #expect(try repo.resolve("HEAD^") == c2)
            #expect(try repo.resolve("HEAD^^") == c1)
            #expect(try repo.resolve("HEAD~0") == c3)
            #expect(try repo.resolve("v2~1") == c1)
            #expect(try repo.resolve(c2.hex) == c2)
            #expect(try repo.resolve(c2.hex.uppercased()) == c2)
            #expect(try repo.resolve(String(c1.hex.prefix(8))) == c1)
            #expect(try repo.resolve(String(c3.hex.prefix(12)) + "~2") == c1)

            expectThrows(RepoError.missingParent(revision: "HEAD~3", commit: c1.short, parents: 0)) { try repo.resolve("HEAD~3") }
            expectThrows(RepoError.missingParent(revision: "HEAD^2", commit: c3.short, parents: 1)) { try repo.resolve("HEAD^2") }
            expectThrows(RepoError.unknownRevision("nope")) { try repo.resolve("nope") }
            expectThrows(RepoError.unknownRevision("nope~1")) { try repo.resolve("nope~1") }
            // Anything but digits after ~ or ^ names nothing (it was read as one more step back).
            for junk in ["HEAD~x", "HEAD~l", "HEAD~ 1", "HEAD^{tree}", "HEAD~1x", "HEAD~\u{0663}"] {
                expectThrows(RepoError.unknownRevision(junk)) { try repo.resolve(junk) }
            }
            // A branch spelled like a full commit id (made by an older mrepo, or straight in the
            // database) never redirects that id: the id names its commit, as in git.
            let pinned = String(c1.hex.prefix(40))
            try repo.history.write { db in
                try HistoryDatabase.setRef(db, name: pinned, kind: .branch, target: c3, old: nil, message: "planted")
                try HistoryDatabase.setRef(db, name: c1.hex, kind: .branch, target: c3, old: nil, message: "planted")
            }
            #expect(try repo.resolve(pinned) == c1)
            #expect(try repo.resolve(c1.hex) == c1)
            #expect(try repo.resolveExact(pinned) == c1)
            #expect(try repo.resolveExact(c1.hex) == c1)
            expectThrows(RepoError.invalidRefName(pinned, reason: "must not look like a commit id (40 or more hex digits)")) {
                try repo.createBranch(pinned)
            }
            // Fewer than four hex digits is never a prefix.
            expectThrows(RepoError.unknownRevision(String(c1.hex.prefix(3)))) { try repo.resolve(String(c1.hex.prefix(3))) }
            #expect(RepoError.unknownRevision("nope").description == "unknown revision 'nope'")
        }
    }

    @Test func secondParentOfAMergeCommit() throws {
        try withRepository { repo, _ in
            try writeFile("base", to: repo.root + "/f.txt")
            let c1 = try repo.commitAll("c1").commit.id
            _ = try repo.switchBranch("side", create: true)
            try writeFile("side", to: repo.root + "/g.txt")
            let side = try repo.commitAll("side").commit.id
            _ = try repo.switchBranch("main")
            try writeFile("main", to: repo.root + "/f.txt")
            let c2 = try repo.commitAll("c2").commit.id
            let merge = try repo.commitAll("merge", extraParents: [side]).commit
            #expect(merge.parents == [c2, side])
            #expect(merge.generation == 2)

            #expect(try repo.resolve("HEAD^1") == c2)
            #expect(try repo.resolve("HEAD^2") == side)
            #expect(try repo.resolve("HEAD^2~1") == c1)
            #expect(try repo.resolve("HEAD~1") == c2)
            #expect(try repo.resolve("HEAD~2") == c1)
            #expect(try repo.resolve("HEAD^0") == merge.id)
            expectThrows(RepoError.missingParent(revision: "HEAD^3", commit: merge.id.short, parents: 2)) { try repo.resolve("HEAD^3") }
            #expect(try repo.mergeBases([c2, side]) == [c1])
            #expect(try repo.isAncestor(side, of: merge.id))
            #expect(try !repo.isAncestor(side, of: c2))
            // log lists every commit once, newest first.
            #expect(Set(try repo.log(from: [merge.id]).map(\.id)) == [merge.id, c2, side, c1])
            #expect(try repo.log(from: [merge.id], firstParent: true).map(\.id) == [merge.id, c2, c1])
            #expect(try repo.log(from: [merge.id], limit: 2).count == 2)
        }
    }

    /// A tree an older mrepo recorded with a path into a `.git` (a nested clone's config, whose
    /// core.fsmonitor runs a command) is never written out: not by restore, checkout or export.
    @Test func aTreePathIntoGitIsNeverWritten() throws {
        try withRepository { repo, _ in
            try writeFile("[core]\n\tfsmonitor = touch pwned\n", to: repo.root + "/x.txt")
            let root = try repo.commitAll("root").commit
            let file = try #require(try repo.tree(of: root.id).file(at: "x.txt"))
            var planted = file
            planted.path = "sub/.git/config"
            let tree = Tree(files: [file, planted])
            let id = Commit.computeID(treeID: tree.id, parents: [root.id], base: root.id, author: testAuthor,
                                      timestamp: 1000, message: "planted", metrics: [], extra: .object([]))
            let commit = Commit(id: id, treeID: tree.id, parents: [root.id], base: root.id, author: testAuthor,
                                timestamp: 1000, message: "planted", metrics: [], extra: .object([]), generation: 1)
            try repo.history.recordCommit(objects: [], tree: tree, commit: commit, expectedHead: root.id, reflogMessage: "test")
            let refusal = RepoError.unsafePath("sub/.git/config", reason: "'.git' is reserved")
            expectThrows(refusal) { _ = try repo.restore(paths: ["sub"], source: "HEAD") }
            expectThrows(refusal) { _ = try repo.export("HEAD", to: repo.root + "/../exported") }
            #expect(!FileManager.default.fileExists(atPath: repo.root + "/sub/.git/config"))
            #expect(!FileManager.default.fileExists(atPath: repo.root + "/../exported/sub/.git/config"))
        }
    }

    @Test func ambiguousPrefixNamesTheCandidates() throws {
        try withRepository { repo, _ in
            try writeFile("x", to: repo.root + "/x.txt")
            let root = try repo.commitAll("root").commit
            // Find two commit texts whose ids share their first four hex digits (a birthday search
            // over a few hundred candidates), then record both.
            var byPrefix: [String: Commit] = [:]
            var pair: (Commit, Commit)?
            for i in 0..<100_000 where pair == nil {
                let message = "candidate \(i)"
                let id = Commit.computeID(treeID: root.treeID, parents: [root.id], base: root.id, author: testAuthor,
                                          timestamp: 1000, message: message, metrics: [], extra: .object([]))
                let commit = Commit(id: id, treeID: root.treeID, parents: [root.id], base: root.id, author: testAuthor,
                                    timestamp: 1000, message: message, metrics: [], extra: .object([]), generation: 1)
                let prefix = String(id.hex.prefix(4))
                if let other = byPrefix[prefix] { pair = (other, commit) } else { byPrefix[prefix] = commit }
            }
            let (a, b) = try #require(pair)
            let tree = try repo.tree(of: root.id)
            try repo.history.recordCommit(objects: [], tree: tree, commit: a, expectedHead: root.id, reflogMessage: "test")
            try repo.history.recordCommit(objects: [], tree: tree, commit: b, expectedHead: a.id, reflogMessage: "test")

            let prefix = String(a.id.hex.prefix(4))
            let candidates = [a.id, b.id].sorted().map(\.short)
            let error = thrownError { _ = try repo.resolve(prefix) }
            #expect(error as? RepoError == .ambiguousRevision(prefix, candidates: candidates))
            #expect((error as? RepoError)?.description == "ambiguous revision '\(prefix)': matches \(candidates.joined(separator: ", "))")
            // A longer prefix is unique again.
            #expect(try repo.resolve(String(a.id.hex.prefix(16))) == a.id)
            #expect(try repo.resolve(String(b.id.hex.prefix(16))) == b.id)
        }
    }

    @Test func unbornHeadHasNoCommit() throws {
        try withRepository { (repo, _) throws in
            #expect(try repo.headCommit() == nil)
            expectThrows(RepoError.unbornBranch("main")) { try repo.resolve("HEAD") }
            #expect(try repo.status().isClean)
        }
    }

    // MARK: - Ref names

    @Test(arguments: ["", "HEAD", "@", "-x", ".hidden", "x.", "x/", "/x", "a..b", "a//b", "a@{b", "a b", "a~1", "a^", "a:b",
                      "a?", "a*", "a[", "a\\b", "x.lock", "tab\tname"])
    func invalidRefNames(name: String) {
        expectThrows(RepoError.self) { try RefNames.validate(name) } matching: { if case .invalidRefName(name, _) = $0 { true } else { false } }
    }

    @Test(arguments: ["main", "feature/x", "v1.0", "exp-2024_01", "ünïcode"])
    func validRefNames(name: String) throws {
        try RefNames.validate(name)
    }

    // MARK: - The write lock

    @Test func secondWriterIsRefusedWhileTheLockIsHeld() throws {
        try withRepository { repo, _ in
            try writeFile("x", to: repo.root + "/x.txt")
            let pid = Int(getpid())
            try repo.withWriteLock {
                let other = try Repository.open(at: repo.root)
                let error = thrownError { try other.commitAll("blocked") }
                #expect(error as? RepoError == .repositoryLocked(path: repo.root, pid: pid))
                #expect((error as? RepoError)?.description
                    == "\(repo.root): repository is locked by pid \(pid) (another mrepo command is writing); retry, or pass --wait")
                expectThrows(RepoError.repositoryLocked(path: repo.root, pid: pid)) { try other.createBranch("b") }
                expectThrows(RepoError.repositoryLocked(path: repo.root, pid: pid)) { _ = try other.gc() }
                // Readers do not take the lock.
                #expect(try other.status().changes.count == 1)
            }
            #expect(try repo.history.allCommits().isEmpty)
            // Released: the commit goes through now.
            let other = try Repository.open(at: repo.root)
            #expect(try other.commitAll("after").commit.parents.isEmpty)
        }
    }

    @Test func lockIsReleasedWhenTheBodyThrows() throws {
        try withRepository { repo, _ in
            struct Boom: Error {}
            expectThrows(Boom.self) { try repo.withWriteLock { () throws -> Void in throw Boom() } }
            try writeFile("x", to: repo.root + "/x.txt")
            #expect(try Repository.open(at: repo.root).commitAll("ok").fileCount == 1)
        }
    }
}
