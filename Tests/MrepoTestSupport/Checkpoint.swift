import Delta
import Testing

/// A safetensors file read with Delta's reader, to check results independently of the code under
/// test (the repository's export, a merge, a rebuilt expert).
public struct Checkpoint {
    public let file: SafetensorsFile

    public init(_ path: String) throws {
        file = try SafetensorsFile(path: path)
    }

    /// Tensor names in file order.
    public var names: [String] { file.tensors.map(\.name) }

    public func info(_ name: String) throws -> TensorInfo {
        try #require(file.tensor(named: name), "no tensor '\(name)' in \(file.path)")
    }

    public func bytes(_ name: String) throws -> [UInt8] {
        Array(file.data(of: try info(name)))
    }

    /// A floating-point tensor's values as Float32.
    public func floats(_ name: String) throws -> [Float] {
        let t = try info(name)
        var out = [Float](repeating: 0, count: t.byteCount / t.dtype.byteSize)
        out.withUnsafeMutableBufferPointer { FloatConversion.toFloat(t.dtype, file.data(of: t), into: $0) }
        return out
    }

    public func doubles(_ name: String) throws -> [Double] { try floats(name).map(Double.init) }
}

extension Checkpoint {
    /// ΔW = scale·B·A of one module of a PEFT adapter file (B·A orientation).
    public func adapterDelta(_ module: String, scale: Double) throws -> (delta: [Double], rows: Int, columns: Int) {
        let a = try info("base_model.model.\(module).lora_A.weight"), b = try info("base_model.model.\(module).lora_B.weight")
        let rank = a.shape[0], rows = b.shape[0], columns = a.shape[1]
        return (Numbers.product(b: try floats(b.name), a: try floats(a.name), rows: rows, rank: rank, columns: columns, scale: scale), rows, columns)
    }

    /// The adapted modules of a PEFT adapter file, in file order.
    public var adapterModules: [String] {
        var out: [String] = []
        for n in names where n.hasSuffix(".lora_A.weight") {
            out.append(String(n.dropFirst("base_model.model.".count).dropLast(".lora_A.weight".count)))
        }
        return out
    }
}

/// Float64 vector arithmetic for checking results by hand.
public enum Numbers {
    public static func norm(_ a: [Double]) -> Double { a.reduce(0) { $0 + $1 * $1 }.squareRoot() }
    public static func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
    public static func minus(_ a: [Double], _ b: [Double]) -> [Double] { zip(a, b).map { $0 - $1 } }
    public static func plus(_ a: [Double], _ b: [Double]) -> [Double] { zip(a, b).map { $0 + $1 } }
    /// ‖x − reference‖ / ‖reference‖.
    public static func relativeError(_ x: [Double], _ reference: [Double]) -> Double { norm(minus(x, reference)) / norm(reference) }

    /// scale · B·A for B (rows × r) and A (r × columns), row-major, in Float64.
    public static func product(b: [Float], a: [Float], rows: Int, rank: Int, columns: Int, scale: Double = 1) -> [Double] {
        var out = [Double](repeating: 0, count: rows * columns)
        for i in 0..<rows {
            for k in 0..<rank {
                let x = scale * Double(b[i * rank + k])
                if x == 0 { continue }
                for j in 0..<columns { out[i * columns + j] += x * Double(a[k * columns + j]) }
            }
        }
        return out
    }
}
