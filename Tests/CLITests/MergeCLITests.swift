import Delta
import Foundation
import Testing

/// `mrepo merge` end to end: classes, methods, conflicts, resolve/continue/abort, reproducibility.
@Suite struct MergeCLITests {
    /// A repository with the tiny family: base on main, math/code/chat on branches.
    func family() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base", "--metric", "eval_loss=2.5"], in: "repo")
        for (ft, loss) in [("math", "1.9"), ("code", "2.0"), ("chat", "1.7")] {
            try s.ok(["switch", "-q", "-c", ft, "main"], in: "repo")
            try s.ok(["commit", "-q", "--from", "../family/\(ft)", "-m", ft, "--metric", "eval_loss=\(loss)"], in: "repo")
        }
        try s.ok(["switch", "-q", "main"], in: "repo")
        return s
    }

    func writeModel(_ s: CLISandbox, _ folder: String, _ tensors: [(String, Shape, [Float])]) throws {
        try s.writeModel(folder, tensors)
    }

    func report(_ r: CLIResult) throws -> [String: Any] { try mergeReport(r) }

    func tensors(_ report: [String: Any]) -> [String: [String: Any]] { tensorsByName(report) }

    @Test func octopusTIESMergeWithReport() throws {
        let s = try family()
        let r = try s.ok(["merge", "math", "code", "chat", "--method", "ties", "--set", "density=0.5", "--json",
                          "--report", "../report.html"], in: "repo")
        let doc = try report(r)
        #expect(doc["status"] as? String == "committed")
        // Full ids in JSON: the report's base is the merge base (it was 12 digits).
        #expect((doc["base"] as? String)?.count == 64 && doc["base"] as? String == doc["merge_base"] as? String)
        let classes = try #require(doc["classes"] as? [String: Int])
        #expect(classes["merged"] ?? 0 > 0)
        #expect(classes["unchanged"] == 4, "pooler weight and bias, position ids and token types are untouched")
        let byName = tensors(doc)
        let query = try #require(byName["encoder.layer.0.attention.self.query.weight"])
        let metrics = try #require(query["metrics"] as? [String: Any])
        #expect((metrics["cosines"] as? [Any])?.count == 3)
        #expect((metrics["kept_fraction"] as? [Double])?.allSatisfy { abs($0 - 0.5) < 0.01 } == true)
        #expect(((metrics["sign_conflict"] as? Double) ?? -1) > 0.3)

        let log = try #require(try s.json(try s.ok(["log", "--json", "-n", "1"], in: "repo")) as? [[String: Any]])
        #expect((log[0]["parents"] as? [String])?.count == 4)
        let merge = try #require((log[0]["extra"] as? [String: Any])?["merge"] as? [String: Any])
        #expect((merge["recipe"] as? [String: Any])?["method"] as? String == "ties")
        #expect((merge["tool"] as? String)?.hasPrefix("mrepo ") == true)

        // The exported model carries a model card and the recipe; the working tree holds the merge.
        try s.ok(["export", "HEAD", "../out"], in: "repo")
        let card = String(decoding: s.read("out/README.md") ?? Data(), as: UTF8.self)
        #expect(card.contains("merge_method: ties") && card.contains("| expert | chat |"))
        // The Hub reads the front matter's base_model as a Hub model id and refuses a commit id there.
        let frontMatter = card.components(separatedBy: "---\n").dropFirst().first ?? ""
        #expect(frontMatter.contains("tags:") && !frontMatter.contains("base_model"), "\(frontMatter)")
        // Each model's weight is written (mrepo's default 1): mergekit requires it.
        let recipe = String(decoding: s.read("out/merge_recipe.yml") ?? Data(), as: UTF8.self)
        #expect(recipe.components(separatedBy: "weight: 1").count - 1 == 3, "\(recipe)")
        #expect(s.sameFiles("out", "repo"))
        let html = String(decoding: s.read("report.html") ?? Data(), as: UTF8.self)
        #expect(html.contains("<svg") && !html.contains("<script"))
        #expect(try s.ok(["show", "HEAD"], in: "repo").stdout.contains("Merge:   ties of math, code, chat"))
        try s.ok(["fsck"], in: "repo")
    }

    /// `--report FILE` wrote wherever it was told: over `.mrepo/mrepo.db` (the whole history lost,
    /// even under --dry-run), over the merged model, or into a folder after the merge was recorded
    /// (exit 2 and a merge made). Each is refused before anything is written.
    @Test func aReportNeverReplacesTheStoreOrATrackedFile() throws {
        let s = try family()
        try FileManager.default.createDirectory(atPath: s.path("folder"), withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: s.path("repo/store"), withDestinationPath: ".mrepo")
        let head = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        let reflog = try s.ok(["reflog"], in: "repo").stdout
        for (destination, problem) in [(".mrepo/mrepo.db", "inside the repository's own store"), ("store/mrepo.db", "inside the repository's own store"),
                                       ("model.safetensors", "would replace model.safetensors, a file of the working tree the repository tracks"),
                                       ("merge_recipe.yml", "would replace merge_recipe.yml, which this command writes"),
                                       ("../folder", "is a folder")] {
            for extra in [[], ["--dry-run"]] {
                expectOneLineError(try s.run(["merge", "math", "code", "--method", "ties", "--report", destination] + extra, in: "repo"),
                                   contains: "--report \(destination): ")
            }
            expectOneLineError(try s.run(["merge", "math", "code", "--method", "ties", "--report", destination], in: "repo"), contains: problem)
        }
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == head)
        #expect(try s.ok(["reflog"], in: "repo").stdout == reflog)
        try FileManager.default.removeItem(atPath: s.path("repo/store"))
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        // Nor over a file another branch brings (known once the merge has its tree), nor over a
        // linked working tree's .mrepo file.
        try s.ok(["switch", "-q", "-c", "extra", "main"], in: "repo")
        try Data("notes".utf8).write(to: URL(fileURLWithPath: s.path("repo/notes.txt")))
        try s.ok(["commit", "-q", "-m", "notes"], in: "repo")
        try s.ok(["switch", "-q", "-c", "joined", "math"], in: "repo")
        expectOneLineError(try s.run(["merge", "extra", "--method", "ties", "--report", "notes.txt"], in: "repo"),
                           contains: "--report notes.txt: would replace notes.txt, which this command writes")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == (try s.ok(["rev-parse", "math"], in: "repo").stdout))
        try s.ok(["switch", "-q", "main"], in: "repo")
        try s.ok(["worktree", "add", "-q", "../wt", "code"], in: "repo")
        expectOneLineError(try s.run(["merge", "math", "--method", "ties", "--report", ".mrepo"], in: "wt"),
                           contains: "would write into a repository's own .mrepo or .git")
        try s.ok(["merge", "-q", "math", "code", "--method", "ties", "--report", "../r.html"], in: "repo")
        expectOneLineError(try s.run(["show", "HEAD", "--report", ".mrepo/mrepo.db"], in: "repo"), contains: "inside the repository's own store")
        try s.ok(["fsck"], in: "repo")
    }

    @Test func sameRecipeAndSeedGiveIdenticalBytes() throws {
        let a = try family(), b = try family()
        for s in [a, b] {
            try s.ok(["merge", "math", "code", "chat", "--method", "dare_ties", "--set", "density=0.4", "--seed", "7"], in: "repo")
            try s.ok(["export", "HEAD", "../out"], in: "repo")
        }
        #expect(a.read("out/model.safetensors") == b.read("out/model.safetensors"))
        // Another seed drops other elements.
        let c = try family()
        try c.ok(["merge", "math", "code", "chat", "--method", "dare_ties", "--set", "density=0.4", "--seed", "8"], in: "repo")
        try c.ok(["export", "HEAD", "../out"], in: "repo")
        #expect(c.read("out/model.safetensors") != a.read("out/model.safetensors"))
    }

    /// An untracked file stops a merge only where the merged tree could put something, as in git:
    /// a training run's leftovers beside the checkpoint do not.
    @Test func untrackedFilesStopAMergeOnlyWhereItWrites() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math", "code"])
        // Only `code` has this file: an untracked copy of it is in the merge's way.
        try s.ok(["switch", "-q", "code"], in: "repo")
        try Data("notes".utf8).write(to: URL(fileURLWithPath: s.path("repo/NOTES.md")))
        try s.ok(["commit", "-q", "-m", "notes"], in: "repo")
        try s.ok(["switch", "-q", "main"], in: "repo")
        try Data("mine".utf8).write(to: URL(fileURLWithPath: s.path("repo/NOTES.md")))
        expectOneLineError(try s.run(["merge", "math", "code", "--method", "ties", "--set", "density=0.5"], in: "repo"),
                           contains: "merging would overwrite uncommitted changes in NOTES.md")
        try FileManager.default.removeItem(atPath: s.path("repo/NOTES.md"))
        // The model card and the recipe a merge writes count too: no input has merge_recipe.yml.
        try FileManager.default.removeItem(atPath: s.path("repo/README.md"))
        try s.ok(["commit", "-q", "-m", "no card"], in: "repo")
        try Data("opt".utf8).write(to: URL(fileURLWithPath: s.path("repo/optimizer.pt")))
        for generated in ["README.md", "merge_recipe.yml"] {
            try Data("mine".utf8).write(to: URL(fileURLWithPath: s.path("repo/" + generated)))
            expectOneLineError(try s.run(["merge", "math", "code", "--method", "ties", "--set", "density=0.5"], in: "repo"),
                               contains: "merging would overwrite uncommitted changes in \(generated)")
            #expect(s.read("repo/" + generated) == Data("mine".utf8))
            try FileManager.default.removeItem(atPath: s.path("repo/" + generated))
        }
        try s.ok(["merge", "-q", "math", "code", "--method", "ties", "--set", "density=0.5"], in: "repo")
        #expect(s.read("repo/optimizer.pt") == Data("opt".utf8))
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout == "A optimizer.pt\n")
        #expect(s.read("repo/NOTES.md") == Data("notes".utf8), "the merge brought code's file")
        #expect(try s.run(["show", "HEAD:optimizer.pt"], in: "repo").status != 0, "the merge did not record the untracked file")
        try s.ok(["fsck"], in: "repo")
    }

    /// `merge --continue` after `--no-commit` never discards an edit made meanwhile: an edit to a
    /// file the merge leaves as the candidate had it is carried over, as git does.
    @Test func continuingAMergeKeepsEditsMadeMeanwhile() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math", "code"])
        try s.ok(["merge", "-q", "math", "code", "--method", "ties", "--set", "density=0.5", "--no-commit"], in: "repo")
        let card = try #require(s.read("repo/README.md"))
        try (card + Data("my notes\n".utf8)).write(to: URL(fileURLWithPath: s.path("repo/README.md")))
        let done = try s.json(try s.ok(["merge", "--continue", "--json"], in: "repo")) as? [String: Any]
        #expect(done?["kept_local_changes"] as? [String] == ["README.md"], "the edit left out of the commit is named")
        #expect(s.read("repo/README.md") == card + Data("my notes\n".utf8), "the edit is still there")
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout == "M README.md\n")
        #expect(try s.ok(["show", "HEAD:README.md"], in: "repo").stdout.contains("my notes") == false, "the merge recorded its own card")
        try s.ok(["fsck"], in: "repo")
    }

    /// The merge's working tree (written while the merge runs, or decoded after it when the
    /// layout changes, as with `--dtype`, narrower or wider) is byte for byte what `export` gives back.
    @Test(arguments: [[], ["--dtype", "BF16"], ["--dtype", "F64"]])
    func mergedWorkingTreeEqualsExport(extra: [String]) throws {
        let s = try CLISandbox()
        try s.makeFamily(extra: ["--shards", "2"])
        try s.repository(branches: ["math", "code"])
        try s.ok(["merge", "-q", "math", "code", "--method", "ties", "--set", "density=0.5"] + extra, in: "repo")
        try s.ok(["export", "-q", "HEAD", "../out"], in: "repo")
        #expect(s.files(under: "out").filter { $0.hasSuffix(".safetensors") }.count == 2)
        #expect(s.sameFiles("out", "repo"))
        // config.json says the dtype the weights were written in (mergekit sets it too).
        let config = String(decoding: s.read("out/config.json") ?? Data(), as: UTF8.self)
        let dtype = extra.isEmpty ? "float32" : extra[1] == "BF16" ? "bfloat16" : "float64"
        #expect(config.contains("\"torch_dtype\": \"\(dtype)\""), "\(config)")
        #expect(try s.ok(["status", "--short"], in: "repo").stdout.isEmpty)
        #expect(!FileManager.default.fileExists(atPath: s.path("repo/.mrepo/prepared")))
        try s.ok(["fsck"], in: "repo")
    }

    @Test func fastForwardAndUpToDate() throws {
        let s = try family()
        #expect(try s.ok(["merge", "math"], in: "repo").stdout.contains("Fast-forward"))
        #expect(s.sameFiles("repo", "family/math"))
        #expect(try s.ok(["merge", "main"], in: "repo").stdout.contains("Already up to date"))
    }

    /// Thresholds stop the merge; status lists the conflicts; resolve settles them; continue commits.
    @Test func conflictResolveContinue() throws {
        let s = try family()
        let head = try s.ok(["log", "--oneline", "-n", "1"], in: "repo").stdout
        let stopped = try s.run(["merge", "math", "code", "--method", "ties", "--max-sign-conflict", "0.3"], in: "repo")
        #expect(stopped.status == 1, "\(stopped.stderr)")
        #expect(stopped.stdout.contains("Merge stopped"))
        // The summary counts the stopped tensors as unresolved (it read "0 conflict" beside them), and
        // a list cut at 20 says how many it leaves out.
        let stoppedCount = stopped.stdout.split(separator: "\n").first { $0.hasPrefix("Merge stopped: ") }
            .flatMap { Int($0.dropFirst("Merge stopped: ".count).prefix { $0.isNumber }) } ?? 0
        #expect(stoppedCount > 0 && stopped.stdout.contains("; \(stoppedCount) unresolved (stopped by a threshold or a conflict)"), "\(stopped.stdout)")
        if stoppedCount > 20 { #expect(stopped.stdout.contains("... and \(stoppedCount - 20) more ('mrepo status' lists them all)")) }
        let status = try s.ok(["status"], in: "repo").stdout
        #expect(status.contains("Unresolved tensors") && status.contains("sign conflict"))
        // commit would commit the merge, as merge --continue does: not while tensors are unresolved.
        expectOneLineError(try s.run(["commit", "-m", "x"], in: "repo"), contains: "still unresolved")
        expectOneLineError(try s.run(["stash"], in: "repo"), contains: "stash is not possible while a merge is in progress")
        expectOneLineError(try s.run(["merge", "--continue"], in: "repo"), contains: "still unresolved")
        try s.ok(["resolve", "encoder.*", "--method", "task_arithmetic", "--set", "lambda=0.5"], in: "repo")
        let rest = try s.ok(["resolve", "*", "--theirs", "--branch", "code"], in: "repo").stdout
        #expect(rest.contains("run 'mrepo merge --continue'"))
        expectOneLineError(try s.run(["resolve", "*", "--theirs"], in: "repo"), contains: "no unresolved tensor is left; run 'mrepo merge --continue'")
        try s.ok(["merge", "--continue"], in: "repo")
        #expect(try s.ok(["log", "--oneline", "-n", "1"], in: "repo").stdout != head)
        #expect(try s.ok(["status", "--short"], in: "repo").stdout.isEmpty)
        // The report lists the settled tensors as resolved, and how (the note showed only why they stopped).
        let conflicts = try s.ok(["show", "--conflicts"], in: "repo").stdout
        #expect(conflicts.contains("resolved: method task_arithmetic") || conflicts.contains("resolved: task_arithmetic"), "\(conflicts)")
        #expect(conflicts.contains("resolved: theirs"), "\(conflicts)")
        try s.ok(["fsck"], in: "repo")
    }

    /// A settled conflict's figures of the merge are measured on the tensor it was settled with:
    /// settled with the base, nothing is far from an expert and the update is 0 (the report had
    /// kept the TIES result it replaced: relative update 0.04, far from expert 0.75, kept 0.5).
    @Test func settledTensorsReportTheTensorTheyWereSettledWith() throws {
        let s = try family()
        let stopped = try s.run(["merge", "math", "code", "--method", "ties", "--set", "density=0.5", "--max-sign-conflict", "0.3"], in: "repo")
        #expect(stopped.status == 1, "\(stopped.stderr)")
        try s.ok(["resolve", "*", "--base"], in: "repo")
        try s.ok(["merge", "--continue"], in: "repo")
        let report = try #require(try s.json(try s.ok(["show", "--conflicts", "--json"], in: "repo")) as? [String: Any])
        let settled = try #require(report["tensors"] as? [[String: Any]]).filter { $0["resolution"] as? String == "base" }
        #expect(!settled.isEmpty)
        for t in settled {
            let m = try #require(t["metrics"] as? [String: Any], "\(t)")
            #expect(m["merged_relative_update"] as? Double == 0, "\(t)")
            #expect((m["far_from_expert"] as? [Double])?.allSatisfy { $0 == 0 } == true, "\(t)")
            #expect(m["kept_fraction"] == nil, "no trimming made it: \(t)")
            #expect((m["tall"] as? [String: Double])?["none"] == 1, "\(t)")
            #expect(m["sign_conflict"] as? Double ?? 0 > 0.3, "the experts' figures stay: \(t)")
        }
    }

    /// A merge whose float32 arithmetic overflows (λ within float32's range, times a task vector of
    /// 10) is refused naming the tensor, and nothing is written; it had committed ±inf.
    @Test func aMergeThatOverflowsIsRefused() throws {
        let s = try CLISandbox()
        try s.writeModel("base", [("w", [4], [1, 2, 3, 4])])
        try s.writeModel("a", [("w", [4], [11, 12, 13, 14])])
        try s.writeModel("b", [("w", [4], [1, 2, 3, 4.5])])
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../base", "-m", "base"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../a", "--branch", "a", "-m", "a"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../b", "--branch", "b", "-m", "b"], in: "repo")
        let head = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        expectOneLineError(try s.run(["merge", "a", "b", "--method", "task_arithmetic", "--set", "lambda=1e38"], in: "repo"),
                           contains: "tensor 'w': the merge gives values beyond float32's range")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == head)
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        try s.ok(["merge", "-q", "a", "b", "--method", "task_arithmetic", "--set", "lambda=1e30"], in: "repo")
        try s.ok(["fsck"], in: "repo")
        // In float16 the range ends at 65504: a result past it would be written as inf.
        let h = try CLISandbox()
        try h.writeModel("base", [("w", [4], [1e4, 1, 2, 3])], dtype: .f16)
        try h.writeModel("a", [("w", [4], [2e4, 1, 2, 3])], dtype: .f16)
        try h.writeModel("b", [("w", [4], [1e4, 1, 2, 4])], dtype: .f16)
        try h.ok(["init", "-q", "repo"])
        try h.ok(["commit", "-q", "--from", "../base", "-m", "base"], in: "repo")
        try h.ok(["commit", "-q", "--from", "../a", "--branch", "a", "-m", "a"], in: "repo")
        try h.ok(["commit", "-q", "--from", "../b", "--branch", "b", "-m", "b"], in: "repo")
        expectOneLineError(try h.run(["merge", "a", "b", "--method", "task_arithmetic", "--set", "lambda=10"], in: "repo"),
                           contains: "tensor 'w': the merge gives values beyond F16's range")
        #expect(try h.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
        try h.ok(["merge", "-q", "a", "b", "--method", "task_arithmetic", "--set", "lambda=1"], in: "repo")
    }

    /// A tensor whose dtype differs between the experts is a conflict; settling it with a method is
    /// refused naming the way that works (keeping one side's), and keeping a side settles it.
    @Test func aDtypeConflictIsSettledByKeepingASide() throws {
        let s = try CLISandbox()
        try s.writeModel("base", [("w", [4], [1, 2, 3, 4])])
        try s.writeModel("a", [("w", [4], [1.5, 2, 3, 4])])
        try s.writeModel("b", [("w", [4], [1, 2.5, 3, 4])], dtype: .bf16)
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../base", "-m", "base"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../a", "--branch", "a", "-m", "a"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../b", "--branch", "b", "-m", "b"], in: "repo")
        let merge = try s.run(["merge", "a", "b", "--method", "linear"], in: "repo")
        #expect(merge.status == 1, "a conflict: \(merge.stderr)")
        expectOneLineError(try s.run(["resolve", "w", "--method", "linear"], in: "repo"),
                           contains: "keep one side's instead ('mrepo resolve' with --ours, --theirs or --base)")
        try s.ok(["resolve", "-q", "w", "--base"], in: "repo")
        try s.ok(["merge", "-q", "--continue"], in: "repo")
        try s.ok(["fsck"], in: "repo")
    }

    /// Abort returns refs and the working tree to exactly what they were.
    @Test(arguments: [["--max-sign-conflict", "0.3"], ["--no-commit"]])
    func abortRestoresEverything(extra: [String]) throws {
        let s = try family()
        let refs = try s.ok(["branch", "--json"], in: "repo").stdout
        let before = try FileManager.default.contentsOfDirectory(atPath: s.path("repo")).sorted()
        let r = try s.run(["merge", "math", "chat", "--method", "ties"] + extra, in: "repo")
        #expect(r.status == (extra.contains("--no-commit") ? 0 : 1))
        if extra.contains("--no-commit") { #expect(!s.sameFiles("repo", "family/base")) }
        try s.ok(["merge", "--abort"], in: "repo")
        #expect(try s.ok(["branch", "--json"], in: "repo").stdout == refs)
        #expect(try FileManager.default.contentsOfDirectory(atPath: s.path("repo")).sorted() == before)
        #expect(s.sameFiles("repo", "family/base"))
        #expect(try s.ok(["status", "--short"], in: "repo").stdout.isEmpty)
        try s.ok(["fsck"], in: "repo")
        try s.ok(["gc", "-q"], in: "repo")
        try s.ok(["fsck"], in: "repo")
    }

    /// Deletion, addition, shape change, non-float disagreement and vocabulary growth, classified.
    @Test func threeWayClasses() throws {
        let s = try CLISandbox()
        let ramp = (0..<8).map { Float($0) / 10 }
        try writeModel(s, "base", [("a", [8], ramp), ("b", [2, 4], ramp), ("c", [8], ramp), ("d", [8], ramp),
                                   ("ids", [4], [0, 1, 2, 3]), ("word_embeddings.weight", [2, 4], ramp)])
        // x: changes a, deletes c, adds e, changes ids, adds a vocabulary row.
        try writeModel(s, "x", [("a", [8], ramp.map { $0 + 0.1 }), ("b", [2, 4], ramp), ("d", [8], ramp), ("e", [4], [1, 2, 3, 4]),
                                ("ids", [4], [0, 1, 2, 9]), ("word_embeddings.weight", [3, 4], ramp + [1, 1, 1, 1])])
        // y: changes a and d, reshapes b, changes ids differently.
        try writeModel(s, "y", [("a", [8], ramp.map { $0 - 0.05 }), ("b", [4, 2], ramp), ("c", [8], ramp), ("d", [8], ramp.map { $0 * 2 }),
                                ("ids", [4], [0, 1, 2, 7]), ("word_embeddings.weight", [2, 4], ramp)])
        try s.repository(of: "", branches: ["x", "y"])
        let r = try s.run(["merge", "x", "y", "--method", "task_arithmetic", "--json"], in: "repo")
        #expect(r.status == 1)
        let byName = tensors(try report(r))
        #expect(byName["a"]?["class"] as? String == "merged")
        #expect(byName["b"]?["class"] as? String == "conflict")
        #expect((byName["b"]?["conflict"] as? String)?.contains("shape changed") == true)
        #expect(byName["c"]?["class"] as? String == "deleted")
        // Changed by y only: merged by the method (mergekit's rule), with the expert named.
        #expect(byName["d"]?["class"] as? String == "merged")
        #expect(byName["d"]?["source"] as? String == "y")
        #expect(byName["e"]?["class"] as? String == "added")
        #expect(byName["ids"]?["class"] as? String == "non-float")
        #expect((byName["word_embeddings.weight"]?["conflict"] as? String)?.contains("--vocab") == true)
        try s.ok(["merge", "--abort"], in: "repo")

        let u = try s.run(["merge", "x", "y", "--method", "task_arithmetic", "--vocab", "union", "--json"], in: "repo")
        let union = tensors(try report(u))
        #expect(union["word_embeddings.weight"]?["class"] as? String == "merged")
        #expect((union["word_embeddings.weight"]?["remarks"] as? [String])?.first?.contains("rows 2..<3") == true)
        try s.ok(["resolve", "b", "--base"], in: "repo")
        try s.ok(["merge", "--continue"], in: "repo")
        let show = try #require(try s.json(try s.ok(["show", "--json"], in: "repo")) as? [String: Any])
        let files = try #require(show["files"] as? [[String: Any]])
        let model = try #require(files.first { $0["path"] as? String == "model.safetensors" }?["tensors"] as? [[String: Any]])
        let names = Set(model.compactMap { $0["name"] as? String })
        #expect(names == ["a", "b", "d", "e", "ids", "word_embeddings.weight"])
        #expect(model.first { $0["name"] as? String == "word_embeddings.weight" }?["shape"] as? [Int] == [3, 4])
        // task_arithmetic: a = base + (x − base) + (y − base).
        try s.ok(["export", "HEAD", "../out"], in: "repo")
        let file = try SafetensorsFile(path: s.path("out/model.safetensors"))
        let a = try #require(file.tensor(named: "a"))
        let values = file.data(of: a).withMemoryRebound(to: Float.self) { Array($0) }
        for (i, v) in values.enumerated() { #expect(abs(v - (ramp[i] + 0.05)) < 1e-6) }
        try s.ok(["fsck"], in: "repo")
    }

    @Test func criss_crossPicksOneBaseAndSaysSo() throws {
        let s = try family()
        // Two branches that each merge the other: two best common ancestors.
        try s.ok(["switch", "-q", "-c", "p", "math"], in: "repo")
        try s.ok(["switch", "-q", "-c", "q", "code"], in: "repo")
        try s.ok(["merge", "-q", "math", "--method", "linear"], in: "repo")
        try s.ok(["switch", "-q", "p"], in: "repo")
        try s.ok(["merge", "-q", "code", "--method", "linear"], in: "repo")
        let r = try s.ok(["merge", "q", "--method", "ties", "--dry-run"], in: "repo").stdout
        #expect(r.contains("chosen among 2 best common ancestors"))
    }

    @Test func badInputIsOneLineAndWritesNothing() throws {
        let s = try family()
        let objects = s.files(under: "repo/.mrepo/objects")
        let plan = try s.ok(["merge", "--dry-run", "math", "code", "chat"], in: "repo").stdout
        #expect(plan.contains("Estimated peak memory") && plan.contains("merged"))
        #expect(s.files(under: "repo/.mrepo/objects") == objects, "a dry run writes nothing")
        expectOneLineError(try s.run(["merge", "math", "--method", "nope"], in: "repo"), status: 64, contains: "unknown merge method 'nope'; valid methods: linear, task_arithmetic, ties")
        // The same from a recipe file is a bad file: named, exit 2 (it was a usage error, 64, naming nothing).
        try "merge_method: nope\nbase_model: main\nmodels:\n  - model: math\n".write(toFile: s.path("nope.yml"), atomically: true, encoding: .utf8)
        expectOneLineError(try s.run(["merge", "--config", "../nope.yml"], in: "repo"), contains: "nope.yml: unknown merge method 'nope'")
        expectOneLineError(try s.run(["merge", "math", "code", "--set", "bogus=1"], in: "repo"), contains: "ties has no parameter 'bogus'; valid parameters: lambda, normalize, int8_mask, rescale, weight, density")
        expectOneLineError(try s.run(["merge", "math", "code", "--set", "density=1.5"], in: "repo"), contains: "parameter 'density' must be in (0, 1], got 1.5")
        expectOneLineError(try s.run(["merge", "math", "nosuch"], in: "repo"), contains: "unknown revision 'nosuch'")
        expectOneLineError(try s.run(["merge", "math", "code", "--method", "slerp"], in: "repo"), contains: "slerp: parameter 't' is required")
        try Data("models:\n  - model: math\n  - model: ghost\nmerge_method: ties\nbase_model: main\n".utf8)
            .write(to: URL(fileURLWithPath: s.path("recipe.yml")))
        expectOneLineError(try s.run(["merge", "--config", "../recipe.yml"], in: "repo"), contains: "unknown revision 'ghost'")
        try s.ok(["switch", "-q", "--orphan", "island"], in: "repo")
        try s.ok(["commit", "-q", "--allow-empty", "-m", "unrelated"], in: "repo")
        expectOneLineError(try s.run(["merge", "math"], in: "repo"), contains: "no common ancestor; name one with --base REV")
        try s.ok(["switch", "-q", "--force", "main"], in: "repo")
        // A local change to a file the merge writes (the model card) stops it before anything is written.
        try Data("dirty\n".utf8).write(to: URL(fileURLWithPath: s.path("repo/README.md")))
        expectOneLineError(try s.run(["merge", "math", "code"], in: "repo"), contains: "merging would overwrite uncommitted changes in README.md")
        #expect(try s.ok(["log", "--oneline", "main"], in: "repo").stdout.split(separator: "\n").count == 1, "main did not move")
    }

    /// `merge --abort` after `--no-commit` puts back the merge's own files and keeps local changes to
    /// the others, as git's does.
    @Test func abortingAMergeKeepsLocalChangesToFilesItDidNotWrite() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math", "code"])
        let model = try #require(s.read("repo/model.safetensors"))
        try Data("{}\n".utf8).write(to: URL(fileURLWithPath: s.path("repo/config.json")))
        try FileManager.default.removeItem(atPath: s.path("repo/tokenizer_config.json"))
        try s.ok(["merge", "-q", "math", "code", "--method", "ties", "--set", "density=0.5", "--no-commit"], in: "repo")
        #expect(s.read("repo/model.safetensors") != model, "the candidate is written")
        try s.ok(["merge", "--abort"], in: "repo")
        #expect(s.read("repo/model.safetensors") == model)
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout == "M config.json\nD tokenizer_config.json\n")
        #expect(s.read("repo/config.json") == Data("{}\n".utf8))
        try s.ok(["fsck"], in: "repo")
    }

    /// A local change to a tracked file that no input changes does not stop a merge (as in git):
    /// it stays a local change, and the merge records the file as its inputs have it.
    @Test func localEditsToFilesNoInputChangesAreCarriedOver() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(branches: ["math", "code"])
        let original = try #require(s.read("repo/config.json"))
        try (original + Data(" \n".utf8)).write(to: URL(fileURLWithPath: s.path("repo/config.json")))
        try s.ok(["merge", "-q", "math", "code", "--method", "ties", "--set", "density=0.5"], in: "repo")
        #expect(s.read("repo/config.json") == original + Data(" \n".utf8), "the edit is still there")
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout == "M config.json\n")
        #expect(try s.ok(["show", "HEAD:config.json"], in: "repo").stdout.utf8.elementsEqual(original))
        // A safetensors file stops it whatever the inputs hold: a method may rewrite any tensor.
        try s.ok(["restore", "config.json"], in: "repo")
        try s.ok(["reset", "-q", "--hard", "HEAD~1"], in: "repo")
        let model = try #require(s.read("repo/model.safetensors"))
        try (model + Data([0])).write(to: URL(fileURLWithPath: s.path("repo/model.safetensors")))
        expectOneLineError(try s.run(["merge", "math", "code", "--method", "ties", "--set", "density=0.5"], in: "repo"),
                           contains: "merging would overwrite uncommitted changes in model.safetensors")
        try s.ok(["fsck"], in: "repo")
    }

    /// A mergekit recipe, and MWA weights from the recorded metrics.
    @Test func mergekitRecipeAndMetricWeights() throws {
        let s = try family()
        try Data("""
            models:
              - model: math
                parameters: {weight: 0.7, density: 0.6}
              - model: code
                parameters: {weight: 0.3, density: [0.4, 0.8]}
            merge_method: ties
            base_model: main
            parameters: {normalize: true}
            """.utf8).write(to: URL(fileURLWithPath: s.path("recipe.yml")))
        let r = try report(try s.ok(["merge", "--config", "../recipe.yml", "--json"], in: "repo"))
        #expect(r["experts"] as? [String] == ["math", "code"])
        let card = String(decoding: s.read("repo/merge_recipe.yml") ?? Data(), as: UTF8.self)
        #expect(card.contains("weight: 0.7") && card.contains("density: [0.4, 0.8]"))
        try s.ok(["switch", "-q", "-c", "soup", "main~1"], in: "repo")
        let mwa = try report(try s.ok(["merge", "math", "code", "chat", "--method", "mwa", "--set", "penalty=2", "--json"], in: "repo"))
        let notes = (tensors(mwa)["encoder.layer.0.attention.self.query.weight"]?["metrics"] as? [String: Any])?["notes"] as? [String: Double]
        // Weights ∝ loss^-2 over losses 1.9, 2.0, 1.7, normalised.
        let raw: [Double] = [1.9, 2.0, 1.7].map { (x: Double) -> Double in 1 / (x * x) }
        let total: Double = raw.reduce(0, +)
        let expected: Double = raw[2] / total
        let got: Double = notes?["weight_2"] ?? 0
        #expect(abs(got - expected) < 1e-9)
    }

    /// The sample pre-merge-commit gate compares with the experts, not with the merge base: a merge
    /// that scores better than the base (2.5) but worse than both experts (1.9, 2.0) is rejected.
    @Test func evaluationGateRejectsAWorseMerge() throws {
        let s = try family()
        let hooks = s.path("repo/.mrepo/hooks")
        try FileManager.default.copyItem(atPath: hooks + "/pre-merge-commit.sample", toPath: hooks + "/pre-merge-commit")
        #expect(chmod(hooks + "/pre-merge-commit", 0o755) == 0)
        let eval = s.path("eval.sh")
        try Data("#!/bin/sh\ntest -f \"$1/model.safetensors\" && echo 2.2\n".utf8).write(to: URL(fileURLWithPath: eval))
        #expect(chmod(eval, 0o755) == 0)
        let head = try s.ok(["log", "--oneline", "-n", "1"], in: "repo").stdout
        let r = try s.run(["merge", "math", "code", "--method", "ties"], in: "repo", environment: ["MREPO_EVAL_CMD": eval])
        // The hook's own line, then mrepo's one-line error.
        #expect(r.status == 2)
        #expect(r.stderrLines.first?.contains("eval_loss = 2.2, worst of 2 experts = 2") == true)
        #expect(r.stderrLines.last?.hasPrefix("mrepo: error: pre-merge-commit hook rejected the operation") == true)
        #expect(try s.ok(["log", "--oneline", "-n", "1"], in: "repo").stdout == head)
        // The mean policy: 1.95 is the experts' mean; 1.96 fails it, 1.5 passes every policy.
        try Data("#!/bin/sh\necho 1.96\n".utf8).write(to: URL(fileURLWithPath: eval))
        let mean = try s.run(["merge", "math", "code", "--method", "ties"], in: "repo", environment: ["MREPO_EVAL_CMD": eval, "MREPO_EVAL_POLICY": "mean"])
        #expect(mean.status == 2 && mean.stderrLines.first?.contains("mean of 2 experts = 1.95") == true)
        // Scores the evaluation contract refuses fail the gate, whatever the policy: non-finite
        // numbers and booleans (-Infinity passed it), and so does an evaluation past MREPO_EVAL_TIMEOUT.
        for line in ["-Infinity", "NaN", "{\"a\": Infinity}", "{\"a\": true}", "{\"a\": \"1.5\"}"] {
            try Data("#!/bin/sh\necho '\(line)'\n".utf8).write(to: URL(fileURLWithPath: eval))
            let refused = try s.run(["merge", "math", "code", "--method", "ties"], in: "repo", environment: ["MREPO_EVAL_CMD": eval])
            #expect(refused.status == 2 && refused.stderrLines.first?.contains("neither a JSON object of finite scores nor a finite number") == true,
                    "\(line): \(refused.stderr)")
        }
        // An evaluation that never ends: it reads a pipe nobody writes.
        #expect(mkfifo(s.path("never"), 0o600) == 0)
        let slow = try s.run(["merge", "math", "code", "--method", "ties"], in: "repo",
                             environment: ["MREPO_EVAL_CMD": "read x < \(s.path("never")); echo 1.5", "MREPO_EVAL_TIMEOUT": "0.5"])
        #expect(slow.status == 2 && slow.stderrLines.first?.contains("ran longer than MREPO_EVAL_TIMEOUT") == true, "\(slow.stderr)")
        #expect(try s.ok(["log", "--oneline", "-n", "1"], in: "repo").stdout == head)
        // What the evaluation leaves running neither holds the gate up (it waited for the pipes to
        // close, so a passing evaluation was timed out) nor outlives it.
        try Data("#!/bin/sh\nsleep 300 &\necho 1.5\n".utf8).write(to: URL(fileURLWithPath: eval))
        try s.ok(["merge", "math", "code", "--method", "ties", "--no-commit"], in: "repo",
                 environment: ["MREPO_EVAL_CMD": eval, "MREPO_EVAL_POLICY": "best", "MREPO_EVAL_TIMEOUT": "60"])
        try s.ok(["merge", "--abort"], in: "repo")
        // The command runs as --search runs it (sh -c 'CMD "$@"' sh FOLDER): shell syntax works.
        try Data("#!/bin/sh\necho 1.5\n".utf8).write(to: URL(fileURLWithPath: eval))
        try s.ok(["merge", "math", "code", "--method", "ties"], in: "repo", environment: ["MREPO_EVAL_CMD": "cd / && \(eval)", "MREPO_EVAL_POLICY": "best"])
    }
}

/// docs/merging.md embeds the generated method catalogue; it must match the code.
@Suite struct MergeDocsTests {
    @Test func methodCatalogueInDocsIsCurrent() throws {
        let s = try CLISandbox()
        let generated = try s.ok(["merge", "--list-methods", "--markdown"]).stdout
        let project = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let doc = try String(contentsOf: project.appendingPathComponent("docs/merging.md"), encoding: .utf8)
        let begin = try #require(doc.range(of: "<!-- methods:begin -->\n"))
        let end = try #require(doc.range(of: "<!-- methods:end -->"))
        #expect(String(doc[begin.upperBound..<end.lowerBound]) == generated,
                "regenerate with: mrepo merge --list-methods --markdown (between the methods markers of docs/merging.md)")
    }
}
