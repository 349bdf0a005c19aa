import Delta
import Foundation
import Merge
import MrepoTestSupport
import Repo
import Testing

/// `clean`, as `git clean`: untracked files go, untracked folders only with `directories`,
/// `.mrepoignore`'s files only with -x/-X; tracked files, the store, temporary files and nested
/// repositories never; links go as links.
@Suite struct CleanTests {
    /// A working tree with one of everything: tracked files, untracked files in tracked and
    /// untracked folders, an ignored file, a nested repository, a link to a folder outside, a
    /// temporary file of another process and a name that is not UTF-8.
    func untidyTree(_ repo: Repository, _ dir: String) throws {
        try writeFloats([("w", [1, 2])], to: repo.root + "/model.safetensors")
        try writeFile("{}", to: repo.root + "/sub/config.json")
        try repo.commitAll("one")
        try writeFile("opt", to: repo.root + "/optimizer.pt")
        try writeFile("new", to: repo.root + "/sub/new.txt")
        try writeFile("ev", to: repo.root + "/runs/deep/events.txt")
        try writeFile("log", to: repo.root + "/train.log")
        try writeFile("*.log\n", to: repo.root + "/.mrepoignore")
        try FileManager.default.createDirectory(atPath: repo.root + "/empty", withIntermediateDirectories: true)
        _ = try Repository.initialize(at: repo.root + "/nested")
        try writeFile("inner", to: repo.root + "/nested/inner.txt")
        try writeFile("keep", to: dir + "/outside/keep.txt")
        try FileManager.default.createSymbolicLink(atPath: repo.root + "/data", withDestinationPath: dir + "/outside")
        try writeFile("partial", to: repo.root + "/" + AtomicFileWriter.temporaryPrefix + "1.00000000-x-model.safetensors")
        let raw = Array((repo.root + "/bad").utf8) + [0xFF, 0]
        let fd = raw.withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_CREAT | O_WRONLY, 0o644) } }
        #expect(fd >= 0)
        close(fd)
    }

    @Test func aDryRunListsWhatWouldGoAndRemovesNothing() throws {
        try withRepository { repo, dir in
            try untidyTree(repo, dir)
            let before = try FileManager.default.subpathsOfDirectory(atPath: repo.root).sorted()
            let files = try repo.clean(CleanOptions(dryRun: true))
            #expect(files.removed == [".mrepoignore", "bad\\xFF", "data", "optimizer.pt", "sub/new.txt"])
            #expect(files.skippedRepositories.isEmpty)
            let folders = try repo.clean(CleanOptions(dryRun: true, directories: true))
            #expect(folders.removed == [".mrepoignore", "bad\\xFF", "data", "empty/", "optimizer.pt", "runs/", "sub/new.txt"])
            #expect(folders.skippedRepositories == ["nested/"])
            #expect(try FileManager.default.subpathsOfDirectory(atPath: repo.root).sorted() == before)
        }
    }

    @Test func cleanRemovesUntrackedFilesAndFoldersAndNothingElse() throws {
        try withRepository { repo, dir in
            try untidyTree(repo, dir)
            let result = try repo.clean(CleanOptions(directories: true))
            #expect(result.removed.count == 7)
            let left = try FileManager.default.contentsOfDirectory(atPath: repo.root).sorted()
            #expect(left == [".mrepo", AtomicFileWriter.temporaryPrefix + "1.00000000-x-model.safetensors", "model.safetensors", "nested", "sub", "train.log"])
            #expect(try FileManager.default.contentsOfDirectory(atPath: repo.root + "/sub") == ["config.json"])
            // The link went, as a link: what it pointed to is untouched.
            #expect(try readFile(dir + "/outside/keep.txt") == Array("keep".utf8))
            #expect(try readFile(repo.root + "/nested/inner.txt") == Array("inner".utf8))
            #expect(try repo.status().changes.map(\.path) == ["train.log"])
            #expect(try repo.fsck().isClean)
        }
    }

    @Test func ignoredFilesGoWithDashXAndAloneWithDashCapitalX() throws {
        try withRepository { repo, dir in
            try untidyTree(repo, dir)
            try writeFile("x", to: repo.root + "/logs/a.log")
            let only = try repo.clean(CleanOptions(dryRun: true, directories: true, ignored: .only))
            #expect(only.removed == ["logs/a.log", "train.log"])
            let all = try repo.clean(CleanOptions(ignored: .alsoRemoved))
            #expect(all.removed == [".mrepoignore", "bad\\xFF", "data", "optimizer.pt", "sub/new.txt", "train.log"])
            #expect(FileStat.of(repo.root + "/train.log") == nil)
            #expect(FileStat.of(repo.root + "/logs/a.log") != nil, "an untracked folder is not entered without directories")
        }
    }

    @Test func pathsLimitTheClean() throws {
        try withRepository { repo, dir in
            try untidyTree(repo, dir)
            #expect(try repo.clean(CleanOptions(directories: true, paths: ["runs"])).removed == ["runs/"])
            #expect(try repo.clean(CleanOptions(paths: ["*.pt", "sub"])).removed == ["optimizer.pt", "sub/new.txt"])
            #expect(FileStat.of(repo.root + "/runs") == nil)
            #expect(FileStat.of(repo.root + "/data") != nil)
        }
    }
}

/// What the review of `clean` found: a listed folder is entered (so what must stay inside it
/// stays), paths are taken from the current folder, names print escaped, and the files of a
/// `merge --no-commit` are not leftovers.
@Suite struct CleanEdgeTests {
    @Test func aListedFolderKeepsNestedRepositoriesAndTemporaryFilesInside() throws {
        try withRepository { repo, _ in
            try writeFile("x", to: repo.root + "/a.txt")
            try repo.commitAll("one")
            try writeFile("runs/\n", to: repo.root + "/.mrepoignore")
            try writeFile("log", to: repo.root + "/runs/a.log")
            _ = try Repository.initialize(at: repo.root + "/runs/nested")
            try FileManager.default.createDirectory(atPath: repo.root + "/runs/exp/.git", withIntermediateDirectories: true)
            let temporary = AtomicFileWriter.temporaryPrefix + "1.00000000-x-w"
            try writeFile("partial", to: repo.root + "/runs/" + temporary)
            let result = try repo.clean(CleanOptions(directories: true, ignored: .alsoRemoved))
            #expect(result.removed == [".mrepoignore", "runs/a.log"])
            #expect(result.skippedRepositories == ["runs/exp/", "runs/nested/"])
            #expect(FileStat.of(repo.root + "/runs/" + temporary) != nil)
            #expect(FileStat.of(repo.root + "/runs/nested/.mrepo") != nil)
            // Without -x the listed folder is not even entered.
            try writeFile("log", to: repo.root + "/runs/b.log")
            try writeFile("runs/\n", to: repo.root + "/.mrepoignore")
            #expect(try repo.clean(CleanOptions(dryRun: true, directories: true)).removed == [".mrepoignore"])
        }
    }

    @Test func pathsAreTakenFromTheCurrentFolderAndMayNotLeaveTheTree() throws {
        try withRepository { repo, dir in
            try writeFile("{}", to: repo.root + "/sub/config.json")
            try repo.commitAll("one")
            try writeFile("root", to: repo.root + "/notes.txt")
            try writeFile("sub", to: repo.root + "/sub/notes.txt")
            try writeFile("deep", to: repo.root + "/untracked/deep.txt")
            let sub = repo.root + "/sub"
            #expect(try repo.clean(CleanOptions(dryRun: true, from: sub)).removed == ["sub/notes.txt"])
            #expect(try repo.clean(CleanOptions(dryRun: true, paths: ["notes.txt"], from: sub)).removed == ["sub/notes.txt"])
            #expect(try repo.clean(CleanOptions(dryRun: true, paths: [".."], from: sub)).removed == ["notes.txt", "sub/notes.txt"])
            // A path inside an untracked folder is cleaned without -d, as git does.
            #expect(try repo.clean(CleanOptions(dryRun: true, paths: ["untracked/deep.txt"])).removed == ["untracked/deep.txt"])
            // The folder clean runs in is emptied, never removed (as git refuses to).
            #expect(try repo.clean(CleanOptions(directories: true, from: repo.root + "/untracked")).removed == ["untracked/deep.txt"])
            #expect(FileStat.of(repo.root + "/untracked")?.isDirectory == true)
            expectThrows(RepoError.invalidArgument("'\(dir)' is outside the working tree (\(repo.root))")) {
                _ = try repo.clean(CleanOptions(paths: [dir]))
            }
            #expect(FileStat.of(repo.root + "/notes.txt") != nil)
        }
    }

    @Test func namesPrintEscapedAndAMergeInProgressKeepsItsFiles() throws {
        try withRepository { repo, _ in
            try writeFloats([("w", [1, 2])], to: repo.root + "/model.safetensors")
            try repo.commitAll("base")
            try writeFile("x", to: repo.root + "/evil\nWould remove a.txt")
            #expect(try repo.clean(CleanOptions(dryRun: true)).removed == ["evil\\x0AWould remove a.txt"])
            // A path names the file by its real name, not by how it prints.
            try writeFile("tab", to: repo.root + "/tab\tx.txt")
            try writeFile("literal", to: repo.root + "/tab\\x09x.txt")
            #expect(try repo.clean(CleanOptions(dryRun: true, paths: ["tab\\x09x.txt"])).removed == ["tab\\\\x09x.txt"])
            #expect(try repo.clean(CleanOptions(dryRun: true, paths: ["tab\tx.txt"])).removed == ["tab\\x09x.txt"])
            _ = try repo.clean(CleanOptions())
            #expect(try repo.status().isClean)

            _ = try repo.switchBranch("side", create: true)
            try writeFile("new", to: repo.root + "/NOTES.md")
            try repo.commitAll("notes")
            _ = try repo.switchBranch("main")
            try writeFloats([("w", [1, 3])], to: repo.root + "/model.safetensors")
            try repo.commitAll("main moves")
            _ = try repo.merge(MergeOptions(branches: ["side"], recipe: MergeRecipe(method: "task_arithmetic", experts: []), noCommit: true))
            #expect(FileStat.of(repo.root + "/NOTES.md") != nil)
            #expect(try repo.clean(CleanOptions(dryRun: true)).removed.isEmpty, "the merge's candidate is not a leftover")
        }
    }
}
