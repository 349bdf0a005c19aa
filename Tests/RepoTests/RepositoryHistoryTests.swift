import Delta
import Foundation
import Repo
import Testing

@Suite struct RepositoryHistoryTests {
    @Test func branchesAreCreatedListedAndDeleted() throws {
        try withRepository { repo, _ in
            try writeFile("1", to: repo.root + "/f.txt")
            let c1 = try repo.commitAll("first").commit.id
            #expect(try repo.createBranch("feature") == c1)
            #expect(try repo.createBranch("old", at: "HEAD") == c1)
            let listed = try repo.branches()
            #expect(listed.map(\.name) == ["feature", "main", "old"])
            #expect(listed.map(\.isCurrent) == [false, true, false])
            let atFirst = listed.allSatisfy { $0.target == c1 && $0.subject == "first" }
            #expect(atFirst, "\(listed)")
            expectThrows(RepoError.refExists("feature")) { try repo.createBranch("feature") }
            expectThrows(RepoError.invalidRefName("a..b", reason: "must not contain '..', '//' or '@{'")) { try repo.createBranch("a..b") }
            expectThrows(RepoError.unknownRevision("nowhere")) { try repo.createBranch("x", at: "nowhere") }

            // A merged branch is deleted with plain -d.
            #expect(try repo.deleteBranch("feature") == c1)
            #expect(try repo.branches().map(\.name) == ["main", "old"])
            expectThrows(RepoError.unknownRef("feature")) { _ = try repo.deleteBranch("feature") }
            #expect(try repo.history.reflog(ref: "feature").first?.message == "delete branch")
        }
    }

    @Test func unmergedBranchNeedsForceAndTheCurrentBranchIsKept() throws {
        try withRepository { repo, _ in
            try writeFile("1", to: repo.root + "/f.txt")
            try repo.commitAll("first")
            _ = try repo.switchBranch("side", create: true)
            try writeFile("2", to: repo.root + "/f.txt")
            let side = try repo.commitAll("on side").commit.id
            expectThrows(RepoError.deletingCurrentBranch("side")) {
                _ = try repo.deleteBranch("side", force: true)
            }
            _ = try repo.switchBranch("main")
            expectThrows(RepoError.branchNotMerged("side")) {
                _ = try repo.deleteBranch("side")
            }
            #expect(try repo.history.ref(named: "side")?.target == side)
            #expect(try repo.deleteBranch("side", force: true) == side)
            #expect(try repo.history.ref(named: "side") == nil)
        }
    }

    @Test func tagsAreCreatedListedAndDeleted() throws {
        try withRepository { repo, _ in
            try writeFile("1", to: repo.root + "/f.txt")
            let c1 = try repo.commitAll("first").commit.id
            try writeFile("2", to: repo.root + "/f.txt")
            let c2 = try repo.commitAll("second").commit.id
            #expect(try repo.createTag("v1", at: "HEAD~1", message: "the first") == c1)
            #expect(try repo.createTag("v2") == c2)
            let tags = try repo.tags()
            #expect(tags.map(\.name) == ["v1", "v2"])
            #expect(tags.map(\.kind) == [.tag, .tag])
            #expect(tags[0].message == "the first")
            #expect(tags[1].message == nil)
            #expect(try repo.resolve("v1") == c1)
            expectThrows(RepoError.refExists("v1")) { try repo.createTag("v1") }
            // Tags and branches share one namespace.
            expectThrows(RepoError.refExists("v1")) { try repo.createBranch("v1") }
            #expect(try repo.decorations()[c1] == ["tag: v1"])
            #expect(Set(try repo.decorations()[c2] ?? []) == ["main", "tag: v2"])
            // A tag is not a branch: it cannot be deleted as one, nor switched to.
            expectThrows(RepoError.unknownRef("v1")) { _ = try repo.deleteBranch("v1") }
            expectThrows(RepoError.switchToTag("v1")) {
                _ = try repo.switchBranch("v1")
            }
            try repo.deleteTag("v1")
            #expect(try repo.tags().map(\.name) == ["v2"])
            expectThrows(RepoError.invalidArgument("no tag named 'v1'")) { try repo.deleteTag("v1") }
            expectThrows(RepoError.invalidArgument("'main' is a branch, not a tag; delete it with 'mrepo branch -d main'")) { try repo.deleteTag("main") }
        }
    }

    @Test func mergeBasesOfDivergedBranches() throws {
        try withRepository { repo, _ in
            try writeFile("0", to: repo.root + "/f.txt")
            let root = try repo.commitAll("root").commit.id
            try writeFile("1", to: repo.root + "/f.txt")
            let fork = try repo.commitAll("fork point").commit.id
            _ = try repo.switchBranch("a", create: true)
            try writeFile("a", to: repo.root + "/a.txt")
            let a = try repo.commitAll("a").commit.id
            _ = try repo.switchBranch("main")
            _ = try repo.switchBranch("b", create: true)
            try writeFile("b", to: repo.root + "/b.txt")
            let b = try repo.commitAll("b").commit.id
            #expect(try repo.mergeBases([a, b]) == [fork])
            #expect(try repo.mergeBases([a, fork]) == [fork])
            #expect(try repo.mergeBases([a]) == [a])
            #expect(try repo.mergeBases([]) == [])
            #expect(try repo.ancestors(of: a) == [a, fork, root])
            #expect(try repo.isAncestor(root, of: b))
            #expect(try !repo.isAncestor(a, of: b))
        }
    }

    @Test func reflogRecordsBranchMoves() throws {
        try withRepository { repo, _ in
            try writeFile("1", to: repo.root + "/f.txt")
            let c1 = try repo.commitAll("first").commit.id
            try writeFile("2", to: repo.root + "/f.txt")
            let c2 = try repo.commitAll("second").commit.id
            let log = try repo.history.reflog(ref: "main")
            #expect(log.map(\.message) == ["commit: second", "commit (initial): first"])
            #expect(log[0].old == c1 && log[0].new == c2)
            #expect(log[1].old == nil && log[1].new == c1)
        }
    }
}
