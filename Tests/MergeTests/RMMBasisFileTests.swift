import Delta
import Foundation
import Testing

@testable import Merge

/// ``RMMBasisFile``: the header of `rmm.safetensors` byte for byte as docs/format.md §4.7 gives
/// it, the round trip through the reader, and what the reader refuses.
@Suite struct RMMBasisFileTests {
    /// Two rank-1 "adapters" of a 2 × 3 weight: the smallest position module (k = 1).
    func twoExperts() -> [LowRankFactors] {
        [LowRankFactors(rows: 2, columns: 3, rank: 1, left: [1, 2], right: [0.5, -1, 2]),
         LowRankFactors(rows: 2, columns: 3, rank: 1, left: [-1, 3], right: [1, 0.25, -0.5])]
    }

    func adapterFile() throws -> (file: RMMBasisFile, module: RMMModule, tensors: [(name: String, shape: Shape, values: [Float])]) {
        let module = try ReversibleMerge.fit(.factors(twoExperts()), variant: .position, k: 1)
        var file = RMMBasisFile(kind: .adapter, variant: .position, basis: 1, center: true, experts: ["a", "b"])
        let meta = RMMBasisFile.ModuleMetadata(module: "m", baseTensor: "m.weight", rows: 2, columns: 3, rank: 1, k: 1, variant: .position,
                                               scales: [2, 0.5], transposed: false)
        let tensors = try file.append(module, metadata: meta)
        return (file, module, tensors)
    }

    /// The JSON of a header (without its length and padding).
    func json(_ header: [UInt8]) -> String {
        String(decoding: header[8...], as: UTF8.self).trimmingCharacters(in: .whitespaces)
    }

    @Test func headerIsTheDocumentedFormat() throws {
        let (file, _, tensors) = try adapterFile()
        #expect(tensors.map(\.name) == ["m.left.mean", "m.right.mean", "m.left.basis", "m.left.coeff", "m.right.basis", "m.right.coeff"])
        #expect(tensors.map(\.shape) == [[2, 1], [3, 1], [2, 1, 1], [2, 1, 2], [3, 1, 1], [3, 1, 2]])
        let header = try file.header()
        // Written out by hand from docs/format.md §4.7: metadata in the listed order, module members
        // in the listed order, integral scales as integers, tensors F32 one after the other.
        let expected = #"{"__metadata__":{"format":"mrepo-rmm","version":"1","kind":"adapter","variant":"position","basis":"1","center":"true","#
            + #""experts":"[\"a\",\"b\"]","#
            + #""modules":"[{\"module\":\"m\",\"base_tensor\":\"m.weight\",\"rows\":2,\"columns\":3,\"rank\":1,\"k\":1,\"variant\":\"position\",\"scales\":[2,0.5],\"transposed\":false}]"},"#
            + #""m.left.mean":{"dtype":"F32","shape":[2,1],"data_offsets":[0,8]},"#
            + #""m.right.mean":{"dtype":"F32","shape":[3,1],"data_offsets":[8,20]},"#
            + #""m.left.basis":{"dtype":"F32","shape":[2,1,1],"data_offsets":[20,28]},"#
            + #""m.left.coeff":{"dtype":"F32","shape":[2,1,2],"data_offsets":[28,44]},"#
            + #""m.right.basis":{"dtype":"F32","shape":[3,1,1],"data_offsets":[44,56]},"#
            + #""m.right.coeff":{"dtype":"F32","shape":[3,1,2],"data_offsets":[56,80]}}"#
        #expect(json(header.bytes) == expected)
        // The length prefix (little-endian) counts the JSON and its padding to a multiple of 8.
        let length = header.bytes.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        #expect(length == header.bytes.count - 8 && header.bytes.count % 8 == 0 && length - expected.utf8.count < 8)
        #expect(header.tensors.map(\.name) == tensors.map(\.name) && header.tensors.last?.dataOffsets.upperBound == 80)
    }

    @Test func fullFineTuneModulesRecordNoScales() throws {
        let dense = twoExperts().map { $0.dense() }
        let module = try ReversibleMerge.fit(.dense(dense, rows: 2, columns: 3), variant: .dense, k: 1, center: false)
        var file = RMMBasisFile(kind: .full, variant: .dense, basis: 1, center: false, experts: ["x", "y"])
        let tensors = try file.append(module, metadata: .init(module: "w", baseTensor: "w", rows: 2, columns: 3, rank: 0, k: module.k, variant: .dense))
        #expect(tensors.map(\.name) == ["w.basis", "w.coeff"])
        let metadata = try file.metadata()
        #expect(metadata.map(\.key) == ["format", "version", "kind", "variant", "basis", "center", "experts", "modules"])
        #expect(metadata.last?.value == #"[{"module":"w","base_tensor":"w","rows":2,"columns":3,"rank":0,"k":1,"variant":"dense"}]"#)
        #expect(metadata[2].value == "full" && metadata[5].value == "false")
    }

    @Test func headerRoundTripsAndModulesRebuildBitForBit() throws {
        let (file, module, tensors) = try adapterFile()
        let header = try file.header()
        let read = try RMMBasisFile(header: header.bytes)
        #expect(read == file && read.module(forBaseTensor: "m.weight")?.module == "m" && read.module(forBaseTensor: "m") == nil)
        #expect(try read.header().bytes == header.bytes)
        let byName = Dictionary(tensors.map { ($0.name, ($0.shape, $0.values)) }, uniquingKeysWith: { a, _ in a })
        var asked: [String] = []
        let back = try read.module(try #require(read.modules.first)) { name, shape in
            asked.append(name)
            let stored = try #require(byName[name])
            #expect(stored.0 == shape)
            return stored.1
        }
        #expect(asked == tensors.map(\.name))
        for i in 0..<2 {
            #expect(back.rebuild(i).dense() == module.rebuild(i).dense())
        }
    }

    @Test func readerRefusesWhatItDoesNotKnow() throws {
        let (file, _, _) = try adapterFile()
        let good = try file.metadata()
        func problem(_ metadata: [(key: String, value: String)]?) -> String? {
            let header = SafetensorsHeader.encode(tensors: [], metadata: metadata).bytes
            return mergeError { _ = try RMMBasisFile(header: header) }?.description
        }
        func replacing(_ key: String, _ value: String) -> [(key: String, value: String)] {
            good.map { $0.key == key ? (key, value) : $0 }
        }
        #expect(problem(good) == nil)
        #expect(problem(nil) == "rmm.safetensors: the header has no __metadata__")
        #expect(problem(replacing("version", "2")) == "rmm.safetensors: version 2 is not supported (this mrepo reads version 1)")
        #expect(problem(replacing("format", "pt")) == "rmm.safetensors: __metadata__ format is 'pt', not 'mrepo-rmm'")
        #expect(problem(replacing("kind", "lora")) == "rmm.safetensors: unknown kind 'lora'")
        #expect(problem(replacing("center", "yes")) == "rmm.safetensors: center 'yes' is not true or false")
        #expect(problem(good.filter { $0.key != "modules" }) == "rmm.safetensors: __metadata__ has no 'modules'")
        #expect(problem(replacing("modules", #"[{"module":"m"}]"#))?.hasPrefix("rmm.safetensors: bad experts or module metadata") == true)
        #expect(mergeError { _ = try RMMBasisFile(header: [1, 2, 3]) }?.description == "rmm.safetensors: the header has no __metadata__")
    }

    @Test func aModuleMustFitTheFile() throws {
        let module = try ReversibleMerge.fit(.factors(twoExperts()), variant: .position, k: 1)
        let meta = RMMBasisFile.ModuleMetadata(module: "m", baseTensor: "m", rows: 2, columns: 3, rank: 1, k: 1, variant: .position)
        var uncentred = RMMBasisFile(kind: .adapter, variant: .position, basis: 1, center: false, experts: ["a", "b"])
        let mismatch = MergeError.invalidInputs(method: "rmm", problem: "module 'm' does not match its metadata in rmm.safetensors")
        expectThrows(mismatch) { _ = try uncentred.append(module, metadata: meta) }
        var three = RMMBasisFile(kind: .adapter, variant: .position, basis: 1, center: true, experts: ["a", "b", "c"])
        expectThrows(mismatch) { _ = try three.append(module, metadata: meta) }
        var good = RMMBasisFile(kind: .adapter, variant: .position, basis: 1, center: true, experts: ["a", "b"])
        var wrong = meta
        wrong.k = 2
        expectThrows(mismatch) { _ = try good.append(module, metadata: wrong) }
        #expect(good.modules.isEmpty)
        _ = try good.append(module, metadata: meta)
        #expect(good.modules == [meta] && good.layout.map(\.name) == module.tensors.map { "m." + $0.suffix })
    }
}
