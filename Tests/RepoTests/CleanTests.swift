import Delta
import Foundation
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
