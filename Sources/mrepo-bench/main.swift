import Delta
import Foundation
import ModelFactory

// Temporary harness: codec ratios on a generated family.
let arch = Architecture.all.first { $0.name == (CommandLine.arguments.dropFirst().first ?? "minilm") }!
for dtype in [DType.f32, .bf16] {
    let factory = ModelFactory(architecture: arch, dtype: dtype)
    let root = "/tmp/mf-\(arch.name)-\(dtype.rawValue)"
    let t0 = Date()
    if !FileManager.default.fileExists(atPath: root + "/base/model.safetensors") {
        try factory.writeCheckpoint(to: root + "/base")
        for ft in FineTune.standardFamily { try factory.writeCheckpoint(to: root + "/" + ft.name, fineTune: ft) }
    }
    print("generated in", Date().timeIntervalSince(t0))
    let base = try SafetensorsFile(path: root + "/base/model.safetensors")
    for name in ["base"] + FineTune.standardFamily.map(\.name) {
        let file = try SafetensorsFile(path: root + "/" + name + "/model.safetensors")
        for enc in (name == "base" ? [TensorEncoding.whole] : [.xor, .integerDelta, .integerDeltaByExponent]) {
            var stored = 0
            let t1 = Date()
            for t in file.tensors {
                let src = file.data(of: t)
                var ref: TensorPipeline.Reference?
                if enc != .whole, let bt = base.tensor(named: t.name) {
                    let bd = base.data(of: bt)
                    if bd.elementsEqual(src) { continue }
                    let bdp = UnsafeSendable(bd)
                    let cs = CodecOptions.default.chunkByteCount
                    ref = TensorPipeline.Reference(digest: .zero) { i, into in
                        let r = (i * cs)..<min(bdp.value.count, (i + 1) * cs)
                        into.copyMemory(from: UnsafeRawBufferPointer(rebasing: bdp.value[r]))
                    }
                }
                let r = try TensorPipeline.encode(dtype: t.dtype, shape: t.shape, source: src, encoding: t.dtype.isFloatingPoint ? enc : .integerDelta,
                                                  reference: ref, options: .default, sink: { _ in })
                stored += r.storedByteCount
            }
            let dt = Date().timeIntervalSince(t1)
            let p = Process(); p.executableURL = URL(fileURLWithPath: "/bin/sh")
            p.arguments = ["-c", "zstd -3 -c -q \(root)/\(name)/model.safetensors | wc -c"]
            let pipe = Pipe(); p.standardOutput = pipe; try p.run(); p.waitUntilExit()
            let z = Int(String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))!
            print(dtype, name, enc, String(format: "%.3f x zstd-3  %.0f MB/s", Double(stored) / Double(z), Double(file.map.count) / dt / 1e6))
        }
    }
}
struct UnsafeSendable<T>: @unchecked Sendable { let value: T; init(_ v: T) { value = v } }
