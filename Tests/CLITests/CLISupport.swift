import Delta
import Foundation
import Testing

/// The outcome of one run of the mrepo binary.
struct CLIResult {
    var status: Int32
    var stdout: String
    var stderr: String

    var stderrLines: [String] { stderr.split(separator: "\n").map(String.init) }
}

/// Runs the built `mrepo` executable in a temporary directory.
final class CLISandbox {
    let root: String
    var environment: [String: String] = [
        "MREPO_AUTHOR": "Test User <test@example.com>",
        // Tests make many small repositories on a shared disk; the crash tests turn this back on.
        "MREPO_FSYNC": "0",
    ]

    init() throws {
        let base = FileManager.default.temporaryDirectory.path + "/mrepo-cli-\(getpid())-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        root = URL(fileURLWithPath: base).resolvingSymlinksInPath().path
    }

    deinit {
        try? FileManager.default.removeItem(atPath: root)
    }

    /// The mrepo binary built beside the test bundle.
    static let binary: String = {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("mrepo").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        let fallback = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/mrepo").path
        return fallback
    }()

    /// Runs `mrepo args...` in `directory` (relative to the sandbox; default the sandbox itself),
    /// after the shell command `shell` if given (`ulimit -n 64`, say).
    @discardableResult
    func run(_ args: [String], in directory: String? = nil, environment extra: [String: String] = [:],
             after shell: String? = nil) throws -> CLIResult {
        let process = Process()
        if let shell {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", shell + " && exec \"$0\" \"$@\"", CLISandbox.binary] + args
        } else {
            process.executableURL = URL(fileURLWithPath: CLISandbox.binary)
            process.arguments = args
        }
        process.currentDirectoryURL = URL(fileURLWithPath: directory.map { $0.hasPrefix("/") ? $0 : root + "/" + $0 } ?? root)
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        for (k, v) in extra { env[k] = v }
        process.environment = env
        let tmp = FileManager.default.temporaryDirectory.path
        let outPath = tmp + "/mrepo-cli-out-\(UUID().uuidString)", errPath = tmp + "/mrepo-cli-err-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        defer {
            try? FileManager.default.removeItem(atPath: outPath)
            try? FileManager.default.removeItem(atPath: errPath)
        }
        let out = FileHandle(forWritingAtPath: outPath)!, err = FileHandle(forWritingAtPath: errPath)!
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try out.close()
        try err.close()
        let status = process.terminationReason == .uncaughtSignal ? -process.terminationStatus : process.terminationStatus
        return CLIResult(status: status, stdout: String(decoding: FileManager.default.contents(atPath: outPath) ?? Data(), as: UTF8.self),
                         stderr: String(decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self))
    }

    /// Runs and requires exit status 0.
    @discardableResult
    func ok(_ args: [String], in directory: String? = nil, environment: [String: String] = [:],
            sourceLocation: SourceLocation = #_sourceLocation) throws -> CLIResult {
        let r = try run(args, in: directory, environment: environment)
        #expect(r.status == 0, "mrepo \(args.joined(separator: " ")) failed: \(r.stderr)", sourceLocation: sourceLocation)
        return r
    }

    func path(_ relative: String) -> String { root + "/" + relative }

    func read(_ relative: String) -> Data? { FileManager.default.contents(atPath: path(relative)) }

    /// Writes a synthetic model family (base, math, code, chat) of the tiny architecture.
    func makeFamily(_ name: String = "family", extra: [String] = []) throws {
        try synth(name, ["--size", "tiny"] + extra)
    }

    /// What `mrepo synth NAME ARGUMENTS...` writes, into the sandbox. The generator is seeded and
    /// its output does not depend on NAME, so the binary runs once per argument list and test run
    /// (``SynthCache``) and every sandbox gets a copy. SynthCLITests runs `synth` itself.
    func synth(_ name: String, _ arguments: [String]) throws {
        try FileManager.default.copyItem(atPath: try SynthCache.folder(for: arguments), toPath: path(name))
    }

    /// `repo`, made by `init`, with `<models>/base` committed on `main` and each of `branches` committed
    /// from `<models>/<branch>` on a branch of its name started at `main`; HEAD back on `main`.
    /// `models` is a folder of the sandbox; "" for model folders at its top.
    func repository(of models: String = "family", branches: [String]) throws {
        let from = models.isEmpty ? "../" : "../\(models)/"
        try ok(["init", "-q", "repo"])
        try ok(["commit", "-q", "--from", from + "base", "-m", "base"], in: "repo")
        for branch in branches {
            try ok(["switch", "-q", "-c", branch, "main"], in: "repo")
            try ok(["commit", "-q", "--from", from + branch, "-m", branch], in: "repo")
        }
        try ok(["switch", "-q", "main"], in: "repo")
    }

    /// Every file under a folder (relative paths), excluding `.mrepo`.
    func files(under relative: String) -> [String] {
        let base = path(relative)
        let all = FileManager.default.enumerator(atPath: base)?.compactMap { $0 as? String } ?? []
        return all.filter { p in
            var isDir: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: base + "/" + p, isDirectory: &isDir)
            return !isDir.boolValue && !p.hasPrefix(".mrepo")
        }.sorted()
    }

    /// Whether two folders hold the same files with the same bytes.
    func sameFiles(_ a: String, _ b: String) -> Bool {
        let fa = files(under: a), fb = files(under: b)
        guard fa == fb else { return false }
        return fa.allSatisfy { read(a + "/" + $0) == read(b + "/" + $0) }
    }

    /// Parses JSON printed by a `--json` command.
    func json(_ r: CLIResult) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(r.stdout.utf8), options: [.fragmentsAllowed])
    }
}

extension CLISandbox {
    /// Writes a checkpoint folder with the given float32 tensors (and int64 ones when named `ids*`).
    func writeModel(_ folder: String, _ tensors: [(String, Shape, [Float])], dtype: DType = .f32) throws {
        try FileManager.default.createDirectory(atPath: path(folder), withIntermediateDirectories: true)
        let entries = tensors.map { name, shape, values -> (name: String, dtype: DType, shape: Shape, bytes: [UInt8]) in
            if name.hasPrefix("ids") {
                var bytes = [UInt8]()
                for v in values { withUnsafeBytes(of: Int64(v).littleEndian) { bytes += $0 } }
                return (name, .i64, shape, bytes)
            }
            var bytes = [UInt8](repeating: 0, count: values.count * dtype.byteSize)
            values.withUnsafeBufferPointer { v in bytes.withUnsafeMutableBytes { FloatConversion.fromFloat(dtype, v, into: $0) } }
            return (name, dtype, shape, bytes)
        }
        try SafetensorsWriter.write(path: path(folder + "/model.safetensors"), tensors: entries, metadata: [("format", "pt")])
    }

    /// The float values of one tensor of a safetensors file under the sandbox.
    func floats(_ file: String, _ tensor: String) throws -> [Float] {
        let f = try SafetensorsFile(path: path(file))
        let t = try #require(f.tensor(named: tensor))
        var out = [Float](repeating: 0, count: t.shape.reduce(1, *))
        out.withUnsafeMutableBufferPointer { o in FloatConversion.toFloat(t.dtype, f.data(of: t), into: o) }
        return out
    }

    /// The dtype of one tensor of a safetensors file under the sandbox.
    func dtype(_ file: String, _ tensor: String) throws -> DType? {
        try SafetensorsFile(path: path(file)).tensor(named: tensor)?.dtype
    }
}

/// The report printed by `merge --json`.
func mergeReport(_ r: CLIResult) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
}

/// A report's tensors by name.
func tensorsByName(_ report: [String: Any]) -> [String: [String: Any]] {
    var out: [String: [String: Any]] = [:]
    for t in report["tensors"] as? [[String: Any]] ?? [] { out[t["name"] as? String ?? ""] = t }
    return out
}

/// Asserts that a failed run printed exactly one line, starting `mrepo: error:`, with no stack trace.
func expectOneLineError(_ r: CLIResult, status: Int32 = 2, contains fragment: String,
                        sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(r.status == status, "exit status \(r.status), stderr: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.stderrLines.count == 1, "expected one line on stderr, got: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.stderr.hasPrefix("mrepo: error: "), "stderr: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(r.stderr.contains(fragment), "'\(fragment)' not in: \(r.stderr)", sourceLocation: sourceLocation)
    #expect(!r.stderr.contains("Fatal error") && !r.stderr.contains("backtrace"), sourceLocation: sourceLocation)
}

/// The folders `mrepo synth` wrote in this test run, by argument list; they live until the test
/// process exits.
enum SynthCache {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var folders: [[String]: String] = [:]

    private static let root: String = {
        let path = FileManager.default.temporaryDirectory.path + "/mrepo-cli-synth-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: SynthCache.root) }
        return path
    }()

    /// The output of `mrepo synth NAME arguments...`, generated on first use.
    static func folder(for arguments: [String]) throws -> String {
        lock.lock()
        defer { lock.unlock() }
        if let folder = folders[arguments] { return folder }
        let s = try CLISandbox()
        let r = try s.run(["synth", "family"] + arguments)
        guard r.status == 0 else { throw SynthFailed(description: "mrepo synth \(arguments.joined(separator: " ")): \(r.stderr)") }
        let folder = root + "/\(folders.count)"
        try FileManager.default.moveItem(atPath: s.path("family"), toPath: folder)
        folders[arguments] = folder
        return folder
    }

    struct SynthFailed: Error, CustomStringConvertible {
        let description: String
    }
}
