import Delta
import Foundation
import Testing

/// Merges mean what they say: the method applies to every changed tensor, explicit merges are
/// real merges, mergekit recipes carry over, and a recorded recipe replays its merge bit for bit.
///
/// Test bodies stay at function level (no `#expect` with a closure inside another closure): the
/// Swift 6.3 compiler can give such closures the same symbol as a neighbouring closure.
@Suite struct MergeSemanticsCLITests {
    static let ramp: [Float] = (0..<8).map { Float($0) / 10 - 0.3 }

    /// `repo` with `base` on main; `x` changes `a` only, `y` changes `b` only; `c` and `ids` are
    /// never changed.
    func sandbox() throws -> CLISandbox {
        let s = try CLISandbox()
        let r = MergeSemanticsCLITests.ramp
        try s.writeModel("base", [("a", [8], r), ("b", [2, 4], r.map { $0 * 2 }), ("c", [4], [0.5, -0.25, 1, 0]), ("ids", [4], [0, 1, 2, 3])])
        try s.writeModel("x", [("a", [8], r.map { $0 + 0.137 }), ("b", [2, 4], r.map { $0 * 2 }), ("c", [4], [0.5, -0.25, 1, 0]), ("ids", [4], [0, 1, 2, 3])])
        try s.writeModel("y", [("a", [8], r), ("b", [2, 4], r.map { $0 * 2 - 0.0731 }), ("c", [4], [0.5, -0.25, 1, 0]), ("ids", [4], [0, 1, 2, 3])])
        try Data("{\"model_type\": \"toy\"}\n".utf8).write(to: URL(fileURLWithPath: s.path("base/config.json")))
        try s.repository(of: "", branches: ["x", "y"])
        return s
    }

    func parents(_ s: CLISandbox, _ rev: String = "HEAD") throws -> [String] {
        let log = try #require(try s.json(try s.ok(["log", "--json", "-n", "1", rev], in: "repo")) as? [[String: Any]])
        return log.first?["parents"] as? [String] ?? []
    }

    func write(_ s: CLISandbox, _ file: String, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: s.path(file)))
    }

    /// base + w·(x − base), in Float32 as mergekit computes it.
    func interpolated(_ base: [Float], _ x: [Float], _ w: Float) -> [Float] {
        zip(base, x).map { b, e in b + (e - b) * w }
    }

    /// A one-model task-arithmetic recipe with weight 0.5 gives base + 0.5·τ (mergekit's numbers),
    /// not the fine-tune; unchanged tensors stay as they are.
    @Test func oneModelTaskArithmeticAppliesItsWeight() throws {
        let s = try sandbox()
        try write(s, "ta.yml", "merge_method: task_arithmetic\nbase_model: main\nmodels:\n  - model: x\n    parameters: {weight: 0.5}\ndtype: float32\n")
        try s.ok(["merge", "-q", "--config", "../ta.yml"], in: "repo")
        #expect(try parents(s).count == 2, "a real merge commit, of main and x")
        try s.ok(["export", "HEAD", "../out"], in: "repo")
        let base = try s.floats("base/model.safetensors", "a"), x = try s.floats("x/model.safetensors", "a")
        #expect(try s.floats("out/model.safetensors", "a") == interpolated(base, x, 0.5))
        #expect(try s.floats("out/model.safetensors", "c") == s.floats("base/model.safetensors", "c"))
        let recipe = String(decoding: s.read("out/merge_recipe.yml") ?? Data(), as: UTF8.self)
        #expect(recipe.contains("weight: 0.5") && recipe.contains("dtype: float32"), "\(recipe)")
    }

    /// WiSE-FT: a single branch with a method is a real merge, not a fast-forward.
    @Test func singleBranchWithAMethodIsARealMerge() throws {
        let s = try sandbox()
        let r = try s.ok(["merge", "x", "--method", "task_arithmetic", "--set", "lambda=0.5"], in: "repo")
        #expect(!r.stdout.contains("Fast-forward"))
        #expect(try parents(s).count == 2)
        try s.ok(["export", "HEAD", "../out"], in: "repo")
        let base = try s.floats("base/model.safetensors", "a"), x = try s.floats("x/model.safetensors", "a")
        #expect(try s.floats("out/model.safetensors", "a") == interpolated(base, x, 0.5))
    }

    /// A branch HEAD already contains adds nothing to a merge of several: it is left out, and said
    /// (it was dropped from the experts and the message silently).
    @Test func aBranchAlreadyInHeadIsLeftOutAndSaid() throws {
        let s = try sandbox()
        try s.ok(["switch", "-q", "-c", "t9", "x"], in: "repo")
        try s.ok(["commit", "-q", "--allow-empty", "-m", "on x"], in: "repo")
        let r = try s.ok(["merge", "x", "y", "--method", "linear"], in: "repo")
        #expect(r.stderr.contains("x is already in HEAD: it adds nothing and was left out of the merge"), "\(r.stderr)")
    }

    @Test func fastForwardOptionsAsInGit() throws {
        let s = try sandbox()
        try s.ok(["switch", "-q", "-c", "t1", "main"], in: "repo")
        #expect(try s.ok(["merge", "x"], in: "repo").stdout.contains("Fast-forward"))
        try s.ok(["switch", "-q", "-c", "t2", "main"], in: "repo")
        #expect(try s.ok(["merge", "--ff-only", "x"], in: "repo").stdout.contains("Fast-forward"))
        // A message alone still fast-forwards, as in git (it made a merge commit); --metric needs one.
        try s.ok(["switch", "-q", "-c", "t2m", "main"], in: "repo")
        #expect(try s.ok(["merge", "x", "-m", "take x"], in: "repo").stdout.contains("Fast-forward"))
        #expect(try parents(s).count == 1)
        try s.ok(["switch", "-q", "-c", "t2n", "main"], in: "repo")
        try s.ok(["merge", "-q", "x", "--metric", "eval_loss=1.5"], in: "repo")
        #expect(try parents(s).count == 2)
        // --no-ff records a merge commit whose tensors are x's, bit for bit.
        try s.ok(["switch", "-q", "-c", "t3", "main"], in: "repo")
        try s.ok(["merge", "-q", "--no-ff", "x"], in: "repo")
        #expect(try parents(s).count == 2)
        try s.ok(["export", "HEAD", "../t3"], in: "repo")
        for t in ["a", "b", "c"] { #expect(try s.floats("t3/model.safetensors", t) == s.floats("x/model.safetensors", t)) }
        // --ff-only refuses a diverged history and an explicit method, and writes nothing.
        try s.ok(["switch", "-q", "-c", "t4", "y"], in: "repo")
        let head = try s.ok(["log", "--oneline", "-n", "1"], in: "repo").stdout
        expectOneLineError(try s.run(["merge", "--ff-only", "x"], in: "repo"), contains: "--ff-only: HEAD (t4) cannot fast-forward to x")
        try s.ok(["switch", "-q", "t1"], in: "repo")
        expectOneLineError(try s.run(["merge", "--ff-only", "y", "--method", "ties"], in: "repo"), contains: "never a fast-forward")
        try s.ok(["switch", "-q", "t4"], in: "repo")
        #expect(try s.ok(["log", "--oneline", "-n", "1"], in: "repo").stdout == head)
        expectOneLineError(try s.run(["merge", "--no-ff", "--ff-only", "x"], in: "repo"), status: 64, contains: "exclude each other")
    }

    /// A tensor changed by one expert follows the method; --one-sided take keeps git's rule.
    @Test func oneSidedTensorsFollowTheMethodUnlessTaken() throws {
        let s = try sandbox()
        try s.ok(["switch", "-q", "-c", "m", "y"], in: "repo")
        let merged = tensorsByName(try mergeReport(try s.ok(["merge", "x", "--method", "task_arithmetic", "--set", "lambda=0.5", "--json"], in: "repo")))
        #expect(merged["a"]?["class"] as? String == "merged" && merged["a"]?["source"] as? String == "x")
        #expect(merged["c"]?["class"] as? String == "unchanged")
        try s.ok(["export", "HEAD", "../m"], in: "repo")
        let base = try s.floats("base/model.safetensors", "a"), x = try s.floats("x/model.safetensors", "a")
        #expect(try s.floats("m/model.safetensors", "a") == interpolated(base, x, 0.5))
        #expect(try s.ok(["show", "HEAD"], in: "repo").stdout.contains("one-sided tensors: merge"))

        try s.ok(["switch", "-q", "-c", "g", "y"], in: "repo")
        let taken = tensorsByName(try mergeReport(try s.ok(["merge", "x", "--method", "task_arithmetic", "--set", "lambda=0.5",
                                                            "--one-sided", "take", "--json"], in: "repo")))
        #expect(taken["a"]?["class"] as? String == "one-sided")
        try s.ok(["export", "HEAD", "../g"], in: "repo")
        #expect(try s.floats("g/model.safetensors", "a") == x)
        #expect(try s.ok(["show", "HEAD"], in: "repo").stdout.contains("one-sided tensors: take"))
        expectOneLineError(try s.run(["merge", "x", "--one-sided", "maybe"], in: "repo"), status: 64, contains: "maybe")
    }

    /// int8_mask, tokenizer_source and dtype are taken as mergekit takes them; dtype is the output
    /// dtype of every floating-point tensor (integers stay), and the recipe records it as given.
    @Test func mergekitKeysCarryOver() throws {
        let s = try sandbox()
        try write(s, "ties.yml", """
            models:
              - model: x
                parameters: {weight: 1.0, density: 0.5}
              - model: y
                parameters: {weight: 1.0, density: 0.5}
            merge_method: ties
            base_model: main
            parameters:
              normalize: true
              int8_mask: true
            tokenizer_source: base
            dtype: float16
            """)
        try s.ok(["merge", "-q", "--config", "../ties.yml"], in: "repo")
        try s.ok(["export", "HEAD", "../out"], in: "repo")
        for t in ["a", "b", "c"] { #expect(try s.dtype("out/model.safetensors", t) == .f16, "\(t) is written as float16") }
        #expect(try s.dtype("out/model.safetensors", "ids") == .i64)
        #expect(try s.floats("out/model.safetensors", "c") == s.floats("base/model.safetensors", "c"), "exact in float16")
        let recipe = String(decoding: s.read("out/merge_recipe.yml") ?? Data(), as: UTF8.self)
        #expect(recipe.contains("dtype: float16") && recipe.contains("int8_mask: true") && recipe.contains("tokenizer_source: base"), "\(recipe)")
        #expect(!recipe.contains("float32"), "the recipe's dtype is recorded as given")
    }

    /// SLERP with base_model set to one of its two models (mergekit's documented pattern): t = 0 is
    /// that model.
    @Test func slerpBaseModelIsItsFirstEnd() throws {
        let s = try sandbox()
        try s.ok(["switch", "-q", "-c", "s", "x"], in: "repo")
        try write(s, "slerp.yml", "merge_method: slerp\nbase_model: y\nmodels:\n  - model: x\n  - model: y\nparameters:\n  t: 0\n")
        try s.ok(["merge", "-q", "--config", "../slerp.yml"], in: "repo")
        try s.ok(["export", "HEAD", "../out"], in: "repo")
        for t in ["a", "b", "c"] { #expect(try s.floats("out/model.safetensors", t) == s.floats("y/model.safetensors", t)) }
    }

    /// A recipe without `models` merges the branches named beside it, as the same method and
    /// parameters given as options do, and the merge records them as its models.
    @Test func aRecipeWithoutModelsMergesTheBranchesNamed() throws {
        let s = try sandbox()
        try write(s, "m.yml", "merge_method: ties\nparameters:\n  density: 0.5\n  weight: 0.7\n")
        try s.ok(["switch", "-q", "-c", "by-recipe", "main"], in: "repo")
        try s.ok(["merge", "-q", "x", "y", "--config", "../m.yml"], in: "repo")
        try s.ok(["switch", "-q", "-c", "by-options", "main"], in: "repo")
        try s.ok(["merge", "-q", "x", "y", "--method", "ties", "--set", "density=0.5", "--set", "weight=0.7"], in: "repo")
        try s.ok(["export", "by-recipe", "../r"], in: "repo")
        try s.ok(["export", "by-options", "../o"], in: "repo")
        #expect(s.read("r/model.safetensors") == s.read("o/model.safetensors"))
        let recorded = String(decoding: s.read("r/merge_recipe.yml") ?? Data(), as: UTF8.self)
        #expect(recorded.components(separatedBy: "- model: ").count == 3, "two models recorded (by commit): \(recorded)")
        expectOneLineError(try s.run(["merge", "--config", "../m.yml"], in: "repo"), contains: "../m.yml: missing 'models' list; list the models to merge, or name the branches on the command line")
        // The branches are its models exactly, base_model among them: slerp's t = 0 end is y, and
        // HEAD (the merge base here) does not join as a third input.
        try write(s, "s.yml", "merge_method: slerp\nbase_model: y\nparameters:\n  t: 0\n")
        try s.ok(["switch", "-q", "-c", "slerped", "main"], in: "repo")
        try s.ok(["merge", "-q", "x", "y", "--config", "../s.yml"], in: "repo")
        try s.ok(["export", "HEAD", "../sl"], in: "repo")
        for t in ["a", "b", "c"] { #expect(try s.floats("sl/model.safetensors", t) == s.floats("y/model.safetensors", t)) }
        // Three commits for the recipe's slerp: the count its method takes is the recipe's to say.
        try s.ok(["switch", "-q", "-c", "z", "x"], in: "repo")
        try s.ok(["commit", "-q", "--allow-empty", "-m", "z"], in: "repo")
        try s.ok(["switch", "-q", "main"], in: "repo")
        expectOneLineError(try s.run(["merge", "x", "y", "z", "--config", "../s.yml"], in: "repo"),
                           contains: "../s.yml: slerp: takes exactly 2 experts, got 3")
    }

    /// Two names of one commit are merged once, with a warning (it was silent, and the second
    /// name's weight replaced the first's); names of one commit that give it different
    /// parameters are refused.
    @Test func twoNamesOfOneCommitAreMergedOnceAndSaidSo() throws {
        let s = try sandbox()
        try s.ok(["branch", "x2", "x"], in: "repo")
        let merged = try s.ok(["merge", "-q", "x", "x2", "y", "--method", "linear"], in: "repo")
        #expect(merged.stderr.contains("warning: x2 names the same commit as x"), "\(merged.stderr)")
        let report = try #require(try s.json(try s.ok(["show", "--json"], in: "repo")) as? [String: Any])
        let recipe = ((report["extra"] as? [String: Any])?["merge"] as? [String: Any])?["recipe"] as? [String: Any]
        #expect((recipe?["experts"] as? [[String: Any]])?.compactMap { $0["name"] as? String } == ["x", "y"], "\(String(describing: recipe))")
        try s.ok(["reset", "-q", "--hard", "HEAD~1"], in: "repo")
        try write(s, "w.yml", "merge_method: linear\nmodels:\n  - model: x\n    parameters: {weight: 1}\n  - model: x2\n    parameters: {weight: 2}\n  - model: y\n    parameters: {weight: 1}\n")
        let head = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        expectOneLineError(try s.run(["merge", "--config", "../w.yml"], in: "repo"),
                           contains: "../w.yml: 'x' and 'x2' name the same commit")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == head)
    }

    /// Models named by a path or a Hub id get an error saying how to import them; a recipe run on
    /// a branch whose changes it would drop is refused.
    @Test func recipesNameRevisionsOfThisRepository() throws {
        let s = try sandbox()
        try write(s, "p.yml", "merge_method: ties\nbase_model: main\nmodels:\n  - model: ./models/x\n  - model: y\n")
        expectOneLineError(try s.run(["merge", "--config", "../p.yml"], in: "repo"), contains: "is a folder, not a revision of this repository; import it first")
        try write(s, "h.yml", "merge_method: ties\nbase_model: main\nmodels:\n  - model: meta-llama/Llama-3.2-1B\n  - model: y\n")
        expectOneLineError(try s.run(["merge", "--config", "../h.yml"], in: "repo"), contains: "../h.yml: 'meta-llama/Llama-3.2-1B' looks like a Hugging Face model id")
        // What a recipe says wrong is said to be the recipe's: a name, a parameter, a file for a model.
        try write(s, "n.yml", "merge_method: ties\nbase_model: main\nmodels:\n  - model: nosuch\n  - model: y\n")
        expectOneLineError(try s.run(["merge", "--config", "../n.yml"], in: "repo"), contains: "../n.yml: unknown revision 'nosuch'")
        try write(s, "d.yml", "merge_method: ties\nbase_model: main\nmodels:\n  - model: x\n    parameters: {density: 0}\n  - model: y\n")
        expectOneLineError(try s.run(["merge", "--config", "../d.yml"], in: "repo"), contains: "../d.yml: ties: parameter 'density' must be in (0, 1], got 0")
        // A bad value given on the command line is the user's own, not the recipe's.
        let own = try s.run(["merge", "--config", "../d.yml", "--set", "density=5"], in: "repo")
        expectOneLineError(own, contains: "ties: parameter 'density' must be in (0, 1], got 5")
        #expect(!own.stderr.contains("d.yml"), "\(own.stderr)")
        // Branches beside a recipe's models are refused: they replaced the models silently.
        try write(s, "t.yml", "merge_method: ties\nbase_model: main\nmodels:\n  - model: x\n  - model: y\n")
        expectOneLineError(try s.run(["merge", "--config", "../t.yml", "y"], in: "repo"),
                           contains: "../t.yml: the recipe lists its models (x, y), and the command line names branches too (y); give the experts in one place")
        try write(s, "f.yml", "merge_method: ties\nbase_model: main\nmodels:\n  - model: ../d.yml\n  - model: y\n")
        expectOneLineError(try s.run(["merge", "--config", "../f.yml"], in: "repo"), contains: "../f.yml: '../d.yml' is a file, not a revision")
        try s.ok(["switch", "-q", "-c", "other", "y"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../x", "-m", "unrelated work"], in: "repo")
        try write(s, "r.yml", "merge_method: ties\nbase_model: main\nmodels:\n  - model: x\n")
        expectOneLineError(try s.run(["merge", "--config", "../r.yml"], in: "repo"), contains: "its changes would be dropped")
        // A recorded resolution of a tensor no input holds was ignored; one naming no expert did not say which recipe.
        try s.ok(["switch", "-q", "main"], in: "repo")
        let resolving = "merge_method: ties\nbase_model: main\nmodels:\n  - model: x\n  - model: y\nmrepo:\n  resolutions:\n"
        try write(s, "u.yml", resolving + "    - {tensor: nosuch, how: base, option: --base}\n")
        expectOneLineError(try s.run(["merge", "--config", "../u.yml"], in: "repo"), contains: "../u.yml: the recipe resolves 'nosuch', which no input of this merge holds")
        try write(s, "e.yml", resolving + "    - {tensor: a, how: expert, option: --theirs, expert: deadbeef}\n")
        expectOneLineError(try s.run(["merge", "--config", "../e.yml"], in: "repo"), contains: "../e.yml: the recipe resolves 'a' with the tensor of expert deadbeef")
    }

    /// A merge stopped by a threshold, settled by `resolve` (ours, a method, base) and continued,
    /// records its resolutions; its recipe re-run on another branch reproduces it bit for bit.
    @Test func recordedRecipeReplaysTheMergeWithItsResolutions() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        for ft in ["math", "code", "chat"] {
            try s.ok(["switch", "-q", "-c", ft, "main"], in: "repo")
            try s.ok(["commit", "-q", "--from", "../family/\(ft)", "-m", ft], in: "repo")
        }
        try s.ok(["switch", "-q", "-c", "merged", "main"], in: "repo")
        let stopped = try s.run(["merge", "math", "code", "chat", "--method", "ties", "--set", "density=0.5", "--seed", "7",
                                 "--max-sign-conflict", "0.2", "--json"], in: "repo")
        #expect(stopped.status == 1, "\(stopped.stderr)")
        let unresolved = try #require(try mergeReport(stopped)["unresolved"] as? [[String: Any]])
        #expect(unresolved.count > 2)
        try s.ok(["resolve", "-q", "*.attention.self.*", "--ours"], in: "repo")
        try s.ok(["resolve", "-q", "*.intermediate.*", "--method", "linear"], in: "repo")
        try s.ok(["resolve", "-q", "*", "--base"], in: "repo")
        try s.ok(["merge", "-q", "--continue"], in: "repo")
        let show = try s.ok(["show", "HEAD"], in: "repo").stdout
        #expect(show.contains("resolved \(unresolved.count) tensors by hand") && show.contains("thresholds: max sign conflict 0.2"), "\(show)")
        // The stored report lists them as resolved.
        let stored = try #require(try s.json(try s.ok(["show", "--conflicts", "--json", "HEAD"], in: "repo")) as? [String: Any])
        #expect((stored["unresolved"] as? [Any])?.isEmpty == true)
        let settled = tensorsByName(stored).values.filter { $0["resolution"] != nil }
        #expect(settled.count == unresolved.count)
        #expect(settled.contains { ($0["resolution"] as? String)?.hasPrefix("method linear") == true })
        try s.ok(["export", "HEAD", "../first"], in: "repo")

        // Re-run the recorded recipe on a new branch from the base.
        try s.ok(["switch", "-q", "-c", "again", "main"], in: "repo")
        let rerun = try s.run(["merge", "--config", "../first/merge_recipe.yml"], in: "repo")
        #expect(rerun.status == 0, "\(rerun.stderr)")
        try s.ok(["export", "HEAD", "../second"], in: "repo")
        for file in s.files(under: "first") where file.hasSuffix(".safetensors") || file.hasSuffix(".json") {
            #expect(s.read("first/\(file)") == s.read("second/\(file)"), "\(file) is reproduced bit for bit")
        }
        try s.ok(["fsck"], in: "repo")
    }

    @Test func mergeRecordsMetricsAndWritesReports() throws {
        let s = try sandbox()
        try s.ok(["switch", "-q", "-c", "m", "y"], in: "repo")
        try s.ok(["merge", "-q", "x", "--method", "ties", "--metric", "eval_loss=1.25", "--metric", "accuracy=0.8"], in: "repo")
        let log = try #require(try s.json(try s.ok(["log", "--json", "-n", "1"], in: "repo")) as? [[String: Any]])
        let metrics = log.first?["metrics"] as? [String: Double]
        #expect(metrics?["eval_loss"] == 1.25 && metrics?["accuracy"] == 0.8, "\(String(describing: log.first?["metrics"]))")
        try s.ok(["show", "-q", "HEAD", "--report", "../r.html"], in: "repo")
        let html = String(decoding: s.read("r.html") ?? Data(), as: UTF8.self)
        #expect(html.contains("<!DOCTYPE html>") && html.contains("ties") && html.contains("merge_method"))
        expectOneLineError(try s.run(["show", "main", "--report", "../n.html"], in: "repo"), contains: "is not a merge commit")
        #expect(s.read("n.html") == nil)
        expectOneLineError(try s.run(["merge", "x", "--metric", "loss=abc"], in: "repo"), status: 64, contains: "--metric 'loss=abc'")
    }
}
