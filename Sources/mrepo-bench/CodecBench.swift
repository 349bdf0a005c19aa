import Delta
import Foundation
import ModelFactory

// Codec choices, in process: each encoding, zstd level and chunk size on the generated minilm family
// (codec) and on the real MiniLM checkpoints (real), as ratios to `zstd -3` of the same file.

struct CodecResult {
    var stored = 0
    var seconds = 0.0
}

/// Encodes every tensor of `file` (against `reference`'s same-named tensor when given) and sums the encoded size.
func encodeFile(_ file: SafetensorsFile, reference: SafetensorsFile?, encoding: TensorEncoding, options: CodecOptions) throws -> CodecResult {
    var result = CodecResult()
    let start = Subprocess.now()
    result.stored += Zstd.compress(file.headerBytes, level: 3).count
    for t in file.tensors {
        let source = file.data(of: t)
        var ref: TensorPipeline.Reference?
        if encoding != .whole, let reference, let rt = reference.tensor(named: t.name), rt.dtype == t.dtype, rt.shape == t.shape {
            let bytes = reference.data(of: rt)
            if bytes.elementsEqual(source) { continue }  // identical tensors are stored once
            // The mapped reference outlives the pipeline, which only reads it.
            let shared = UnsafeSendable(bytes)
            let chunk = options.chunkByteCount
            ref = TensorPipeline.Reference(digest: .zero) { i, into in
                let r = (i * chunk)..<min(shared.value.count, (i + 1) * chunk)
                into.copyMemory(from: UnsafeRawBufferPointer(rebasing: shared.value[r]))
            }
        }
        let enc = ref == nil ? TensorEncoding.whole : (t.dtype.isFloatingPoint ? encoding : .integerDelta)
        result.stored += try TensorPipeline.encode(dtype: t.dtype, shape: t.shape, source: source, encoding: enc, reference: ref,
                                                   options: options, sink: { _ in }).storedByteCount
    }
    result.seconds = Subprocess.now() - start
    return result
}

/// Ratios of each encoding to `zstd -3` for a family folder (base, fine-tunes).
func codecTable(title: String, folder: String, models: [(name: String, dir: String)], base: String) throws {
    let baseFile = try SafetensorsFile(path: folder + "/" + base + "/model.safetensors")
    print("### \(title)\n")
    header(["checkpoint", "`zstd -3`", "whole", "xor", "int-delta", "int-delta/exp (default)", "default at level 3", "default, 1 MiB chunks",
            "default, 16 MiB chunks", "encode speed (default)"])
    for m in models {
        let path = folder + "/" + m.dir + "/model.safetensors"
        let file = try SafetensorsFile(path: path)
        let z = try zstdSize(path)
        func ratio(_ r: CodecResult) -> String { String(format: "%.3f", Double(r.stored) / Double(z)) }
        let whole = try encodeFile(file, reference: nil, encoding: .whole, options: .default)
        if m.dir == base {
            let l3 = try encodeFile(file, reference: nil, encoding: .whole, options: CodecOptions(chunkByteCount: 4 << 20, level: 3))
            row([m.name, mb(z), ratio(whole), "-", "-", "-", ratio(l3), "-", "-", mbps(file.map.count, whole.seconds)])
            continue
        }
        let xor = try encodeFile(file, reference: baseFile, encoding: .xor, options: .default)
        let idelta = try encodeFile(file, reference: baseFile, encoding: .integerDelta, options: .default)
        let grouped = try encodeFile(file, reference: baseFile, encoding: .integerDeltaByExponent, options: .default)
        let l3 = try encodeFile(file, reference: baseFile, encoding: .integerDeltaByExponent, options: CodecOptions(chunkByteCount: 4 << 20, level: 3))
        let c1 = try encodeFile(file, reference: baseFile, encoding: .integerDeltaByExponent, options: CodecOptions(chunkByteCount: 1 << 20, level: 1))
        let c16 = try encodeFile(file, reference: baseFile, encoding: .integerDeltaByExponent, options: CodecOptions(chunkByteCount: 16 << 20, level: 1))
        row([m.name, mb(z), ratio(whole), ratio(xor), ratio(idelta), "**" + ratio(grouped) + "**", ratio(l3), ratio(c1), ratio(c16),
             mbps(file.map.count, grouped.seconds)])
    }
    print("")
}

/// The codec table on the generated minilm family, for each dtype.
func codecSection(_ o: Options) throws {
    let mini = Architecture.minilm
    for dtype in o.dtypes {
        let folder = "\(o.work)/family-\(mini.name)-\(dtype.rawValue)"
        try generateOnce(folder, what: "\(mini.name) \(dtype.rawValue) family") {
            try ModelFactory(architecture: mini, dtype: dtype).writeFamily(to: folder)
        }
        try codecTable(title: "Codec choice: generated \(mini.name) family, \(dtype.rawValue) (ratio to `zstd -3` of the same file)",
                       folder: folder, models: [("base", "base"), ("math (light)", "math"), ("code (light)", "code"), ("chat (heavy)", "chat")],
                       base: "base")
    }
}

/// The codec table on the real MiniLM checkpoints, float32 and bfloat16, when present.
func realSection(_ o: Options) throws {
    guard let real = o.realData else {
        print("### Real checkpoints\n\nSkipped: no real checkpoints (shared/data/make-real-checkpoints.sh; --realdata or $REALDATA).\n")
        return
    }
    for suffix in ["", "_bf16"] {
        let models = [("base", "base" + suffix), ("ft_code (light)", "ft_code" + suffix), ("ft_c (light)", "ft_c" + suffix),
                      ("ft_prose (heavy)", "ft_prose" + suffix)].filter { FileManager.default.fileExists(atPath: real + "/" + $0.1 + "/model.safetensors") }
        guard models.contains(where: { $0.1 == "base" + suffix }) else { continue }
        try codecTable(title: "Real checkpoints: all-MiniLM-L6-v2 and three real fine-tunes\(suffix.isEmpty ? ", F32" : ", BF16") (ratio to `zstd -3`)",
                       folder: real, models: models, base: "base" + suffix)
    }
}
