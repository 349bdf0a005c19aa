import Delta
import Foundation
import Testing

/// The data-free subspace methods and `--balance` end to end on the tiny family: merges commit,
/// recorded recipes replay bit for bit, `--balance norm` is recorded and replayed, and bad
/// parameters are refused with one line before anything is written.
@Suite struct SubspaceMethodsCLITests {
    /// The tiny family: base on main, math/code/chat on branches.
    func family() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.repository(of: "family", branches: ["math", "code", "chat"])
        return s
    }

    func recipe(_ log: [[String: Any]]) -> [String: Any]? {
        ((log.first?["extra"] as? [String: Any])?["merge"] as? [String: Any])?["recipe"] as? [String: Any]
    }

    /// Merges on main with `arguments`, exports to `../first`, then replays the recorded recipe on
    /// a branch at the merge base and exports to `../second`; returns the recorded recipe text.
    func mergeAndReplay(_ s: CLISandbox, _ arguments: [String]) throws -> String {
        try s.ok(["merge", "-q"] + arguments, in: "repo")
        try s.ok(["export", "HEAD", "../first"], in: "repo")
        try s.ok(["switch", "-q", "-c", "replay", "main~1"], in: "repo")
        try s.ok(["merge", "-q", "--config", "../first/merge_recipe.yml"], in: "repo")
        try s.ok(["export", "HEAD", "../second"], in: "repo")
        return String(decoding: s.read("first/merge_recipe.yml") ?? Data(), as: UTF8.self)
    }

    /// `--dry-run`'s memory estimate is the method's own: a subspace method holds the largest
    /// matrix's task vectors and SVD factors in float64, 2·(k + 3)·8 bytes per element against
    /// (k + 2)·4 for TIES, and the text says how it counted.
    @Test func dryRunEstimatesEachMethodsOwnMemory() throws {
        let s = try family()
        func plan(_ method: String) throws -> (bytes: Int, text: String) {
            let json = try #require(try s.json(try s.ok(["merge", "--dry-run", "--json", "math", "code", "chat", "--method", method], in: "repo")) as? [String: Any])
            let text = try s.ok(["merge", "--dry-run", "math", "code", "chat", "--method", method], in: "repo").stdout
            return (try #require(json["estimated_peak_bytes"] as? Int), text)
        }
        let (ties, tiesText) = try plan("ties")
        let (tsv, tsvText) = try plan("tsv")
        let buffers = 160 << 20
        // Three experts: 5 × 4 bytes per element against 12 × 8.
        #expect((tsv - buffers) * 20 == (ties - buffers) * 96, "ties \(ties), tsv \(tsv)")
        #expect(tiesText.contains("(experts + 2) × the largest merged tensor in float32"))
        #expect(tsvText.contains("2 × (experts + 3) × the largest matrix in float64"))
    }

    @Test func tsvMergeReplaysBitForBit() throws {
        let s = try family()
        let text = try mergeAndReplay(s, ["math", "code", "--method", "tsv"])
        #expect(text.contains("merge_method: tsv"), "\(text)")
        // The replay names its models by commit: the message shows them short, as ids are shown.
        let subject = try s.ok(["log", "-n", "1", "--format=%s"], in: "repo").stdout
        let math = String(try s.ok(["rev-parse", "math"], in: "repo").stdout.prefix(12))
        #expect(subject.hasPrefix("Merge \(math), ") && subject.count < 80, "\(subject)")
        let first = try #require(s.read("first/model.safetensors"))
        #expect(first == s.read("second/model.safetensors"))
        // The merge is neither base nor an expert, and differs from task arithmetic's.
        #expect(first != s.read("family/base/model.safetensors") && first != s.read("family/math/model.safetensors"))
        try s.ok(["switch", "-q", "-c", "ta", "main~1"], in: "repo")
        try s.ok(["merge", "-q", "math", "code", "--method", "task_arithmetic"], in: "repo")
        try s.ok(["export", "HEAD", "../ta"], in: "repo")
        #expect(s.read("ta/model.safetensors") != first)
        try s.ok(["fsck"], in: "repo")
    }

    @Test(arguments: ["iso_c", "iso_cts", "wudi", "cart", "pcb", "knots"])
    func everyMethodMergesTheFamily(method: String) throws {
        let s = try family()
        let r = try mergeReport(try s.ok(["merge", "math", "code", "chat", "--method", method, "--json"], in: "repo"))
        #expect(r["status"] as? String == "committed")
        try s.ok(["export", "HEAD", "../out"], in: "repo")
        #expect(s.read("out/model.safetensors") != s.read("family/base/model.safetensors"))
    }

    @Test func balanceNormIsRecordedAndReplayed() throws {
        let s = try family()
        let text = try mergeAndReplay(s, ["math", "code", "chat", "--method", "ties", "--set", "density=0.5", "--balance", "norm"])
        #expect(text.contains("balance: norm"), "\(text)")
        let log = try #require(try s.json(try s.ok(["log", "--json", "-n", "1", "main"], in: "repo")) as? [[String: Any]])
        #expect(recipe(log)?["balance"] as? String == "norm")
        let balanced = try #require(s.read("first/model.safetensors"))
        #expect(balanced == s.read("second/model.safetensors"))
        // Without it, the same merge differs, and records no balance (recipes of older merges are unchanged).
        try s.ok(["switch", "-q", "-c", "plain", "main~1"], in: "repo")
        try s.ok(["merge", "-q", "math", "code", "chat", "--method", "ties", "--set", "density=0.5", "--balance", "none"], in: "repo")
        try s.ok(["export", "HEAD", "../plain"], in: "repo")
        #expect(s.read("plain/model.safetensors") != balanced)
        let plain = try #require(try s.json(try s.ok(["log", "--json", "-n", "1"], in: "repo")) as? [[String: Any]])
        #expect(recipe(plain)?["balance"] == nil)
        #expect(!String(decoding: s.read("plain/merge_recipe.yml") ?? Data(), as: UTF8.self).contains("balance"))
    }

    @Test func badParametersAreRefusedWithOneLine() throws {
        let s = try family()
        let head = try s.ok(["log", "--oneline", "-n", "1"], in: "repo").stdout
        expectOneLineError(try s.run(["merge", "math", "code", "--method", "tsv", "--set", "fraction=2"], in: "repo"),
                           contains: "tsv: parameter 'fraction' must be in [0, 1], got 2")
        expectOneLineError(try s.run(["merge", "math", "code", "--method", "knots", "--set", "merge=dare"], in: "repo"),
                           contains: "knots: parameter 'merge' must be one of ties, task_arithmetic")
        expectOneLineError(try s.run(["merge", "math", "code", "--method", "pcb", "--set", "ratio=0"], in: "repo"),
                           contains: "pcb: parameter 'ratio' must be in (0, 1]")
        expectOneLineError(try s.run(["merge", "math", "code", "--method", "wudi", "--set", "rank=3"], in: "repo"),
                           contains: "wudi has no parameter 'rank'")
        expectOneLineError(try s.run(["merge", "math", "code", "--method", "cart", "--balance", "norm"], in: "repo"),
                           contains: "cart: --balance norm rescales task vectors")
        expectOneLineError(try s.run(["merge", "math", "code", "--method", "tsv", "--balance", "max"], in: "repo"), status: 64,
                           contains: "The value 'max' is invalid for '--balance")
        #expect(try s.ok(["log", "--oneline", "-n", "1"], in: "repo").stdout == head, "nothing was committed")
    }

    @Test func helpMethodShowsPaperAndParameters() throws {
        let s = try family()
        let tsv = try s.ok(["merge", "--help-method", "tsv"], in: "repo").stdout
        #expect(tsv.contains("https://arxiv.org/abs/2412.00081") && tsv.contains("fraction") && tsv.contains("lambda"))
        let knots = try s.ok(["merge", "--help-method", "knots"], in: "repo").stdout
        #expect(knots.contains("density") && knots.contains("ties | task_arithmetic"))
    }

    /// KnOTS on folded LoRA adapters: the shared basis of two rank-4 adapters has rank 8, and
    /// merging the coordinates by task arithmetic gives task arithmetic of the folded models.
    @Test func knotsOnFoldedAdapters() throws {
        let s = try CLISandbox()
        try s.synth("fam", ["--size", "tiny", "--adapters", "2", "--lora-rank", "4"])
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../fam/base", "-m", "base"], in: "repo")
        for name in ["math", "code"] {
            try s.ok(["switch", "-q", "-c", "lora-\(name)", "main"], in: "repo")
            try s.ok(["commit", "-q", "--from", "../fam/lora-\(name)", "-m", "lora \(name)"], in: "repo")
            try s.ok(["export", "lora-\(name)", "../folded-\(name)", "--fold"], in: "repo")
            try s.ok(["switch", "-q", "-c", name, "main"], in: "repo")
            try s.ok(["commit", "-q", "--from", "../folded-\(name)", "-m", "folded \(name)"], in: "repo")
        }
        try s.ok(["switch", "-q", "-c", "k", "main"], in: "repo")
        let r = try mergeReport(try s.ok(["merge", "math", "code", "--method", "knots", "--json"], in: "repo"))
        let query = "encoder.layer.0.attention.self.query.weight"
        let notes = ((tensorsByName(r)[query]?["metrics"] as? [String: Any])?["notes"] as? [String: Double])
        #expect(notes?["knots_rank"] == 8, "\(String(describing: notes))")
        try s.ok(["switch", "-q", "-c", "kta", "main"], in: "repo")
        try s.ok(["merge", "-q", "math", "code", "--method", "knots", "--set", "merge=task_arithmetic"], in: "repo")
        try s.ok(["export", "HEAD", "../kta"], in: "repo")
        try s.ok(["switch", "-q", "-c", "ta", "main"], in: "repo")
        try s.ok(["merge", "-q", "math", "code", "--method", "task_arithmetic"], in: "repo")
        try s.ok(["export", "HEAD", "../ta"], in: "repo")
        let knots = try s.floats("kta/model.safetensors", query), ta = try s.floats("ta/model.safetensors", query)
        let base = try s.floats("fam/base/model.safetensors", query)
        #expect(knots.count == ta.count && knots != base)
        let worst = zip(knots, ta).map { abs($0 - $1) }.max() ?? 1
        #expect(worst < 1e-5, "max |knots(ta) − ta| = \(worst)")
    }
}
