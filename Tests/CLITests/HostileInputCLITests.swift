import Delta
import Foundation
import Testing

/// Mounting a tmpfs needs root (CAP_SYS_ADMIN); where it is not allowed the full-disk test is
/// skipped.
enum TinyDisk {
    static func run(_ arguments: [String]) -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return -1 }
        p.waitUntilExit()
        return p.terminationStatus
    }

    static let mountAllowed: Bool = {
        let dir = NSTemporaryDirectory() + "mrepo-mount-probe-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir]) == 0 else { return false }
        _ = run(["umount", dir])
        return true
    }()

    /// Fills the file system holding `path` (a new file) until a write fails.
    static func fill(_ path: String) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let block = [UInt8](repeating: 0x55, count: 4096)
        while block.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) > 0 {}
        // The last few bytes of a partly free block.
        while write(fd, block, 1) > 0 {}
    }
}

/// End to end: hostile files and a full disk get one-line errors and leave the repository intact.
@Suite struct HostileInputCLITests {
    @Test(.enabled(if: TinyDisk.mountAllowed, "mounting a tmpfs is not permitted here"))
    func aFullDiskStillReadsAndGCFreesSpace() throws {
        let s = try CLISandbox()
        try s.makeFamily("fam")
        try FileManager.default.createDirectory(atPath: s.path("disk"), withIntermediateDirectories: true)
        try #require(TinyDisk.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", s.path("disk")]) == 0)
        defer { _ = TinyDisk.run(["umount", "-l", s.path("disk")]) }
        try s.ok(["init", "disk/repo"])
        try s.ok(["commit", "--from", s.path("fam/base"), "-m", "base"], in: "disk/repo")
        try s.ok(["switch", "-c", "scratch"], in: "disk/repo")
        try s.ok(["commit", "--from", s.path("fam/chat"), "-m", "chat"], in: "disk/repo")
        try s.ok(["switch", "main"], in: "disk/repo")
        try s.ok(["branch", "-D", "scratch"], in: "disk/repo")
        TinyDisk.fill(s.path("disk/fill"))
        #expect((DiskSpace.available(near: s.path("disk")) ?? 1) == 0)

        // Reading commands work.
        #expect(try s.ok(["log", "--oneline"], in: "disk/repo").stdout.contains("base"))
        #expect(try s.ok(["status"], in: "disk/repo").stdout.contains("working tree clean"))
        #expect(try s.ok(["fsck"], in: "disk/repo").stdout.hasPrefix("ok: 2 commits"))
        // Writing ones say so in one line and change nothing.
        expectOneLineError(try s.run(["commit", "--allow-empty", "-m", "more"], in: "disk/repo"), contains: "disk full")
        // The error names the file being stored, not the object or copy mrepo was writing for it.
        let from = try s.run(["commit", "--from", s.path("fam/math"), "-m", "math"], in: "disk/repo")
        expectOneLineError(from, contains: "disk full")
        #expect(!from.stderr.contains(AtomicFileWriter.temporaryPrefix) && !from.stderr.contains("incoming"), "\(from.stderr)")
        #expect(try s.ok(["log", "--oneline"], in: "disk/repo").stdout.split(separator: "\n").count == 1)
        // So does a commit of an edited file, and a deleted file put back names itself, not its
        // temporary file.
        try FileManager.default.removeItem(atPath: s.path("disk/fill"))
        try FileManager.default.removeItem(atPath: s.path("disk/repo/model.safetensors"))
        try FileManager.default.copyItem(atPath: s.path("fam/math/model.safetensors"), toPath: s.path("disk/repo/model.safetensors"))
        try FileManager.default.removeItem(atPath: s.path("disk/repo/config.json"))
        TinyDisk.fill(s.path("disk/fill"))
        let inPlace = try s.run(["commit", "-m", "math"], in: "disk/repo")
        expectOneLineError(inPlace, contains: ".mrepo (storing model.safetensors): disk full")
        #expect(!inPlace.stderr.contains(AtomicFileWriter.temporaryPrefix) && !inPlace.stderr.contains("incoming"), "\(inPlace.stderr)")
        let restore = try s.run(["restore", "config.json"], in: "disk/repo")
        expectOneLineError(restore, contains: "config.json: disk full")
        #expect(!restore.stderr.contains(AtomicFileWriter.temporaryPrefix), "\(restore.stderr)")
        #expect(try s.ok(["log", "--oneline"], in: "disk/repo").stdout.split(separator: "\n").count == 1)

        // gc frees space: on a full disk it deletes the files first. Killed there, it leaves rows
        // whose files are gone, which fsck reports as a warning and the next gc forgets.
        let killed = try s.run(["gc", "--prune-reflog"], in: "disk/repo", environment: ["MREPO_KILL_AT": "gc.remove:3"])
        #expect(killed.status == -9, "the kill point was not reached: \(killed.stderr)")
        let interrupted = try s.ok(["fsck"], in: "disk/repo")
        #expect(interrupted.stdout.contains("2 objects that no branch, tag or HEAD needs have no file")
                    || interrupted.stderr.contains("2 objects that no branch, tag or HEAD needs have no file"),
                "\(interrupted.stdout)\(interrupted.stderr)")
        let gc = try s.ok(["gc", "--prune-reflog"], in: "disk/repo")
        #expect(gc.stdout.contains("removed 1 commit,"), "\(gc.stdout)")
        #expect((DiskSpace.available(near: s.path("disk")) ?? 0) > 0)
        let fsck = try s.ok(["fsck"], in: "disk/repo")
        #expect(fsck.stdout.hasPrefix("ok: 1 commits") && !fsck.stderr.contains("warning"), "\(fsck.stdout)\(fsck.stderr)")
        try s.ok(["export", "HEAD", s.path("out")], in: "disk/repo")
        #expect(s.sameFiles("out", "fam/base"))
    }

    /// A checkpoint that shrinks while it is committed (a trainer rewriting it) gets the one-line
    /// "changed while it was being committed", with nothing recorded: reading its mapped pages past
    /// the new end raised SIGBUS and the process died with a crash report (exit 135). The
    /// pre-commit hook truncates it after the scan and before its bytes are read.
    @Test func aCheckpointThatShrinksDuringTheCommitIsRefusedInOneLine() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        let before = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        try FileManager.default.copyItem(atPath: s.path("family/math"), toPath: s.path("shrinking"))
        try writeFile("#!/bin/sh\nprintf 'garbage!garbage' > \"$MREPO_SOURCE/model.safetensors\"\n",
                      to: s.path("repo/.mrepo/hooks/pre-commit"), executable: true)
        let r = try s.run(["commit", "--from", "../shrinking", "-m", "shrinks"], in: "repo")
        expectOneLineError(r, contains: "model.safetensors: changed while it was being committed; nothing was recorded")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == before)
        try s.ok(["fsck"], in: "repo")
    }

    /// A shard index whose weight_map does not match its shards is refused at commit, naming the
    /// index, the field and a tensor, as `mrepo check` reports it (commit took them: a tensor listed
    /// in the wrong shard or in none, one left out, one in two shards).
    @Test func aWeightMapThatDoesNotMatchItsShardsIsRefusedAtCommit() throws {
        let s = try CLISandbox()
        try s.ok(["synth", "--size", "tiny", "--shards", "3", "fam"])
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../fam/base", "-m", "base"], in: "repo")
        let head = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        let indexName = "model.safetensors.index.json"
        func variant(_ name: String, _ edit: (inout [String: Any], String) throws -> Void) throws -> String {
            try FileManager.default.copyItem(atPath: s.path("fam/math"), toPath: s.path(name))
            let path = s.path(name + "/" + indexName)
            var doc = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
            try edit(&doc, s.path(name))
            try JSONSerialization.data(withJSONObject: doc).write(to: URL(fileURLWithPath: path))
            return name
        }
        let ghost = try variant("ghost") { doc, _ in
            var map = doc["weight_map"] as! [String: String]
            map["ghost.weight"] = map.values.first!
            doc["weight_map"] = map
        }
        let left = try variant("left") { doc, _ in
            var map = doc["weight_map"] as! [String: String]
            map.removeValue(forKey: map.keys.sorted().first!)
            doc["weight_map"] = map
        }
        let twice = try variant("twice") { _, folder in
            try FileManager.default.removeItem(atPath: folder + "/model-00002-of-00003.safetensors")
            try FileManager.default.copyItem(atPath: folder + "/model-00001-of-00003.safetensors", toPath: folder + "/model-00002-of-00003.safetensors")
        }
        for (folder, fragment) in [(ghost, "weight_map lists tensor 'ghost.weight' in shard"), (left, "weight_map does not list tensor"),
                                   (twice, "weight_map")] {
            let r = try s.run(["commit", "--from", "../" + folder, "-m", folder], in: "repo")
            expectOneLineError(r, contains: "\(indexName): \(fragment)")
            #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == head, "\(folder): nothing recorded")
        }
    }

    @Test func hostileAdapterConfigsAreRefusedAtCommit() throws {
        let s = try CLISandbox()
        try s.synth("fam", ["--size", "tiny", "--adapters", "1", "--lora-rank", "4"])
        try s.ok(["init", "repo"])
        try s.ok(["commit", "--from", "../fam/base", "-m", "base"], in: "repo")
        try s.ok(["switch", "-c", "lora"], in: "repo")
        let configBytes = try #require(s.read("fam/lora-math/adapter_config.json"))
        let original = try #require(try JSONSerialization.jsonObject(with: configBytes) as? [String: Any])
        func commit(_ changes: [String: Any]) throws -> CLIResult {
            var config = original
            for (k, v) in changes { config[k] = v }
            try? FileManager.default.removeItem(atPath: s.path("lora"))
            try FileManager.default.copyItem(atPath: s.path("fam/lora-math"), toPath: s.path("lora"))
            var text = String(decoding: try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys]), as: UTF8.self)
            // JSONSerialization cannot write 1e400: splice it in.
            text = text.replacingOccurrences(of: "\"__1e400__\"", with: "1e400")
            try Data(text.utf8).write(to: URL(fileURLWithPath: s.path("lora/adapter_config.json")))
            return try s.run(["commit", "--from", "../lora", "-m", "lora"], in: "repo")
        }
        let cases: [([String: Any], String)] = [
            (["lora_alpha": "__1e400__"], "adapter_config.json: 'lora_alpha' is 1e400, which is not a finite float32 number"),
            (["lora_alpha": "sixteen"], #"adapter_config.json: 'lora_alpha' must be a number, not "sixteen""#),
            (["r": 2], "adapter_config.json: 'r' gives module"),
            (["rank_pattern": ["query": 8]], "adapter_config.json: 'rank_pattern' gives module"),
            (["rank_pattern": ["(?<=x)query": 4]], "adapter_config.json: 'rank_pattern' entry '(?<=x)query': '(?' groups"),
            (["alpha_pattern": ["value": "x"]], "adapter_config.json: 'alpha_pattern' entry 'value' must be a number"),
        ]
        for (changes, message) in cases {
            expectOneLineError(try commit(changes), contains: message)
        }
        #expect(try s.ok(["log", "--oneline"], in: "repo").stdout.split(separator: "\n").count == 1)
        // Patterns that hang a backtracking engine are matched in bounded time.
        let slow = try commit(["rank_pattern": ["(.*a){20}": 2, "((query)+)+x": 3], "alpha_pattern": ["(\\w+\\.?)+\\.value": 4]])
        #expect(slow.status == 0, "\(slow.stderr)")
        #expect(try s.ok(["fsck"], in: "repo").status == 0)
    }

    @Test func hostileFilesGetOneLineErrorsAndChangeNothing() throws {
        let s = try CLISandbox()
        try s.makeFamily("fam")
        try s.ok(["init", "repo"])
        try s.ok(["commit", "--from", "../fam/base", "-m", "base"], in: "repo")
        func log() throws -> String { try s.ok(["log", "--oneline"], in: "repo").stdout }
        let before = try log()

        // A tensor name with a NUL.
        try Data(safetensorsBytes(json: #"{"a\u0000b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}"#, data: [1]))
            .write(to: URL(fileURLWithPath: s.path("repo/extra.safetensors")))
        expectOneLineError(try s.run(["commit", "-m", "nul"], in: "repo"),
                           contains: "extra.safetensors: tensor 'a\\x00b': tensor names must not contain control characters (found U+0000)")
        #expect(try s.run(["check", "repo/extra.safetensors"]).status != 0)
        try FileManager.default.removeItem(atPath: s.path("repo/extra.safetensors"))

        // A name that is not UTF-8.
        let raw = Array(s.path("repo/caf").utf8) + [0xE9, 0]
        let fd = raw.withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_WRONLY | O_CREAT, 0o644) } }
        close(fd)
        // status lists it with the reason; commit refuses it.
        #expect(try s.ok(["status"], in: "repo").stdout.contains("new file:  caf\\xE9  (the name is not valid UTF-8"))
        expectOneLineError(try s.run(["commit", "-m", "latin-1"], in: "repo"), contains: "caf\\xE9: the name is not valid UTF-8")
        _ = raw.withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { unlink($0.baseAddress!) } }

        // A shard index pointing outside the folder or at a missing shard.
        for (shard, problem) in [("../x.safetensors", "names '../x.safetensors', outside the checkpoint folder"),
                                 ("gone.safetensors", "names shard 'gone.safetensors', which is not in the folder")] {
            try Data(#"{"weight_map": {"w": "\#(shard)"}}"#.utf8).write(to: URL(fileURLWithPath: s.path("repo/model.safetensors.index.json")))
            expectOneLineError(try s.run(["commit", "-m", "index"], in: "repo"),
                               contains: "model.safetensors.index.json: weight_map entry 'w' " + problem)
        }
        try FileManager.default.removeItem(atPath: s.path("repo/model.safetensors.index.json"))

        // Exports into the store.
        for destination in [".mrepo", ".mrepo/objects", "./sub/../.mrepo/x"] {
            expectOneLineError(try s.run(["export", "HEAD", destination], in: "repo"), contains: "inside the repository's own store")
        }
        #expect(try log() == before)
        #expect(try s.ok(["status"], in: "repo").stdout.contains("working tree clean"))
        #expect(try s.ok(["fsck"], in: "repo").status == 0)

        // A nested repository is listed by status, never committed.
        try s.ok(["init", "repo/inner"])
        try Data("{}".utf8).write(to: URL(fileURLWithPath: s.path("repo/inner/config.json")))
        let status = try s.ok(["status"], in: "repo").stdout
        #expect(status.contains("Nested repositories") && status.contains("  inner/"), "\(status)")
        let json = try #require(try s.json(try s.ok(["status", "--json"], in: "repo")) as? [String: Any])
        #expect(json["nested_repositories"] as? [String] == ["inner"] && json["clean"] as? Bool == true)
        expectOneLineError(try s.run(["commit", "-m", "inner"], in: "repo"), contains: "nothing to commit")
    }

    /// A name with a backslash (valid on Linux, a folder separator on Windows) that no tree can
    /// hold: listed by status with the reason, refused by commit naming it, and no stop for the
    /// commands that only compare (status, diff, switch, checkout, stash without -u); the first
    /// such file had stopped every one of them.
    @Test func untrackedBackslashNamesStopOnlyTheCommitThatWouldStoreThem() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math"])
        try Data("x".utf8).write(to: URL(fileURLWithPath: s.path("repo/a\\b.txt")))
        try FileManager.default.createDirectory(atPath: s.path("repo/sub\\dir"), withIntermediateDirectories: true)
        try Data("y".utf8).write(to: URL(fileURLWithPath: s.path("repo/sub\\dir/c.txt")))
        // An untracked link to nothing: not looked at by a stash of the tracked files either.
        try FileManager.default.createSymbolicLink(atPath: s.path("repo/dangling"), withDestinationPath: "/nonexistent")
        let status = try s.ok(["status"], in: "repo").stdout
        #expect(status.contains("new file:  a\\\\b.txt  (the name holds a backslash"), "\(status)")
        #expect(status.contains("new file:  sub\\\\dir  (the name holds a backslash"), "\(status)")
        try s.ok(["diff"], in: "repo")
        try s.ok(["switch", "-q", "math"], in: "repo")
        try s.ok(["checkout", "-q", "main"], in: "repo")
        try Data("changed".utf8).write(to: URL(fileURLWithPath: s.path("repo/README.md")))
        try s.ok(["stash", "-q"], in: "repo")
        #expect(s.read("repo/README.md") == s.read("family/base/README.md"))
        try s.ok(["stash", "pop", "-q"], in: "repo")
        #expect(s.read("repo/README.md") == Data("changed".utf8))
        expectOneLineError(try s.run(["commit", "-m", "x"], in: "repo"), contains: "a\\\\b.txt: the name holds a backslash")
        #expect(FileManager.default.fileExists(atPath: s.path("repo/a\\b.txt")) && FileManager.default.fileExists(atPath: s.path("repo/sub\\dir/c.txt")))
    }

    /// `clean PATH` compares a name that is not UTF-8 by its bytes, not by its escaped spelling:
    /// `caf\xE9.txt` (typed with a backslash) had removed both the file of that name and the
    /// Latin-1 `café.txt` shown that way, and `caf?xE9.txt` had matched the Latin-1 one.
    @Test func cleanMatchesOddNamesByTheirBytes() throws {
        let s = try CLISandbox()
        try s.ok(["init", "-q", "repo"])
        let latin1 = Array(s.path("repo/caf").utf8) + [0xE9] + Array(".txt".utf8) + [0]
        let fd = latin1.withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { open($0.baseAddress!, O_WRONLY | O_CREAT, 0o644) } }
        close(fd)
        try Data("x".utf8).write(to: URL(fileURLWithPath: s.path("repo/caf\\xE9.txt")))
        #expect(try s.ok(["clean", "-n", "caf?xE9.txt"], in: "repo").stdout == "Would remove caf\\\\xE9.txt\n")
        #expect(try s.ok(["clean", "-f", "caf\\xE9.txt"], in: "repo").stdout == "Removing caf\\\\xE9.txt\n")
        let exists = latin1.withUnsafeBufferPointer { p in p.withMemoryRebound(to: CChar.self) { access($0.baseAddress!, F_OK) == 0 } }
        #expect(exists, "the Latin-1 file stays")
        #expect(try s.ok(["clean", "-n"], in: "repo").stdout == "Would remove caf\\xE9.txt\n")
    }

    /// An empty tensor whose header entry comes after the tensor that starts where it sits (data
    /// order a, z, b; header order a, b, z): a valid file, which commit had stored with b's
    /// object missing (id 0), a working-tree copy 12 bytes short, and no export ever again.
    @Test(arguments: [
        #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[3],"data_offsets":[8,20]},"z":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}}"#,
        #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[3],"data_offsets":[8,20]},"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}"#,
        #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[3],"data_offsets":[8,20]},"z2":{"dtype":"F32","shape":[0],"data_offsets":[8,8]},"z1":{"dtype":"F32","shape":[0],"data_offsets":[8,8]}}"#,
    ])
    func emptyTensorsListedOutOfDataOrderRoundTrip(header: String) throws {
        let s = try CLISandbox()
        try FileManager.default.createDirectory(atPath: s.path("in"), withIntermediateDirectories: true)
        let values = (1...5).flatMap { withUnsafeBytes(of: Float($0).bitPattern.littleEndian, Array.init) }
        let file = safetensorsBytes(json: header, data: values, padTo: 8)
        try Data(file).write(to: URL(fileURLWithPath: s.path("in/model.safetensors")))
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../in", "-m", "empty tensors"], in: "repo")
        #expect(s.read("repo/model.safetensors") == Data(file), "the working tree's copy")
        try s.ok(["fsck"], in: "repo")
        try s.ok(["export", "-q", "HEAD", "../out"], in: "repo")
        #expect(s.read("out/model.safetensors") == Data(file))
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        // restore --tensor of every tensor, over other values: the committed bytes again (it paired
        // tensors by start, so b's bytes went to the empty tensor's place and it failed).
        let other = (6...10).flatMap { withUnsafeBytes(of: Float($0).bitPattern.littleEndian, Array.init) }
        try Data(safetensorsBytes(json: header, data: other, padTo: 8)).write(to: URL(fileURLWithPath: s.path("repo/model.safetensors")))
        try s.ok(["restore", "-q", "--tensor", "*"], in: "repo")
        #expect(s.read("repo/model.safetensors") == Data(file))
    }

    /// Two files holding a tensor of the same name (SDXL's two text encoders): diff pairs them by
    /// file, and shows the file (by name alone, the first file's hid a change to the second's:
    /// "no tensor differs", exit 0).
    @Test func diffPairsASharedTensorNameByFile() throws {
        let s = try CLISandbox()
        let w: [Float] = (0..<16).map(Float.init)
        var w2 = w
        w2[3] = 100
        try s.writeModel("v1/text_encoder", [("q.weight", [16], w)])
        try s.writeModel("v1/text_encoder_2", [("q.weight", [16], w)])
        try s.writeModel("v2/text_encoder", [("q.weight", [16], w)])
        try s.writeModel("v2/text_encoder_2", [("q.weight", [16], w2)])
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../v1", "-m", "v1"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../v2", "-m", "v2"], in: "repo")
        #expect(try s.run(["diff", "--exit-code", "HEAD~1", "HEAD"], in: "repo").status == 1)
        let text = try s.run(["diff", "HEAD~1", "HEAD"], in: "repo").stdout
        #expect(text.contains("M  text_encoder_2/model.safetensors: q.weight"), "\(text)")
        let doc = try #require(try s.json(try s.run(["diff", "--json", "HEAD~1", "HEAD"], in: "repo")) as? [String: Any])
        let changed = (doc["tensors"] as? [[String: Any]] ?? []).filter { $0["status"] as? String == "changed" }
        #expect(changed.count == 1 && changed.first?["path"] as? String == "text_encoder_2/model.safetensors", "\(doc)")
        // The same two folders compared without a repository (it said "no tensor differs", exit 0).
        #expect(try s.run(["diff", "--no-index", "--exit-code", "v1", "v2"]).status == 1)
        #expect(try s.run(["diff", "--no-index", "v1", "v2"]).stdout.contains("M  text_encoder_2/model.safetensors: q.weight"))
    }

    /// A tracked checkpoint that .mrepoignore comes to list leaves the next commit (mrepo has no
    /// index: that is how a file stops being tracked); status says so instead of a bare
    /// "deleted", and nested files match as git's patterns do (`a/*.bin` is not `a/b/y.bin`).
    @Test func ignoringATrackedFileIsSaidAndPatternsMatchAsGits() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: [])
        try FileManager.default.createDirectory(atPath: s.path("repo/a/b"), withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: s.path("repo/a/x.bin")))
        try Data("important".utf8).write(to: URL(fileURLWithPath: s.path("repo/a/b/y.bin")))
        try "a/*.bin\n*.safetensors\n".write(toFile: s.path("repo/.mrepoignore"), atomically: true, encoding: .utf8)
        let status = try s.ok(["status"], in: "repo").stdout
        #expect(status.contains("deleted:   model.safetensors  (listed in .mrepoignore: the next commit leaves it out of the tree; the file stays on disk)"), "\(status)")
        #expect(status.contains("new file:  a/b/y.bin") && !status.contains("a/x.bin"), "\(status)")
        #expect(try s.ok(["clean", "-n", "-d", "-X"], in: "repo").stdout == "Would remove a/x.bin\n")
        // That note is no reason to refuse: a switch to a branch without the file, a merge, and a
        // stash pop go on (they had refused, as for an unreadable file; third review).
        try "*.safetensors\n".write(toFile: s.path("repo/.mrepoignore"), atomically: true, encoding: .utf8)
        try s.ok(["switch", "-q", "-c", "side"], in: "repo")
        try s.ok(["switch", "-q", "main"], in: "repo")
        // A folder above the file that .mrepoignore lists is named the same way.
        try FileManager.default.createDirectory(atPath: s.path("repo/tok"), withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: s.path("repo/tok/vocab.json")))
        try FileManager.default.removeItem(atPath: s.path("repo/.mrepoignore"))
        try s.ok(["commit", "-q", "-m", "tok"], in: "repo")
        try "tok/\n".write(toFile: s.path("repo/.mrepoignore"), atomically: true, encoding: .utf8)
        let folder = try #require(try s.json(try s.ok(["status", "--json"], in: "repo")) as? [String: Any])
        let deleted = (folder["changes"] as? [[String: Any]] ?? []).first { $0["path"] as? String == "tok/vocab.json" }
        #expect(deleted?["reason"] as? String == "listed in .mrepoignore: the next commit leaves it out of the tree; the file stays on disk", "\(folder)")
        // A stash keeps the change to such a file (it recorded the file as removed and wrote HEAD's
        // bytes over the edit, which was then lost). Popping it back while .mrepoignore still lists
        // the file is refused, changing nothing; without that line it comes back.
        try Data("{\"mine\": 1}".utf8).write(to: URL(fileURLWithPath: s.path("repo/tok/vocab.json")))
        try s.ok(["stash", "-q"], in: "repo")
        #expect(s.read("repo/tok/vocab.json") == Data("{}".utf8))
        expectOneLineError(try s.run(["stash", "pop"], in: "repo"), contains: "tok/vocab.json")
        try FileManager.default.removeItem(atPath: s.path("repo/.mrepoignore"))
        try s.ok(["stash", "pop", "-q"], in: "repo")
        #expect(s.read("repo/tok/vocab.json") == Data("{\"mine\": 1}".utf8))
    }

    /// init where a folder cannot be made names the part of the path at fault ("The operation could
    /// not be completed. The file doesn't exist." came through from Foundation), and leaves nothing.
    @Test func initWhereNoFolderCanBeMadeSaysWhy() throws {
        let s = try CLISandbox()
        try writeFile("x", to: s.path("plain"))
        expectOneLineError(try s.run(["init", "plain/repo"]), contains: "\(s.path("plain")) is not a folder")
        let r = try s.run(["init", "/proc/mrepo-test/repo"])
        expectOneLineError(r, contains: "/proc/mrepo-test: No such file or directory")
        // A name too long for the file system, under a folder that does not exist yet: that folder
        // goes again.
        let long = String(repeating: "a", count: 300)
        expectOneLineError(try s.run(["init", "fresh/\(long)"]), contains: "File name too long")
        #expect(!FileManager.default.fileExists(atPath: s.path("fresh")))
    }

    /// A file whose path is past PATH_MAX is refused naming it (it was left out of the commit, exit 0,
    /// and status said the tree was clean).
    @Test func aPathPastTheSystemLimitIsRefusedNotDropped() throws {
        let s = try CLISandbox()
        try s.ok(["init", "-q", "deep"])
        let make = Process()
        make.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        make.arguments = ["-c", "import os\nos.chdir('\(s.path("deep"))')\nfor i in range(410):\n os.mkdir('level%04d' % i)\n os.chdir('level%04d' % i)\nopen('leaf.txt', 'w').write('leaf')\n"]
        try make.run()
        make.waitUntilExit()
        #expect(make.terminationStatus == 0)
        expectOneLineError(try s.run(["commit", "-m", "deep"], in: "deep"), contains: "its path is longer than the system allows")
        #expect(try s.ok(["status", "--porcelain"], in: "deep").stdout.contains("level0000/"))
        #expect(try s.run(["rev-parse", "HEAD"], in: "deep").status != 0, "nothing was committed")
        // The sandbox's own clean-up cannot delete what it cannot name: it goes here, from inside.
        let remove = Process()
        remove.executableURL = URL(fileURLWithPath: "/bin/rm")
        remove.arguments = ["-rf", "level0000"]
        remove.currentDirectoryURL = URL(fileURLWithPath: s.path("deep"))
        try remove.run()
        remove.waitUntilExit()
    }
}
