import Delta
import Foundation
import ModelFactory
import Repo
import Testing

// Helpers for the adapter, low-rank commit and reversible-merge tests: folders of checkpoints and
// adapters committed on branches, and tensors read back with Delta's reader to check results
// independently of the code under test.

/// A safetensors file read with Delta's reader.
struct Checkpoint {
    let file: SafetensorsFile

    init(_ path: String) throws {
        file = try SafetensorsFile(path: path)
    }

    var names: [String] { file.tensors.map(\.name) }

    func info(_ name: String) throws -> TensorInfo {
        try #require(file.tensor(named: name), "no tensor '\(name)' in \(file.path)")
    }

    func bytes(_ name: String) throws -> [UInt8] {
        Array(file.data(of: try info(name)))
    }

    func floats(_ name: String) throws -> [Float] {
        let t = try info(name)
        var out = [Float](repeating: 0, count: t.byteCount / t.dtype.byteSize)
        out.withUnsafeMutableBufferPointer { FloatConversion.toFloat(t.dtype, file.data(of: t), into: $0) }
        return out
    }

    func doubles(_ name: String) throws -> [Double] { try floats(name).map(Double.init) }
}

enum Numbers {
    static func norm(_ a: [Double]) -> Double { a.reduce(0) { $0 + $1 * $1 }.squareRoot() }
    static func dot(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + $1.0 * $1.1 } }
    static func minus(_ a: [Double], _ b: [Double]) -> [Double] { zip(a, b).map { $0 - $1 } }
    static func plus(_ a: [Double], _ b: [Double]) -> [Double] { zip(a, b).map { $0 + $1 } }
    /// ‖x − reference‖ / ‖reference‖.
    static func relativeError(_ x: [Double], _ reference: [Double]) -> Double { norm(minus(x, reference)) / norm(reference) }

    /// scale · B·A for B (rows × r) and A (r × columns), row-major, in Float64.
    static func product(b: [Float], a: [Float], rows: Int, rank: Int, columns: Int, scale: Double = 1) -> [Double] {
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

extension Checkpoint {
    /// ΔW = scale·B·A of one module of a PEFT adapter file (B·A orientation).
    func adapterDelta(_ module: String, scale: Double) throws -> (delta: [Double], rows: Int, columns: Int) {
        let a = try info("base_model.model.\(module).lora_A.weight"), b = try info("base_model.model.\(module).lora_B.weight")
        let rank = a.shape[0], rows = b.shape[0], columns = a.shape[1]
        return (Numbers.product(b: try floats(b.name), a: try floats(a.name), rows: rows, rank: rank, columns: columns, scale: scale), rows, columns)
    }

    /// The adapted modules of a PEFT adapter file, in file order.
    var adapterModules: [String] {
        var out: [String] = []
        for n in names where n.hasSuffix(".lora_A.weight") {
            out.append(String(n.dropFirst("base_model.model.".count).dropLast(".lora_A.weight".count)))
        }
        return out
    }
}

extension Repository {
    /// Commits a folder (`commit --from`) with a fixed author.
    @discardableResult
    func commitFolder(_ path: String, _ message: String, adapterOf: String? = nil, lowRank: LowRankPolicy? = nil) throws -> CommitResult {
        try commit(CommitOptions(message: message, sourceDirectory: path, author: testAuthor, adapterOf: adapterOf, lowRank: lowRank))
    }

    /// Everything `log`, `fsck` and the store would show: commits, refs, HEAD and object files.
    func state() throws -> String {
        let commits = try history.allCommits().map(\.id.hex).sorted()
        let refs = try history.refs().map { "\($0.name)=\($0.target.hex)" }.sorted()
        let objects = objectFiles.map(\.hex).sorted()
        return "\(try history.head()) \(commits) \(refs) \(objects)"
    }
}

/// A repository with the tiny base committed on `main` and each adapter committed on a branch of
/// its name (from `main`); HEAD is back on `main`. Folders: `<dir>/base`, `<dir>/<adapter name>`.
func withAdapterRepository<T>(_ specs: [LoRASpec], factory: ModelFactory = tinyFactory,
                              _ body: (Repository, String, ObjectID) throws -> T) throws -> T {
    try withRepository { repo, dir in
        try factory.writeCheckpoint(to: dir + "/base")
        let base = try repo.commitFolder(dir + "/base", "base").commit.id
        for spec in specs {
            try factory.writeAdapter(spec, to: dir + "/" + spec.name)
            _ = try repo.switchBranch(spec.name, create: true, startPoint: "main")
            let result = try repo.commitFolder(dir + "/" + spec.name, spec.name)
            #expect(result.adapter?.base == base, "\(spec.name) is an adapter of the base")
        }
        _ = try repo.switchBranch("main")
        return try body(repo, dir, base)
    }
}

/// The three standard adapters at a small rank (fast).
func standardAdapters(rank: Int = 4, targets: [String] = ["query", "value"]) -> [LoRASpec] {
    LoRASpec.standardAdapters.map { LoRASpec(name: $0.name, seed: $0.seed, rank: rank, alpha: Double(2 * rank), targets: targets) }
}

/// The error a call throws, as a ``RepoError/invalidArgument(_:)`` message (nil for other outcomes).
func invalidArgument(_ body: () throws -> Void) -> String? {
    if case let .invalidArgument(message)? = thrownError(body) as? RepoError { return message }
    return nil
}
