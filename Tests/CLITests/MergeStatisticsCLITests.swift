import Delta
import Foundation
import Testing

/// Data-driven merges from statistics committed beside the experts (`mrepo_stats/`): fisher and
/// regmean merge from them, merges never carry them, `diff` shows them as files, `export` keeps
/// them unless `--no-stats`, and a missing file is one line naming the expert and the file.
@Suite struct MergeStatisticsCLITests {
    static let base: [Float] = [0.1, -0.2, 0.3, 0.0, 0.5, -0.5]
    static let a: [Float] = [0.6, -0.3, 0.5, -0.3, 0.55, -0.1]
    static let b: [Float] = [-0.1, 0.1, 0.55, 0.1, -0.1, -0.35]
    /// Diagonal Grams (3 input features): expert a saw feature 0 most, b feature 2.
    static let gramA: [Float] = [4, 0, 0, 0, 1, 0, 0, 0, 1]
    static let gramB: [Float] = [1, 0, 0, 0, 1, 0, 0, 0, 4]

    /// A model (`l.weight` 2×3, `l.bias` 2) with optional statistics files.
    func model(_ s: CLISandbox, _ folder: String, weight: [Float], bias: [Float], gram: [Float]?, fisher: [Float]?) throws {
        try s.writeModel(folder, [("l.weight", [2, 3], weight), ("l.bias", [2], bias)])
        try FileManager.default.createDirectory(atPath: s.path(folder + "/mrepo_stats"), withIntermediateDirectories: true)
        func bytes(_ v: [Float]) -> [UInt8] { v.withUnsafeBytes { Array($0) } }
        if let gram {
            try SafetensorsWriter.write(path: s.path(folder + "/mrepo_stats/regmean.safetensors"),
                                        tensors: [("l.weight.gram", .f32, [3, 3], bytes(gram))], metadata: [("num_samples", "10")])
        }
        if let fisher {
            try SafetensorsWriter.write(path: s.path(folder + "/mrepo_stats/fisher.safetensors"),
                                        tensors: [("l.weight", .f32, [2, 3], bytes(fisher)), ("l.bias", .f32, [2], bytes([1, 1]))], metadata: nil)
        }
    }

    func sandbox() throws -> CLISandbox {
        let s = try CLISandbox()
        try model(s, "base", weight: Self.base, bias: [0, 0], gram: nil, fisher: nil)
        try model(s, "a", weight: Self.a, bias: [1, 2], gram: Self.gramA, fisher: [9, 9, 9, 0, 0, 0])
        try model(s, "b", weight: Self.b, bias: [3, 4], gram: Self.gramB, fisher: [0, 0, 0, 9, 9, 9])
        try model(s, "c", weight: Self.b.map { $0 * 2 }, bias: [0, 1], gram: nil, fisher: nil)
        try s.repository(of: "", branches: ["a", "b", "c"])
        return s
    }

    @Test func regmeanMergesFromCommittedGramsAndDropsTheStatistics() throws {
        let s = try sandbox()
        let r = try mergeReport(try s.ok(["merge", "a", "b", "--method", "regmean", "--json"], in: "repo"))
        #expect(r["status"] as? String == "committed")
        try s.ok(["export", "HEAD", "../merged"], in: "repo")
        // Diagonal Grams: each input column is the Gram-weighted average of the experts' columns.
        let w = try s.floats("merged/model.safetensors", "l.weight")
        for row in 0..<2 {
            for k in 0..<3 {
                let ga = Double(Self.gramA[k * 3 + k]), gb = Double(Self.gramB[k * 3 + k])
                let expected = (ga * Double(Self.a[row * 3 + k]) + gb * Double(Self.b[row * 3 + k])) / (ga + gb)
                #expect(abs(Double(w[row * 3 + k]) - expected) < 1e-6, "row \(row) column \(k)")
            }
        }
        #expect(try s.floats("merged/model.safetensors", "l.bias") == [2, 3])
        // The merge's own tree carries no statistics: they described the experts.
        #expect(!s.files(under: "merged").contains { $0.hasPrefix("mrepo_stats/") }, "\(s.files(under: "merged"))")
        try s.ok(["fsck"], in: "repo")
    }

    @Test func fisherMergesFromCommittedFisher() throws {
        let s = try sandbox()
        try s.ok(["merge", "-q", "a", "b", "--method", "fisher", "--set", "normalize=false"], in: "repo")
        try s.ok(["export", "HEAD", "../merged"], in: "repo")
        let w = try s.floats("merged/model.safetensors", "l.weight")
        // Row 0 is a's (b's Fisher is 0 there, up to ε), row 1 b's.
        for k in 0..<3 {
            #expect(abs(w[k] - Self.a[k]) < 1e-5 && abs(w[3 + k] - Self.b[3 + k]) < 1e-5, "column \(k): \(w)")
        }
        let help = try s.ok(["merge", "--help-method", "fisher"]).stdout
        #expect(help.contains("mrepo_stats/fisher.safetensors") && help.contains("epsilon") && help.contains("normalize"), "\(help)")
        let helpR = try s.ok(["merge", "--help-method", "regmean"]).stdout
        #expect(helpR.contains("mrepo_stats/regmean.safetensors") && helpR.contains("alpha") && helpR.contains("plusplus"), "\(helpR)")
    }

    @Test func missingStatisticsIsOneLineNamingExpertAndFile() throws {
        let s = try sandbox()
        let before = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        expectOneLineError(try s.run(["merge", "a", "c", "--method", "fisher"], in: "repo"), contains: "c has no mrepo_stats/fisher.safetensors")
        expectOneLineError(try s.run(["merge", "a", "c", "--method", "regmean"], in: "repo"), contains: "mrepo_stats/regmean.safetensors")
        expectOneLineError(try s.run(["merge", "a", "b", "--method", "regmean", "--set", "plusplus=true"], in: "repo"),
                           contains: "mrepo_stats/regmean_plusplus.safetensors")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == before)
        try s.ok(["fsck"], in: "repo")
    }

    @Test func diffShowsStatisticsAsFilesAndExportKeepsThem() throws {
        let s = try sandbox()
        let d = try #require(try s.json(try s.ok(["diff", "a", "b", "--json"], in: "repo")) as? [String: Any])
        let files = (d["files"] as? [[String: Any]] ?? []).compactMap { $0["path"] as? String }
        let tensors = (d["tensors"] as? [[String: Any]] ?? []).compactMap { $0["name"] as? String }
        #expect(files.contains("mrepo_stats/regmean.safetensors") && files.contains("mrepo_stats/fisher.safetensors"), "\(files)")
        #expect(tensors.contains("l.weight") && !tensors.contains("l.weight.gram"), "\(tensors)")
        // Only the model's own l.weight is compared (not the Fisher file's tensor of that name).
        #expect(tensors.filter { $0 == "l.weight" }.count == 1)
        try s.ok(["export", "a", "../with"], in: "repo")
        #expect(s.files(under: "with").contains("mrepo_stats/regmean.safetensors"))
        #expect(s.read("with/mrepo_stats/regmean.safetensors") == s.read("a/mrepo_stats/regmean.safetensors"))
        try s.ok(["export", "a", "../without", "--no-stats"], in: "repo")
        #expect(s.files(under: "without") == ["model.safetensors"], "\(s.files(under: "without"))")
    }

    /// With statistics committed beside every expert, `merge --search` (built-in methods) also tries
    /// regmean and fisher, without balance; an expert without them keeps the search to the weights'
    /// methods; a space that lists regmean for such experts is refused before anything runs.
    @Test func searchOffersTheDataDrivenMethodsTheExpertsHaveStatisticsFor() throws {
        let s = try sandbox()
        let eval = "python3 -c 'import json; print(json.dumps({\"t\": 1.0}))'"
        func methods(_ branches: [String]) throws -> [String] {
            try s.ok(["merge", "-q"] + branches + ["--search", "--eval", eval, "--trials", "14", "--jobs", "2"], in: "repo")
            let shown = try #require(try s.json(try s.ok(["show", "--trials", "--json", "HEAD"], in: "repo")) as? [String: Any])
            let trials = try #require(shown["trials"] as? [[String: Any]])
            let recipes = trials.compactMap { $0["recipe"] as? [String: Any] }
            let dataDriven = recipes.filter { ["regmean", "fisher"].contains($0["method"] as? String) }
            let unbalanced = dataDriven.allSatisfy { $0["balance"] == nil }
            #expect(unbalanced, "\(dataDriven)")
            return recipes.compactMap { $0["method"] as? String }
        }
        try Data("methods: [ties, regmean]\n".utf8).write(to: URL(fileURLWithPath: s.path("space.yml")))
        let before = try s.ok(["rev-parse", "HEAD"], in: "repo").stdout
        expectOneLineError(try s.run(["merge", "a", "c", "--search", "--eval", eval, "--space", "../space.yml"], in: "repo"),
                           contains: "space.yml: method regmean cannot merge these experts: regmean: c has no mrepo_stats/regmean.safetensors")
        #expect(try s.ok(["rev-parse", "HEAD"], in: "repo").stdout == before)
        try s.ok(["switch", "-q", "-c", "other", "main"], in: "repo")
        let lacking = try methods(["a", "c"])
        #expect(lacking.count == 14 && !lacking.contains("regmean") && !lacking.contains("fisher"), "\(lacking)")
        try s.ok(["switch", "-q", "main"], in: "repo")
        let both = try methods(["a", "b"])
        #expect(both.count == 14 && both.contains("regmean") && both.contains("fisher"), "\(both)")
        try s.ok(["fsck"], in: "repo")
    }
}
