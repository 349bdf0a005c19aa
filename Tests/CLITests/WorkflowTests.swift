import Foundation
import Testing

/// End-to-end: the built binary, a generated model family, git's verbs.
@Suite struct WorkflowTests {
    /// init, commit --from on branches, log, show, diff, du, export byte for byte, fsck.
    @Test func familyOnBranches() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        let initOut = try s.ok(["init", "repo"])
        #expect(initOut.stdout.hasPrefix("Initialized empty mrepo repository in"))
        try s.ok(["commit", "--from", "../family/base", "-m", "base", "--metric", "eval_loss=2.5"], in: "repo")
        for ft in ["math", "chat"] {
            try s.ok(["switch", "-q", "-c", ft, "main"], in: "repo")
            try s.ok(["commit", "--from", "../family/\(ft)", "-m", "\(ft) fine-tune"], in: "repo")
        }
        // The working tree follows HEAD after commit --from.
        #expect(s.sameFiles("repo", "family/chat"))

        let oneline = try s.ok(["log", "--oneline", "math", "chat"], in: "repo").stdout.split(separator: "\n")
        #expect(oneline.count == 3)
        #expect(oneline.last?.hasSuffix("base") == true)

        let log = try #require(try s.json(try s.ok(["log", "--json"], in: "repo")) as? [[String: Any]])
        #expect(log.count == 2)
        #expect(log[0]["message"] as? String == "chat fine-tune")
        let baseID = try #require(log[1]["id"] as? String)
        #expect((log[0]["base"] as? String) == baseID)
        #expect((log[1]["metrics"] as? [String: Double])?["eval_loss"] == 2.5)

        let show = try #require(try s.json(try s.ok(["show", "--json", "chat"], in: "repo")) as? [String: Any])
        let files = try #require(show["files"] as? [[String: Any]])
        let model = try #require(files.first { $0["path"] as? String == "model.safetensors" })
        let tensors = try #require(model["tensors"] as? [[String: Any]])
        #expect(tensors.contains { $0["encoding"] as? String == "int-delta/exp" && ($0["reference"] as? String) != nil })

        // Numeric diff between siblings: cosine against the merge base where both changed.
        let diff = try #require(try s.json(try s.ok(["diff", "--json", "math", "chat"], in: "repo")) as? [String: Any])
        #expect(diff["merge_base"] as? String == baseID)
        let changed = try #require(diff["tensors"] as? [[String: Any]])
        let query = try #require(changed.first { ($0["name"] as? String)?.hasSuffix("layer.0.attention.self.query.weight") == true })
        #expect(query["status"] as? String == "changed")
        #expect((query["cosine"] as? Double).map { abs($0) < 1 } == true)
        #expect((query["changed_fraction"] as? Double).map { $0 > 0.5 } == true)
        #expect(!changed.contains { ($0["name"] as? String) == "pooler.dense.weight" }, "untouched tensors are not listed")

        let table = try s.ok(["diff", "math", "chat"], in: "repo").stdout
        #expect(table.contains("merge base") && table.contains("cos"))
        // A range is headed by the names typed (it showed two 64-digit ids), A...B by its merge base.
        #expect(try s.ok(["diff", "math..chat"], in: "repo").stdout.hasPrefix("diff math → chat (merge base \(baseID.prefix(12)))"))
        #expect(try s.ok(["diff", "math...chat"], in: "repo").stdout.hasPrefix("diff \(baseID.prefix(12)) → chat\n"), "no merge base on a line of history")

        // export returns every committed file byte for byte.
        try s.ok(["export", "math", "../out-math"], in: "repo")
        #expect(s.sameFiles("out-math", "family/math"))

        let du = try #require(try s.json(try s.ok(["du", "--json"], in: "repo")) as? [String: Any])
        let logical = try #require(du["logical_bytes"] as? Int), stored = try #require(du["object_bytes"] as? Int)
        #expect(stored < logical * 3 / 4, "three checkpoints cost less than three quarters of their copies")

        try s.ok(["fsck"], in: "repo")
    }

    /// status, the stat cache, switching and refusing over uncommitted changes.
    @Test func worktreeEditsAndSwitching() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "repo"])
        try s.ok(["commit", "--from", "../family/base", "-m", "base"], in: "repo")
        #expect(try s.ok(["status"], in: "repo").stdout.contains("nothing to commit, working tree clean"))

        // Replace the checkpoint in the working tree, as a trainer would.
        try FileManager.default.removeItem(atPath: s.path("repo/model.safetensors"))
        try FileManager.default.copyItem(atPath: s.path("family/math/model.safetensors"), toPath: s.path("repo/model.safetensors"))
        try Data("notes\n".utf8).write(to: URL(fileURLWithPath: s.path("repo/notes.txt")))
        let short = try s.ok(["status", "--short"], in: "repo").stdout
        #expect(short.contains("M model.safetensors") && short.contains("A notes.txt"))
        let status = try #require(try s.json(try s.ok(["status", "--json"], in: "repo")) as? [String: Any])
        let changes = try #require(status["changes"] as? [[String: Any]])
        let model = try #require(changes.first { $0["path"] as? String == "model.safetensors" })
        #expect((model["changed_tensors"] as? Int).map { $0 > 0 && $0 < (model["tensors"] as? Int ?? 0) } == true)

        // A switch that would overwrite the changed file is refused; nothing moves.
        try s.ok(["branch", "other"], in: "repo")
        try s.ok(["switch", "-c", "exp"], in: "repo")
        try s.ok(["commit", "-m", "experiment"], in: "repo")
        let refused = try s.run(["switch", "other"], in: "repo")
        #expect(refused.status == 0, "a clean tree switches")
        try Data("changed\n".utf8).write(to: URL(fileURLWithPath: s.path("repo/notes.txt")))
        let dirty = try s.run(["switch", "exp"], in: "repo")
        expectOneLineError(dirty, contains: "uncommitted changes")
        #expect(try s.ok(["status", "--short"], in: "repo").stdout.contains("notes.txt"))
        try s.ok(["switch", "--force", "exp"], in: "repo")
        #expect(try s.ok(["status", "--short"], in: "repo").stdout.isEmpty)
        #expect(s.read("repo/notes.txt") == Data("notes\n".utf8))

        // checkout of a revision expression detaches HEAD.
        let co = try s.ok(["checkout", "HEAD~1"], in: "repo").stdout
        #expect(co.contains("detached"))
        #expect(try s.ok(["status"], in: "repo").stdout.contains("HEAD detached at"))
        #expect(FileManager.default.fileExists(atPath: s.path("repo/notes.txt")) == false)
    }

    @Test func branchesTagsAndRevisions() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "repo"])
        try s.ok(["commit", "--from", "../family/base", "-m", "one"], in: "repo")
        try s.ok(["commit", "--from", "../family/math", "-m", "two"], in: "repo")
        try s.ok(["commit", "--from", "../family/code", "-m", "three"], in: "repo")
        try s.ok(["tag", "v1", "HEAD~2", "-m", "first"], in: "repo")
        let tags = try #require(try s.json(try s.ok(["tag", "--json"], in: "repo")) as? [[String: Any]])
        #expect(tags.first?["name"] as? String == "v1" && tags.first?["message"] as? String == "first")
        let v1 = try s.ok(["log", "--oneline", "-n", "1", "v1"], in: "repo").stdout
        #expect(v1.hasSuffix("one\n"))
        let prefix = String(v1.prefix(6))
        #expect(try s.ok(["log", "--oneline", "-n", "1", prefix], in: "repo").stdout == v1)
        #expect(try s.ok(["log", "--oneline", "-n", "1", "HEAD^"], in: "repo").stdout.hasSuffix("two\n"))

        try s.ok(["branch", "side", "HEAD~1"], in: "repo")
        let branches = try #require(try s.json(try s.ok(["branch", "--json"], in: "repo")) as? [[String: Any]])
        #expect(Set(branches.compactMap { $0["name"] as? String }) == ["main", "side"])
        #expect(branches.first { $0["name"] as? String == "main" }?["current"] as? Bool == true)
        expectOneLineError(try s.run(["branch", "-d", "main"], in: "repo"), contains: "current branch")
        try s.ok(["branch", "-d", "side"], in: "repo")
        expectOneLineError(try s.run(["log", "side"], in: "repo"), contains: "unknown revision 'side'")
        expectOneLineError(try s.run(["branch", "bad..name"], in: "repo"), contains: "invalid name")
        expectOneLineError(try s.run(["show", "HEAD~9"], in: "repo"), contains: "has no parent")

        let reflog = try s.ok(["reflog"], in: "repo").stdout
        #expect(reflog.contains("delete branch") && reflog.contains("commit (initial): one"))
        // git's -C before the verb.
        #expect(try s.ok(["-C", "repo", "log", "--oneline"]).stdout.split(separator: "\n").count == 3)
    }

    /// Bad input: one line on stderr naming the file and the problem, exit 2, repository untouched.
    @Test func badInputLeavesRepositoryUntouched() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "repo"])
        try s.ok(["commit", "--from", "../family/base", "-m", "base"], in: "repo")
        let before = s.files(under: "repo/.mrepo/objects")

        // A truncated safetensors file.
        try FileManager.default.copyItem(atPath: s.path("family/math"), toPath: s.path("broken"))
        let full = try #require(s.read("broken/model.safetensors"))
        try full.prefix(full.count - 100).write(to: URL(fileURLWithPath: s.path("broken/model.safetensors")))
        let r = try s.run(["commit", "--from", "../broken", "-m", "broken"], in: "repo")
        expectOneLineError(r, contains: "model.safetensors: tensor '")
        #expect(r.stderr.contains("data section has"))
        #expect(s.files(under: "repo/.mrepo/objects") == before)
        #expect(try s.ok(["log", "--oneline"], in: "repo").stdout.split(separator: "\n").count == 1)

        // A header that is not JSON.
        var bad = Data([20, 0, 0, 0, 0, 0, 0, 0])
        bad.append(Data("{\"a\": [1, 2,, 3]}   ".utf8))
        try bad.write(to: URL(fileURLWithPath: s.path("broken/model.safetensors")))
        expectOneLineError(try s.run(["commit", "--from", "../broken", "-m", "x"], in: "repo"),
                           contains: "model.safetensors: header is not valid JSON")
        #expect(s.files(under: "repo/.mrepo/objects") == before)

        expectOneLineError(try s.run(["export", "nope", "../x"], in: "repo"), contains: "unknown revision 'nope'")
        expectOneLineError(try s.run(["log"]), contains: "not an mrepo repository")
        expectOneLineError(try s.run(["init", "repo"]), contains: "already an mrepo repository")
        expectOneLineError(try s.run(["commit", "--from", "../missing", "-m", "x"], in: "repo"), contains: "no such directory")
        let usage = try s.run(["commit", "-m", "x", "--metric", "loss"], in: "repo")
        #expect(usage.status == 64)
        #expect(usage.stderr.contains("expected name=value"))
    }

    /// A pipe or file gets no progress bar; a quiet command prints nothing.
    @Test func quietWhenNotATerminal() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        let r = try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        #expect(r.stdout.isEmpty && r.stderr.isEmpty)
        let e = try s.ok(["export", "HEAD", "../out"], in: "repo")
        #expect(e.stderr.isEmpty)
    }

    /// `mrepo check` finds NaN/Inf, and the sample pre-commit hook uses it to refuse a commit.
    @Test func nanGuardHook() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "--hooks", "repo"])
        try s.ok(["commit", "--from", "../family/base", "-m", "base"], in: "repo")
        let before = s.files(under: "repo/.mrepo/objects")
        // Poison one float32 element of the first tensor after the header.
        try FileManager.default.copyItem(atPath: s.path("family/math"), toPath: s.path("nan"))
        var bytes = try #require(s.read("nan/model.safetensors"))
        let headerLength = Int(bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let header = try #require(try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + headerLength))) as? [String: Any])
        let (name, entry) = try #require(header.first { ($0.value as? [String: Any])?["dtype"] as? String == "F32" })
        let begin = try #require(((entry as? [String: Any])?["data_offsets"] as? [Int])?.first)
        let nan = Float.nan.bitPattern.littleEndian
        withUnsafeBytes(of: nan) { bytes.replaceSubrange((8 + headerLength + begin)..<(8 + headerLength + begin + 4), with: $0) }
        try bytes.write(to: URL(fileURLWithPath: s.path("nan/model.safetensors")))

        let check = try s.run(["check", "--finite", "nan"])
        #expect(check.status == 1)
        #expect(check.stdout.contains("tensor '\(name)': 1 NaN and 0 infinite values"))
        #expect(try s.run(["check", "--finite", "family/math"]).status == 0)

        let r = try s.run(["commit", "--from", "../nan", "-m", "poisoned"], in: "repo")
        #expect(r.status == 2)
        #expect(r.stderr.contains("pre-commit hook rejected the operation"))
        #expect(s.files(under: "repo/.mrepo/objects") == before)
        #expect(try s.ok(["log", "--oneline"], in: "repo").stdout.split(separator: "\n").count == 1)
        // post-commit logged the first commit.
        #expect(String(decoding: s.read("repo/.mrepo/commits.log") ?? Data(), as: UTF8.self).split(separator: "\n").count == 1)
    }

    /// A post-commit hook runs after the commit is recorded: its failure is a warning naming it, and
    /// the commit stands.
    @Test func failingPostCommitHookWarnsAndTheCommitStands() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        let hook = s.path("repo/.mrepo/hooks/post-commit")
        try Data("#!/bin/sh\nexit 3\n".utf8).write(to: URL(fileURLWithPath: hook))
        #expect(chmod(hook, 0o755) == 0)
        let r = try s.run(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        #expect(r.status == 0)
        #expect(r.stderr == "mrepo: warning: post-commit hook failed (exit status 3)\n", "\(r.stderr)")
        #expect(try s.ok(["log", "--oneline"], in: "repo").stdout.split(separator: "\n").count == 1)
    }

    /// post-commit and post-merge run once the write lock is released, as git's do: a hook may
    /// call mrepo to write (record a metric, tag), and with --wait it does not wait on its own
    /// command forever.
    @Test func postHooksMayCallMrepoToWrite() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math", "code"])
        for (name, script) in [("post-commit", "\"$MREPO_EXE\" metric add --wait \"$MREPO_COMMIT\" judged=1\n"),
                               ("post-merge", "\"$MREPO_EXE\" tag --wait merged-$(echo $MREPO_COMMIT | cut -c1-8) \"$MREPO_COMMIT\"\n")] {
            let hook = s.path("repo/.mrepo/hooks/\(name)")
            try Data(("#!/bin/sh\nset -e\n" + script).utf8).write(to: URL(fileURLWithPath: hook))
            #expect(chmod(hook, 0o755) == 0)
        }
        try "notes\n".write(toFile: s.path("repo/notes.txt"), atomically: true, encoding: .utf8)
        let commit = try s.run(["commit", "-m", "notes"], in: "repo")
        #expect(commit.status == 0 && !commit.stderr.contains("warning"), "\(commit.stderr)")
        #expect(try s.ok(["metric", "show"], in: "repo").stdout.contains("judged=1\n"))
        let merge = try s.run(["merge", "math", "code", "--method", "ties", "-q"], in: "repo")
        #expect(merge.status == 0 && !merge.stderr.contains("warning"), "\(merge.stderr)")
        let head = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout.prefix(8)
        #expect(try s.ok(["tag"], in: "repo").stdout.contains("merged-\(head)"))
        try s.ok(["fsck"], in: "repo")
    }

    /// The sample hooks shipped in hooks/ are the ones `mrepo init --hooks` installs.
    @Test func shippedHooksMatchInstalledSamples() throws {
        let s = try CLISandbox()
        try s.ok(["init", "--hooks", "repo"])
        let project = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for name in ["pre-commit", "post-commit", "pre-merge-commit", "post-merge"] {
            let shipped = FileManager.default.contents(atPath: project.appendingPathComponent("hooks/\(name)").path)
            #expect(shipped != nil && shipped == s.read("repo/.mrepo/hooks/\(name)"), "hooks/\(name) differs from the installed sample")
        }
    }

    /// Every parameter of every command has help text.
    @Test(arguments: ["init", "commit", "status", "log", "show", "diff", "reflog", "branch", "switch", "checkout", "tag",
                      "export", "check", "synth", "du", "fsck", "gc", "merge", "resolve", "rev-parse", "notes", "metric",
                      "reset", "restore", "revert", "cherry-pick", "stash", "completion", "config"])
    func helpExplainsEveryParameter(command: String) throws {
        let s = try CLISandbox()
        let help = try s.ok(["help", command]).stdout
        #expect(help.contains("OVERVIEW:") && help.contains("USAGE:"))
        let lines = help.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var inSection = false
        for (i, line) in lines.enumerated() {
            if line.hasSuffix(":") && !line.hasPrefix(" ") { inSection = line == "OPTIONS:" || line == "ARGUMENTS:"; continue }
            guard inSection, line.hasPrefix("  "), !line.hasPrefix("        ") else { continue }
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("-") || trimmed.hasPrefix("<") else { continue }
            // The description follows the names and value on the same line, or on the next, deeper-indented line.
            let words = trimmed.split(separator: " ")
            let sameLine = words.contains { w in !(w.hasPrefix("-") || w.hasPrefix("<") || w == "...") }
            let nextLine = i + 1 < lines.count && lines[i + 1].hasPrefix("        ") && !lines[i + 1].trimmingCharacters(in: .whitespaces).isEmpty
            #expect(sameLine || nextLine, "mrepo \(command): '\(trimmed)' has no help text")
        }
    }
}
