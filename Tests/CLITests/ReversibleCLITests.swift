import Delta
import Foundation
import Testing

/// LoRA adapters, lossy low-rank commits and reversible merges end to end, through the built
/// binary. Results are checked against tensors read here with Delta's reader.
///
/// Test bodies stay at function level (no `#expect` with a closure inside another closure): the
/// Swift 6.3 compiler can give such closures the same symbol as a neighbouring closure.
@Suite struct ReversibleCLITests {
    // MARK: - Fixtures

    /// `fam` (tiny family and three rank-4 adapters), and `repo` with the base on main and each
    /// adapter on a branch: math, code, chat.
    func adapterSandbox() throws -> CLISandbox {
        let s = try CLISandbox()
        try s.synth("fam", ["--size", "tiny", "--adapters", "3", "--lora-rank", "4"])
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../fam/base", "-m", "base"], in: "repo")
        for name in ["math", "code", "chat"] {
            try s.ok(["switch", "-q", "-c", name, "main"], in: "repo")
            let r = try s.ok(["commit", "--from", "../fam/lora-\(name)", "-m", "lora \(name)"], in: "repo")
            #expect(r.stdout.contains("LoRA adapter of ") && r.stdout.contains("r=4, alpha=8.0, 4 modules (query, value)"), "\(r.stdout)")
        }
        try s.ok(["switch", "-q", "main"], in: "repo")
        return s
    }

    func object(_ value: Any?) throws -> [String: Any] { try #require(value as? [String: Any]) }

    func lastCommit(_ s: CLISandbox, _ rev: String = "HEAD") throws -> [String: Any] {
        let log = try #require(try s.json(try s.ok(["log", "--json", "-n", "1", rev], in: "repo")) as? [[String: Any]])
        return try object(log.first)
    }

    let modules = ["encoder.layer.0.attention.self.query", "encoder.layer.0.attention.self.value",
                   "encoder.layer.1.attention.self.query", "encoder.layer.1.attention.self.value"]

    /// What the repository holds, as `log`, `branch` and the object store show it.
    func repositoryState(_ s: CLISandbox) throws -> String {
        let log = try s.ok(["log", "--oneline", "main", "math", "code", "chat"], in: "repo").stdout
        let branches = try s.ok(["branch"], in: "repo").stdout
        let objects = (FileManager.default.enumerator(atPath: s.path("repo/.mrepo/objects"))?.compactMap { $0 as? String } ?? []).sorted()
        return log + branches + objects.joined(separator: ",")
    }

    // MARK: - Adapters

    /// `export --fold` onto a float16 base refuses a fold past float16's range (it wrote ±inf).
    @Test func aFoldPastTheBaseDtypesRangeIsRefused() throws {
        let s = try CLISandbox()
        try s.writeModel("base", [("layer.query.weight", [2, 2], [60000, 1, 2, 3])], dtype: .f16)
        try s.writeModel("lora", [("base_model.model.layer.query.lora_A.weight", [1, 2], [100, 0]),
                                  ("base_model.model.layer.query.lora_B.weight", [2, 1], [100, 0])])
        try FileManager.default.moveItem(atPath: s.path("lora/model.safetensors"), toPath: s.path("lora/adapter_model.safetensors"))
        try #"{"peft_type": "LORA", "r": 1, "lora_alpha": 1, "target_modules": ["query"]}"#
            .write(toFile: s.path("lora/adapter_config.json"), atomically: true, encoding: .utf8)
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../base", "-m", "base"], in: "repo")
        try s.ok(["switch", "-q", "-c", "lora"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../lora", "-m", "lora"], in: "repo")
        expectOneLineError(try s.run(["export", "lora", "../folded", "--fold"], in: "repo"),
                           contains: "tensor 'layer.query.weight': its values lie beyond F16's range")
        #expect(!FileManager.default.fileExists(atPath: s.path("folded/model.safetensors")))
    }

    /// A default view scaled past what its SVD can take in float32 is refused naming view_lambda
    /// (it said only "dsyevd failed to converge").
    @Test func aViewLambdaTooLargeForTheSVDIsNamed() throws {
        let s = try adapterSandbox()
        let before = try repositoryState(s)
        expectOneLineError(try s.run(["merge", "math", "code", "--method", "rmm", "--basis", "1", "--set", "view_lambda=1e30"], in: "repo"),
                           contains: "rmm: parameter 'view_lambda' 1e+30 scales the default view beyond what its SVD can take")
        #expect(try repositoryState(s) == before)
    }

    @Test func adapterCommitsExportsAndDiff() throws {
        let s = try adapterSandbox()
        let baseID = try #require(try lastCommit(s, "main")["id"] as? String)
        let adapter = try object(try object(try lastCommit(s, "math")["extra"])["adapter"])
        #expect(adapter["base"] as? String == baseID)
        #expect(adapter["r"] as? Int == 4 && adapter["alpha"] as? Double == 8 && adapter["modules"] as? Int == 4)
        #expect(adapter["targets"] as? [String] == ["query", "value"] && adapter["format"] as? String == "peft-lora")
        #expect(try s.ok(["show", "math"], in: "repo").stdout.contains("Adapter: LoRA of \(baseID.prefix(12))"))
        #expect(try s.ok(["du"], in: "repo").stdout.contains("lora adapter"))

        // Without --fold: the adapter as committed.
        try s.ok(["export", "math", "../plain"], in: "repo")
        #expect(s.sameFiles("plain", "fam/lora-math"))
        // With --fold: θ_base + (alpha/r)·B·A, every other tensor and file the base's.
        try s.ok(["export", "math", "../folded", "--fold"], in: "repo")
        #expect(s.files(under: "folded") == s.files(under: "fam/base"))
        let base = try Checkpoint(s.path("fam/base/model.safetensors")), folded = try Checkpoint(s.path("folded/model.safetensors"))
        let lora = try Checkpoint(s.path("fam/lora-math/adapter_model.safetensors"))
        #expect(folded.names == base.names)
        for t in base.file.tensors {
            let module = String(t.name.dropLast(".weight".count))
            if modules.contains(module) {
                let d = try lora.adapterDelta(module, scale: 2).delta
                let expected = Numbers.plus(try base.doubles(t.name), d)
                let diff = Numbers.minus(try folded.doubles(t.name), expected)
                #expect(Numbers.norm(diff) < 1e-6 * Numbers.norm(expected) && Numbers.norm(d) > 1e-3 * Numbers.norm(expected), "\(t.name)")
            } else {
                #expect(try folded.bytes(t.name) == (try base.bytes(t.name)), "\(t.name)")
            }
        }
        for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] { #expect(s.read("folded/" + file) == s.read("fam/base/" + file)) }

        // diff between adapters: per module, from the factors; checked densely here.
        let diff = try object(try s.json(try s.ok(["diff", "math", "code", "--json"], in: "repo")))
        let rows = try #require(diff["modules"] as? [[String: Any]])
        #expect(rows.compactMap { $0["module"] as? String } == modules)
        let other = try Checkpoint(s.path("fam/lora-code/adapter_model.safetensors"))
        for row in rows {
            let module = try #require(row["module"] as? String)
            let a = try lora.adapterDelta(module, scale: 2).delta, b = try other.adapterDelta(module, scale: 2).delta
            let na = Numbers.norm(a), nb = Numbers.norm(b), dot = Numbers.dot(a, b)
            #expect(abs((row["old_norm"] as? Double ?? 0) - na) < 1e-6 * na)
            #expect(abs((row["new_norm"] as? Double ?? 0) - nb) < 1e-6 * nb)
            #expect(abs((row["cosine"] as? Double ?? 9) - dot / (na * nb)) < 1e-5, "\(module)")
            #expect(abs((row["difference_norm"] as? Double ?? 0) - Numbers.norm(Numbers.minus(b, a))) < 1e-5 * Numbers.norm(Numbers.minus(b, a)))
            #expect((row["old_rank"] as? Int) == 4 && (row["old_effective_rank"] as? Double ?? 0) > 1)
        }
        let text = try s.ok(["diff", "math", "code"], in: "repo").stdout
        #expect(text.contains("adapter diff math → code") && text.contains("4 modules; mean cos"))
        // The same factors with fan_in_fan_out change the base by (B·A)ᵀ, as export --fold writes
        // it; diff compares in the base's layout (it had compared B·A with B·A).
        try FileManager.default.copyItem(atPath: s.path("fam/lora-code"), toPath: s.path("fifo"))
        let config = String(decoding: try #require(s.read("fifo/adapter_config.json")), as: UTF8.self)
        try config.replacingOccurrences(of: "\"fan_in_fan_out\": false", with: "\"fan_in_fan_out\": true")
            .write(toFile: s.path("fifo/adapter_config.json"), atomically: true, encoding: .utf8)
        #expect(String(decoding: try #require(s.read("fifo/adapter_config.json")), as: UTF8.self).contains("\"fan_in_fan_out\": true"))
        try s.ok(["switch", "-q", "-c", "fifo", "main"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../fifo", "-m", "lora code, fan_in_fan_out"], in: "repo")
        try s.ok(["switch", "-q", "main"], in: "repo")
        let fifoRows = try #require(try object(try s.json(try s.ok(["diff", "math", "fifo", "--json"], in: "repo")))["modules"] as? [[String: Any]])
        for row in fifoRows {
            let module = try #require(row["module"] as? String)
            let a = try lora.adapterDelta(module, scale: 2).delta, b = try other.adapterDelta(module, scale: 2).delta
            let n = Int(Double(b.count).squareRoot())
            try #require(n * n == b.count, "square projections")
            let bt = (0..<b.count).map { b[($0 % n) * n + $0 / n] }
            let dot = Numbers.dot(a, bt), na = Numbers.norm(a), nb = Numbers.norm(bt)
            #expect(abs((row["cosine"] as? Double ?? 9) - dot / (na * nb)) < 1e-5, "\(module)")
            #expect(abs((row["difference_norm"] as? Double ?? 0) - Numbers.norm(Numbers.minus(bt, a))) < 1e-5 * Numbers.norm(Numbers.minus(bt, a)))
        }
        // --tensors compares the files instead.
        #expect(!(try s.ok(["diff", "math", "code", "--tensors"], in: "repo").stdout.contains("adapter diff")))
        try s.ok(["fsck"], in: "repo")
    }

    @Test func adapterOfAnotherModelIsRefusedAndChangesNothing() throws {
        let s = try adapterSandbox()
        try s.synth("small", ["--size", "small", "--adapters", "1", "--lora-rank", "2", "--adapters-only"])
        let before = try repositoryState(s)
        let fsck = try s.ok(["fsck"], in: "repo").stdout
        for args in [["commit", "--from", "../small/lora-math", "-m", "small adapter"],
                     ["commit", "--from", "../small/lora-math", "-m", "small adapter", "--adapter-of", "main"]] {
            let r = try s.run(args, in: "repo")
            expectOneLineError(r, contains: "is not an adapter of commit")
            #expect(r.stderr.contains("B·A is 128×128 but base tensor"), "\(r.stderr)")
        }
        #expect(try repositoryState(s) == before)
        #expect(try s.ok(["fsck"], in: "repo").stdout == fsck)
        #expect(try s.ok(["status", "--short"], in: "repo").stdout.isEmpty)
        #expect(s.sameFiles("repo", "fam/base"))
    }

    /// A file that is no adapter whatever its base (a factor missing), and --adapter-of naming an
    /// adapter, are said as such; they ended with "name its base model commit with --adapter-of REV".
    @Test func aBrokenAdapterAndAnAdapterAsBaseAreNamed() throws {
        let s = try adapterSandbox()
        try FileManager.default.copyItem(atPath: s.path("fam/lora-math"), toPath: s.path("broken"))
        let original = try Checkpoint(s.path("fam/lora-math/adapter_model.safetensors"))
        let kept = try original.names.filter { $0 != "base_model.model.\(modules[0]).lora_A.weight" }.map { name in
            (name: name, dtype: try original.info(name).dtype, shape: try original.info(name).shape, bytes: try original.bytes(name))
        }
        try FileManager.default.removeItem(atPath: s.path("broken/adapter_model.safetensors"))
        try SafetensorsWriter.write(path: s.path("broken/adapter_model.safetensors"), tensors: kept, metadata: [("format", "pt")])
        let before = try repositoryState(s)
        let broken = try s.run(["commit", "--from", "../broken", "-m", "broken"], in: "repo")
        expectOneLineError(broken, contains: "has lora_B but no lora_A")
        #expect(!broken.stderr.contains("--adapter-of"), "\(broken.stderr)")
        let onAdapter = try s.run(["commit", "--from", "../fam/lora-code", "-m", "x", "--adapter-of", "math"], in: "repo")
        expectOneLineError(onAdapter, contains: "is itself a LoRA adapter")
        #expect(try repositoryState(s) == before)
    }

    /// An untrained adapter (lora_B = 0, PEFT's initialisation) has nothing to rebuild: its errors
    /// are undefined ('-', null) and left out of the means, in this merge's rows and the baselines'
    /// alike (the rmm row showed '-' for every expert, and the dense baselines counted it as 0).
    @Test func anUntrainedAdapterIsLeftOutOfTheErrors() throws {
        let s = try adapterSandbox()
        try FileManager.default.copyItem(atPath: s.path("fam/lora-code"), toPath: s.path("untrained"))
        let original = try Checkpoint(s.path("fam/lora-code/adapter_model.safetensors"))
        let zeroed = try original.names.map { name in
            let info = try original.info(name)
            let bytes = try original.bytes(name)
            return (name: name, dtype: info.dtype, shape: info.shape, bytes: name.contains("lora_B") ? [UInt8](repeating: 0, count: bytes.count) : bytes)
        }
        try FileManager.default.removeItem(atPath: s.path("untrained/adapter_model.safetensors"))
        try SafetensorsWriter.write(path: s.path("untrained/adapter_model.safetensors"), tensors: zeroed, metadata: [("format", "pt")])
        try s.ok(["switch", "-q", "-c", "untrained", "main"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../untrained", "-m", "untrained"], in: "repo")
        try s.ok(["switch", "-q", "-c", "m", "main"], in: "repo")
        try s.ok(["merge", "-q", "math", "untrained", "--reversible", "--basis", "1"], in: "repo")
        let report = try object(try s.json(try s.ok(["experts", "--json"], in: "repo")))
        let experts = try #require(report["experts"] as? [[String: Any]])
        #expect(experts[0]["mean_error"] is Double && experts[1]["mean_error"] is NSNull, "\(experts)")
        let baselines = try #require(report["baselines"] as? [[String: Any]])
        for b in baselines {
            // Each baseline's errors are the one trained expert's: its mean equals its max over
            // modules only when modules agree, so check it is defined and not halved by a zero.
            let mean = try #require(b["mean_error"] as? Double, "\(b)")
            #expect(mean > 0.1, "\(b)")
        }
        let text = try s.ok(["experts"], in: "repo").stdout
        let rmmRow = try #require(text.split(separator: "\n").first { $0.hasPrefix("rmm (this merge)") })
        #expect(!rmmRow.contains(" - "), "\(text)")
    }

    // MARK: - Lossy commits

    /// The lossy record follows the low-rank tensors: a revert of a lossy commit is exact (it was
    /// labelled lossy without a record), reverting that revert, an amend (it was labelled lossless)
    /// and a cherry-pick bring the record back; an adapter folded into a lossy base warns (it did not).
    @Test func theLossyRecordFollowsTheLowRankTensors() throws {
        let s = try adapterSandbox()
        try s.ok(["switch", "-q", "-c", "lossy", "main"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../fam/chat", "--lowrank", "2", "-m", "lossy chat"], in: "repo")
        let original = try object(try lastCommit(s)["extra"])
        let originalTensors = try object(try object(original["lossy"])["tensors"])
        func storage() throws -> (String?, [String: Any]?) {
            let extra = try object(try lastCommit(s)["extra"])
            return (extra["storage"] as? String, extra["lossy"] as? [String: Any])
        }
        try s.ok(["revert", "-q", "HEAD"], in: "repo")
        var (label, record) = try storage()
        #expect(label == "lossless" && record == nil)
        try s.ok(["revert", "-q", "HEAD"], in: "repo")
        (label, record) = try storage()
        #expect(label == "lossy" && (record?["tensors"] as? [String: Any])?.keys.sorted() == originalTensors.keys.sorted())
        #expect(record?["max_relative_error"] as? Double == (try object(original["lossy"]))["max_relative_error"] as? Double)
        #expect(try s.ok(["export", "HEAD", "../reverted"], in: "repo").stderr.contains("is a lossy commit"))
        try s.ok(["commit", "-q", "--amend", "-m", "reworded"], in: "repo")
        (label, record) = try storage()
        #expect(label == "lossy" && (record?["tensor_count"] as? Int) == originalTensors.count)
        try s.ok(["switch", "-q", "-c", "picked", "main"], in: "repo")
        try s.ok(["cherry-pick", "-q", "lossy~2"], in: "repo")
        (label, record) = try storage()
        #expect(label == "lossy" && (record?["tensor_count"] as? Int) == originalTensors.count)

        // Taken by a merge, as task arithmetic where HEAD changed part of it, and carried on by the
        // commits after the merge: still lossy.
        try s.ok(["switch", "-q", "-c", "merged", "main"], in: "repo")
        try s.ok(["merge", "-q", "--no-ff", "lossy~2"], in: "repo")
        (label, record) = try storage()
        #expect(label == "lossy" && (record?["tensor_count"] as? Int) == originalTensors.count, "\(String(describing: record))")
        try writeFile("notes\n", to: s.path("repo/NOTES.md"))
        try s.ok(["commit", "-q", "-m", "notes"], in: "repo")
        #expect(try storage().0 == "lossy")

        // An adapter of the lossy model, folded: the dense weights are the approximation.
        try s.ok(["switch", "-q", "-c", "adapter", "lossy~2"], in: "repo")
        try s.ok(["commit", "-q", "--from", "../fam/lora-math", "-m", "adapter"], in: "repo")
        #expect(try storage().0 == "lossless", "the adapter's own files are exact")
        #expect(!(try s.ok(["export", "adapter", "../plain"], in: "repo").stderr.contains("lossy")))
        let folded = try s.ok(["export", "adapter", "../folded", "--fold"], in: "repo")
        #expect(folded.stderr.contains("the base model") && folded.stderr.contains("is a lossy commit"), "\(folded.stderr)")
        let json = try object(try s.json(try s.ok(["export", "adapter", "../folded2", "--fold", "--json"], in: "repo")))
        #expect(json["lossy"] as? Bool == true)
    }

    @Test func lowRankCommitRecordsWarnsAndMeasures() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        // Option checks.
        for args in [["--lowrank", "2", "--energy", "0.9"], ["--lowrank", "0"], ["--energy", "1.5"], ["--energy", "0"]] {
            let r = try s.run(["commit", "--from", "../family/chat", "-m", "x"] + args, in: "repo")
            #expect(r.status == 64, "\(args): \(r.stderr)")
        }
        let r = try s.ok(["commit", "--from", "../family/chat", "--lowrank", "2", "-m", "lossy chat"], in: "repo")
        #expect(r.stdout.contains("tensors stored low-rank in"), "\(r.stdout)")
        let extra = try object(try lastCommit(s)["extra"])
        #expect(extra["storage"] as? String == "lossy")
        let lossy = try object(extra["lossy"])
        #expect(lossy["method"] as? String == "lowrank" && lossy["rank"] as? Int == 2)
        let recorded = try object(lossy["tensors"])
        #expect(recorded.count == lossy["tensor_count"] as? Int && !recorded.isEmpty)
        #expect((lossy["stored_bytes"] as? Int ?? 0) < (lossy["dense_bytes"] as? Int ?? 0) / 2)

        // export warns on stderr, and the errors it causes are the recorded ones.
        let exported = try s.ok(["export", "HEAD", "../out"], in: "repo")
        #expect(exported.stderr.hasPrefix("mrepo: warning: ") && exported.stderr.contains("is a lossy commit (lowrank, rank 2)"), "\(exported.stderr)")
        let original = try Checkpoint(s.path("family/chat/model.safetensors")), base = try Checkpoint(s.path("family/base/model.safetensors"))
        let out = try Checkpoint(s.path("out/model.safetensors"))
        for t in original.file.tensors {
            guard let entry = recorded[t.name] as? [String: Any] else {
                #expect(try out.bytes(t.name) == (try original.bytes(t.name)), "\(t.name) is not lossy and must be exact")
                continue
            }
            #expect(t.shape.count == 2 && entry["rank"] as? Int == 2)
            let theta = try original.doubles(t.name)
            let measured = Numbers.norm(Numbers.minus(try out.doubles(t.name), theta)) / Numbers.norm(Numbers.minus(theta, try base.doubles(t.name)))
            let error = try #require(entry["relative_error"] as? Double)
            #expect(abs(measured - error) < 1e-9 + 1e-9 * error, "\(t.name): measured \(measured), recorded \(error)")
        }
        let json = try object(try s.json(try s.ok(["export", "HEAD", "../out2", "--json"], in: "repo")))
        #expect(json["lossy"] as? Bool == true && json["max_relative_error"] as? Double == lossy["max_relative_error"] as? Double)

        // show and du tell what was saved; fsck is clean; the tree from the folder is clean.
        let show = try s.ok(["show", "HEAD"], in: "repo").stdout
        #expect(show.contains("Lossy:   lowrank rank 2") && show.contains("saves"), "\(show)")
        #expect(show.contains("low-rank"), "encodings list the low-rank objects")
        #expect(try s.ok(["show", "HEAD", "--tensors"], in: "repo").stdout.contains("rank 2, error "))
        let du = try s.ok(["du"], in: "repo").stdout
        #expect(du.contains("lossy rank 2") && du.contains("saves"), "\(du)")
        try s.ok(["fsck"], in: "repo")
        #expect(try s.ok(["status", "--short"], in: "repo").stdout.isEmpty)

        // In place: the working tree keeps the exact weights, so status shows the difference.
        try s.ok(["switch", "-q", "-c", "inplace", "main~1"], in: "repo")
        for file in s.files(under: "family/chat") {
            try FileManager.default.removeItem(atPath: s.path("repo/" + file))
            try FileManager.default.copyItem(atPath: s.path("family/chat/" + file), toPath: s.path("repo/" + file))
        }
        let inPlace = try s.ok(["commit", "--lowrank", "2", "-m", "in place"], in: "repo")
        #expect(inPlace.stderr.contains("mrepo: note: ") && inPlace.stderr.contains("mrepo status"), "\(inPlace.stderr)")
        #expect(try s.ok(["status", "--short"], in: "repo").stdout == "M model.safetensors\n")
        #expect(s.read("repo/model.safetensors") == s.read("family/chat/model.safetensors"))
        try s.ok(["fsck"], in: "repo")
    }

    // MARK: - Reversible merges of adapters

    @Test func reversibleMergeOfAdapters() throws {
        let s = try adapterSandbox()
        let before = try repositoryState(s)
        // K must be below N.
        expectOneLineError(try s.run(["merge", "math", "code", "chat", "--method", "rmm", "--basis", "3"], in: "repo"), contains: "N − 1 = 2")
        #expect(try s.run(["merge", "math", "--basis", "2"], in: "repo").status == 64, "--basis is for rmm")
        #expect(try repositoryState(s) == before)

        // Adapters are not merged tensor by tensor against the full base model.
        expectOneLineError(try s.run(["merge", "math", "code", "--method", "ties"], in: "repo"),
                           contains: "math, code are LoRA adapters: ties merges full models tensor by tensor; merge adapters with --method rmm")
        #expect(try s.run(["merge", "math", "code", "--dry-run"], in: "repo").stderr.contains("mrepo export --fold"))
        #expect(try repositoryState(s) == before)

        let merged = try s.ok(["merge", "math", "code", "chat", "--method", "rmm", "--basis", "2", "--report", "../rmm.html"], in: "repo")
        #expect(merged.stdout.contains("RMM position basis K = 2 over 3 adapters, 4 modules"), "\(merged.stdout)")
        let page = String(decoding: s.read("rmm.html") ?? Data(), as: UTF8.self)
        #expect(page.contains("Reversible merge (rmm)") && page.contains("Experts rebuilt from the basis"))
        try s.ok(["show", "-q", "HEAD", "--report", "../again.html"], in: "repo")
        #expect(s.read("again.html") == s.read("rmm.html"))
        // --expert takes any revision that resolves to an expert's commit.
        try s.ok(["branch", "code-again", "code"], in: "repo")
        try s.ok(["export", "HEAD", "../by-branch", "--expert", "code-again"], in: "repo")
        try s.ok(["export", "HEAD", "../by-name", "--expert", "code"], in: "repo")
        #expect(s.sameFiles("by-branch", "by-name"))
        let mergeID = try #require(try lastCommit(s)["id"] as? String)
        #expect((try lastCommit(s)["parents"] as? [String])?.count == 4)
        #expect(s.files(under: "repo") == ["README.md", "adapter_config.json", "adapter_model.safetensors", "merge_recipe.yml", "rmm.safetensors"])
        #expect(try s.ok(["status", "--short"], in: "repo").stdout.isEmpty)

        // The measurements.
        let report = try object(try s.json(try s.ok(["experts", "--json"], in: "repo")))
        #expect(report["commit"] as? String == mergeID && report["kind"] as? String == "adapter" && report["basis"] as? Int == 2)
        let storage = try object(report["storage"])
        #expect(storage["stored_parameters"] as? Int == (2 * (4 + 3) + 4) * 32 * 4)
        #expect(storage["expert_parameters"] as? Int == 3 * 4 * 32 * 4)
        #expect(storage["formula_ratio"] as? Double == 1.5 && storage["parameter_ratio"] as? Double == 1.5)
        #expect((storage["stored_bytes"] as? Int ?? 0) > 0 && (storage["expert_bytes"] as? Int ?? 0) > 0)
        let experts = try #require(report["experts"] as? [[String: Any]])
        #expect(experts.compactMap { $0["name"] as? String } == ["math", "code", "chat"])
        let modulesJSON = try #require(report["modules"] as? [[String: Any]])
        #expect(modulesJSON.compactMap { $0["name"] as? String } == modules)
        for m in modulesJSON {
            let errors = try #require(m["errors"] as? [Double])
            #expect(errors.count == 3 && errors.allSatisfy { $0 < 1e-5 }, "\(errors)")
            #expect((m["expert_energy"] as? [Double])?.count == 3)
            let baselines = try object(m["baselines"])
            #expect(Set(baselines.keys) == ["task_arithmetic/factors", "ties/factors", "dare_ties/factors",
                                           "task_arithmetic/dense", "ties/dense", "dare_ties/dense"])
            for value in baselines.values {
                let e = try #require(value as? [Double])
                #expect(e.count == 3 && e.allSatisfy { $0.isFinite && $0 > 0.1 })
            }
        }
        #expect(try s.ok(["experts"], in: "repo").stdout.contains("formula (k(r+N)+r)/(rN) = 150.0%"))
        #expect(try s.ok(["show", "HEAD"], in: "repo").stdout.contains("RMM:     position basis K=2 over math, code, chat"))
        #expect(try s.ok(["du"], in: "repo").stdout.contains("rmm K=2"))

        // An expert, checked out: its adapter again (up to float rounding), a clean tree that says what it holds.
        let checkout = try s.ok(["checkout", mergeID, "--expert", "code"], in: "repo")
        #expect(checkout.stdout.contains("expert code"), "\(checkout.stdout)")
        #expect(s.files(under: "repo") == ["README.md", "adapter_config.json", "adapter_model.safetensors"])
        let rebuilt = try Checkpoint(s.path("repo/adapter_model.safetensors")), code = try Checkpoint(s.path("fam/lora-code/adapter_model.safetensors"))
        #expect(rebuilt.names == code.names)
        for t in code.file.tensors {
            #expect(rebuilt.file.tensor(named: t.name)?.shape == t.shape && rebuilt.file.tensor(named: t.name)?.dtype == t.dtype)
            let x = try rebuilt.doubles(t.name), y = try code.doubles(t.name)
            let largest = y.map(abs).max() ?? 0
            let worst = zip(x, y).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 1e-5 * largest, "\(t.name): \(worst) of \(largest)")
        }
        #expect(s.read("repo/adapter_config.json") == s.read("fam/lora-code/adapter_config.json"))
        let status = try object(try s.json(try s.ok(["status", "--json"], in: "repo")))
        #expect((status["view"] as? String)?.contains("expert code") == true, "\(status)")
        #expect((status["changes"] as? [Any])?.isEmpty == true, "\(status)")
        let statusText = try s.ok(["status"], in: "repo").stdout
        #expect(statusText.contains("expert code") && statusText.contains("HEAD detached at"), "\(statusText)")
        // export --expert writes the same files.
        try s.ok(["export", "main", "../expert-code", "--expert", "code"], in: "repo")
        #expect(s.sameFiles("expert-code", "repo"))

        // Wrong names and option mixes.
        let unknown = try s.run(["checkout", mergeID, "--expert", "nobody"], in: "repo")
        expectOneLineError(unknown, contains: "'nobody' is not an expert")
        #expect(unknown.stderr.contains("(experts: math, code, chat)"))
        #expect(try s.run(["checkout", mergeID, "--expert", "code", "--view", "mean"], in: "repo").status == 64)
        #expect(try s.run(["export", mergeID, "../v", "--view", "bogus"], in: "repo").status == 64)

        // Back on the branch: the view is gone.
        try s.ok(["switch", "-q", "main"], in: "repo")
        #expect(!(try s.ok(["status"], in: "repo").stdout.contains("expert code")))
        #expect(s.files(under: "repo").contains("rmm.safetensors"))
        #expect(try s.ok(["status", "--short"], in: "repo").stdout.isEmpty)

        // gc after deleting the expert branches: the merge still rebuilds them.
        for name in ["math", "code", "chat"] { try s.ok(["branch", "-D", name], in: "repo") }
        try s.ok(["gc"], in: "repo")
        try s.ok(["export", "main", "../after-gc", "--expert", "code"], in: "repo")
        #expect(s.sameFiles("after-gc", "expert-code"))
        try s.ok(["fsck"], in: "repo")
    }

    @Test func adaptersWithOtherModulesOrRanks() throws {
        let s = try adapterSandbox()
        try s.synth("wide", ["--size", "tiny", "--adapters", "1", "--lora-rank", "4", "--lora-targets", "all", "--adapters-only"])
        try s.synth("low", ["--size", "tiny", "--adapters", "1", "--lora-rank", "2", "--adapters-only"])
        for (branch, folder) in [("wide", "wide/lora-math"), ("low", "low/lora-math")] {
            try s.ok(["switch", "-q", "-c", branch, "main"], in: "repo")
            try s.ok(["commit", "-q", "--from", "../" + folder, "-m", branch], in: "repo")
        }
        try s.ok(["switch", "-q", "main"], in: "repo")
        let different = try s.run(["merge", "math", "code", "wide", "--method", "rmm", "--basis", "2"], in: "repo")
        expectOneLineError(different, contains: "adapt different modules")

        let merged = try s.ok(["merge", "math", "code", "low", "--method", "rmm", "--basis", "2"], in: "repo")
        #expect(merged.stdout.contains("note: the adapters' ranks differ (2, 4)") && merged.stdout.contains("dense"), "\(merged.stdout)")
        let report = try object(try s.json(try s.ok(["experts", "--json"], in: "repo")))
        let modulesJSON = try #require(report["modules"] as? [[String: Any]])
        #expect(modulesJSON.allSatisfy { $0["variant"] as? String == "dense" })
        #expect(modulesJSON.allSatisfy { ($0["errors"] as? [Double])?.allSatisfy { $0 < 1e-5 } == true })
        // The rank-2 expert comes back in its own layout, with its products.
        try s.ok(["export", "HEAD", "../low-back", "--expert", "low"], in: "repo")
        let back = try Checkpoint(s.path("low-back/adapter_model.safetensors")), low = try Checkpoint(s.path("low/lora-math/adapter_model.safetensors"))
        #expect(back.file.tensors.map(\.shape) == low.file.tensors.map(\.shape))
        for module in modules {
            let x = try back.adapterDelta(module, scale: 2).delta, y = try low.adapterDelta(module, scale: 2).delta
            #expect(Numbers.norm(Numbers.minus(x, y)) < 1e-5 * Numbers.norm(y), "\(module)")
        }
        try s.ok(["fsck"], in: "repo")
    }

    // MARK: - Reversible merges of full fine-tunes

    @Test func reversibleMergesOfFullFineTunes() throws {
        let s = try CLISandbox()
        try s.makeFamily()
        try s.ok(["init", "-q", "repo"])
        try s.ok(["commit", "-q", "--from", "../family/base", "-m", "base"], in: "repo")
        for name in ["math", "code", "chat"] {
            try s.ok(["switch", "-q", "-c", name, "main"], in: "repo")
            try s.ok(["commit", "-q", "--from", "../family/\(name)", "-m", name], in: "repo")
        }
        // PT-SVD: each 2-D task vector reduced to rank 4 first.
        try s.ok(["switch", "-q", "-c", "ptsvd", "main"], in: "repo")
        let pt = try s.ok(["merge", "math", "code", "chat", "--method", "rmm", "--basis", "2", "--set", "rank=4"], in: "repo")
        #expect(pt.stdout.contains("over 3 full fine-tunes") && pt.stdout.contains("reduced to rank 4"), "\(pt.stdout)")
        let ptReport = try object(try s.json(try s.ok(["experts", "--json"], in: "repo")))
        #expect(ptReport["kind"] as? String == "full")
        let ptModules = try #require(ptReport["modules"] as? [[String: Any]])
        #expect(!ptModules.isEmpty)
        for m in ptModules {
            let reduction = try #require(m["reduction_errors"] as? [Double]), errors = try #require(m["errors"] as? [Double])
            #expect(reduction.count == 3 && zip(errors, reduction).allSatisfy { abs($0 - $1) < 1e-4 }, "\(m["name"] ?? "")")
        }
        #expect(s.files(under: "repo").contains("rmm.safetensors") && s.files(under: "repo").contains("model.safetensors"))
        #expect(try s.ok(["status", "--short"], in: "repo").stdout.isEmpty)
        // A view is exported as a model folder to load, without the basis; plain export keeps it.
        for view in ["ta", "mean"] {
            try s.ok(["export", "HEAD", "../view-\(view)", "--view", view], in: "repo")
            let files = s.files(under: "view-\(view)")
            #expect(files.contains("model.safetensors") && !files.contains("rmm.safetensors"), "\(view): \(files)")
        }
        try s.ok(["export", "HEAD", "../whole"], in: "repo")
        #expect(s.files(under: "whole").contains("rmm.safetensors"))

        // The dense variant keeps full fine-tunes exactly with K = N − 1.
        try s.ok(["switch", "-q", "-c", "dense", "main"], in: "repo")
        try s.ok(["merge", "math", "code", "chat", "--method", "rmm", "--basis", "2", "--set", "variant=dense"], in: "repo")
        let denseReport = try object(try s.json(try s.ok(["experts", "dense", "--json"], in: "repo")))
        let denseModules = try #require(denseReport["modules"] as? [[String: Any]])
        let moduleNames = Set(denseModules.compactMap { $0["base_tensor"] as? String })
        for name in ["math", "chat"] {
            try s.ok(["export", "dense", "../back-\(name)", "--expert", name], in: "repo")
            let back = try Checkpoint(s.path("back-\(name)/model.safetensors")), original = try Checkpoint(s.path("family/\(name)/model.safetensors"))
            let base = try Checkpoint(s.path("family/base/model.safetensors"))
            #expect(back.names == original.names)
            for t in original.file.tensors {
                if !moduleNames.contains(t.name) {
                    #expect(try back.bytes(t.name) == (try original.bytes(t.name)), "\(name) \(t.name)")
                    continue
                }
                let y = try original.doubles(t.name), x = try back.doubles(t.name)
                let d = Numbers.minus(y, try base.doubles(t.name))
                #expect(Numbers.norm(Numbers.minus(x, y)) <= 1e-5 * Numbers.norm(d), "\(name) \(t.name)")
            }
            for file in ["config.json", "tokenizer.json", "tokenizer_config.json"] {
                #expect(s.read("back-\(name)/" + file) == s.read("family/\(name)/" + file))
            }
        }
        try s.ok(["fsck"], in: "repo")
    }

    /// Reverting an adapter commit under a reversible merge of adapters cannot be exact (the merge
    /// changed the same files) nor task arithmetic: the refusal says so in revert's terms, naming
    /// the adapters (it named HEAD alone, as a merge input), and writes nothing.
    @Test func revertUnderAReversibleMergeSaysWhy() throws {
        let s = try adapterSandbox()
        try s.ok(["switch", "-q", "math"], in: "repo")
        try s.ok(["merge", "-q", "math", "code", "chat", "--method", "rmm", "--basis", "2"], in: "repo")
        let before = try repositoryState(s)
        let r = try s.run(["revert", "code"], in: "repo")
        expectOneLineError(r, contains: "revert: HEAD changed what this change touches")
        #expect(r.stderr.contains("task arithmetic does not apply to LoRA adapters") && r.stderr.contains("HEAD ("), "\(r.stderr)")
        #expect(try repositoryState(s) == before)
        #expect(try s.ok(["status", "--porcelain"], in: "repo").stdout.isEmpty)
    }
}
