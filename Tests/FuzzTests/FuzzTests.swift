import Delta
import Foundation
import Fuzzing
import Testing

/// Every fuzz target, for a fixed number of iterations from a fixed seed: the same inputs on
/// every run, a few seconds in all. `scripts/fuzz.sh` runs the same targets for 10⁵ iterations
/// and more (docs/fuzzing.md).
@Suite struct FuzzTests {
    /// Iterations per target: enough to pass every format-aware edit many times.
    static let iterations: [String: Int] = [
        "safetensors-header": 3000, "object": 600, "recipe": 1500, "adapter-config": 3000, "shard-index": 3000,
    ]

    static var corpusFolder: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path + "/Fuzz/corpus"
    }

    /// Files of `Tests/Fuzz/corpus/<target>/`: inputs earlier runs found, kept as regressions.
    static func corpus(_ target: String) -> [(name: String, bytes: [UInt8])] {
        let dir = corpusFolder + "/" + target
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        return names.compactMap { name in FileManager.default.contents(atPath: dir + "/" + name).map { (name, Array($0)) } }
    }

    @Test func everyTargetIsListedOnce() {
        let names = FuzzTarget.all.map(\.name)
        #expect(names == ["safetensors-header", "object", "recipe", "adapter-config", "shard-index"])
        #expect(Set(names) == Set(FuzzTests.iterations.keys))
    }

    /// The seeds are valid (fuzzing starts from inputs that reach the deep checks) and the known
    /// hostile inputs are refused with typed one-line errors.
    @Test(arguments: FuzzTarget.all.map(\.name))
    func seedsAreAcceptedAndHostileInputsRejected(_ name: String) throws {
        let target = try #require(FuzzTarget.named(name))
        let scratch = NSTemporaryDirectory() + "mrepo-fuzz-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let runner = try target.prepare(scratch)
        let seeds = try target.seeds()
        #expect(!seeds.isEmpty)
        for (i, seed) in seeds.enumerated() {
            let outcome = FuzzOutcome.classify(mention: target.mention) { try runner(seed) }
            #expect(outcome == .accepted, "\(name) seed \(i): \(outcome)")
        }
        for (i, input) in try target.hostile().enumerated() {
            let outcome = FuzzOutcome.classify(mention: target.mention) { try runner(input) }
            #expect(outcome == .rejected, "\(name) hostile input \(i): \(outcome)")
        }
    }

    /// The object seeds hold rANS chunks (coder 2), one of them a grid (mode 4 of a version 3
    /// tensor), so mutants reach its decoder.
    @Test func objectSeedsIncludeRANSChunks() throws {
        var coders = Set<UInt8>()
        var topModes = Set<UInt8>()
        let target = try #require(FuzzTarget.named("object"))
        for seed in try target.seeds() where seed.count > 60 && (seed[12] == 2 || seed[12] == 3) {
            let tensor = try seed.withUnsafeBytes { try EncodedTensor(bytes: $0, offset: 8, owner: nil, name: "seed") }
            for chunk in tensor.chunks {
                coders.insert(chunk.coder.rawValue)
                if chunk.coder == .rans, seed[12] == 3 { topModes.insert(tensor.bytes[chunk.range.lowerBound]) }
            }
        }
        #expect(coders.contains(ChunkCoder.rans.rawValue))
        #expect(topModes.contains(4), "mode 4 (grid, docs/format.md §5.5)")
    }

    /// Inputs found by earlier runs are accepted or refused with a typed one-line error.
    @Test(arguments: FuzzTarget.all.map(\.name))
    func corpusRegressions(_ name: String) throws {
        let target = try #require(FuzzTarget.named(name))
        let scratch = NSTemporaryDirectory() + "mrepo-fuzz-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let runner = try target.prepare(scratch)
        for (file, bytes) in FuzzTests.corpus(name) {
            let outcome = FuzzOutcome.classify(mention: target.mention) { try runner(bytes) }
            if case let .finding(problem) = outcome { Issue.record("Tests/Fuzz/corpus/\(name)/\(file): \(problem)") }
        }
    }

    /// A short seeded run of each target finds nothing.
    @Test(arguments: FuzzTarget.all.map(\.name))
    func shortRunFindsNothing(_ name: String) throws {
        let target = try #require(FuzzTarget.named(name))
        var driver = FuzzDriver(target: target, seed: 2024)
        driver.extraCorpus = FuzzTests.corpus(name).map(\.bytes)
        let iterations = try #require(FuzzTests.iterations[name])
        let report = try driver.run(iterations: iterations)
        #expect(report.iterations == iterations)
        for f in report.findings {
            Issue.record("\(name) iteration \(f.iteration): \(f.problem); input \(f.input.prefix(200).map { String(format: "%02x", $0) }.joined())")
        }
        // Mutants reach both outcomes: the run is not stuck on one side of the parser.
        #expect(report.accepted > 0 && report.rejected > 0, "\(report.accepted) accepted, \(report.rejected) rejected")
    }

    /// The same seed gives the same inputs, so a finding is reproduced by its seed and iteration.
    @Test func runsAreDeterministic() throws {
        let target = try #require(FuzzTarget.named("shard-index"))
        var seen: [[[UInt8]]] = []
        for _ in 0..<2 {
            var inputs: [[UInt8]] = []
            var driver = FuzzDriver(target: target, seed: 99)
            driver.willRun = { input, _ in inputs.append(input) }
            _ = try driver.run(iterations: 300)
            seen.append(inputs)
        }
        #expect(seen[0] == seen[1])
        #expect(Set(seen[0]).count > 200)
    }
}

/// The mutator's edits, seeded.
@Suite struct MutatorTests {
    @Test func sameSeedSameMutants() {
        func mutants(_ seed: UInt64) -> [[UInt8]] {
            var m = Mutator(rng: SeededRandom(seed: seed), dialect: .json, maxBytes: 256)
            let input = Array(#"{"a": [1, 2, "x"], "b": {"c": null}}"#.utf8)
            return (0..<50).map { _ in m.mutate(input, corpus: [input]) }
        }
        #expect(mutants(1) == mutants(1))
        #expect(mutants(1) != mutants(2))
    }

    @Test func mutantsRespectTheSizeLimit() {
        var m = Mutator(rng: SeededRandom(seed: 3), dialect: .yaml, maxBytes: 64)
        let input = [UInt8](repeating: UInt8(ascii: "a"), count: 60)
        for _ in 0..<500 { #expect(m.mutate(input, corpus: [input]).count <= 64) }
    }

    @Test func tokenEditsReplaceNumbersAndStrings() {
        var m = Mutator(rng: SeededRandom(seed: 5), dialect: .json, maxBytes: 1024)
        let input = Array(#"{"shape": [12, 34]}"#.utf8)
        var sawNumber = false, sawString = false
        for _ in 0..<300 {
            var out = input
            m.tokenEdit(&out)
            let text = String(decoding: out, as: UTF8.self)
            if Mutator.interestingNumbers.contains(where: { text.contains("[\($0), 34]") || text.contains("[12, \($0)]") }) { sawNumber = true }
            if Mutator.interestingStrings.contains(where: { $0 != "shape" && text.contains("{\"\($0)\":") }) { sawString = true }
        }
        #expect(sawNumber && sawString)
    }
}
