import Delta
import Foundation
import Testing

@testable import Repo

/// Working trees a campaign of hostile inputs found holes in: nested repositories, names that are
/// not valid UTF-8 or differ only in normalisation, control characters, exports into the store,
/// a path that is a file on one branch and a folder on another, links to folders.
@Suite struct HostileWorktreeTests {
    /// Creates a file whose name is given as raw bytes (possibly not valid UTF-8).
    func createFile(in dir: String, rawName: [UInt8], contents: String = "x") throws {
        let path = Array(dir.utf8) + [UInt8(ascii: "/")] + rawName + [0]
        let fd = path.withUnsafeBufferPointer { p in
            p.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_WRONLY | O_CREAT | O_TRUNC, 0o644) }
        }
        try #require(fd >= 0)
        _ = Array(contents.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    // MARK: - Nested repositories

    @Test func aNestedRepositoryIsNeverStoredNorTouched() throws {
        // The fixture, not a closure: the #expect below hold closures (see expectThrows).
        let fixture = try TemporaryRepository()
        let repo = fixture.repo
        try repo.writeModel()
        try writeFile(#"{"v": 1}"#, to: repo.root + "/sub/a.json")
        let plain = try repo.commitAll("sub as plain files").commit.id
        // The folder becomes a repository of its own, with its own history.
        let nested = try Repository.initialize(at: repo.root + "/sub")
        try nested.commitAll("nested")
        try writeFile(#"{"v": 2}"#, to: repo.root + "/sub/a.json")
        let inside = try snapshot(repo.root + "/sub").mapValues(\.bytes)
        let store = try FolderScanner.entries(of: repo.root + "/sub/.mrepo")

        let status = try repo.status()
        #expect(status.nestedRepositories == ["sub"])
        #expect(status.changes.map(\.path) == ["sub/a.json"] && status.changes.first?.kind == .deleted)
        let later = try repo.commitAll("the nested repository is left out").commit.id
        #expect(try repo.tree(of: later).files.allSatisfy { !$0.path.hasPrefix("sub/") })

        // Neither an older commit that lists sub/a.json nor one without it touches the folder.
        for revision in [plain.hex, later.hex, plain.hex, "main"] {
            _ = try repo.checkout(revision, force: true)
            #expect(try snapshot(repo.root + "/sub").mapValues(\.bytes) == inside, "after checking out \(revision)")
            #expect(try FolderScanner.entries(of: repo.root + "/sub/.mrepo") == store)
        }
        // Its files, missing from the outer view, block no switch either.
        _ = try repo.checkout(plain.hex, force: true)
        #expect(try repo.status().changes.map(\.path) == ["sub/a.json"])
        _ = try repo.switchBranch("main")
        #expect(try snapshot(repo.root + "/sub").mapValues(\.bytes) == inside)
        #expect(try nested.history.allCommits().count == 1)
        #expect(try Repository.open(at: repo.root + "/sub").root == repo.root + "/sub")
        #expect(try repo.fsck().isClean)
    }

    @Test func aFolderInTheWayThatHoldsANestedRepositoryIsNotRemoved() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            try writeFile("file", to: repo.root + "/extra")
            try repo.commitAll("extra is a file")
            _ = try repo.switchBranch("folder", create: true, startPoint: "main")
            unlink(repo.root + "/extra")
            _ = try Repository.initialize(at: repo.root + "/extra")
            try writeFile("kept", to: repo.root + "/extra/notes.txt")
            // Even --force does not remove a folder holding files mrepo does not track (here a repository).
            expectThrows(RepoError.self) { _ = try repo.switchBranch("main", force: true) } matching: {
                if case .unsafePath("extra", _) = $0 { true } else { false }
            }
            #expect(FolderScanner.isNestedRepository(repo.root + "/extra"))
            #expect(try readFile(repo.root + "/extra/notes.txt") == Array("kept".utf8))
        }
    }

    // MARK: - Names

    @Test func aNameThatIsNotUTF8IsRefusedNotDropped() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            try repo.commitAll("base")
            try createFile(in: repo.root, rawName: Array("caf".utf8) + [0xE9] + Array(".txt".utf8))
            let reason = "the name is not valid UTF-8 (shown with its bytes escaped); rename it, or list it in .mrepoignore"
            // status lists it (escaped) with the reason, never drops it; commit refuses it.
            let listed = try repo.status().changes
            #expect(listed.map(\.path) == ["caf\\xE9.txt"])
            #expect(listed.first?.kind == .added && listed.first?.reason == reason && listed.first?.unstorable == true)
            expectThrows(RepoError.unsafePath("caf\\xE9.txt", reason: reason)) { try repo.commitAll("dropped?") }
            #expect(try repo.history.allCommits().count == 1)
            // An untracked oddity does not stop a switch, and the switch leaves it alone.
            #expect(try repo.switchBranch("side", create: true).writtenFiles == 0)
            #expect(try repo.status().changes.map(\.path) == ["caf\\xE9.txt"])
            // .mrepoignore matches the raw bytes.
            try writeFile("caf*.txt\n", to: repo.root + "/.mrepoignore")
            #expect(try repo.status().changes.map(\.path) == [".mrepoignore"])
            #expect(try repo.commitAll("ignored").commit.parents.count == 1)
        }
    }

    @Test func namesThatDifferOnlyInNormalisationAreTwoEntriesAndCommitRefusesThem() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            try repo.commitAll("base")
            _ = try repo.switchBranch("other", create: true)
            let nfc = "\u{E9}.txt", nfd = "e\u{301}.txt"
            #expect(nfc == nfd)   // Swift compares canonically, the file system byte by byte.
            try createFile(in: repo.root, rawName: Array(nfc.utf8), contents: "nfc")
            try createFile(in: repo.root, rawName: Array(nfd.utf8), contents: "nfd")
            let status = try repo.status()
            #expect(status.changes.count == 2 && status.changes.allSatisfy { $0.kind == .added })
            #expect(Set(status.changes.map { Array($0.path.utf8) }) == [Array(nfc.utf8), Array(nfd.utf8)])
            #expect(status.normalizationTwins.count == 1)
            let error = thrownError { try repo.commitAll("both") }
            #expect((error as? RepoError)?.description
                == #"\u{E9}.txt: differs from 'e\u{301}.txt' only in Unicode normalisation (NFC and NFD); mrepo stores one spelling per name: rename or remove one of them"#
                || (error as? RepoError)?.description
                == #"e\u{301}.txt: differs from '\u{E9}.txt' only in Unicode normalisation (NFC and NFD); mrepo stores one spelling per name: rename or remove one of them"#,
                "\(String(describing: error))")
            // A switch would compare them as one file: it refuses too, and writes nothing.
            expectThrows(RepoError.self) { try repo.checkout("main") } matching: {
                // The path as errors show it (escaped), either spelling.
                if case let .unsafePath(path, _) = $0 { [#"e\u{301}.txt"#, #"\u{E9}.txt"#].contains(path) } else { false }
            }
            #expect(try repo.history.allCommits().count == 1)
            unlink(repo.root + "/" + nfd)
            #expect(try repo.commitAll("one").commit.parents.count == 1)
        }
    }

    @Test func aControlCharacterInAFileNameIsRefused() throws {
        try withRepository { repo, _ in
            try writeFile("x", to: repo.root + "/a\nb.txt")
            let reason = "the name holds a control character (U+000A); rename it, or list it in .mrepoignore"
            expectThrows(RepoError.unsafePath("a\\x0Ab.txt", reason: reason)) {
                try repo.commitAll("newline")
            }
            #expect(repo.objectFiles.isEmpty)
            let listed = try repo.status().changes
            #expect(listed.map(\.path) == ["a\\x0Ab.txt"] && listed.first?.reason == reason)
        }
    }

    @Test func aTensorNameWithANulIsRefusedAtCommit() throws {
        try withRepository { repo, _ in
            try writeFile(safetensorsBytes(json: #"{"a\u0000b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, data: [1]),
                          to: repo.root + "/model.safetensors")
            expectThrows(RepoError.delta(.invalidTensor(file: "model.safetensors", tensor: "a\\x00b",
                                                       problem: "tensor names must not contain control characters (found U+0000)"))) {
                try repo.commitAll("nul")
            }
            #expect(try repo.history.allCommits().isEmpty && repo.objectFiles.isEmpty)
            #expect(try repo.fsck().isClean)
        }
    }

    // MARK: - Export destinations

    @Test func exportIntoTheStoreIsRefusedHoweverItIsSpelled() throws {
        try withRepository { repo, dir in
            try repo.writeModel()
            try repo.commitAll("base")
            try FileManager.default.createSymbolicLink(atPath: dir + "/to-store", withDestinationPath: repo.root + "/.mrepo/objects")
            let before = try FolderScanner.entries(of: repo.metaDirectory)
            for destination in [repo.metaDirectory, repo.metaDirectory + "/objects/x", repo.root + "/sub/../.mrepo",
                                dir + "/to-store", dir + "/to-store/new/folder"] {
                expectThrows(RepoError.exportIntoStore(directory: destination)) { _ = try repo.export("HEAD", to: destination) }
            }
            // The read lock file the exports create is the only new entry (no temporary file, no folder).
            let after = try FolderScanner.entries(of: repo.metaDirectory)
            let added = Set(after.map { String(decoding: $0, as: UTF8.self) }).subtracting(before.map { String(decoding: $0, as: UTF8.self) })
            #expect(added.isSubset(of: ["gc.lock"]), "\(added)")
            #expect(FileStat.of(repo.root + "/.mrepo/objects/x") == nil)
            #expect(try repo.fsck().isClean)
            #expect(try repo.export("HEAD", to: dir + "/out").fileCount > 0)
        }
    }

    // MARK: - A file on one branch, a folder on another

    @Test func switchingBetweenAFileAndAFolderOfTheSameName() throws {
        try withRepository { repo, _ in
            try repo.writeModel()
            try repo.commitAll("base")
            _ = try repo.switchBranch("folder", create: true)
            try writeFile(#"{"b": 2}"#, to: repo.root + "/extra/deeper/a.json")
            try writeFile(#"{"c": 3}"#, to: repo.root + "/extra/c.json")
            try repo.commitAll("extra is a folder")
            let folderFiles = try snapshot(repo.root).mapValues(\.bytes)
            _ = try repo.switchBranch("file", create: true, startPoint: "main")
            try writeFile(#"{"a": 1}"#, to: repo.root + "/extra")
            try repo.commitAll("extra is a file")
            let fileFiles = try snapshot(repo.root).mapValues(\.bytes)

            for (branch, expected) in [("folder", folderFiles), ("file", fileFiles), ("folder", folderFiles), ("file", fileFiles)] {
                _ = try repo.switchBranch(branch)
                #expect(try snapshot(repo.root).mapValues(\.bytes) == expected, "on \(branch)")
                #expect(try repo.status().isClean)
            }
            // An untracked file where the folder goes stops the switch, unless forced.
            _ = try repo.switchBranch("main")
            try writeFile("mine", to: repo.root + "/extra")
            expectThrows(RepoError.dirtyWorktree(operation: "switching", paths: ["extra"])) { try repo.switchBranch("folder") }
            #expect(try readFile(repo.root + "/extra") == Array("mine".utf8))
            _ = try repo.switchBranch("folder", force: true)
            #expect(try snapshot(repo.root).mapValues(\.bytes) == folderFiles)
            // Untracked files in the folder where the file goes stop it even with --force.
            try writeFile("keep me", to: repo.root + "/extra/deeper/untracked.txt")
            let error = thrownError { _ = try repo.switchBranch("file", force: true) }
            #expect(error as? RepoError == .unsafePath("extra", reason:
                "is a folder where the checkout writes a file, and it holds files mrepo does not track (extra/deeper/untracked.txt); move them away first"))
            #expect(try readFile(repo.root + "/extra/deeper/untracked.txt") == Array("keep me".utf8))
            #expect(try repo.history.head().branchName == "folder")
            #expect(try repo.fsck().isClean)
        }
    }

    // MARK: - --dereference

    @Test func dereferenceFollowsLinksToFilesOnly() throws {
        try withRepository { repo, dir in
            try writeFile("outside", to: dir + "/outside/x.txt")
            try writeFile("inside", to: repo.root + "/real.txt")
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/up", withDestinationPath: "..")
            let up = thrownError { try repo.commitAll("up", followSymlinks: true) }
            #expect(up as? RepoError == .unsafePath("up", reason:
                "is a symbolic link to a folder; --dereference follows links to regular files only (copy the folder in, or list the link in .mrepoignore)"))
            unlink(repo.root + "/up")
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/data", withDestinationPath: dir + "/outside")
            expectThrows(RepoError.self) { try repo.commitAll("folder link", followSymlinks: true) } matching: { if case .unsafePath("data", _) = $0 { true } else { false } }
            unlink(repo.root + "/data")
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/dangling", withDestinationPath: dir + "/nothing")
            expectThrows(RepoError.self) { try repo.commitAll("dangling", followSymlinks: true) } matching: { if case .unsafePath("dangling", _) = $0 { true } else { false } }
            unlink(repo.root + "/dangling")
            #expect(repo.objectFiles.isEmpty)
            // A link to a file, even outside the working tree, stores the file.
            try FileManager.default.createSymbolicLink(atPath: repo.root + "/x.txt", withDestinationPath: dir + "/outside/x.txt")
            let tree = try repo.tree(of: try repo.commitAll("file link", followSymlinks: true).commit.id)
            #expect(tree.files.map(\.path) == ["real.txt", "x.txt"])
        }
    }

    // MARK: - Shard indexes

    @Test(arguments: [("../x.safetensors", "names '../x.safetensors', outside the checkpoint folder"),
                      ("/etc/passwd", "names '/etc/passwd', outside the checkpoint folder"),
                      ("missing.safetensors", "names shard 'missing.safetensors', which is not in the folder")])
    func aShardIndexThatPointsElsewhereIsRefusedAtCommit(shard: String, problem: String) throws {
        try withRepository { repo, _ in
            try writeFloats([("w", [1, 2])], to: repo.root + "/sub/model.safetensors")
            try writeFile(#"{"weight_map": {"w": "model.safetensors", "v": "\#(shard)"}}"#, to: repo.root + "/sub/model.safetensors.index.json")
            expectThrows(RepoError.delta(.invalidShardIndex(file: "sub/model.safetensors.index.json", problem: "weight_map entry 'v' " + problem))) {
                try repo.commitAll("bad index")
            }
            #expect(repo.objectFiles.isEmpty)
            try writeFile(#"{"weight_map": {"w": "model.safetensors"}}"#, to: repo.root + "/sub/model.safetensors.index.json")
            #expect(try repo.commitAll("good index").fileCount == 2)
        }
    }
}
