import Delta
import Foundation
import Testing

@Suite struct CheckpointCheckTests {
    func count(_ dtype: DType, _ bytes: [UInt8]) -> (nan: Int, inf: Int) {
        bytes.withUnsafeBytes { CheckpointCheck.countNonFinite(dtype, $0) }
    }

    @Test func countsNaNAndInfinityByBitPattern() {
        let f32: [UInt32] = [0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 0x7F80_0001, 0xFFFF_FFFF, 0x7F7F_FFFF, 0, 0x8000_0000]
        #expect(count(.f32, bytesOf(f32)) == (3, 2))
        let f64: [UInt64] = [0x7FF0_0000_0000_0000, 0x7FF0_0000_0000_0001, 0x7FEF_FFFF_FFFF_FFFF]
        #expect(count(.f64, bytesOf(f64)) == (1, 1))
        #expect(count(.bf16, bytesOf([UInt16(0x7F80), 0xFF81, 0x7F7F, 0x3F80])) == (1, 1))
        #expect(count(.f16, bytesOf([UInt16(0x7C00), 0xFC00, 0x7C01, 0x7BFF])) == (1, 2))
        #expect(count(.f8e5m2, [0x7C, 0xFD, 0x7B, 0x00]) == (1, 1))
        // F8_E4M3 has no infinity; only 0x7F and 0xFF are NaN.
        #expect(count(.f8e4m3, [0x7F, 0xFF, 0x7E, 0xFE, 0x78]) == (2, 0))
        // Integers are never counted.
        #expect(count(.i32, bytesOf([UInt32(0x7F80_0000)])) == (0, 0))
    }

    @Test func findsNonFiniteValuesInAFolder() throws {
        try withTemporaryDirectory { dir in
            let bad = bytesOf([Float.nan, 1, .infinity, -.infinity, Float(bitPattern: 0x7FC0_0001), 2, 3, 4])
            let good = bytesOf([Float(1), 2])
            try SafetensorsWriter.write(path: dir + "/model.safetensors", tensors: [
                ("ok", .f32, [2], good), ("w", .f32, [2, 4], bad), ("ids", .i64, [1], bytesOf([Int64(-1)])),
            ], metadata: nil)
            try FileManager.default.createDirectory(atPath: dir + "/.mrepo", withIntermediateDirectories: true)
            try SafetensorsWriter.write(path: dir + "/.mrepo/ignored.safetensors", tensors: [("x", .f32, [1], bytesOf([Float.nan]))], metadata: nil)

            let report = CheckpointCheck.check(paths: [dir], finite: true)
            #expect(report.files == 1)
            #expect(report.tensors == 3)
            #expect(report.findings.map(\.description) == ["model.safetensors: tensor 'w': 2 NaN and 2 infinite values of 8"])
            // Without the scan, the file is fine.
            #expect(CheckpointCheck.check(paths: [dir], finite: false).findings.isEmpty)
        }
    }

    @Test func reportsInvalidFilesAndMissingPaths() throws {
        try withTemporaryDirectory { dir in
            try writeFile(safetensorsBytes(json: #"{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#, data: [0, 0, 0, 0]),
                           to: dir + "/broken.safetensors")
            let report = CheckpointCheck.check(paths: [dir, dir + "/nothing-here"], finite: true)
            // With several paths, a file is named after its folder.
            #expect(report.findings.map(\.description) == [
                "\(dir)/broken.safetensors: tensor 'w': data ends at byte 16, data section has 4",
                "\(dir)/nothing-here: no such file or directory",
            ])
            #expect(CheckpointCheck.check(paths: [dir], finite: true).findings.map(\.description)
                == ["broken.safetensors: tensor 'w': data ends at byte 16, data section has 4"])
        }
    }

    @Test func findsIndexAndShardDisagreements() throws {
        try withTemporaryDirectory { dir in
            let four = bytesOf([Float(1)])
            try SafetensorsWriter.write(path: dir + "/model-00001-of-00002.safetensors",
                                        tensors: [("a", .f32, [1], four), ("extra", .f32, [1], four)], metadata: nil)
            try SafetensorsWriter.write(path: dir + "/model-00002-of-00002.safetensors", tensors: [("c", .f32, [1], four)], metadata: nil)
            let index = ShardIndex(weightMap: [("a", "model-00001-of-00002.safetensors"), ("b", "model-00001-of-00002.safetensors"),
                                               ("c", "model-00002-of-00002.safetensors"), ("d", "model-00003-of-00003.safetensors")],
                                   metadata: nil)
            try writeFile(index.serialized(), to: dir + "/model.safetensors.index.json")

            let report = CheckpointCheck.check(paths: [dir], finite: false)
            #expect(report.files == 2)
            #expect(report.findings.map(\.description) == [
                "model.safetensors.index.json: tensor 'b': listed in shard 'model-00001-of-00002.safetensors', which does not hold it",
                "model-00001-of-00002.safetensors: tensor 'extra': not listed in model.safetensors.index.json",
                "model.safetensors.index.json: shard 'model-00003-of-00003.safetensors' is missing or invalid",
            ])
            // Checking the index file alone gives the same findings.
            let alone = CheckpointCheck.check(paths: [dir + "/model.safetensors.index.json"], finite: false)
            #expect(alone.findings.count == 3)
        }
    }

    @Test func consistentShardedCheckpointIsClean() throws {
        try withTemporaryDirectory { dir in
            let two = bytesOf([Float(1), 2])
            try SafetensorsWriter.write(path: dir + "/s1.safetensors", tensors: [("a", .f32, [2], two)], metadata: nil)
            try SafetensorsWriter.write(path: dir + "/s2.safetensors", tensors: [("b", .f32, [2], two)], metadata: nil)
            try writeFile(ShardIndex(weightMap: [("a", "s1.safetensors"), ("b", "s2.safetensors")], metadata: nil).serialized(),
                           to: dir + "/model.safetensors.index.json")
            let report = CheckpointCheck.check(paths: [dir], finite: true)
            #expect(report.findings.isEmpty)
            #expect(report.files == 2)
            #expect(report.tensors == 2)
        }
    }

    @Test func unreadableIndexIsAFinding() throws {
        try withTemporaryDirectory { dir in
            try writeFile(Array(#"{"weight_map": {"w": "../x.safetensors"}}"#.utf8), to: dir + "/model.safetensors.index.json")
            let report = CheckpointCheck.check(paths: [dir], finite: false)
            #expect(report.findings.map(\.description)
                == ["model.safetensors.index.json: weight_map entry 'w' names '../x.safetensors', outside the checkpoint folder"])
        }
    }
}
