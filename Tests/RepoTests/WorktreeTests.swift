import Delta
import Foundation
import Repo
import Testing

@Suite struct WorktreeTests {
    // MARK: - PathPolicy

    @Test(arguments: [
        ("", "empty path"),
        ("/etc/passwd", "absolute paths are not allowed in a tree"),
        ("..", "'..' would escape the working tree"),
        ("../x", "'..' would escape the working tree"),
        ("a/../../x", "'..' would escape the working tree"),
        ("a/..", "'..' would escape the working tree"),
        ("a//b", "empty or '.' path component"),
        ("a/./b", "empty or '.' path component"),
        ("a/", "empty or '.' path component"),
        ("a\\b", "path contains NUL or a backslash"),
        ("a\0b", "path contains NUL or a backslash"),
        (".mrepo/mrepo.db", "'.mrepo' is reserved"),
        (".mrepo", "'.mrepo' is reserved"),
        (".git/config", "'.git' is reserved"),
        // A nested repository (or its hooks) planted by a tree from a remote or a Hub upload.
        ("x/.mrepo/y", "'.mrepo' is reserved"),
        ("a/.MREPO/hooks/pre-commit", "'.MREPO' is reserved"),
        // A nested git folder: its config can run commands (core.fsmonitor) in the checkout.
        ("sub/.git/config", "'.git' is reserved"),
        (".Git/hooks/post-checkout", "'.Git' is reserved"),
    ])
    func unsafePathsAreRejected(path: String, reason: String) {
        #expect(throws: RepoError.unsafePath(path, reason: reason)) { _ = try PathPolicy.normalize(path) }
    }

    @Test(arguments: ["model.safetensors", "1_Pooling/config.json", "a/b/c.txt", "x/.gitattributes", ".mrepoignore", "..hidden", "a..b"])
    func safePathsAreKept(path: String) throws {
        #expect(try PathPolicy.normalize(path) == path)
    }

    @Test func symlinkParentsAreDetected() throws {
        try withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir + "/root/real", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: dir + "/elsewhere", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: dir + "/root/link", withDestinationPath: dir + "/elsewhere")
            try FileManager.default.createSymbolicLink(atPath: dir + "/root/real/file", withDestinationPath: dir + "/elsewhere/f")
            try PathPolicy.checkNoSymlinkParents(root: dir + "/root", path: "real/new.txt")
            try PathPolicy.checkNoSymlinkParents(root: dir + "/root", path: "missing/dir/new.txt")
            expectThrows(RepoError.unsafePath("link/x/y.txt", reason: "'\(dir)/root/link' is a symbolic link; refusing to write through it")) {
                try PathPolicy.checkNoSymlinkParents(root: dir + "/root", path: "link/x/y.txt")
            }
            expectThrows(RepoError.unsafePath("real/file", reason: "is a symbolic link in the working tree; refusing to overwrite it")) {
                try PathPolicy.checkNoSymlinkParents(root: dir + "/root", path: "real/file")
            }
        }
    }

    // MARK: - Symbolic links in a commit

    @Test func committingATreeWithASymlinkFailsAndWritesNothing() throws {
        try withRepository { repo, dir in
            try writeFile("target", to: dir + "/target.txt")
            try writeFloats([("w", [1, 2])], to: repo.root + "/a.safetensors")
            try writeFile("b", to: repo.root + "/b.txt")
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/link.txt", withDestinationPath: dir + "/target.txt")
            let error = thrownError { try repo.commitAll("with link") }
            guard case let .unsafePath(path, reason)? = error as? RepoError else {
                Issue.record("expected unsafePath, got \(String(describing: error))")
                return
            }
            #expect(path == "link.txt")
            #expect(reason.hasPrefix("is a symbolic link; trees never store links"))
            #expect(try repo.headCommit() == nil)
            #expect(repo.objectFiles.isEmpty)
            #expect(try repo.history.allObjects().isEmpty)

            // --dereference stores the file the link points to.
            let result = try repo.commitAll("dereferenced", followSymlinks: true)
            let file = try #require(try repo.tree(of: result.commit.id).file(at: "link.txt"))
            #expect(file.kind == .blob)
            #expect(try repo.objects.read(file.objectID) == Array("target".utf8))
            // A link listed in .mrepoignore is left out instead.
            try writeFile("link.txt\n", to: repo.root + "/.mrepoignore")
            let ignored = try repo.commitAll("ignored")
            #expect(try repo.tree(of: ignored.commit.id).file(at: "link.txt") == nil)
        }
    }

    @Test func symlinkedDirectoryIsRefusedToo() throws {
        try withRepository { repo, dir in
            try writeFile("x", to: dir + "/outside/x.txt")
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/data", withDestinationPath: dir + "/outside")
            expectThrows(RepoError.self) { try repo.commitAll("dir link") } matching: { if case .unsafePath("data", _) = $0 { true } else { false } }
            #expect(repo.objectFiles.isEmpty)
        }
    }

    // MARK: - IgnoreRules and FolderScanner

    @Test func ignoreRules() throws {
        try withTemporaryDirectory { dir in
            try writeFile("""
                # comment
                *.log

                /build/
                cache/
                sub/exact.txt
                   spaced.tmp   
                """, to: dir + "/.mrepoignore")
            let rules = IgnoreRules(file: dir + "/.mrepoignore")
            #expect(rules.ignores("train.log", isDirectory: false))
            #expect(rules.ignores("deep/down/train.log", isDirectory: false))
            #expect(rules.ignores("build", isDirectory: true))
            #expect(!rules.ignores("build", isDirectory: false))
            #expect(!rules.ignores("x/build", isDirectory: true), "a leading / anchors at the top")
            #expect(rules.ignores("cache", isDirectory: true))
            #expect(rules.ignores("x/cache", isDirectory: true))
            #expect(!rules.ignores("cache", isDirectory: false))
            #expect(rules.ignores("sub/exact.txt", isDirectory: false))
            #expect(!rules.ignores("other/sub/exact.txt", isDirectory: false))
            #expect(rules.ignores("spaced.tmp", isDirectory: false))
            #expect(!rules.ignores("# comment", isDirectory: false))
            #expect(!rules.ignores("model.safetensors", isDirectory: false))
            // Always left out, with or without a file.
            let none = IgnoreRules(file: nil)
            #expect(none.ignores(".mrepo", isDirectory: true))
            #expect(none.ignores(".git", isDirectory: true))
            #expect(none.ignores("a/" + AtomicFileWriter.temporaryPrefix + "1-x-model.safetensors", isDirectory: false))
            #expect(!none.ignores(".gitignore", isDirectory: false))
        }
    }

    /// git's `!`: a later negated pattern takes a path back in, the last matching line decides,
    /// and nothing comes back from inside an ignored folder (it is not entered). `!keep.tmp` had
    /// been a pattern for a file named "!keep.tmp": keep.tmp was left out of commits, and
    /// `clean -fX` deleted it.
    @Test func negatedPatternsTakePathsBackIn() throws {
        try withTemporaryDirectory { dir in
            try writeFile("*.tmp\n!keep.tmp\nlogs/\n!logs/important.log\n*.bak\n!*.bak\nold.bak\n\\!bang\n\\#hash\n*.ckpt\n!/top.ckpt\n", to: dir + "/.mrepoignore")
            let rules = IgnoreRules(file: dir + "/.mrepoignore")
            #expect(!rules.ignores("top.ckpt", isDirectory: false) && rules.ignores("x/top.ckpt", isDirectory: false))
            #expect(rules.ignores("a.tmp", isDirectory: false))
            #expect(!rules.ignores("keep.tmp", isDirectory: false))
            #expect(!rules.ignores("deep/keep.tmp", isDirectory: false))
            #expect(rules.ignores("x.bak", isDirectory: false) == false && rules.ignores("old.bak", isDirectory: false))
            #expect(rules.ignores("!bang", isDirectory: false) && rules.ignores("#hash", isDirectory: false))
            for name in ["a.tmp", "keep.tmp", "logs/important.log", "logs/other.log", "!bang", "#hash", "model.txt"] {
                try writeFile("x", to: dir + "/" + name)
            }
            let files = try FolderScanner.scan(root: dir, ignore: rules).map(\.path)
            #expect(files == [".mrepoignore", "keep.tmp", "model.txt"], "the folder is ignored whole: \(files)")
        }
    }

    /// Patterns with a `/` are matched a component at a time, as git does: `*` stays inside one
    /// (`a/*.bin` had also ignored `a/b/y.bin`, which a commit then left out and `clean -X`
    /// deleted), `**` spans any number of folders (none included), and escapes and raw bytes work.
    @Test func patternsMatchAsGitsDo() throws {
        try withTemporaryDirectory { dir in
            try writeFile("a/*.bin\nx/**/y.bin\n**/foo\nlogs/**\n!logs/keep/\nback\\\\slash\nsp\\ \n*.safetensors\n", to: dir + "/.mrepoignore")
            let rules = IgnoreRules(file: dir + "/.mrepoignore")
            #expect(rules.ignores("a/x.bin", isDirectory: false) && !rules.ignores("a/b/y.bin", isDirectory: false))
            #expect(rules.ignores("x/y.bin", isDirectory: false) && rules.ignores("x/p/q/y.bin", isDirectory: false))
            #expect(rules.ignores("foo", isDirectory: false) && rules.ignores("d/e/foo", isDirectory: false))
            #expect(rules.ignores("logs/a.log", isDirectory: false) && !rules.ignores("logs", isDirectory: true))
            #expect(!rules.ignores("logs/keep", isDirectory: true), "taken back")
            #expect(rules.ignores("back\\slash", isDirectory: false) && rules.ignores("sp ", isDirectory: false))
            #expect(rules.ignores("model.safetensors", isDirectory: false))
            // A byte order mark, trailing tabs and lone CR line ends (older builds read these).
            try Data([0xEF, 0xBB, 0xBF] + Array("*.bin\t\rfoo \r".utf8)).write(to: URL(fileURLWithPath: dir + "/.mrepoignore"))
            let edited = IgnoreRules(file: dir + "/.mrepoignore")
            #expect(edited.ignores("scratch.bin", isDirectory: false) && edited.ignores("foo", isDirectory: false))
            // Many `**` stay fast (they backtracked exponentially: 10 s for a path 14 deep).
            try Data(("a/" + String(repeating: "**/", count: 10) + "zz\n").utf8).write(to: URL(fileURLWithPath: dir + "/.mrepoignore"))
            let deep = (0..<14).map { "d\($0)" }.joined(separator: "/") + "/y"
            #expect(!IgnoreRules(file: dir + "/.mrepoignore").ignores("a/" + deep, isDirectory: false))
            // Raw bytes: a Latin-1 name listed as it is.
            try Data([0x69, 0x6E, 0x76, 0xE9, 0x2E, 0x74, 0x78, 0x74, 0x0A]).write(to: URL(fileURLWithPath: dir + "/.mrepoignore"))
            #expect(IgnoreRules(file: dir + "/.mrepoignore").ignores(rawPath: [0x69, 0x6E, 0x76, 0xE9, 0x2E, 0x74, 0x78, 0x74], isDirectory: false))
        }
    }

    @Test func folderScannerListsRegularFilesSorted() throws {
        try withTemporaryDirectory { dir in
            for name in ["b.txt", "a/z.txt", "a/b/c.bin", "skip.log", ".mrepo/objects/x", ".git/HEAD", "logs/x.log"] {
                try writeFile("x", to: dir + "/" + name)
            }
            try writeFile("*.log\n", to: dir + "/.mrepoignore")
            try FileManager.default.createDirectory(atPath: dir + "/empty-dir", withIntermediateDirectories: true)
            let files = try FolderScanner.scan(root: dir, ignore: IgnoreRules(file: dir + "/.mrepoignore"))
            #expect(files.map(\.path) == [".mrepoignore", "a/b/c.bin", "a/z.txt", "b.txt"])
            let allRegular = files.allSatisfy { $0.absolutePath == dir + "/" + $0.path && $0.stat.isRegular && $0.stat.size > 0 }
            #expect(allRegular, "\(files)")
        }
    }

    @Test func isSafetensorsPathIsBySuffix() {
        #expect(isSafetensorsPath("a/model.safetensors"))
        #expect(!isSafetensorsPath("model.safetensors.index.json"))
        #expect(!isSafetensorsPath("model.bin"))
    }
}
