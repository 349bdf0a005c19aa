import Delta
import Foundation
import Merge
@testable import Repo
import Testing

/// Model Stock through ``StreamingMerge``: a tensor of several chunks is decided by one ordered pass
/// over its chunks (its Gram tables; the merge decodes the chunks again) and a tensor of one chunk in
/// one work item; both store exactly what the whole-input merge computes, with the passes' spill
/// allowed or not.
@Suite final class ModelStockStreamingTests {
    let fixture: TemporaryRepository
    var repo: Repository { fixture.repo }

    init() throws {
        fixture = try TemporaryRepository()
        fixture.repo.codecOptions = streamingChunks
    }

    /// A base and three fine-tunes: a 3-chunk tensor, a [rows, 128] one of two chunks, a small one.
    func commitFamily() throws {
        let n = 2 * 65536 + 3001
        var rng = SeededRandom(seed: 7)
        let base = (0..<n).map { _ in Float(rng.uniform() * 2 - 1) }
        let rows = (0..<(600 * 128)).map { _ in Float(rng.uniform() - 0.5) }
        let small = (0..<100).map { Float($0) / 100 }
        try writeTensors(big: base, rows: rows, small: small)
        try repo.commitAll("base")
        for name in ["a", "b", "c"] {
            _ = try repo.switchBranch(name, create: true, startPoint: "main")
            func tuned(_ v: [Float]) -> [Float] { v.map { $0 + Float(rng.uniform() - 0.5) / 50 } }
            try writeTensors(big: tuned(base), rows: tuned(rows), small: tuned(small))
            try repo.commitAll(name)
        }
    }

    private func writeTensors(big: [Float], rows: [Float], small: [Float]) throws {
        var header: [String: Any] = [:]
        var data = [UInt8]()
        for (name, values, shape) in [("big.weight", big, [big.count]), ("rows.weight", rows, [600, 128]), ("small.weight", small, [small.count])] {
            header[name] = ["dtype": "F32", "shape": shape, "data_offsets": [data.count, data.count + 4 * values.count]]
            values.withUnsafeBytes { data.append(contentsOf: $0) }
        }
        let json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        var out = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) }
        out += Array(json) + data
        try Data(out).write(to: URL(fileURLWithPath: repo.root + "/model.safetensors"))
    }

    func mergeModelStock(on branch: String, filterWise: Bool, spill: Bool) throws -> (tensors: [String: TreeTensor], report: ConflictReport) {
        _ = try repo.switchBranch(branch, create: true, startPoint: "main")
        var options = MergeOptions(branches: ["a", "b", "c"],
                                   recipe: MergeRecipe(method: "model_stock", parameters: filterWise ? ["filter_wise": .flag(true)] : [:], experts: []))
        options.spillPasses = spill
        let outcome = try repo.merge(options)
        guard case .committed = outcome.status else {
            Issue.record("merge did not commit: \(outcome.status)")
            return ([:], outcome.report)
        }
        return (try repo.tensors(of: branch), outcome.report)
    }

    /// The whole-input merge of one tensor, from the stored inputs.
    func wholeMerge(_ name: String, shape: [Int], filterWise: Bool) throws -> (values: [Float], t: Double?) {
        let base = try repo.objects.floats(try #require(try repo.tensors(of: "main")[name]).objectID, knownReference: nil)
        let experts = try ["a", "b", "c"].map { b in try repo.objects.floats(try #require(try repo.tensors(of: b)[name]).objectID, knownReference: nil) }
        let plan = try MergePlan(MergeRecipe(method: "model_stock", parameters: filterWise ? ["filter_wise": .flag(true)] : [:], experts: ["a", "b", "c"]))
        let (values, metrics) = try plan.merge(TensorContext(name: name, shape: shape, layerCount: 0), base: base, experts: experts)
        return (values, metrics.notes["t"])
    }

    @Test(arguments: [(false, true), (false, false), (true, true)])
    func chunkedModelStockStoresTheWholeInputResult(filterWise: Bool, spill: Bool) throws {
        try commitFamily()
        let merged = try mergeModelStock(on: "ms", filterWise: filterWise, spill: spill)
        for (name, shape) in [("big.weight", [2 * 65536 + 3001]), ("rows.weight", [600, 128]), ("small.weight", [100])] {
            let id = try #require(merged.tensors[name]?.objectID, "\(name)")
            #expect(id != (try repo.tensors(of: "main"))[name]?.objectID, "the merge changed \(name)")
            let stored = try repo.objects.floats(id, knownReference: nil)
            let whole = try wholeMerge(name, shape: shape, filterWise: filterWise)
            #expect(stored.count == whole.values.count && zip(stored, whole.values).allSatisfy { $0.bitPattern == $1.bitPattern }, "\(name)")
            let t = merged.report.tensors.first { $0.name == name }?.metrics?.notes["t"]
            #expect(t != nil && t == whole.t, "\(name)")
        }
        // No temporary file of the spill or of the merge is left in the store.
        let entries = try FileManager.default.contentsOfDirectory(atPath: repo.root + "/.mrepo/objects")
        #expect(entries.allSatisfy { $0.count == 2 && $0.allSatisfy(\.isHexDigit) }, "\(entries)")
        let fsck = try repo.fsck()
        #expect(fsck.isClean, "\(fsck.errors)")
    }
}
